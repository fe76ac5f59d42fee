"""The heatmap's cost and faithfulness: the full occlusion grid against the coarse-to-fine
search the app uses, per model, on validation films, in one run.

    .venv/bin/python benchmarks/explain.py [--per-class 20] [--repeat 3]

Films: `--per-class` of each class drawn (seeded) from the validation split that training
carves out of train/ (training.data), never the test split. Per film and model, in turn so
that whatever else the machine does weighs on all alike:

- `plain`: the whole pipeline without a heatmap (score_film: decode, model);
- `old request`: decode, the SavedModel's `explain` signature (the full grid: 169 copies of
  the film in one call) and the heatmap drawn as before (RGBA layer, smallest PNGs);
- `new request`: the whole pipeline with `explain=True` (coarse to fine, palette PNG);
- the explainers alone: the `explain` signature, the full grid through `serving_default`
  (ServedModel's explainer without the coarse pass), and the coarse-to-fine search.

Prints p50 and p95 in ms, and how far the new map agrees with the old one: Spearman's rank
correlation of the 64x64 maps, the hottest 16 px cell (the patch's size, a 4x4 grid of the
input), and the old map's heat at the new map's hottest cell (1 = the old map's hottest).
The yardstick: the old map against itself with its grid moved by half a stride (2 px), a
choice that says nothing about the film. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.services.occlusion import Occlusion  # noqa: E402
from app.services.pipeline import inline_scorer, score_film  # noqa: E402
from app.services.saved_model import ServedModel, find_model  # noqa: E402
from training import defaults  # noqa: E402
from training.data import list_split, split_train_validation  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CELLS = 4  # the hottest cell on a CELLS x CELLS grid of the input: 16 px cells at 64 px


class ShiftedGrid(Occlusion):
    """The full grid moved by `shift` px down and right: the old map's own yardstick."""

    shift = 2

    def grid(self) -> np.ndarray:
        grid = super().grid() + self.shift
        return grid[(grid <= np.array([self.height, self.width])
                     - self.explanation.patch).all(1)]


