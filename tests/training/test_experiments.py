import keras
import pytest

from training.experiments import (
    EXPERIMENTS,
    EXPORTED_EXPERIMENT,
    NEW_NUMBERS,
    STUDY_NUMBERS,
    build_compact,
    parse_selection,
)

INPUT = (64, 64, 3)

# Hand-computed from the study's definitions on a 64x64x3 input.
#   dense: 12288*16+16 + 16*8+8 + 8*6+6 + 6+1                  = 196,821
#   cnn (5x5): conv 5*5*3*8+8=608, conv 5*5*8*4+4=804, 14*14*4=784 -> 784*16+16=12,560,
#              16*8+8=136, 8+1=9                               = 14,117
#   4x4 first kernel: 4*4*3*8+8=392 instead of 608             = 13,901
EXPECTED_PARAMS = {1: 196_821, 2: 196_821, 3: 14_117, 4: 13_901, 5: 13_901, 6: 13_901,
                   7: 13_901}

CNN_LAYERS = ["InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
              "Flatten", "Dense", "Dense", "Dense"]
DROPOUT_LAYERS = ["InputLayer", "Rescaling", "Conv2D", "MaxPooling2D", "Conv2D",
                  "MaxPooling2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense", "Dense"]
EXPECTED_LAYERS = {
    1: ["InputLayer", "Rescaling", "Flatten", "Dense", "Dense", "Dense", "Dense"],
    3: CNN_LAYERS, 4: CNN_LAYERS, 5: DROPOUT_LAYERS, 6: DROPOUT_LAYERS, 7: DROPOUT_LAYERS,
}
EXPECTED_LAYERS[2] = EXPECTED_LAYERS[1]

# (optimizer, batch size, epochs, class weights) as written in the study.
EXPECTED_RECIPES = {1: ("rmsprop", 10, 25, False), 2: ("rmsprop", 10, 25, True),
                    3: ("adam", 10, 15, True), 4: ("adam", 8, 15, True),
                    5: ("adam", 10, 50, True), 6: ("adam", 10, 50, True),
                    7: ("adam", 10, 50, True)}


@pytest.mark.parametrize("number", STUDY_NUMBERS)
def test_builder_matches_study_layers_and_parameter_count(number):
    model = EXPERIMENTS[number].build(INPUT)
    assert [type(layer).__name__ for layer in model.layers] == EXPECTED_LAYERS[number]
    assert model.count_params() == EXPECTED_PARAMS[number]
    assert model.output_shape == (None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"


@pytest.mark.parametrize("number", STUDY_NUMBERS)
def test_recipe_matches_study(number):
    e = EXPERIMENTS[number]
    assert (e.optimizer, e.batch_size, e.epochs, e.class_weights) == EXPECTED_RECIPES[number]


def test_cnn_kernels_dropout_and_regularizers_as_written():
    first_conv = {n: next(layer for layer in EXPERIMENTS[n].build(INPUT).layers
                          if isinstance(layer, keras.layers.Conv2D)) for n in (3, 4)}
    assert first_conv[3].kernel_size == (5, 5) and first_conv[4].kernel_size == (4, 4)
    assert first_conv[3].padding == "same"
    dropouts = [layer.rate for layer in EXPERIMENTS[5].build(INPUT).layers
                if isinstance(layer, keras.layers.Dropout)]
    assert dropouts == [0.3, 0.3]
    for number, kind, factor in ((6, "l1", 0.005), (7, "l2", 0.01)):
        regularized = [layer for layer in EXPERIMENTS[number].build(INPUT).layers
                       if getattr(layer, "kernel_regularizer", None) is not None]
        # both convolutions and the 16-unit dense layer, as in the study
        assert [type(layer).__name__ for layer in regularized] == ["Conv2D", "Conv2D", "Dense"]
        assert all(float(getattr(layer.kernel_regularizer, kind)) == pytest.approx(factor)
                   for layer in regularized)


def test_models_take_raw_pixels_through_a_rescaling_layer():
    for number in STUDY_NUMBERS:
        rescale = EXPERIMENTS[number].build(INPUT).get_layer("rescale")
        assert rescale.scale == pytest.approx(1 / 255)


def test_exported_experiment_is_model_5():
    assert EXPORTED_EXPERIMENT == 5


@pytest.mark.parametrize(("text", "expected"), [
    ("all", [1, 2, 3, 4, 5, 6, 7]), ("5", [5]), ("1,5", [1, 5]), ("3-5", [3, 4, 5]),
])
def test_parse_selection(text, expected):
    assert parse_selection(text) == expected


@pytest.mark.parametrize("text", ["8", "0,1", ""])
def test_parse_selection_rejects_unknown(text):
    with pytest.raises(ValueError):
        parse_selection(text)


def test_new_experiments_are_chosen_apart_from_the_study():
    assert NEW_NUMBERS == (8,)
    assert parse_selection("all", NEW_NUMBERS) == [8]
    with pytest.raises(ValueError, match="unknown"):
        parse_selection("8")  # the full protocol runs the study's seven
    with pytest.raises(ValueError, match="unknown"):
        parse_selection("5", NEW_NUMBERS)


def test_compact_builder_has_equalization_conv_bn_stages_and_global_pooling():
    model = build_compact(INPUT)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[:2] == ["InputLayer", "HistogramEqualization"]
    assert kinds.count("Conv2D") == 8 and kinds.count("BatchNormalization") == 8
    assert kinds.count("MaxPooling2D") == 4 and "GlobalAveragePooling2D" in kinds
    assert "Flatten" not in kinds
    assert model.layers[-1].activation.__name__ == "sigmoid" and model.output_shape == (None, 1)
    assert 250_000 < model.count_params() < 350_000
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] \
        == [16, 16, 32, 32, 64, 64, 128, 128]


def test_model_8_recipe_selects_on_validation_with_xray_augmentation():
    e = EXPERIMENTS[8]
    assert e.build is build_compact and e.optimizer == "adamw" and e.class_weights
    assert e.augmentation == "xray" and e.early_stopping is not None
