"""The claims report: one row per lecture claim with its measured number, threshold and verdict.

A claim is evaluated from numbers read out of run directories; a number the runs could not give
(a missing record, a diverged run) is NaN and the claim FAILs with "n/a", never silently passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from initlab.runs import atomic_write_text

OPS = ("<", "<=", ">", ">=", "==", "in")


@dataclass(frozen=True)
class Claim:
    figure: str
    claim: str
    value: float  # NaN when the runs could not give it
    op: str  # one of OPS; "in" takes a closed interval (low, high)
    bound: float | tuple[float, float]
    unit: str = ""  # "%" shows value and bound as percentages; "pp" as percentage points

    def __post_init__(self) -> None:
        if self.op not in OPS:  # a typo would otherwise fail every claim silently
            raise ValueError(f"claim {self.claim!r}: op must be one of {OPS}, got {self.op!r}")
        if (self.op == "in") != isinstance(self.bound, tuple):
            raise ValueError(f"claim {self.claim!r}: 'in' takes (low, high), others a number")

    @property
    def passed(self) -> bool:
        v = self.value
        if v is None or math.isnan(v):
            return False
        if self.op == "in":
            low, high = self.bound  # type: ignore[misc]
            return low <= v <= high
        b = float(self.bound)  # type: ignore[arg-type]
        return {"<": v < b, "<=": v <= b, ">": v > b, ">=": v >= b, "==": v == b}[self.op]

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def measured(self) -> str:
        return format_number(self.value, self.unit)

    @property
    def threshold(self) -> str:
        if self.op == "in":
            low, high = self.bound  # type: ignore[misc]
            return f"in [{format_number(low, self.unit)}, {format_number(high, self.unit)}]"
        op = {"<=": "≤", ">=": "≥", "==": "="}.get(self.op, self.op)
        return f"{op} {format_number(float(self.bound), self.unit)}"  # type: ignore[arg-type]


def format_number(x: float | None, unit: str = "") -> str:
    """Three significant digits; scientific notation where a number spans decades."""
    if x is None or math.isnan(x):
        return "n/a"
    if unit == "%":
        return f"{100 * x:.2f}%"
    if unit == "pp":
        return f"{100 * x:.2f} pp"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def report_table(claims: Sequence[Claim], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for column in ("figure", "claim", "measured", "threshold", "result"):
        table.add_column(column, overflow="fold")
    for c in claims:
        style = "green" if c.passed else "bold red"
        table.add_row(c.figure, c.claim, c.measured, c.threshold, f"[{style}]{c.verdict}[/]")
    return table


def report_markdown(claims: Sequence[Claim], title: str, notes: Sequence[str]) -> str:
    """The report as Markdown: the title, notes (one paragraph each), the table, a tally."""
    lines = [f"# {title}", ""]
    for note in notes:
        lines += [note, ""]
    lines += ["| figure | claim | measured | threshold | result |",
              "|---|---|---|---|---|"]
    for c in claims:
        verdict = "PASS" if c.passed else "**FAIL**"
        lines.append(f"| `{c.figure}` | {_cell(c.claim)} | {c.measured} | {c.threshold} "
                     f"| {verdict} |")
    passed = sum(c.passed for c in claims)
    lines += ["", f"{passed} of {len(claims)} claims PASS."]
    return "\n".join(lines) + "\n"


def write_report(path: Path, claims: Sequence[Claim], title: str, notes: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, report_markdown(claims, title, notes))
    path.chmod(0o644)  # a file to commit and read, like the figures beside it


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
