"""Weight initialization schemes: one class each, its line in ``initlab.choices`` (which also
says whether a scheme fixes c).

Every scheme draws one member's W_i [n_in, n_out] for a scale c (Var(W_i) = c / n_in, the
lecture's parametrization) from the member's own generator, so a member gets the same weights
alone or in a sweep. Biases start at zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from initlab.choices import INIT_CHOICES, classes


class InitScheme:
    @staticmethod
    def draw(c: float, shape: tuple[int, int], gen: torch.Generator) -> Tensor:
        raise NotImplementedError


class Normal(InitScheme):
    @staticmethod
    def draw(c: float, shape: tuple[int, int], gen: torch.Generator) -> Tensor:
        return torch.randn(shape, generator=gen) * (c / shape[0]) ** 0.5


class Uniform(InitScheme):
    """U(-a, a) with the same variance c / n_in: a^2 / 3 = c / n_in."""

    @staticmethod
    def draw(c: float, shape: tuple[int, int], gen: torch.Generator) -> Tensor:
        bound = (3.0 ** 0.5) * (c / shape[0]) ** 0.5
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound


class Zeros(InitScheme):
    """W = 0: every hidden unit computes the same thing, and with ReLU every weight gradient
    is exactly zero (the lecture's first example)."""

    @staticmethod
    def draw(c: float, shape: tuple[int, int], gen: torch.Generator) -> Tensor:
        return torch.zeros(shape)


class Kaiming(Normal):
    """He et al. (2015): normal with c = 2, what keeps ReLU activations level with depth."""

    # Its line in initlab.choices fixes c = 2: a config resolves it to normal with c = 2.


INITS: dict[str, type[InitScheme]] = classes(INIT_CHOICES, globals())
