"""The names a config may choose, one line each: normalizations (of activations and of
weights), activations, init schemes, norm positions. No torch: ``initlab validate`` and the
config schema read these without loading any model code.

Each line names its class in its registry module (``initlab.norms``, ``initlab.activations``,
``initlab.inits``), which builds its name -> class mapping from these lines (``classes``), and
holds the facts the config checks need of it (a norm's smallest batch, a scheme's fixed c).
Adding a choice is its class there plus its line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Choice:
    """One name a config may choose, and the class (in its registry module) that it means."""

    name: str
    cls: str


@dataclass(frozen=True)
class NormChoice(Choice):
    min_batch: int = 1  # examples a batch needs: 2 for statistics over the batch (over one
    # example every activation normalizes to 0)
    grouped: bool = False  # normalizes within model.groups groups of features

    def config_problem(self, width: int, groups: int) -> str | None:
        """Why ``model.groups`` does not fit this norm (None: it does)."""
        if self.grouped and width % groups:
            return f"must divide model.width={width} for norm: {self.name}, got {groups}"
        return None


@dataclass(frozen=True)
class InitChoice(Choice):
    # A scheme that fixes c (kaiming: c = 2) resolves to ``resolves_to`` with that c when a
    # config is read, so equal networks get equal resolved configs (and cache entries).
    fixed_c: float | None = None
    resolves_to: str | None = None


def registry(*choices: Choice) -> dict[str, Any]:
    return {choice.name: choice for choice in choices}


NORM_CHOICES: dict[str, NormChoice] = registry(
    NormChoice("none", "Norm"),
    NormChoice("layer", "LayerNorm"),
    NormChoice("batch", "BatchNorm", min_batch=2),
    NormChoice("group", "GroupNorm", grouped=True),
    NormChoice("syncbatch", "SyncBatchNorm", min_batch=2),
    NormChoice("rms", "RMSNorm"),
)
WEIGHT_NORM_CHOICES: dict[str, Choice] = registry(
    Choice("none", "WeightNorm"),
    Choice("standardize", "WeightStandardization"),
)
ACTIVATION_CHOICES: dict[str, Choice] = registry(
    Choice("relu", "ReLU"),
    Choice("tanh", "Tanh"),
    Choice("identity", "Identity"),
)
INIT_CHOICES: dict[str, InitChoice] = registry(
    InitChoice("normal", "Normal"),
    InitChoice("uniform", "Uniform"),
    InitChoice("zeros", "Zeros"),
    InitChoice("kaiming", "Kaiming", fixed_c=2.0, resolves_to="normal"),
)
# Where a norm sits in a hidden layer: after the activation, as in the lecture
# (z -> norm(act(z W + b))), or before it, as in Ioffe & Szegedy (z -> act(norm(z W + b))).
POSITIONS = ("post", "pre")


def classes(choices: Mapping[str, Choice], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """name -> class, each line's class found in its registry module's ``namespace``; a line
    whose class is missing fails at import, naming both."""
    missing = [c.cls for c in choices.values() if not isinstance(namespace.get(c.cls), type)]
    if missing:
        raise ImportError(f"initlab.choices names classes {namespace['__name__']} lacks: "
                          f"{', '.join(missing)}")
    return {name: namespace[choice.cls] for name, choice in choices.items()}
