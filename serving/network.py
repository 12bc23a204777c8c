"""Numpy forward passes of exported networks: what serving runs instead of torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nba.errors import NBAValidationError
from nba.types import FloatArray

ACTIVATIONS = {
    "identity": lambda x: x,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}


@dataclass(frozen=True)
class DenseLayer:
    weight: FloatArray  # (out, in), as torch stores it
    bias: FloatArray  # (out,)
    activation: str


@dataclass(frozen=True)
class MLP:
    """A stack of dense layers; ``forward`` maps (N, in) to (N, out)."""

    layers: tuple[DenseLayer, ...]

    @property
    def input_size(self) -> int:
        return int(self.layers[0].weight.shape[1])

    @property
    def output_size(self) -> int:
        return int(self.layers[-1].weight.shape[0])

    def forward(self, x: FloatArray) -> FloatArray:
        h = np.asarray(x, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.input_size:
            raise NBAValidationError(f"features: expected (N, {self.input_size}), got {h.shape}")
        for layer in self.layers:
            h = ACTIVATIONS[layer.activation](h @ layer.weight.T + layer.bias)
        return h
