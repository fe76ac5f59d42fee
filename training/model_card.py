"""The model card of an exported experiment (app.contract.card.ModelCard): its texts, and
its values from the run, the experiment's report entry and the trust assessment."""

from __future__ import annotations

from datetime import UTC, datetime

import keras

from app.contract.card import CLASS_NAMES, SIGNATURE, IntendedPopulation, ModelCard
from app.contract.guard import GUARD_FILE
from app.contract.preprocessing import PREPROCESSING_VERSION, RESAMPLING
from training.augment import DESCRIPTIONS
from training.config import RunConfig
from training.data import Arrays, Split
from training.evaluate import binary_metrics
from training.experiments import EXPERIMENTS, STUDY_NUMBERS
from training.export import occlusion_grid
from training.layers import HistogramEqualization
from training.provenance import dataset_info
from training.trust import Trust

DISCLAIMER = "Prioritisation aid, not a diagnosis."
INTENDED_USE = ("Prioritisation aid for pediatric chest X-rays (ages 1-5, Guangzhou cohort): "
                "orders a worklist so that likely pneumonia is read first. Not a diagnosis; "
                "every image is still read by a clinician.")
# Who the films were: the Kermany cohort, as its paper describes it. "One to five years old"
# in completed years is from the first birthday up to the sixth: [1, 6) (the gate's rule,
# app/contract/intended_use.py). Its films are frontal; the app takes AP and PA as frontal.
INTENDED_POPULATION = IntendedPopulation(
    age_years=(1.0, 6.0), projections=("AP", "PA"), body_part="CHEST", modalities=("CR", "DX"),
    pixel_intent="FOR PRESENTATION",
    source="Kermany et al., Cell 172(5), 2018: frontal chest X-rays of pediatric patients one "
           "to five years old (Guangzhou Women and Children's Medical Center); ages 1 to 5 "
           "read as from the first birthday up to the sixth")
LIMITS = [
    "Trained and tested on one hospital's pediatric anterior-posterior films; adult, "
    "lateral or other-site images are out of distribution.",
    "Sees a 64x64 downscale of the image: fine findings are invisible to it.",
    "Its threshold is chosen for high sensitivity on validation: many normal films are "
    "flagged, more on the test split than on validation.",
    "Probabilities are calibrated on the validation split (temperature scaling), which comes "
    "from the same hospital as the training films; on other films they may be over-confident.",
    "Does not distinguish bacterial from viral pneumonia, or pneumonia from other opacities.",
]


def scaling_text(model: keras.Model) -> str:
    """How the exported model turns raw 0-255 pixels into the network's input."""
    if any(isinstance(layer, HistogramEqualization) for layer in model.layers):
        return "inside the model (per-film histogram equalisation to 0-1)"
    return "inside the model (Rescaling 1/255)"


def build_card(config: RunConfig, name: str, version: int, entry: dict, model: keras.Model,
               parts: dict[str, Split], arrays: Arrays, trust: Trust,
               protocol: str) -> ModelCard:
    """The card of `model`, experiment `entry` (evaluate_experiment's) of a run."""
    experiment = EXPERIMENTS[entry["number"]]
    op = trust.operating_point
    a, b = trust.platt
    grid = occlusion_grid(config.image_size, config.image_size)
    patch = grid["patch"]
    of_study = experiment.number in STUDY_NUMBERS
    return ModelCard(
        name=name,
        version=version,
        description=(f"Model {experiment.number} of the original study: "
                     if of_study else f"Model {experiment.number}, beyond the original study: ")
                    + entry["description"],
        created=datetime.now(UTC).replace(microsecond=0),
        code_version=config.code_version,
        format="TensorFlow SavedModel",
        signature=SIGNATURE,
        input={"height": config.image_size, "width": config.image_size,
               "channels": config.channels,
               "color_mode": "rgb" if config.channels == 3 else "grayscale",
               "dtype": "float32", "value_range": (0, 255), "scaling": scaling_text(model),
               "resize": RESAMPLING, "preprocessing_version": PREPROCESSING_VERSION},
        output=f"probability of {CLASS_NAMES[1]}, float32 (batch,)",
        class_names=CLASS_NAMES,
        positive_class=CLASS_NAMES[1],
        threshold=op["threshold"],
        threshold_method=(f"chosen on the validation split as the highest threshold whose "
                          f"sensitivity reaches {config.target_sensitivity:.0%}, on the "
                          "calibrated probability; the test split played no part in it"),
        metrics={part: binary_metrics(labels, trust.calibrated[part], op["threshold"])
                 for part, labels in (("validation", arrays.y_val), ("test", arrays.y_test))},
        training={**entry["recipe"], "protocol": protocol, "experiment": experiment.number,
                  "augmentation": entry.get("augmentation_text")
                  or DESCRIPTIONS[experiment.augmentation],
                  "seed": entry["seed"],
                  "parameters": entry["parameters"], "train_seconds": entry["train_seconds"]},
        data=dataset_info(parts, config.val_fraction, config.seed, config.limit_per_class),
        intended_use=INTENDED_USE,
        intended_population=INTENDED_POPULATION,
        disclaimer=DISCLAIMER,
        limitations=LIMITS,
        operating_point=op,
        calibration={"method": "temperature",
                     "parameters": {"temperature": trust.temperature, "a": a, "b": b},
                     "fitted_on": "validation", "inside_model": True,
                     "brier": trust.brier,
                     "ece": {part: {kind: bins["ece"] for kind, bins in values.items()}
                             for part, values in trust.reliability.items()}},
        explanation={
            "method": "occlusion sensitivity of the pneumonia logit, measured coarse to fine",
            **grid,
            "note": f"Where hiding a region lowers the score most. The network sees a "
                    f"{config.image_size}x{config.image_size} downscale and the map is built "
                    f"from {patch}x{patch} px patches of it, so it shows coarse regions, not "
                    "findings."},
        input_guard={"method": "colour, shape and size checks, and the squared Mahalanobis "
                               "distance of 8x8 grid and histogram features of the model "
                               "input to the training films",
                     "file": GUARD_FILE, "percentile": 99.0,
                     "validation_false_alarm_rate": trust.guard_false_alarms,
                     "checks": ["colour", "aspect ratio", "size", "distribution"]},
    )
