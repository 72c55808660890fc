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
    assert len(set(colors)) == len(colors) and palette.OTHER not in colors
    assert not set(colors) & set(palette.C_COLORS.values())
    assert palette.DROPOUT_COLOR not in colors + list(palette.C_COLORS.values())


def test_a_value_the_palette_does_not_name_is_told_apart() -> None:
    assert palette.c_color(0.5) == palette.norm_color("spectral") == palette.OTHER
    assert palette.OTHER not in (*palette.C_COLORS.values(), *palette.NORM_COLORS.values())


def test_initlab_plot_colours_each_normalization_its_own_way() -> None:
    """Layer and batch norm runs that differ in more than their norm (the notebook's
    comparison: their configs' learning rates too) take the normalizations' colours."""
    from types import SimpleNamespace

    from initlab.plot import run_colors

    def run(norm: str, lr: float) -> SimpleNamespace:
        return SimpleNamespace(config={"model": {"norm": norm}, "train": {"lr": lr}})

    runs = [run("layer", 1e-3), run("batch", 1e-2), run("none", 1e-2)]
    assert run_colors(runs) == [palette.norm_color(n) for n in ("layer", "batch", "none")]
    assert run_colors(runs[1:]) == [palette.norm_color("batch"), palette.norm_color("none")]
