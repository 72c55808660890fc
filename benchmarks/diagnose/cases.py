"""The labelled cases: each plants one problem (or none) and names the findings that count as
naming it. MLP cases are `initlab run` configs (the starter `kaiming` with `--set`
overrides); the others are models trained under `initlab.watch` (models.py).

Budgets are small on purpose (a data subset, 100-600 steps): the whole set trains in a few
minutes on 2 CPU cores. Thresholds in initlab/diagnosis.py were written from theory before
these cases were run, and none was changed to fit them.
"""

from __future__ import annotations

from dataclasses import dataclass

from models import WatchCase

# Every MLP case: 4096 training images, 1000 test images, a 256-image probe, a record every
# 20 steps, one thread; the case's own --set values come after (and win).
MLP_BASE = ["--set", "data.train_subset=4096", "--set", "data.test_subset=1000",
            "--set", "log.probe_size=256", "--set", "log.every=20",
            "--set", "train.target_test_error=null", "--set", "train.epochs=3",
            "--set", "train.checkpoint=none"]


@dataclass(frozen=True)
class MLPCase:
    name: str
    expects: tuple[str, ...]
    plants: str
    sets: tuple[str, ...]


HEALTHY = ("healthy",)

MLP_CASES = [
    MLPCase("mlp-healthy-kaiming", HEALTHY, "none: 10 x 100 ReLU, Kaiming, SGD lr 0.05",
            ("model.depth=10", "train.lr=0.05")),
    MLPCase("mlp-healthy-deep", HEALTHY, "none: 20 x 100 ReLU, Kaiming, SGD lr 0.02, momentum 0.9",
            ("model.depth=20", "train.lr=0.02", "train.momentum=0.9")),
    MLPCase("mlp-healthy-tanh", HEALTHY, "none: 10 x 100 tanh, Xavier (c = 1), SGD lr 0.05",
            ("model.depth=10", "model.activation=tanh", "init.c=1", "train.lr=0.05")),
    MLPCase("mlp-healthy-layernorm", HEALTHY, "none: 10 layers, layer norm, Adam 1e-3",
            ("model.depth=10", "model.norm=layer", "train.optimizer=adam", "train.lr=0.001")),
    MLPCase("mlp-vanish", ("activations-vanish",), "c = 1 at depth 30",
            ("model.depth=30", "init.c=1")),
    MLPCase("mlp-explode", ("activations-explode",), "c = 3 at depth 30",
            ("model.depth=30", "init.c=3")),
    MLPCase("mlp-zero-init", ("symmetric-init",), "init.scheme = zeros",
            ("model.depth=20", "init.scheme=zeros")),
    MLPCase("mlp-layernorm-50", ("normalized-gradients",),
            "layer norm after the ReLU at depth 50 (Adam 1e-3)",
            ("model.depth=50", "model.norm=layer", "train.optimizer=adam", "train.lr=0.001")),
    MLPCase("mlp-batchnorm-50", ("normalized-gradients",),
            "batch norm after the ReLU at depth 50 (SGD 0.01)",
            ("model.depth=50", "model.norm=batch")),
    MLPCase("mlp-lr-high", ("lr-too-high",), "SGD lr 0.5 at depth 20",
            ("model.depth=20", "train.lr=0.5")),
    MLPCase("mlp-lr-diverge", ("lr-too-high",), "SGD lr 3 at depth 10 (diverges)",
            ("model.depth=10", "train.lr=3")),
    MLPCase("mlp-lr-low", ("lr-too-low",), "SGD lr 1e-5 at depth 20",
            ("model.depth=20", "train.lr=0.00001")),
    MLPCase("mlp-dropout", ("dropout-noise",), "dropout 0.2 after each of 29 hidden layers",
            ("model.depth=30", "model.dropout=0.2")),
    MLPCase("mlp-batchnorm-b2", ("small-batchnorm",), "batch norm, batches of 2 (600 steps)",
            ("model.depth=10", "model.norm=batch", "train.batch_size=2",
             "train.max_steps=600")),
    MLPCase("mlp-overfit", ("overfitting",), "3 x 512 on 256 images for 60 epochs",
            ("model.depth=3", "model.width=512", "data.train_subset=256", "train.epochs=60",
             "train.batch_size=32", "train.lr=0.05", "log.every=0")),
]

WATCH_CASES = [
    WatchCase("cnn-healthy", "cnn", HEALTHY, "none: 8 conv layers, Kaiming, SGD 0.01 m 0.9"),
    WatchCase("cnn-vanish", "cnn", ("activations-vanish",), "c = 0.25 in every layer",
              options={"c": 0.25}),
    WatchCase("cnn-zero-init", "cnn", ("symmetric-init",), "every weight 0",
              options={"constant": 0.0}),
    WatchCase("cnn-lr-high", "cnn", ("lr-too-high",), "SGD lr 0.5, momentum 0.9", lr=0.5),
    WatchCase("cnn-detached", "cnn", ("no-gradient",), ".detach() after conv 3 in forward",
              options={"detach_after": 3}),
    WatchCase("resmlp-healthy", "resmlp", HEALTHY, "none: 6 residual blocks, Adam 1e-3",
              optimizer="adam", lr=1e-3),
    WatchCase("resmlp-dead-relu", "resmlp", ("dead-relu",),
              "90% of each block's ReLU units pushed below zero by their bias",
              optimizer="adam", lr=1e-3, options={"dead": 0.9}),
    WatchCase("resmlp-symmetric", "resmlp", ("symmetric-init",), "every weight 0.01",
              optimizer="adam", lr=1e-3, options={"constant": 0.01}),
    WatchCase("resmlp-lr-high", "resmlp", ("lr-too-high",), "Adam lr 0.1",
              optimizer="adam", lr=0.1),
    WatchCase("transformer-healthy", "transformer", HEALTHY, "none: 2 pre-norm layers, Adam 1e-3",
              optimizer="adam", lr=1e-3),
    WatchCase("transformer-lr-high", "transformer", ("lr-too-high",), "Adam lr 0.1",
              optimizer="adam", lr=0.1),
    WatchCase("transformer-lr-low", "transformer", ("lr-too-low",), "Adam lr 1e-7",
              optimizer="adam", lr=1e-7),
    WatchCase("transformer-detached", "transformer", ("no-gradient",),
              "the token embedding's output .detach()ed", optimizer="adam", lr=1e-3,
              options={"detach_embedding": True}),
]
