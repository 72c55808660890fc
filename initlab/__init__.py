"""initlab: initialization and normalization experiments on deep MLPs, on real MNIST; and
``initlab.watch``, the same per-layer instruments on any PyTorch model."""

from __future__ import annotations

from typing import Any

from initlab.runs import Run, load_run, load_runs

__all__ = ["Run", "Watch", "diagnose", "load_run", "load_runs", "watch"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # initlab.watch and initlab.Watch live in initlab.watching, imported on first use: it
    # imports torch, which the CLI's commands without data must not wait for. (The module is
    # not called ``watch``: importing it would rebind initlab.watch to the module.)
    if name in ("watch", "Watch"):
        from initlab import watching

        return getattr(watching, name)
    if name == "diagnose":  # initlab.diagnosis, on first use (the module's name keeps this one)
        from initlab import diagnosis

        return diagnosis.diagnose
    raise AttributeError(f"module 'initlab' has no attribute {name!r}")
