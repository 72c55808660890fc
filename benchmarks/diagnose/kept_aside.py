"""The kept-aside cases: written and committed before any rule of issue 31 was changed or added,
never used to tune one. Each plants one cause (or none) on an architecture or data the tuned
cases (cases.py) do not pair it with: a different net for every cause, both optimizers, MNIST
and synthetic data, healthy runs of every new architecture. Their result is the number
docs/diagnose.md reports as the held-out one, whatever it is.
"""

from __future__ import annotations

from models import WatchCase

HEALTHY = ("healthy",)

KEPT_ASIDE = [
    # Healthy runs: nothing planted.
    WatchCase("k-mlp512-healthy", "mlp", HEALTHY, "none: 2 x 512 ReLU, SGD 0.05 m 0.9",
              lr=0.05, steps=200, options={"widths": [784, 512, 512, 10]}),
    WatchCase("k-lenet-healthy", "lenet", HEALTHY, "none: LeNet, Adam 1e-3",
              optimizer="adam", lr=1e-3, steps=200),
    WatchCase("k-lstm-healthy", "lstm", HEALTHY, "none: LSTM over the rows, Adam 2e-3",
              optimizer="adam", lr=2e-3, steps=300),
    WatchCase("k-binary-healthy", "mlp", HEALTHY,
              "none: synthetic two-class task, 2 x 32 ReLU to one logit, BCE, Adam 1e-3",
              optimizer="adam", lr=1e-3, steps=300, data="binary",
              options={"widths": [20, 32, 32, 1]}),
    WatchCase("k-sigmoid3-healthy", "mlp", HEALTHY, "none: 3 sigmoid layers of 128, Adam 1e-3",
              optimizer="adam", lr=1e-3, steps=200,
              options={"widths": [784, 128, 128, 10], "activation": "sigmoid"}),
    WatchCase("k-vit-healthy", "vit", HEALTHY, "none: patch transformer, Adam 1e-3",
              optimizer="adam", lr=1e-3, steps=200),
    WatchCase("k-resnet-adam-healthy", "resnet", HEALTHY,
              "none: batch-norm ResNet, Adam 1e-3", optimizer="adam", lr=1e-3, steps=200),
    WatchCase("k-classes-healthy", "mlp", HEALTHY,
              "none: synthetic 10-class task, 3 x 128 tanh, SGD 0.05 m 0.9", lr=0.05,
              steps=300, data="classes",
              options={"widths": [20, 128, 128, 128, 10], "activation": "tanh"}),
    # Planted causes.
    WatchCase("k-sigmoid15-vanish", "mlp", ("vanishing-gradients",),
              "15 sigmoid layers of 128 (PyTorch's init), SGD 0.05 m 0.9", lr=0.05, steps=200,
              options={"widths": [784] + [128] * 15 + [10], "activation": "sigmoid"}),
    WatchCase("k-relu8-std002", "mlp", ("activations-vanish", "vanishing-gradients"),
              "8 ReLU layers of 512, weights normal_(std=0.02)", lr=0.05, steps=200,
              options={"widths": [784] + [512] * 7 + [10], "std": 0.02}),
    WatchCase("k-lenet-no-zero-grad", "lenet", ("accumulating-gradients",),
              "LeNet, Adam 1e-3, optimizer.zero_grad() forgotten", optimizer="adam", lr=1e-3,
              steps=200, options={"no_zero_grad": True}),
    WatchCase("k-vit-no-zero-grad", "vit", ("accumulating-gradients",),
              "patch transformer, SGD 0.01 m 0.9, optimizer.zero_grad() forgotten", steps=200,
              options={"no_zero_grad": True}),
    WatchCase("k-mlp-raw-pixels", "mlp", ("unnormalized-inputs",),
              "3 x 256 ReLU, Adam 1e-3, pixels 0-255", optimizer="adam", lr=1e-3, steps=200,
              options={"widths": [784, 256, 256, 10], "raw_pixels": True}),
    WatchCase("k-gru-raw-pixels", "gru", ("unnormalized-inputs",),
              "GRU over the rows, Adam 1e-3, pixels 0-255", optimizer="adam", lr=1e-3,
              steps=200, options={"raw_pixels": True}),
    WatchCase("k-lenet-softmax-outputs", "lenet", ("probability-outputs",),
              "LeNet ending in nn.Softmax, then cross_entropy; SGD 0.05 m 0.9", lr=0.05,
              steps=200, options={"softmax": True}),
    WatchCase("k-sigmoid-saturated", "mlp", ("saturation",),
              "4 sigmoid layers of 128, W ~ N(0, 64/n), SGD 0.05 m 0.9", lr=0.05, steps=200,
              options={"widths": [784] + [128] * 4 + [10], "activation": "sigmoid",
                       "c": 64.0}),
    WatchCase("k-lenet-dropout-08", "lenet", ("dropout-noise",),
              "LeNet, dropout 0.8 before each of its three Linear layers, Adam 1e-3",
              optimizer="adam", lr=1e-3, steps=200, options={"dropout": 0.8}),
    WatchCase("k-mlp-bn-batch4", "mlp", ("small-batchnorm",),
              "4 x 128 ReLU with BatchNorm1d, batches of 4, SGD 0.01 m 0.9", steps=400,
              batch=4, options={"widths": [784, 128, 128, 128, 10], "batchnorm": True}),
    WatchCase("k-lstm-frozen", "lstm", ("no-gradient",),
              "LSTM over the rows; the LSTM not given to the optimizer (SGD 0.05 m 0.9)",
              lr=0.05, steps=200, options={"frozen": "rnn."}),
    WatchCase("k-vit-lr-high", "vit", ("lr-too-high",), "patch transformer, Adam lr 0.05",
              optimizer="adam", lr=0.05, steps=200),
    WatchCase("k-lenet-lr-low", "lenet", ("lr-too-low",), "LeNet, SGD lr 1e-5 m 0.9",
              lr=1e-5, steps=200),
    WatchCase("k-mlp512-lr-high", "mlp", ("lr-too-high",), "2 x 512 ReLU, SGD lr 2 m 0.9",
              lr=2.0, steps=200, options={"widths": [784, 512, 512, 10]}),
]
