"""The labelled cases the rules were tuned on: each plants one problem (or none) and names the
findings that count as naming it. MLP cases are `initlab run` configs (the starter `kaiming`
with `--set` overrides); the others are models trained under `initlab.watch` (models.py).

The rules of initlab/diagnosis.py have seen these cases: four rules were changed after one of
the first 28 missed (docs/diagnose.md), and the cases of ``NEW_TUNED`` were added with issue 31
to tune its new detectors on. The honest measure is ``kept_aside.py``: cases committed before
any rule of issue 31 was written, and never used to change one.

Budgets are small on purpose (a data subset, 100-600 steps): the whole set trains in a few
minutes on 2 CPU cores.
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

# Issue 31's causes, on architectures and data the first 28 cases did not have (models.py);
# the rules for them were written and tuned looking at these (and only these) cases.
NEW_TUNED = [
    WatchCase("sigmoid20-vanish", "mlp", ("vanishing-gradients",),
              "20 sigmoid layers of 64 (PyTorch's init), SGD 0.1 m 0.9", lr=0.1, steps=200,
              options={"widths": [784] + [64] * 20 + [10], "activation": "sigmoid"}),
    WatchCase("relu12-std001", "mlp", ("activations-vanish", "vanishing-gradients"),
              "12 ReLU layers of 256, weights normal_(std=0.01)", steps=200,
              options={"widths": [784] + [256] * 11 + [10], "std": 0.01}),
    WatchCase("mlp-no-zero-grad", "mlp", ("accumulating-gradients",),
              "3 x 128 ReLU, SGD 0.01 m 0.9, optimizer.zero_grad() forgotten", steps=200,
              options={"widths": [784, 128, 128, 10], "no_zero_grad": True}),
    WatchCase("lenet-raw-pixels", "lenet", ("unnormalized-inputs",),
              "LeNet, SGD 0.01 m 0.9, pixels 0-255 (not divided by 255)", steps=200,
              options={"raw_pixels": True}),
    WatchCase("mlp-softmax-outputs", "mlp", ("probability-outputs",),
              "3 x 128 ReLU ending in nn.Softmax, then cross_entropy; Adam 1e-3",
              optimizer="adam", lr=1e-3, steps=200,
              options={"widths": [784, 128, 128, 10], "softmax": True}),
    WatchCase("tanh-saturated", "mlp", ("saturation",),
              "6 tanh layers of 128, W ~ N(0, 16/n), SGD 0.01 m 0.9", steps=200,
              options={"widths": [784] + [128] * 5 + [10], "activation": "tanh", "c": 16.0}),
    WatchCase("mlp-dropout-09", "mlp", ("dropout-noise",),
              "3 x 256 ReLU, dropout 0.9 after each hidden layer, Adam 1e-3",
              optimizer="adam", lr=1e-3, steps=200,
              options={"widths": [784, 256, 256, 10], "dropout": 0.9}),
    WatchCase("resnet-batch2", "resnet", ("small-batchnorm",),
              "batch-norm ResNet, batches of 2, SGD 0.01 m 0.9", steps=300, batch=2),
    WatchCase("gru-frozen", "gru", ("no-gradient",),
              "GRU over the rows; the GRU not given to the optimizer (Adam 1e-3)",
              optimizer="adam", lr=1e-3, steps=200, options={"frozen": "rnn."}),
    WatchCase("resnet-healthy", "resnet", HEALTHY,
              "none: batch-norm ResNet, SGD 0.05 m 0.9", lr=0.05, steps=200),
    WatchCase("regression-healthy", "mlp", HEALTHY,
              "none: synthetic regression, 3 x 64 ReLU to one output, MSE, Adam 1e-3",
              optimizer="adam", lr=1e-3, steps=300, data="regression",
              options={"widths": [20, 64, 64, 1]}),
    WatchCase("gru-healthy", "gru", HEALTHY, "none: GRU over the rows, Adam 2e-3",
              optimizer="adam", lr=2e-3, steps=300),
]
