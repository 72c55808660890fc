"""Figure batchnorm-eval: the logits of one fixed test image inside random batches of other
test images, for a batch-normalized net in training and in evaluation mode (the c = 2 run of
configs/trained-batchnorm.yaml)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from initlab.figures.core import (
    Figure,
    FigureInput,
    by_c,
    c_of,
    new_figure,
    read_measure,
    save_measure,
    unmeasured,
)
from initlab.figures.inference import batchnorm_logits, load_data, load_model
from initlab.report import Claim, lecture
from initlab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

STEM = "trained-batchnorm"
BATCHES = 20
IMAGE = 0  # the fixed test image
SEED = 0  # of the batches drawn around it
DEPENDENCE = lecture("Batch normalization", "in training mode batch norm makes an example's "
                     "output depend on the other examples in its minibatch; at test time the "
                     "running averages of the batch statistics take their place, so it does not")


IMPROVES = lecture("Batch normalization", "using the batch's statistics at test time, "
                   "instead of the running averages, can even improve accuracy in some cases")
IMPROVES_PP = 0.005  # "improves": by at least 0.5 pp of 10,000 test images; fixed before


def bn_run(inp: FigureInput) -> Run:
    runs = by_c(inp.runs(STEM))
    return runs.get(2.0) or next(iter(runs.values()))


def measure(inp: FigureInput, data_root: str | None) -> None:
    """For every run (each c and seed): the logits of the fixed image, and the test error
    with running averages and with each test batch's own statistics."""
    for run, target in unmeasured(inp, STEM):
        result = batchnorm_logits(run, data_root, IMAGE, BATCHES, SEED)
        result.update(batch_statistics_errors(run, data_root))
        save_measure(target, result)


@torch.no_grad()
def batch_statistics_errors(run: Run, data_root: str | None) -> dict[str, float]:
    """Test error in evaluation mode (running averages) and in training mode (each batch of
    the test set normalized by its own statistics, batches of the training batch size, in
    order; the running averages untouched)."""
    model, cfg, _ = load_model(run)
    data = load_data(cfg, data_root)
    batch, result = cfg.train.batch_size, {}
    for mode in ("eval", "train"):
        model.train(mode == "train")
        wrong = 0
        for start in range(0, data.test_x.shape[0], batch):
            x = data.test_x[start : start + batch].unsqueeze(0)
            logits = model(x, update_running=False, use_dropout=False)
            wrong += int((logits[0].argmax(dim=-1) != data.test_y[start : start + batch]).sum())
        result[f"{mode}_mode_test_error"] = wrong / data.test_x.shape[0]
    return result


def improvement(run: Run, figure: str) -> float:
    m = read_measure(run, figure) or {}
    return m.get("eval_mode_test_error", math.nan) - m.get("train_mode_test_error", math.nan)


def logit_range(rows: Sequence[Sequence[float]]) -> float:
    """Largest range (max − min over the batches) over the classes."""
    a = np.asarray(rows, dtype=float)
    if a.size == 0:
        return math.nan
    return float((a.max(axis=0) - a.min(axis=0)).max())


def plot(inp: FigureInput) -> MplFigure:
    run = bn_run(inp)
    m = read_measure(run, inp.name) or {"train_logits": [], "eval_logits": [], "label": "?"}
    fig, axes = new_figure(inp, f"Batch norm (c = {c_of(run):g}, trained: "
                           f"{run.final_test_error:.1%} test error): logits of test image "
                           f"#{IMAGE} (label {m['label']}) in {BATCHES} random batches",
                           2, sharey=True)
    rng = np.random.default_rng(0)  # jitter only, so overlapping dots stay visible
    for ax, mode, title in ((axes[0][0], "train", "training mode (batch statistics)"),
                            (axes[0][1], "eval", "evaluation mode (running averages)")):
        rows = np.asarray(m[f"{mode}_logits"], dtype=float)
        for row in rows:
            ax.plot(np.arange(rows.shape[1]) + rng.uniform(-0.15, 0.15, rows.shape[1]), row,
                    "o", markersize=3, alpha=0.6)
        ax.set_title(f"{title}\nlargest range over batches: {logit_range(rows):.3g}",
                     fontsize=9)
        ax.set_xlabel("class")
        ax.set_xticks(range(10))
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("logit (one dot per batch)")
    return fig


def claims(inp: FigureInput) -> list[Claim]:
    m = read_measure(bn_run(inp), inp.name) or {"train_logits": [], "eval_logits": []}
    return [
        # True by construction: a check (training mode normalizes with the batch's moments).
        Claim(inp.name, f"batch norm, training mode: a fixed image's logits move with its "
              f"batch (largest range over {BATCHES} batches)", logit_range(m["train_logits"]),
              ">", 1e-3, source=DEPENDENCE, check=True),
        Claim(inp.name, "batch norm, evaluation mode: the same logits in every batch (largest "
              "range)", logit_range(m["eval_logits"]), "<=", 1e-6, source=DEPENDENCE,
              check=True),
        Claim(inp.name, "batch statistics at test time improve accuracy in some case: the "
              f"largest drop of test error, running averages → each test batch's own "
              f"statistics, over the nets of c = 1.7, 2, 2.3 and the seeds (shown if any "
              f"condition drops it by ≥ {100 * IMPROVES_PP:.1f} pp, else not shown)",
              improvements(inp), ">=", IMPROVES_PP, "pp", IMPROVES, existential=True,
              if_fails="not shown in these conditions, which cannot refute “in some cases”: "
              "the nets here are far from trained (see the title's test error), and the "
              "lecture's cases are nets whose running averages lag their weights"),
    ]


def improvements(inp: FigureInput) -> float:
    """The largest drop over the nets; NaN if a net has no measurement (never dropped
    silently, as Python's ``max`` would)."""
    drops = np.array([improvement(r, inp.name) for r in inp.runs(STEM)], dtype=float)
    return float(drops.max()) if drops.size else math.nan


FIGURE = Figure(
    "batchnorm-eval",
    "The trained batch-norm network (c = 2 of trained-norms) classifies one fixed test image "
    "placed in 20 random batches of other test images. In training mode each layer normalizes "
    "with the batch's own mean and variance, so the image's logits move with its company "
    "(left); in evaluation mode the running averages gathered during training replace them "
    "and the logits are identical in every batch (right).",
    (STEM,), plot, claims, measure,
    headline=(
        "In training mode a batch-normalized net's output for an image depends on its batch; in"
        " evaluation mode (running averages) it does not; batch statistics at test time can "
        "even improve accuracy in some cases (lecture)."),
    rows=3,
    order=160,
)
