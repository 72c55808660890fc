"""One palette for every figure, ``initlab plot`` and the notebook: a colour means one thing.

- The initial scale c, in the lecture's order: matplotlib's default blue, orange, green for
  increasing c (c = 1, 2, 3, and c = 1.7, 2, 2.3: the notes' "yellow line" is c = 2).
- Each normalization one colour of its own, none of them a colour of c, so that a figure that
  shows c inside a panel per normalization (or a normalization beside a c) never reuses one.
- Other things a figure compares (dropout, depths, ordered sweeps) take colours neither uses.

Colours are matplotlib's names: this module imports nothing.
"""

from __future__ import annotations

C_COLORS = {1.0: "tab:blue", 1.7: "tab:blue", 2.0: "tab:orange", 2.3: "tab:green",
            3.0: "tab:green"}
# Every normalization of ``initlab.choices.NORM_CHOICES`` (tests/test_palette.py checks it).
NORM_COLORS = {"none": "tab:gray", "batch": "tab:red", "syncbatch": "tab:pink",
               "group": "tab:brown", "layer": "tab:purple", "rms": "tab:olive"}
DROPOUT_COLOR = "tab:cyan"  # a regularizer, not a normalization
# Depths of the normalized-gradients panels: shades of one hue, deeper darker.
DEPTH_COLORS = {10: "#9ecae1", 20: "#4292c6", 50: "#08306b"}
# An ordered sweep of something else (weight decay, ...): light to dark grey-blue.
SEQUENCE = ("#9ecae1", "#4292c6", "#08519c", "#08306b")
OTHER = "darkgray"  # a value the palette does not name (never one of its colours)


def c_color(c: float) -> str:
    """The colour of an initial scale c (grey for one the lecture does not use)."""
    return C_COLORS.get(round(float(c), 6), OTHER)


def norm_color(norm: str | None) -> str:
    """The colour of a normalization by its config name (``model.norm``)."""
    return NORM_COLORS.get(norm or "none", OTHER)


def sequence_color(index: int) -> str:
    """The index-th colour of an ordered sweep that is neither c nor a normalization."""
    return SEQUENCE[min(index, len(SEQUENCE) - 1)]
