"""Activation functions of a StackedMLP: one class each, its line in ``initlab.choices``.

An activation acts in place on a fresh matrix-product output that nothing else keeps, and gives
its derivative from its own output, which is what the hand-written backward keeps.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from initlab.choices import ACTIVATION_CHOICES, classes


class Activation:
    # The derivative read from the output is still right after dropout rescaled the output:
    # relu's sign survives a positive factor, tanh's 1 - out^2 does not.
    survives_rescaling: ClassVar[bool] = True
    # Traits that say which statistics mean something for this activation (``LayerStat.trait``).
    # Units can be dead (exactly 0 for every input), as ReLU's are.
    can_die: ClassVar[bool] = False
    # Units can saturate (the output near its bound, where the derivative vanishes), as tanh's.
    saturates: ClassVar[bool] = False

    @staticmethod
    def forward_(z: Tensor) -> Tensor:
        """act(z), in place."""
        raise NotImplementedError

    @staticmethod
    def backward(g: Tensor, out: Tensor) -> Tensor:
        """The gradient at the input from the gradient ``g`` at the output ``out`` (may
        reuse ``g``'s memory)."""
        raise NotImplementedError


class ReLU(Activation):
    can_die = True

    @staticmethod
    def forward_(z: Tensor) -> Tensor:
        return torch.relu_(z)

    @staticmethod
    def backward(g: Tensor, out: Tensor) -> Tensor:
        return torch.ops.aten.threshold_backward(g, out, 0.0)


class Tanh(Activation):
    survives_rescaling = False
    saturates = True

    @staticmethod
    def forward_(z: Tensor) -> Tensor:
        return torch.tanh_(z)

    @staticmethod
    def backward(g: Tensor, out: Tensor) -> Tensor:
        return g.mul_(1.0 - out.square())


class Identity(Activation):

    @staticmethod
    def forward_(z: Tensor) -> Tensor:
        return z

    @staticmethod
    def backward(g: Tensor, out: Tensor) -> Tensor:
        return g


ACTIVATIONS: dict[str, type[Activation]] = classes(ACTIVATION_CHOICES, globals())
