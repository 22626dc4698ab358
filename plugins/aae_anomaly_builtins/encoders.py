"""Built-in encoder architectures: ``mlp`` for feature vectors, ``conv`` for images."""

from __future__ import annotations

import math

from torch import nn

from aae_anomaly import Architecture, hookimpl

ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _mlp(sizes: list[int], activation) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MLPArchitecture(Architecture):
    """Fully connected encoder and mirrored decoder for rows of features.

    ``hidden`` lists the encoder's hidden widths; by default two layers whose widths follow
    the input size: ``h = clip(2 * n_features, 32, 256)``, then ``h / 2``. Images (an
    ``input_shape`` of several dimensions) are flattened on the way in and reshaped on the
    way out, as the paper's MNIST networks do.
    """

    def __init__(self, hidden: list[int] | tuple[int, ...] | None = None, activation="leaky_relu"):
        if hidden is not None and (
            not hidden or any(not isinstance(h, int) or h < 1 for h in hidden)
        ):
            raise ValueError(f"hidden must be a non-empty list of positive integers, got {hidden}")
        _activation(activation)
        self.hidden = None if hidden is None else list(hidden)
        self.activation = activation

    def infer_input_shape(self, n_features):
        return (n_features,)

    def hidden_sizes(self, n_features: int, latent_dim: int) -> list[int]:
        if self.hidden is not None:
            return self.hidden
        width = int(min(256, max(32, 2 * n_features)))
        return [width, max(width // 2, 2 * latent_dim)]

    def build(self, input_shape, latent_dim, code_size):
        n_features = math.prod(input_shape)
        hidden = self.hidden_sizes(n_features, latent_dim)
        activation = _activation(self.activation)
        encoder = _mlp([n_features, *hidden, code_size], activation)
        decoder = _mlp([latent_dim, *reversed(hidden), n_features], activation)
        if len(input_shape) > 1:
            encoder = nn.Sequential(nn.Flatten(), *encoder)
            decoder = nn.Sequential(*decoder, nn.Unflatten(1, tuple(input_shape)))
        return encoder, decoder

    def options(self):
        return {"hidden": self.hidden, "activation": self.activation}


class ConvArchitecture(Architecture):
    """Convolutional encoder and decoder for images shaped ``(channels, height, width)``.

    Two stride-2 convolutions halve the image twice; the decoder upsamples back to the
    exact input size, so any height and width work (28x28, 8x8, 32x32, ...).
    """

    def __init__(self, channels: list[int] | tuple[int, ...] = (32, 64), activation="leaky_relu"):
        if len(channels) != 2 or any(not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f"channels must be two positive integers, got {channels}")
        _activation(activation)
        self.channels = list(channels)
        self.activation = activation

    def infer_input_shape(self, n_features):
        side = math.isqrt(n_features)
        if side * side == n_features:
            return (1, side, side)
        side = math.isqrt(n_features // 3)
        if n_features % 3 == 0 and side * side * 3 == n_features:
            return (3, side, side)
        raise ValueError(
            f"cannot tell the image shape of rows with {n_features} features; pass "
            "input_shape=(channels, height, width) or a 4-D array"
        )

    def check_input_shape(self, input_shape, n_features):
        if len(input_shape) != 3:
            raise ValueError(
                f"the conv encoder takes images shaped (channels, height, width), "
                f"got input_shape {tuple(input_shape)}"
            )
        super().check_input_shape(input_shape, n_features)

    def build(self, input_shape, latent_dim, code_size):
        channels, height, width = input_shape
        c1, c2 = self.channels
        half = (math.ceil(height / 2), math.ceil(width / 2))
        quarter = (math.ceil(half[0] / 2), math.ceil(half[1] / 2))
        flat = c2 * quarter[0] * quarter[1]
        activation = _activation(self.activation)
        encoder = nn.Sequential(
            nn.Conv2d(channels, c1, 3, stride=2, padding=1),
            activation(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            activation(),
            nn.Flatten(),
            nn.Linear(flat, code_size),
        )
        decoder = nn.Sequential(
            nn.Linear(latent_dim, flat),
            activation(),
            nn.Unflatten(1, (c2, *quarter)),
            nn.Upsample(size=half, mode="nearest"),
            nn.Conv2d(c2, c1, 3, padding=1),
            activation(),
            nn.Upsample(size=(height, width), mode="nearest"),
            nn.Conv2d(c1, channels, 3, padding=1),
        )
        return encoder, decoder

    def options(self):
        return {"channels": self.channels, "activation": self.activation}


@hookimpl
def register_encoders(register):
    register("mlp", MLPArchitecture)
    register("conv", ConvArchitecture)
