"""Measure `initlab diagnose` on the labelled cases (cases.py): train each case, diagnose it,
and report the share of cases whose top finding is the planted problem and the false alarms
on healthy runs. With --peers, also run torchmortem, torchdiag and neural-observatory (as
their READMEs say) on the models trained under initlab.watch, and time every tool per step.

    nice -n 10 python benchmarks/diagnose/run.py                       # initlab only
    nice -n 10 python benchmarks/diagnose/run.py --peers /tmp/peers    # and the peers
    python benchmarks/diagnose/run.py --half kept-aside                # one half only

Two halves: ``tuned`` (cases.py: the cases the rules were written or changed looking at) and
``kept-aside`` (kept_aside.py: committed before the rules of issue 31 were written, never used
to change one); each row says which, and the summary counts each half apart.

(`pip install --target /tmp/peers --no-deps torchmortem torchdiag neural-observatory plotly
narwhals` puts the peers beside, not into, the project's environment.) Writes
OUT/results.json and OUT/results.md (default OUT: runs/diagnose-bench).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from cases import MLP_BASE, MLP_CASES, NEW_TUNED, WATCH_CASES  # noqa: E402
from kept_aside import KEPT_ASIDE  # noqa: E402

import initlab  # noqa: E402
from initlab.data import load_mnist  # noqa: E402
from initlab.diagnosis import SEVERITIES  # noqa: E402

PEERS = ("torchmortem", "torchdiag", "neural-observatory")
# What counts as a peer naming the planted problem: words in its top finding (generous: any
# wording of the same phenomenon counts).
PEER_WORDS = {
    "activations-vanish": ("vanish",),
    "activations-explode": ("explod",),
    "symmetric-init": ("symmetr", "zero init", "near zero", "rank collapse"),
    "lr-too-high": ("diverg", "too high", "explod", "nan ", "inf ", "instab", "catapult",
                    "edge of stability", "learning rate", "spike"),
    "lr-too-low": ("too low", "stagnant", "plateau", "not learning", "unchanged"),
    "dead-relu": ("dead",),
    "no-gradient": ("none", "disconnected", "no grad", "stalling"),
    "normalized-gradients": ("explod",),
    "vanishing-gradients": ("vanish",),
    "exploding-gradients": ("explod",),
    "accumulating-gradients": ("accumulat", "zero_grad"),
    "unnormalized-inputs": ("normaliz", "input scale", "input range", "scale of the input"),
    "probability-outputs": ("softmax", "probabilit"),
    "saturation": ("saturat",),
    "dropout-noise": ("dropout",),
    "small-batchnorm": ("batch size", "batchnorm", "batch norm", "small batch"),
}


def warned(findings: list[Any]) -> list[Any]:
    return [f for f in findings if SEVERITIES.index(f.severity) >= SEVERITIES.index("warning")]


def judge(top: str, expects: tuple[str, ...]) -> bool:
    return top in expects


def peer_named(top: str, expects: tuple[str, ...]) -> bool:
    if expects == ("healthy",):
        return top == ""
    text = top.lower()
    return any(word in text for key in expects for word in PEER_WORDS.get(key, ()))


def run_mlp(case: Any, out: Path) -> Path:
    path = out / case.name
    shutil.rmtree(path, ignore_errors=True)
    sets = [arg for s in case.sets for arg in ("--set", s)]
    cmd = [sys.executable, "-m", "initlab", "run", "kaiming", "--out", str(out), "--threads",
           "1", "--set", f"name={case.name}", *MLP_BASE, *sets]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{case.name}: initlab run failed:\n{done.stderr[-2000:]}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/diagnose-bench"))
    parser.add_argument("--only", action="append", help="cases whose name contains this")
    parser.add_argument("--half", choices=("tuned", "kept-aside", "all"), default="all")
    parser.add_argument("--peers", type=Path, help="a directory holding the peers (pip "
                        "--target): run them on the watch cases too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    def chosen(name: str) -> bool:
        return not args.only or any(s in name for s in args.only)

    rows: list[dict[str, Any]] = []

    kept = {c.name for c in KEPT_ASIDE}
    tuned_half = args.half in ("tuned", "all")
    for case in (c for c in MLP_CASES if chosen(c.name) and tuned_half):
        started = time.perf_counter()
        path = run_mlp(case, out)
        findings = initlab.diagnose(path)
        rows.append(row(case.name, "initlab MLP", case.plants, case.expects, findings,
                        time.perf_counter() - started))
        rows[-1]["half"] = "tuned"
        print(line(rows[-1]), flush=True)

    watch_cases = [c for c in (WATCH_CASES + NEW_TUNED if tuned_half else []) +
                   (KEPT_ASIDE if args.half in ("kept-aside", "all") else []) if chosen(c.name)]
    if watch_cases:
        from models import train

        data = load_mnist(train_subset=9600, test_subset=2000, log=lambda _: None)
        tools = ["none", "initlab"] + (list(PEERS) if args.peers else [])
        if args.peers:
            sys.path.append(str(args.peers))  # after the project's own packages: never its torch
        for case in watch_cases:
            results: dict[str, Any] = {}
            for tool in tools:
                shutil.rmtree(out / tool / case.name, ignore_errors=True)
                results[tool] = train(case, data, tool, out / tool)
            mine = results["initlab"]
            findings = initlab.diagnose(mine.path)
            r = row(case.name, f"watch: {case.model}", case.plants, case.expects, findings, 0.0)
            r["test_error"] = mine.test_error
            r["half"] = "kept-aside" if case.name in kept else "tuned"
            base = results["none"].seconds_per_step
            r["tools"] = {
                tool: {"top": t.top if tool != "initlab" else r["top"],
                       "named": (r["named"] if tool == "initlab"
                                 else peer_named(t.top, case.expects)),
                       "findings": t.findings[:6],
                       "seconds_per_step": t.seconds_per_step,
                       "cost": t.seconds_per_step / base,
                       "analysis_seconds": t.analysis_seconds}
                for tool, t in results.items() if tool != "none"}
            r["seconds_per_step"] = base
            rows.append(r)
            print(line(r), flush=True)

    summary = summarize(rows)
    (out / "results.json").write_text(json.dumps({"summary": summary, "cases": rows},
                                                 indent=1, default=str))
    table = markdown(rows, summary)
    (out / "results.md").write_text(table)
    print(table)


def row(name: str, model: str, plants: str, expects: tuple[str, ...], findings: list[Any],
        seconds: float) -> dict[str, Any]:
    top = findings[0]
    healthy_case = expects == ("healthy",)
    return {"case": name, "model": model, "plants": plants, "expects": list(expects),
            "top": top.problem, "severity": top.severity,
            "evidence": top.evidence, "named": judge(top.problem, expects),
            "false_alarm": healthy_case and bool(warned(findings)),
            "all": [f"{f.problem} ({f.severity})" for f in findings], "seconds": seconds}


def line(r: dict[str, Any]) -> str:
    mark = "ok " if r["named"] else "MISS"
    peers = "".join(f" | {tool}: {'ok' if t['named'] else 'miss'} {t['top'][:60]!r}"
                    for tool, t in r.get("tools", {}).items() if tool != "initlab")
    return f"{mark} {r['case']:24} expects {'/'.join(r['expects']):22} got {r['top']}" + peers


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each half apart (the kept-aside one is the honest measure)."""
    summary: dict[str, Any] = {}
    for half in ("tuned", "kept-aside"):
        part = [r for r in rows if r.get("half") == half]
        if part:
            summary.update({f"{tool}, {half}": s for tool, s in summarize_half(part).items()})
    return summary


