"""Default values of a training run, defined once: the CLI, RunConfig and tests use these."""

SEED = 42  # data split, weights, dropout, shuffling and augmentation
VAL_FRACTION = 0.1  # share of train/ carved out, by patient, as the validation split
MODEL_NAME = "pneumonia"  # MODEL_DIR/<name>/<version>/ of the exported model 5
COMPACT_MODEL_NAME = "pneumonia_compact"  # ... and of model 8, beside it
STRONGER_SEEDS = 3  # stronger protocol: seeds per new experiment (mean and std reported)
STUDY_SEEDS = 5  # study protocol: seeds per model (each draws its subset and augmentation)
ABLATION_SEEDS = 3  # study protocol: seeds per ablation step
STUDY_COUNTS = (84, 1134)  # study protocol: NORMAL, PNEUMONIA images drawn from train/
TARGET_SENSITIVITY = 0.95  # the exported model's operating point, chosen on validation
