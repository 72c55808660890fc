"""The one palette: c in the lecture's order, one colour per normalization, never shared."""

from __future__ import annotations

from initlab import palette
from initlab.choices import NORM_CHOICES


def test_c_keeps_the_lectures_order() -> None:
    assert [palette.c_color(c) for c in (1, 2, 3)] == ["tab:blue", "tab:orange", "tab:green"]
    assert [palette.c_color(c) for c in (1.7, 2.0, 2.3)] == ["tab:blue", "tab:orange",
                                                             "tab:green"]


def test_every_normalization_has_a_colour_of_its_own() -> None:
    colors = [palette.norm_color(norm) for norm in NORM_CHOICES]
    assert len(set(colors)) == len(colors) and palette.OTHER not in colors[1:]
    assert not set(colors) & set(palette.C_COLORS.values())
    assert palette.DROPOUT_COLOR not in colors + list(palette.C_COLORS.values())
