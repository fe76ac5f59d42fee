"""A made site for the local validation's tests: labelled films and the archive rows their
scoring would give (app/archive/rows.py names), without scoring anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from app.archive.validate_labels import Labelled, Labels

WEAK_WARD = "B"  # the ward where the model misses pneumonia


def made_site(n: int = 160, seed: int = 0, refused: int = 3, unjudged: int = 2,
              ) -> tuple[Labels, dict[str, dict]]:
    """`n` used films (about 60% pneumonia; probabilities that separate the labels, except
    in ward B, where pneumonia films score low), `refused` films the archive refused
    (unreadable) and `unjudged` ones it could not judge (rotated), with header facts that
    vary: (the labels, source -> its row)."""
    rng = np.random.default_rng(seed)
    films, rows = [], {}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n + refused + unjudged):
        label = int(rng.random() < 0.6)
        ward = WEAK_WARD if i % 4 == 0 else "A"
        shift = 1.6 if label and ward != WEAK_WARD else -1.0 if label else -1.6
        probability = float(1 / (1 + np.exp(-(shift + rng.normal(0, 1.0)))))
        source = f"/site/film{i:03d}.{'dcm' if i % 3 else 'jpeg'}"
        films.append(Labelled(source, f"film{i:03d}", i + 2, label, {"subgroup:ward": ward}))
        row = {"source": source, "scored_at": start + timedelta(seconds=i), "error": None,
               "decision": "flagged" if probability >= 0.5 else "not_flagged",
               "probability": probability, "reasons": [],
               "format": "DICOM" if i % 3 else "JPEG",
               "manufacturer": "Acme" if i % 3 else None,
               "manufacturer_model": ("X1" if i % 2 else "X2") if i % 3 else None,
               "view_position": ("AP", "PA", None)[i % 3], "patient_age": ("004Y", "9Y",
                                                                         None)[i % 3],
               "patient_sex": ("M", "F", "")[i % 3], "body_part": "CHEST" if i % 3 else None,
               "pixel_spacing_mm": (0.143, 0.2, None)[i % 3]}
        if i >= n + unjudged:
            row.update(decision=None, probability=None, error="unreadable_image")
        elif i >= n:
            row.update(decision="needs_human_look", probability=None, reasons=["rotated"])
        rows[source] = row
    return Labels(films, "csv", ["subgroup:ward"]), rows
