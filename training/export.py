"""Export a trained Keras model as a TensorFlow SavedModel plus its JSON model card.

Layout, loadable by TensorFlow Serving as is:
    OUT/<name>/<version>/saved_model.pb, variables/   the SavedModel
    OUT/<name>/<version>/model_card.json              the contract the app reads
Export needs the TensorFlow backend (training itself does not).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import keras

from app.contract.card import SIGNATURE


class VersionExistsError(FileExistsError):
    pass


def export_saved_model(model: keras.Model, version_dir: Path, force: bool = False) -> Path:
    """Write `model` as a SavedModel whose serving_default maps images -> probability.

    Signature: images float32 (batch, H, W, C), raw 0-255 -> probability float32 (batch,).
    An existing version is a model someone may be serving: it is replaced only with `force`.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("SavedModel export needs KERAS_BACKEND=tensorflow")
    version_dir = Path(version_dir)
    if version_dir.exists():
        if not force:
            raise VersionExistsError(f"{version_dir} exists; choose another version or force")
        shutil.rmtree(version_dir)
    version_dir.parent.mkdir(parents=True, exist_ok=True)

    def serve(images):
        return {SIGNATURE.output: keras.ops.reshape(model(images, training=False), (-1,))}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE.name,
        fn=serve,
        input_signature=[keras.InputSpec(shape=(None, *model.input_shape[1:]), dtype="float32",
                                         name=SIGNATURE.input)],
    )
    archive.write_out(str(version_dir), verbose=False)
    return version_dir

