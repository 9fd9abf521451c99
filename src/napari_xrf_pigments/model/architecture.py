"""The pigment CNN of the paper (section 2.3), built from one function.

Backend-neutral: only ``keras.layers`` and ``keras.ops``, so the same network runs on the
TensorFlow and JAX backends.
"""

from __future__ import annotations

import keras
from keras import layers

#: Builder arguments of the published network (paper Fig. 2): 3815 input channels, 11 pigments,
#: one sigmoid output per pigment ("present"), no top-layer head. 281,035 parameters.
PAPER_CONFIG = {
    "n_channels": 3815,
    "n_pigments": 11,
    "filters": (64, 64, 64, 64, 128),
    "kernel_sizes": (5, 3, 3, 3, 3),
    "post_filters": 128,
    "post_kernel_size": 3,
    "negative_slope": 0.01,
    "dropout": 0.25,
    "padding": "same",
    "norm_momentum": 0.99,
    "top_head": False,
}

#: Parameter count of the paper configuration (trainable + batch-norm statistics).
PAPER_PARAMETERS = 281_035

OUTPUTS = ("present", "top")


def build_model(
    n_channels: int = 3815,
    n_pigments: int = 11,
    *,
    filters=(64, 64, 64, 64, 128),
    kernel_sizes=(5, 3, 3, 3, 3),
    post_filters: int = 128,
    post_kernel_size: int = 3,
    negative_slope: float = 0.01,
    dropout: float = 0.25,
    padding: str = "same",
    norm_momentum: float = 0.99,
    top_head: bool = True,
    name: str = "xrf_pigment_cnn",
):
    """Build the pigment CNN (uncompiled).

    Each block is Conv1D -> LeakyReLU -> BatchNormalization -> MaxPooling1D(2), as in the paper;
    then Conv1D(post) -> LeakyReLU -> BatchNormalization -> Flatten -> Dropout -> Dense(sigmoid).
    ``padding="same"`` with batch normalisation after the post-convolution is the choice that
    reproduces the paper's 281k parameters (``valid`` padding gives 275k).

    Parameters
    ----------
    n_channels : int
        Input length: channels of the model's energy grid (3815 in the paper).
    n_pigments : int
        Sigmoid outputs per head, one per pigment.
    filters, kernel_sizes : sequence of int
        Filters and kernel size of each convolutional block (one block per entry).
    post_filters, post_kernel_size : int
        The convolution after the blocks.
    negative_slope : float
        LeakyReLU slope for negative inputs.
    dropout : float
        Dropout rate before the dense layer(s).
    padding : {"same", "valid"}
    norm_momentum : float
        Momentum of the batch-norm moving statistics (Keras default 0.99; lower it for tiny
        data sets with few steps per epoch).
    top_head : bool
        Add a second sigmoid head ``"top"``: probability that the pigment is in the top layer.
        The paper configuration has only ``"present"``.
    name : str

    Returns
    -------
    keras.Model
        Input shape (batch, n_channels, 1); outputs a dict ``{"present": (batch, n_pigments)}``
        plus ``"top"`` when ``top_head``. Use :data:`PAPER_CONFIG` for the published network.
    """
    if len(filters) != len(kernel_sizes) or not filters:
        raise ValueError("filters and kernel_sizes must be non-empty and of equal length")
    min_len = 2 ** len(filters)
    if n_channels < min_len:
        raise ValueError(f"{len(filters)} pooling blocks need at least {min_len} input channels")
    inputs = keras.Input(shape=(int(n_channels), 1), name="spectrum")
    x = inputs
    for i, (f, k) in enumerate(zip(filters, kernel_sizes), start=1):
        x = layers.Conv1D(int(f), int(k), padding=padding, name=f"conv{i}")(x)
        x = layers.LeakyReLU(negative_slope=negative_slope, name=f"lrelu{i}")(x)
        x = layers.BatchNormalization(momentum=norm_momentum, name=f"norm{i}")(x)
        x = layers.MaxPooling1D(2, name=f"pool{i}")(x)
    x = layers.Conv1D(
        int(post_filters), int(post_kernel_size), padding=padding, name="post_conv"
    )(x)
    # The paper does not name the post-convolution's activation; a parameter-free LeakyReLU keeps
    # it non-linear like the blocks.
    x = layers.LeakyReLU(negative_slope=negative_slope, name="post_lrelu")(x)
    x = layers.BatchNormalization(momentum=norm_momentum, name="post_norm")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = {"present": layers.Dense(int(n_pigments), activation="sigmoid", name="present")(x)}
    if top_head:
        outputs["top"] = layers.Dense(int(n_pigments), activation="sigmoid", name="top")(x)
    return keras.Model(inputs, outputs, name=name)


def build_paper_model(**overrides):
    """The published network (:data:`PAPER_CONFIG`), optionally with some arguments changed."""
    config = {**PAPER_CONFIG, **overrides}
    return build_model(**config)


def compile_model(model, *, learning_rate=1e-3):
    """Compile for training: Adam, binary cross-entropy on every head (paper Eq. 2).

    ``learning_rate`` is a float or a ``keras.optimizers.schedules.LearningRateSchedule``.
    """
    losses = {name: "binary_crossentropy" for name in model.output_names if name in OUTPUTS}
    metrics = {name: [keras.metrics.BinaryAccuracy(name="acc")] for name in losses}
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=losses,
        metrics=metrics,
    )
    return model
