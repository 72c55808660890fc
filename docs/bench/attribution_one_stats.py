"""The attribution run of docs/benchmarks.md (2026-12-02): `initlab x1 +stats` only, in three
worker processes at once -- 6f8abaa ("old", a git worktree), main without the saturated_fraction
line of stats.LAYER_STATS ("nosat", a copy) and main ("new") -- compared pairwise with
initlab.bench_pair's own functions, 150 rounds each: python -P attribution_one_stats.py 150"""
import json, sys
from pathlib import Path
from rich.console import Console
sys.path.insert(0, "/work/main")
from initlab.bench import settings_for
from initlab.bench_pair import Side, time_group, PairRow
rounds = int(sys.argv[1])
sides = {"old": Path("/work/wt/before"), "nosat": Path("/tmp/nosat"), "new": Path("/work/main")}
log = open("/tmp/attrib-workers.log", "w+")
settings = settings_for("cpu", sweeps=[2], only=["mlp"])
start = {"op": "start", "device": "cpu", "data_root": None, "sweeps": [2], "sections": ["mlp"], "warmup": 10}
w = {name: Side(name, root, log) for name, root in sides.items()}
for s in w.values():
    print(s.name, s.ask(**start)["initlab"]); s.read()
for keys in [["plain"], ["one"], ["one_stats"]]:
    for s in w.values(): s.read()
    if keys == ["one_stats"]:
        out = {}
        for a, b in (("old", "nosat"), ("nosat", "new"), ("old", "new")):
            row = time_group(w[a], w[b], keys, rounds, settings)[0]
            out[f"{b} vs {a}"] = row.summary() | {"old": row.old, "new": row.new}
            got = out[f"{b} vs {a}"]
            print(f"{b} vs {a}", round(got["ratio"], 3), round(got["low"], 3),
                  round(got["high"], 3), got["verdict"], row.work_old, row.work_new, flush=True)
        json.dump(out, open("/tmp/pairruns/attrib.json", "w"), indent=1)
    for s in w.values(): s.send(op="next")
for s in w.values(): s.close()
