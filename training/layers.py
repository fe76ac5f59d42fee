"""Layers of the newer experiments, kept inside the model so the exported SavedModel (and
TensorFlow Serving) apply them exactly as training did. Backend-agnostic Keras 3 ops."""

from __future__ import annotations

import keras
from keras import layers, ops

LEVELS = 256


@keras.saving.register_keras_serializable(package="pneumonia")
class HistogramEqualization(layers.Layer):
    """Per-film histogram equalisation: (N, H, W, C) raw 0-255 -> (N, H, W, 1) in [0, 1].

    Each pixel becomes the share of the film's pixels at or below its grey level (the film's
    own cumulative histogram), so exposure and contrast, which differ between machines and
    settings, no longer set the input's grey levels; anatomy and opacities keep their order.
    Colour inputs are averaged to grey first.
    """

    def call(self, images):
        gray = ops.mean(ops.cast(images, "float32"), axis=-1)  # (N, H, W)
        shape = ops.shape(gray)
        n, pixels = shape[0], shape[1] * shape[2]
        levels = ops.cast(ops.clip(ops.round(gray), 0, LEVELS - 1), "int32")
        flat = ops.reshape(levels, (-1,))
        # One histogram per film: segment ids film * 256 + level.
        film = ops.repeat(ops.arange(n, dtype="int32"), pixels)
        ids = film * LEVELS + flat
        counts = ops.segment_sum(ops.ones_like(flat, dtype="float32"), ids,
                                 num_segments=n * LEVELS)
        cdf = ops.cumsum(ops.reshape(counts, (n, LEVELS)), axis=1) / ops.cast(pixels, "float32")
        equalized = ops.take(ops.reshape(cdf, (-1,)), ids)
        return ops.reshape(equalized, (n, shape[1], shape[2], 1))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)
