"""Export a trained Keras model as a TensorFlow SavedModel with two signatures.

Layout, loadable by TensorFlow Serving as is:
    OUT/<name>/<version>/saved_model.pb, variables/   the SavedModel
    OUT/<name>/<version>/model_card.json              the contract the app reads

- `serving_default`: images float32 (batch, H, W, C), raw 0-255 -> probability (batch,),
  calibrated inside the graph (sigmoid(a * logit + b); temperature scaling: b = 0), so
  TensorFlow Serving returns the same calibrated probability as the app.
- `explain`: images -> probability and heatmap (batch, H, W), 0-1: occlusion sensitivity
  (Zeiler and Fergus, 2014). A grey patch slides over the film; how far each position lowers
  the pneumonia logit is spread over the pixels it covered. Chosen over Grad-CAM because this
  network's last convolution has 4 channels on a 28x28 grid, whose Grad-CAM was dominated by
  edge artefacts and did not follow a mirrored film; occlusion needs no layer at all and
  answers the clinician's question directly: which region, hidden, changes the score.
  This signature measures every position of the card's grid, for TensorFlow Serving; the app
  measures the same grid coarse to fine through `serving_default` (app/services/occlusion.py),
  which is why the card carries the whole grid (`occlusion_grid`).
Export needs the TensorFlow backend (training itself does not).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import keras

from app.contract.card import SIGNATURE


class VersionExistsError(FileExistsError):
    pass


def occlusion_grid(height: int, width: int) -> dict[str, int]:
    """The card's occlusion grid in px (app.contract.card.Explanation): a patch of a quarter
    of the side, moved by a sixteenth; the app's coarse pass takes every third position, and
    its second pass the grid within two positions of the largest drop. Chosen on 80
    validation films against the full grid's map: every second position alone (49 copies,
    one call) kept model 5's hottest 16 px cell on 25 of them, as its drops change sign from
    one position to the next, every third alone on 19; with the second pass, on 69, where
    the full grid moved by half a stride keeps it on 61 (benchmarks/explain.py)."""
    side = min(height, width)
    patch, stride = max(side // 4, 1), max(side // 16, 1)
    return {"patch": patch, "stride": stride, "coarse_stride": 3 * stride,
            "refine": 2 * stride}


def export_saved_model(model: keras.Model, version_dir: Path, force: bool = False,
                       calibration: tuple[float, float] = (1.0, 0.0)) -> Path:
    """Write `model` as a SavedModel; `calibration` = (a, b) of p = sigmoid(a * logit + b).

    An existing version is a model someone may be serving: it is replaced only with `force`.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("SavedModel export needs KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    version_dir = Path(version_dir)
    if version_dir.exists():
        if not force:
            raise VersionExistsError(f"{version_dir} exists; choose another version or force")
        shutil.rmtree(version_dir)
    version_dir.parent.mkdir(parents=True, exist_ok=True)

    a, b = (float(v) for v in calibration)
    head = model.layers[-1]  # Dense(1, sigmoid): its input and weights give the logit
    inner = keras.Model(model.inputs, head.input)
    height, width, channels = model.input_shape[1:4]
    grid = occlusion_grid(height, width)
    patch, stride = grid["patch"], grid["stride"]
    # (P, H, W) masks, 1 inside the patch: built from ranges, not stored as a big constant.
    starts_r = tf.range(0, height - patch + 1, stride)
    starts_c = tf.range(0, width - patch + 1, stride)
    grid_r, grid_c = tf.meshgrid(starts_r, starts_c, indexing="ij")
    grid_r, grid_c = tf.reshape(grid_r, (-1, 1)), tf.reshape(grid_c, (-1, 1))
    rows, cols = tf.range(height)[None], tf.range(width)[None]
    inside_r = tf.cast((rows >= grid_r) & (rows < grid_r + patch), tf.float32)  # (P, H)
    inside_c = tf.cast((cols >= grid_c) & (cols < grid_c + patch), tf.float32)  # (P, W)
    masks = inside_r[:, :, None] * inside_c[:, None, :]  # (P, H, W)
    coverage = tf.reduce_sum(masks, axis=0)  # (H, W): how many patches cover each pixel

    def logit(images):
        return tf.reshape(tf.matmul(inner(images, training=False), head.kernel) + head.bias,
                          (-1,))

    def calibrated(z):
        return tf.sigmoid(a * z + b)

    def serve(images):
        return {SIGNATURE.output: calibrated(logit(images))}

    def explain(images):
        z = logit(images)  # (N,)
        n, positions = tf.shape(images)[0], tf.shape(masks)[0]
        fill = tf.reduce_mean(images, axis=(1, 2, 3), keepdims=True)  # each film's grey
        hidden = masks[None, :, :, :, None]  # (1, P, H, W, 1)
        occluded = images[:, None] * (1 - hidden) + fill[:, None] * hidden
        occluded_z = logit(tf.reshape(occluded, (-1, height, width, channels)))
        drop = tf.nn.relu(z[:, None] - tf.reshape(occluded_z, (n, positions)))  # (N, P)
        # Where the grid leaves a border uncovered (other input sizes), it stays 0, not NaN.
        heat = tf.einsum("np,phw->nhw", drop, masks) / tf.maximum(coverage, 1.0)
        heat = heat / (tf.reduce_max(heat, axis=(1, 2), keepdims=True) + 1e-8)
        return {SIGNATURE.output: calibrated(z), SIGNATURE.heatmap: heat}

    spec = [keras.InputSpec(shape=(None, *model.input_shape[1:]), dtype="float32",
                            name=SIGNATURE.input)]
    archive = keras.export.ExportArchive()
    archive.track(inner)
    archive.add_endpoint(name=SIGNATURE.name, fn=serve, input_signature=spec)
    archive.add_endpoint(name=SIGNATURE.explain, fn=explain, input_signature=spec)
    archive.write_out(str(version_dir), verbose=False)
    return version_dir
