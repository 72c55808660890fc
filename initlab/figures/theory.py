"""What theory predicts for the figures' measurements: plain functions of numbers, no runs.

- ReLU layers at initialization, W ~ N(0, c/n_in), zero bias (mean field, and its finite-width
  spread after Hanin & Rolnick, "How to start training", NeurIPS 2018): for a fixed input z,
  r = ‖relu(zW)‖² / ‖z‖² = (c/n_in)·χ²_M with M ~ Binomial(n_out, 1/2) units active, whatever
  the direction of z; so the layers' r are independent and log‖Z_l‖² is a sum of independent
  terms whose mean and variance are exact (digamma and trigamma of M/2).
- Normalization after a ReLU, or batch norm before it (Yang, Pennington, Rao, Sohl-Dickstein,
  Schoenholz, "A Mean Field Theory of Batch Normalization", ICLR 2019): the backward pass
  divides by the standard deviation of a ReLU output (or of a pre-activation whose inputs are
  ReLU outputs), where the forward pass keeps its RMS; for a Gaussian, std / RMS =
  sqrt((π − 1)/π), so the gradient grows by sqrt(π/(π − 1)) per layer towards the input.
- Dropout p after every hidden layer: each multiplies the second moment by 1/(1 − p), and the
  excess is noise; to first order (noise uncorrelated with the signal, propagated like it at
  c = 2) the noise-to-signal ratio after l such layers is (1 − p)^-l − 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

# Per hidden layer, towards the input: normalization after a ReLU (the lecture's placement),
# and batch norm before it (Yang et al. 2019).
NORMALIZED_RELU_GRADIENT_RATE = math.sqrt(math.pi / (math.pi - 1.0))


def relu_layer_log_moments(c: float, n_in: int, n_out: int) -> tuple[float, float]:
    """Mean and variance of log r, r = ‖relu(zW)‖² / ‖z‖², W [n_in, n_out] ~ N(0, c/n_in):
    r = (c/n_in) χ²_M, M ~ Binomial(n_out, 1/2) conditioned on M ≥ 1 (else r = 0, with
    probability 2^-n_out), and E log χ²_m = ψ(m/2) + log 2, Var log χ²_m = ψ'(m/2)."""
    m = torch.arange(1, n_out + 1, dtype=torch.float64)
    log_weights = (torch.lgamma(torch.tensor(n_out + 1.0, dtype=torch.float64))
                   - torch.lgamma(m + 1) - torch.lgamma(n_out - m + 1) - n_out * math.log(2))
    weights = torch.exp(log_weights)
    weights /= weights.sum()
    means = torch.special.digamma(m / 2) + math.log(2.0)
    variances = torch.special.polygamma(1, m / 2)
    mean = float((weights * means).sum())
    variance = float((weights * (variances + means**2)).sum()) - mean**2
    return math.log(c / n_in) + mean, variance


def relu_norm_prediction(c: float, widths: Sequence[tuple[int, int]],
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the inputs Z_1..Z_L of a ReLU net's Linear layers (``widths``: (n_in, n_out) of
    each): the mean-field ‖Z_l‖ / ‖Z_1‖ = sqrt(E‖Z_l‖² / ‖Z_1‖²) (infinite width), and the
    mean and standard deviation of log(‖Z_l‖ / ‖Z_1‖) at this width. Arrays of length L."""
    mean_field, means, variances = [0.0], [0.0], [0.0]
    for n_in, n_out in widths[:-1]:  # the last Linear layer's output is no Z
        mean, variance = relu_layer_log_moments(c, n_in, n_out)
        mean_field.append(mean_field[-1] + 0.5 * math.log(c * n_out / (2.0 * n_in)))
        means.append(means[-1] + 0.5 * mean)
        variances.append(variances[-1] + 0.25 * variance)
    return np.exp(mean_field), np.array(means), np.sqrt(np.array(variances))


def mean_field_decades(c: float, depth: float) -> float:
    """log10 of the mean-field change of the activation norm over ``depth`` − 1 hidden ReLU
    layers, (c/2)^((depth − 1)/2): how far from level an initial scale c drives the
    activations (the first layer's width change left out)."""
    return (depth - 1) / 2 * math.log10(c / 2)


def dropout_noise_to_signal(p: float, layers: int | np.ndarray) -> float | np.ndarray:
    """First-order noise-to-signal power after ``layers`` dropout layers of rate p."""
    return (1.0 - p) ** (-np.asarray(layers, dtype=float)) - 1.0