def summarize_half(rows: list[dict[str, Any]]) -> dict[str, Any]:
    planted = [r for r in rows if r["expects"] != ["healthy"]]
    healthy = [r for r in rows if r["expects"] == ["healthy"]]
    summary: dict[str, Any] = {
        "initlab": {"named": sum(r["named"] for r in planted), "planted": len(planted),
                    "false_alarms": sum(r["false_alarm"] for r in healthy),
                    "healthy": len(healthy)}}
    watched = [r for r in rows if "tools" in r]
    for tool in sorted({t for r in watched for t in r["tools"]}):
        p = [r for r in watched if r["expects"] != ["healthy"]]
        h = [r for r in watched if r["expects"] == ["healthy"]]
        costs = [r["tools"][tool]["cost"] for r in watched]
        summary[f"{tool} (watch cases)"] = {
            "named": sum(r["tools"][tool]["named"] for r in p), "planted": len(p),
            "false_alarms": sum(not r["tools"][tool]["named"] for r in h), "healthy": len(h),
            "cost_per_step_median": sorted(costs)[len(costs) // 2] if costs else None,
            "analysis_seconds_median": sorted(r["tools"][tool]["analysis_seconds"]
                                              for r in watched)[len(watched) // 2]}
    return summary


def markdown(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    tools = sorted({t for r in rows for t in r.get("tools", {}) if t != "initlab"})
    head = "| half | case | planted | expected | initlab's top finding | named |" + \
        "".join(f" {t} top finding | named |" for t in tools)
    lines = [head, "|" + "---|" * (6 + 2 * len(tools))]
    for r in rows:
        cells = [r.get("half", ""), r["case"], r["plants"], "/".join(r["expects"]),
                 f"{r['top']} ({r['severity']})", "yes" if r["named"] else "**no**"]
        for t in tools:
            tool = r.get("tools", {}).get(t)
            cells += [(tool["top"][:90].replace("|", "/") or "(none)") if tool else "",
                      ("yes" if tool["named"] else "**no**") if tool else ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for tool, s in summary.items():
        text = (f"- {tool}: top finding names the planted problem in {s['named']} of "
                f"{s['planted']} cases; warnings on {s['false_alarms']} of {s['healthy']} "
                "healthy runs")
        if s.get("cost_per_step_median") is not None:
            text += (f"; training time per step x{s['cost_per_step_median']:.2f} (median over "
                     "the watch cases), analysis after training "
                     f"{s['analysis_seconds_median']:.2f} s")
        lines.append(text)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
