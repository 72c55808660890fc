"""How runs are put in words, written once for every reader (``ls``, ``compare``, plot and
figure titles, the progress lines, ``Run``'s repr): how a run ended, and an error rate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def percent(rate: float) -> str:
    """An error rate as people read it: 0.0496 -> ``4.96%``."""
    return f"{100 * rate:.2f}%"


def how_it_ended(summary: Mapping[str, Any]) -> str:
    """A run's status from its summary.json: ``diverged at step N`` for a diverged run, else
    the status itself (completed, interrupted, running; ``unknown`` without one)."""
    status = summary.get("status") or "unknown"
    if status == "diverged":
        step = summary.get("diverged_step")
        return "diverged (its summary does not say at which step)" if step is None else \
            f"diverged at step {step}"
    return str(status)