def old_drawing(pixels: np.ndarray, heat: np.ndarray) -> tuple[bytes, bytes]:
    """The heatmap's two PNGs as the app drew them before (an RGBA layer, both PNGs at
    Pillow's smallest size)."""
    film = Image.fromarray(pixels)
    level = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(
        film.size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    rgba = np.zeros((film.size[1], film.size[0], 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = (255 * level).astype(np.uint8)
    rgba[..., 3] = (220 * np.clip(level * 1.4 - 0.2, 0, 1)).astype(np.uint8)
    out = []
    for image in (film, Image.fromarray(rgba, "RGBA")):
        buffer = io.BytesIO()
        image.save(buffer, "PNG", optimize=True)
        out.append(buffer.getvalue())
    return out[0], out[1]


def validation_films(data_dir: Path, per_class: int, seed: int) -> list[Path]:
    _, val = split_train_validation(list_split(data_dir, "train"), defaults.VAL_FRACTION,
                                    defaults.SEED)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(val.labels == label), per_class, replace=False)
              for label in (0, 1)]
    return [val.paths[i] for i in np.concatenate(chosen)]


def timed(function: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return (time.perf_counter() - started) * 1000, result


def hottest_cell(heat: np.ndarray) -> tuple[int, np.ndarray]:
    """(index of the hottest cell, (CELLS * CELLS,) mean heat per cell)."""
    height, width = heat.shape
    cells = heat.reshape(CELLS, height // CELLS, CELLS, width // CELLS).mean((1, 3)).ravel()
    return int(np.argmax(cells)), cells


def agreement(new: list[np.ndarray], old: list[np.ndarray]) -> str:
    rho, same, share = [], 0, []
    for a, b in zip(new, old):
        if np.ptp(a) == 0 or np.ptp(b) == 0:  # a map of 0: no region lowers the score
            rho.append(1.0 if np.ptp(a) == np.ptp(b) else 0.0)
        else:
            rho.append(float(spearmanr(a.ravel(), b.ravel())[0]))
        top, _ = hottest_cell(a)
        old_top, cells = hottest_cell(b)
        same += top == old_top
        share.append(cells[top] / cells.max() if cells.max() > 0 else 1.0)
    return (f"Spearman median {np.median(rho):.3f} (p10 {np.percentile(rho, 10):.3f}); "
            f"hottest cell the same on {same}/{len(new)} films; old heat at the new "
            f"hottest cell median {np.median(share):.2f} (p10 {np.percentile(share, 10):.2f})")


def summary(values: list[float]) -> str:
    return (f"p50 {statistics.median(values):7.1f} ms   "
            f"p95 {float(np.percentile(values, 95)):7.1f} ms")


class Counted:
    """A model's `predict` that counts the films it is given."""

    def __init__(self, model: ServedModel) -> None:
        self.model, self.films = model, 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.films += len(images)
        return self.model.predict(images)


def old_explainer(model: ServedModel) -> Callable[[np.ndarray], np.ndarray]:
    """The SavedModel's `explain` signature, as ServedModel.explain called it before:
    (N, H, W, C) raw pixels -> (N, H, W) heatmaps."""
    import tensorflow as tf

    signature = model.card.signature
    explain = tf.saved_model.load(str(model.path)).signatures[signature.explain]
    return lambda batch: explain(**{signature.input: tf.constant(batch)})[
        signature.heatmap].numpy()


def runs(model: ServedModel, old: Callable[[np.ndarray], np.ndarray], full: Occlusion,
         data: bytes, x: np.ndarray) -> dict[str, Callable[[], object]]:
    """The timed ways of scoring and explaining one film (`data`; `x` its (1, H, W, C)
    model input), by name."""
    scorer = inline_scorer(model, model.card.threshold, 60_000_000)

    def old_request():
        film = scorer.decoder.prepare(scorer.job(data, keep_pixels=True))
        return old_drawing(film.pixels, old(film.model_input[None].astype(np.float32))[0])

    return {
        "plain (whole pipeline)": lambda: score_film(scorer, data),
        "old request (decode, signature, draw)": old_request,
        "new request (score_film, explain)": lambda: score_film(scorer, data, True),
        "model alone, one film": lambda: model.predict(x),
        "old explainer: explain signature": lambda: old(x),
        "full grid via serving_default": lambda: full.explain(model.predict, x),
        "new explainer: coarse to fine": lambda: model.explain(x),
    }


def bench(model: ServedModel, films: list[Path], repeat: int) -> None:
    card = model.card
    old = old_explainer(model)
    full = Occlusion(card.explanation.model_copy(update={"coarse_stride": None, "refine": 0}),
                     *card.input_size)
    shifted = ShiftedGrid(full.explanation, *card.input_size)
    new = Occlusion(card.explanation, *card.input_size)  # ServedModel.explain's, counted
    scorer = inline_scorer(model, card.threshold, 60_000_000)
    times: dict[str, list[float]] = {}
    maps: dict[str, list[np.ndarray]] = {"new": [], "old": [], "shifted": []}
    saturated, copies = 0, []
    for path in films:
        data = path.read_bytes()
        x = scorer.decoder.prepare(scorer.job(data)).model_input[None].astype(np.float32)
        for _ in range(repeat):
            for name, run in runs(model, old, full, data, x).items():
                times.setdefault(name, []).append(timed(run)[0])
        counted = Counted(model)
        maps["new"].append(new.explain(counted, x)[1][0])
        copies.append(counted.films - 1)  # the film itself rides in the first call
        maps["old"].append(old(x)[0])
        maps["shifted"].append(shifted.explain(model.predict, x)[1][0])
        saturated += bool(model.predict(x)[0] >= np.nextafter(np.float32(1), np.float32(0)))
    print(f"\n{card.name} v{card.version}: {len(films)} validation films x {repeat}; full grid "
          f"{len(full.grid())} copies of the film in one call, coarse to fine "
          f"{int(np.median(copies))} (at most {max(copies)}) in two; {saturated} films' "
          "probability rounded to 1")
    for name, values in times.items():
        print(f"  {name:<40} {summary(values)}")
    ratio = (statistics.median(times["new request (score_film, explain)"])
             / statistics.median(times["plain (whole pipeline)"]))
    print(f"  new request / plain: {ratio:.1f}x (medians)")
    print(f"  new vs old map:              {agreement(maps['new'], maps['old'])}")
    print(f"  old map, grid moved by 2 px: {agreement(maps['shifted'], maps['old'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path,
                        default=REPO.parent / "shared" / "data" / "chest_xray")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models")
    parser.add_argument("--models", nargs="+", default=["pneumonia", "pneumonia_compact"])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="timings per film and method")
    parser.add_argument("--seed", type=int, default=0, help="which validation films")
    args = parser.parse_args()
    films = validation_films(args.data_dir, args.per_class, args.seed)
    for name in args.models:
        model = ServedModel(find_model(args.model_dir, name))
        model.warm_up()
        bench(model, films, args.repeat)


if __name__ == "__main__":
    main()
