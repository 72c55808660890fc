"""The claims report: one row per claim with whose claim it is, its measured number, threshold
and verdict.

A claim is evaluated from numbers read out of run directories; a number the runs could not give
(a missing record, a diverged run) is NaN and the claim FAILs with "n/a", never silently passes.
A claim about a mean over seeds carries its 95% interval: it PASSes only when the whole interval
is on its side of the threshold, FAILs when the whole interval is on the other, and is
INCONCLUSIVE otherwise.
Every claim says whose it is (``Source``): the lecture's, a paper's, or initlab's own hypothesis,
so that a FAIL reads as what it is -- a lecture statement that did not hold here, or a guess of
ours that the measurement refuted.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from initlab.intervals import METHODS
from initlab.runs import atomic_write_text
from initlab.wording import percent

OPS = ("<", "<=", ">", ">=", "==", "in")
# Whose claim a row checks, and how the report names each kind.
SOURCE_KINDS = {"lecture": "lecture", "paper": "paper", "hypothesis": "initlab's hypothesis"}
# Kolter & Chen, Deep Learning Systems: the two lectures initlab reproduces.
LECTURE_INIT = "Lecture 6 (Fully connected networks, optimization, initialization)"
LECTURE_NORM = "Lecture 9 (Normalization and regularization)"
# The course's video on group normalization (its own statements, cited as the lecture's).
GROUP_NORM_VIDEO = "the course's Group Normalization video"


@dataclass(frozen=True)
class Source:
    """Whose claim: ``lecture`` (``text``: which part of the lecture, and its statement quoted or
    paraphrased), ``paper`` (the reference, and what it shows) or ``hypothesis`` (initlab's
    own, and the reasoning behind it)."""

    kind: str  # one of SOURCE_KINDS
    text: str

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind must be one of {tuple(SOURCE_KINDS)}, "
                             f"got {self.kind!r}")

    @property
    def label(self) -> str:
        return SOURCE_KINDS[self.kind]


def lecture(part: str, statement: str, which: str = LECTURE_NORM) -> Source:
    """A statement of the lecture ``which``, in its part ``part`` ("": the lecture's notes
    without a section named, where initlab cannot quote the section's title)."""
    where = f"{which}, “{part}”" if part else which
    return Source("lecture", f"{where}: {statement}")


def paper(reference: str, statement: str) -> Source:
    return Source("paper", f"{reference}: {statement}")


def hypothesis(reason: str) -> Source:
    return Source("hypothesis", reason)


# A claim's number that its seeds share rather than measure apart (a stacked group's one wall
# clock): the first seed's, with no interval, since an interval over its copies would show a
# spread it does not have.
SHARED = "shared"


@dataclass(frozen=True)
class Claim:
    figure: str
    claim: str
    value: float  # NaN when the runs could not give it
    op: str  # one of OPS; "in" takes a closed interval (low, high)
    bound: float | tuple[float, float]
    unit: str = ""  # "%" shows value and bound as percentages; "pp" as percentage points
    source: Source | None = None  # whose claim; every figure's claims have one (tested)
    # What a FAIL of this claim suggests, in the report under the table when it fails: written
    # with the claim, from what the other figures show, never a change of its threshold.
    if_fails: str = ""
    # Measured on several seeds (``initlab.figures.core.over_seeds``): the interval over them
    # (``initlab.intervals``), which decides the verdict; how many seeds there were, and how
    # many of them gave a value (an "after training" number of a run that diverged is none).
    interval: tuple[float, float] | None = None
    seeds: int = 0  # 0: one run, no interval
    # A check of the implementation (true by construction when the code is right): reported in
    # its own table, never counted among the claims.
    check: bool = False
    # How the per-seed values are summarized: "t", "bootstrap" or "exact" (a yes/no outcome,
    # k of n); "" chooses by ``default_method``. Set by the claim, never after its runs.
    method: str = ""
    used: int = 0  # seeds that gave a value (0: all of them)
    # An existential claim ("in some cases"): shown when any of its named conditions shows it
    # (PASS), else not shown (INCONCLUSIVE): the absence of a case here cannot refute it.
    existential: bool = False

    def __post_init__(self) -> None:
        if self.op not in OPS:  # a typo would otherwise fail every claim silently
            raise ValueError(f"claim {self.claim!r}: op must be one of {OPS}, got {self.op!r}")
        if (self.op == "in") != isinstance(self.bound, tuple):
            raise ValueError(f"claim {self.claim!r}: 'in' takes (low, high), others a number")
        if self.method not in ("", SHARED, *METHODS):
            raise ValueError(f"claim {self.claim!r}: method must be one of "
                             f"{(SHARED, *METHODS)}")

    @property
    def interval_method(self) -> str:
        """The method its seeds are summarized with: its own, else ``default_method``."""
        return self.method or default_method(self.unit)

    def holds(self, v: float | None) -> bool:
        """Whether a number is on the claim's side of its threshold."""
        if v is None or math.isnan(v):
            return False
        if self.op == "in":
            low, high = self.bound  # type: ignore[misc]
            return low <= v <= high
        b = float(self.bound)  # type: ignore[arg-type]
        return {"<": v < b, "<=": v <= b, ">": v > b, ">=": v >= b, "==": v == b}[self.op]

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    @property
    def verdict(self) -> str:
        """PASS, FAIL, or (a claim with an interval straddling its threshold) INCONCLUSIVE."""
        if self.existential:
            return "PASS" if self.holds(self.value) else "INCONCLUSIVE"
        if self.interval is None:
            return "PASS" if self.holds(self.value) else "FAIL"
        low, high = self.interval
        if self.value is None or math.isnan(self.value):
            return "FAIL"
        if math.isnan(low) or math.isnan(high):  # fewer than two seeds gave a value
            return "INCONCLUSIVE"
        # Every op's region is an interval of the line: both ends in it, all between is.
        if self.holds(low) and self.holds(high):
            return "PASS"
        return "FAIL" if self._misses(low, high) else "INCONCLUSIVE"

    def _misses(self, low: float, high: float) -> bool:
        """Whether [low, high] lies wholly outside the claim's side of its threshold."""
        if self.op == "in":
            lo, hi = self.bound  # type: ignore[misc]
            return high < lo or low > hi
        b = float(self.bound)  # type: ignore[arg-type]
        return {"<": low >= b, "<=": low > b, ">": high <= b, ">=": high < b,
                "==": high < b or low > b}[self.op]

    @property
    def measured(self) -> str:
        """The value, and over seeds: how many, how many gave a value, and the interval with
        its method (none when every seed gave the same number: one measurement repeated)."""
        if self.existential and self.seeds:
            return (f"{format_number(self.value, self.unit)} (the largest over its conditions "
                    f"on {self.used or self.seeds} seeds)")
        if self.interval is None:
            return format_number(self.value, self.unit)
        n, used = self.seeds, self.used or self.seeds
        method = self.interval_method
        low, high = self.interval
        if method == "exact":
            k = round(self.value * used) if not math.isnan(self.value) else 0
            count = f"{k} of {used} seeds"
        else:
            count = format_number(self.value, self.unit)
        missing = n - used
        seeds = (f"{used} of {n} seeds gave a value, {missing} diverged or unrecorded"
                 if missing else f"{n} seeds" if n else "")
        if method == "exact":
            seeds = f"{missing} of {n} gave no value" if missing else ""
        if not math.isnan(low) and low == high and method != "exact":
            return f"{count} (the same on all {used} seeds: no interval)"
        if math.isnan(low):
            return f"{count} ({seeds}: too few for an interval)"
        bounds = (f"{100 * low:.0f}% to {100 * high:.0f}%" if method == "exact" else
                  f"{format_number(low, self.unit)} to {format_number(high, self.unit)}")
        name = {"t": "t", "bootstrap": "bootstrap", "exact": "Clopper-Pearson"}[method]
        return f"{count} ({seeds + ', ' if seeds else ''}95% {name} CI {bounds})"

    @property
    def threshold(self) -> str:
        if self.op == "in":
            low, high = self.bound  # type: ignore[misc]
            return f"in [{format_number(low, self.unit)}, {format_number(high, self.unit)}]"
        op = {"<=": "≤", ">=": "≥", "==": "="}.get(self.op, self.op)
        return f"{op} {format_number(float(self.bound), self.unit)}"  # type: ignore[arg-type]


def default_method(unit: str) -> str:
    """The interval for a claim that does not choose one: t for a difference in percentage
    points (unbounded, roughly symmetric), bootstrap for everything else (error rates, ratios,
    spans: bounded or heavy-tailed)."""
    return "t" if unit == "pp" else "bootstrap"


def format_number(x: float | None, unit: str = "") -> str:
    """Three significant digits; scientific notation where a number spans decades."""
    if x is None or math.isnan(x):
        return "n/a"
    if unit == "%":
        return percent(x)
    if unit == "pp":
        return f"{100 * x:.2f} pp"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def report_table(claims: Sequence[Claim], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for column in ("figure", "claim", "whose", "measured", "threshold", "result"):
        table.add_column(column, overflow="fold")
    for c in claims:
        style = {"PASS": "green", "FAIL": "bold red"}.get(c.verdict, "yellow")
        whose = c.source.label if c.source is not None else "—"
        table.add_row(c.figure, c.claim, whose, c.measured, c.threshold,
                      f"[{style}]{c.verdict}[/]")
    return table


def tally(claims: Sequence[Claim]) -> str:
    """"n of m claims PASS" (checks of the implementation not counted), how many are
    INCONCLUSIVE, and how many of them are the lecture's."""
    claims = [c for c in claims if not c.check]
    passed = sum(c.passed for c in claims)
    open_ = sum(c.verdict == "INCONCLUSIVE" for c in claims)
    own = [c for c in claims if c.source is not None and c.source.kind == "lecture"]
    return (f"{passed} of {len(claims)} claims PASS, {open_} INCONCLUSIVE, "
            f"{len(claims) - passed - open_} FAIL ({sum(c.passed for c in own)} of the "
            f"{len(own)} that are the lecture's own PASS).")


def verdict_counts(claims: Sequence[Claim]) -> dict[str, int]:
    """PASS / INCONCLUSIVE / FAIL counts over the claims (checks not counted)."""
    counts = {"PASS": 0, "INCONCLUSIVE": 0, "FAIL": 0}
    for c in claims:
        if not c.check:
            counts[c.verdict] += 1
    return counts


def report_markdown(claims: Sequence[Claim], title: str, notes: Sequence[str],
                    appendix: Sequence[str] = ()) -> str:
    """The report as Markdown: the title, notes (one paragraph each: the figures' summaries
    first), the claims table -- each row saying whose claim it is, by kind and by number in the
    list of sources below it, where each source is written out once -- a tally, then the
    appendix."""
    sources: dict[Source, int] = {}
    for c in claims:
        if c.source is not None:
            sources.setdefault(c.source, len(sources) + 1)
    lines = [f"# {title}", ""]
    for note in notes:
        lines += [note, ""]
    counted = [c for c in claims if not c.check]
    if counted:
        lines += _rows(counted, sources)
    lines += ["", tally(claims)]
    checks = [c for c in claims if c.check]
    if checks:
        passed = sum(c.passed for c in checks)
        lines += ["", "### Checks of the implementation", "",
                  "Rows true by construction when the code is right (the math guarantees "
                  "them): they test initlab, not the lecture, and are not counted above.", ""]
        lines += _rows(checks, sources)
        lines += ["", f"{passed} of {len(checks)} checks PASS."]
    explained = [c for c in claims if not c.passed and c.if_fails]
    if explained:
        lines += ["", "What the FAILs and INCONCLUSIVEs suggest:", ""]
        lines += [f"- `{c.figure}`, {_cell(c.claim)} ({c.measured}): {c.if_fails}"
                  for c in explained]
    if sources:
        lines += ["", "Whose claim each row checks:", ""]
        lines += [f"{n}. *{source.label}* — {source.text}" for source, n in sources.items()]
    for section in appendix:
        lines += ["", section]
    return "\n".join(lines) + "\n"


def write_report(path: Path, claims: Sequence[Claim], title: str, notes: Sequence[str],
                 appendix: Sequence[str] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, report_markdown(claims, title, notes, appendix))
    path.chmod(0o644)  # a file to commit and read, like the figures beside it


def _rows(claims: Sequence[Claim], sources: dict[Source, int]) -> list[str]:
    lines = [CLAIMS_TABLE_HEADER,
             "|---|---|---|---|---|---|"]
    for c in claims:
        verdict = "PASS" if c.passed else f"**{c.verdict}**"
        whose = f"*{c.source.label}* [{sources[c.source]}]" if c.source is not None else "—"
        lines.append(f"| `{c.figure}` | {_cell(c.claim)} | {whose} | {c.measured} "
                     f"| {c.threshold} | {verdict} |")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class ReportRow:
    """One row of a written report's claims or checks table, as text."""

    figure: str
    claim: str
    measured: str
    verdict: str  # PASS, FAIL or INCONCLUSIVE
    check: bool = False  # a row of "Checks of the implementation", not a claim

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"


CHECKS_HEADING = "### Checks of the implementation"
# The claims and checks tables' header (other tables of a report, such as the rows changed
# since the last one, have rows that start alike and are not read as claims).
CLAIMS_TABLE_HEADER = "| figure | claim | whose claim | measured | threshold | result |"


def read_report_rows(text: str, checks: bool = False) -> list[ReportRow]:
    """The claims table of a report ``report_markdown`` wrote, row by row (the README's figure
    table and the figure tests read the committed report with it); with ``checks``, the
    checks of the implementation follow."""
    rows = []
    in_checks = in_claims_table = False
    for line in text.splitlines():
        if line.startswith("#"):
            in_checks = line.strip() == CHECKS_HEADING
        if line.startswith("| figure |"):  # a table's header: only the claims tables are read
            in_claims_table = line.strip() == CLAIMS_TABLE_HEADER
        if not (line.startswith("| `") and in_claims_table) or (in_checks and not checks):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        figure, claim, _, measured, _, result = cells
        rows.append(ReportRow(figure.strip("`"), claim.replace("\\|", "|"), measured,
                              result.strip("*"), in_checks))
    return rows


CHANGED_HEADING = "## Rows dropped, reworded or re-budgeted since the last full report"


def changed_since(previous: str, claims: Sequence[Claim]) -> str:
    """Markdown: every row of the previous full report (``previous``, its text) that this one
    drops or words differently (matched by figure and claim text), and every row kept whose
    number of seeds changed, each with its old measurement and verdict; "" when none."""
    now = {(c.figure, c.claim): c for c in claims}
    lines = []
    for old in read_report_rows(previous, checks=True):
        new = now.get((old.figure, old.claim))
        if new is None:
            change = "dropped or reworded"
        elif _seed_count(old.measured) != (new.seeds or None):
            change = f"re-budgeted: {new.seeds or 'no'} seeds now"
        else:
            continue
        lines.append(f"| `{old.figure}` | {_cell(old.claim)} | {_cell(old.measured)} "
                     f"| {old.verdict} | {change} |")
    if not lines:
        return ""
    return "\n".join([CHANGED_HEADING, "", "| figure | claim then | measured then | verdict then "
                      "| now |", "|---|---|---|---|---|", *lines])


def _seed_count(measured: str) -> int | None:
    """How many seeds a written measurement is over (None: one run)."""
    found = re.search(r"(\d+) seeds", measured)
    return int(found.group(1)) if found else None


def compare_verdicts(reference: str, rerun: str, labels: tuple[str, str]) -> str:
    """Markdown: every row of two reports side by side, whether its verdict is the same, and a
    count. Rows match by figure and claim text, else (a claim that quotes a number of its own
    runs) by figure and place among that figure's rows; a row in only one report is listed."""
    first = read_report_rows(reference, checks=True)
    second = read_report_rows(rerun, checks=True)

    def place(rows: list[ReportRow]) -> dict[tuple[str, bool, int], ReportRow]:
        seen: dict[tuple[str, bool], int] = {}
        placed = {}
        for row in rows:
            n = seen[(row.figure, row.check)] = seen.get((row.figure, row.check), -1) + 1
            placed[(row.figure, row.check, n)] = row
        return placed

    by_text = {(r.figure, r.claim): r for r in second}
    by_place = place(second)
    pairs: list[tuple[ReportRow | None, ReportRow | None]] = []
    matched: set[int] = set()
    for key, a in place(first).items():
        b = by_text.get((a.figure, a.claim))
        if b is None or id(b) in matched:
            b = by_place.get(key)
            b = None if b is None or id(b) in matched or b.claim in \
                {r.claim for r in first if r.figure == b.figure} else b
        if b is not None:
            matched.add(id(b))
        pairs.append((a, b))
    pairs += [(None, b) for b in second if id(b) not in matched]
    lines = [f"| | figure | claim | {labels[0]}: measured | verdict | {labels[1]}: measured "
             f"| verdict | same |", "|---|---|---|---|---|---|---|---|"]
    same = 0
    for a, b in pairs:
        kept = a is not None and b is not None and a.verdict == b.verdict
        same += kept
        row = a or b
        assert row is not None
        claim = row.claim if b is None or a is None or a.claim == b.claim else \
            f"{a.claim} / *rerun:* {b.claim}"
        lines.append("| " + " | ".join([
            "check" if row.check else "claim", f"`{row.figure}`", _cell(claim),
            _cell(a.measured) if a else "—", a.verdict if a else "—",
            _cell(b.measured) if b else "—", b.verdict if b else "—",
            "yes" if kept else "**no**"]) + " |")
    return f"{same} of {len(pairs)} rows keep their verdict.\n\n" + "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    """``python -m initlab.report REFERENCE.md RERUN.md``: the verdict comparison."""
    if len(argv) != 2:
        print("usage: python -m initlab.report REFERENCE.md RERUN.md", file=sys.stderr)
        return 2
    texts = []
    for name in argv:
        try:
            texts.append(Path(name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            print(f"initlab: {name}: cannot read it ({err.__class__.__name__})", file=sys.stderr)
            return 2
    print(compare_verdicts(texts[0], texts[1], (argv[0], argv[1])), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
