"""Weight initialization schemes: one class each, one line each in ``INITS``.

Every scheme draws one member's W_i [n_in, n_out] for a scale c (Var(W_i) = c / n_in, the
lecture's parametrization) from the member's own generator, so a member gets the same weights
alone or in a sweep. Biases start at zero.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor


class InitScheme:
    name: ClassVar[str]
    # A scheme that fixes c (kaiming: c = 2) resolves to ``resolves_to`` with that c when a
    # config is read, so equal networks get equal resolved configs (and cache entries).
    fixed_c: ClassVar[float | None] = None
    resolves_to: ClassVar[str | None] = None

    @staticmethod
    def draw(c: float, shape: tuple[int, int], gen: torch.Generator) -> Tensor:
        raise NotImplementedError


class Normal(InitScheme):
    name = "normal"

    @staticmethod
    def draw(c: float, shape: tuple[int, int], gen: torch.Generator) -> Tensor:
        return torch.randn(shape, generator=gen) * (c / shape[0]) ** 0.5


class Uniform(InitScheme):
    """U(-a, a) with the same variance c / n_in: a^2 / 3 = c / n_in."""

    name = "uniform"

    @staticmethod
    def draw(c: float, shape: tuple[int, int], gen: torch.Generator) -> Tensor:
        bound = (3.0 ** 0.5) * (c / shape[0]) ** 0.5
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound


class Zeros(InitScheme):
    """W = 0: every hidden unit computes the same thing, and with ReLU every weight gradient
    is exactly zero (the lecture's first example)."""

    name = "zeros"

    @staticmethod
    def draw(c: float, shape: tuple[int, int], gen: torch.Generator) -> Tensor:
        return torch.zeros(shape)


class Kaiming(Normal):
    """He et al. (2015): normal with c = 2, what keeps ReLU activations level with depth."""

    name = "kaiming"
    fixed_c = 2.0
    resolves_to = "normal"


INITS: dict[str, type[InitScheme]] = {s.name: s for s in (Normal, Uniform, Zeros, Kaiming)}
