"""The attribution run of docs/benchmarks.md (2026-12-02): `initlab x1 +stats` only, in three
worker processes at once -- 6f8abaa ("old", a git worktree), main without the saturated_fraction
line of stats.LAYER_STATS ("nosat", a copy) and main ("new") -- compared pairwise with
initlab.bench_pair's own functions, 150 rounds each: python -P attribution_one_stats.py 150"""

import json
import sys
from pathlib import Path

sys.path.insert(0, "/work/main")

from initlab.bench import settings_for  # noqa: E402 -- after the path above
from initlab.bench_pair import Side, time_group  # noqa: E402

ROOTS = {"old": Path("/work/wt/before"), "nosat": Path("/tmp/nosat"), "new": Path("/work/main")}
PAIRS = (("old", "nosat"), ("nosat", "new"), ("old", "new"))


def main(rounds: int) -> None:
    settings = settings_for("cpu", sweeps=[2], only=["mlp"])
    start = {"op": "start", "device": "cpu", "data_root": None, "sweeps": [2],
             "sections": ["mlp"], "warmup": 10}
    with open("/tmp/attrib-workers.log", "w+") as log:
        sides = {name: Side(name, root, log) for name, root in ROOTS.items()}
        for side in sides.values():
            print(side.name, side.ask(**start)["initlab"])
            side.read()  # the groups
        for keys in (["plain"], ["one"], ["one_stats"]):
            for side in sides.values():
                side.read()  # ready
            if keys == ["one_stats"]:
                out = {}
                for a, b in PAIRS:
                    row = time_group(sides[a], sides[b], keys, rounds, settings)[0]
                    got = out[f"{b} vs {a}"] = row.summary() | {"old": row.old, "new": row.new}
                    print(f"{b} vs {a}", round(got["ratio"], 3), round(got["low"], 3),
                          round(got["high"], 3), got["verdict"], row.work_old, row.work_new,
                          flush=True)
                Path("/tmp/pairruns/attrib.json").write_text(json.dumps(out, indent=1))
            for side in sides.values():
                side.send(op="next")
        for side in sides.values():
            side.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
