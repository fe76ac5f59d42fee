"""The original study's published results (shared/reference/original-study.md), as data.

The write-up gives one result block for models 1-3 together ("identical to models 1 and 2")
and no precision/recall/F1 for them; missing values are None, never guessed.
"""

STUDY_RESULTS: dict[int, dict[str, float | None]] = {
    1: {"train_accuracy": 0.93, "test_accuracy": 0.62, "precision": None, "recall": None,
        "f1": None},
    2: {"train_accuracy": 0.93, "test_accuracy": 0.62, "precision": None, "recall": None,
        "f1": None},
    3: {"train_accuracy": 0.93, "test_accuracy": 0.62, "precision": None, "recall": None,
        "f1": None},
    4: {"train_accuracy": 0.96, "test_accuracy": 0.74, "precision": 0.71, "recall": 0.98,
        "f1": 0.83},
    5: {"train_accuracy": 0.94, "test_accuracy": 0.79, "precision": 0.77, "recall": 0.95,
        "f1": 0.85},
    6: {"train_accuracy": 0.89, "test_accuracy": 0.71, "precision": 0.70, "recall": 0.95,
        "f1": 0.80},
    7: {"train_accuracy": 0.95, "test_accuracy": 0.77, "precision": 0.77, "recall": 0.91,
        "f1": 0.83},
}

DATASET_CREDIT = (
    "Kermany, Daniel; Zhang, Kang; Goldbaum, Michael (2018), \"Labeled Optical Coherence "
    "Tomography (OCT) and Chest X-Ray Images for Classification\", Mendeley Data, V2, "
    "doi:10.17632/rscbjbr9sj.2, CC BY 4.0. Paper: Kermany et al., \"Identifying Medical "
    "Diagnoses and Treatable Diseases by Image-Based Deep Learning\", Cell 172(5), 2018."
)
DATASET_CREDIT_SHORT = "Kermany, Zhang & Goldbaum (2018), CC BY 4.0"

# Kermany et al. (Cell, 2018), ImageNet-pretrained Inception V3, on the same 624-image test
# split: the published point of comparison for models beyond the study.
KERMANY_2018 = {"accuracy": 0.928, "sensitivity": 0.932, "specificity": 0.901,
                "roc_auc": 0.968}
