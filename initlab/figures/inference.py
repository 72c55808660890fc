"""Inference on trained runs: everything the figures measure by loading a run's model from its
checkpoint (the numbers a run's statistics do not hold). Each function returns plain numbers
for a figure to save as JSON beside the run (``core.save_measure``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from initlab.checkpoint import State, read_checkpoint
from initlab.config import RunConfig, config_from_dict
from initlab.data import EVAL_CHUNK, MNISTTensors, load_mnist
from initlab.model import ActivityRecorder, StackedMLP
from initlab.runs import CHECKPOINT_FILE, CONFIG_FILE, Run


def load_model(run: Run) -> tuple[StackedMLP, RunConfig, State]:
    """The trained model of a run directory as a K = 1 stack (weights and buffers, such as
    batch norm's running averages), its config and its checkpoint state."""
    # run.config was read by the run format's reader: the YAML dialect `initlab run` writes.
    cfg = config_from_dict(run.config, str(run.path / CONFIG_FILE))
    state = read_checkpoint(run.path / CHECKPOINT_FILE)
    model = StackedMLP(cfg.model, 1)
    model.load_member_state(0, state["model"])
    return model, cfg, state


def load_data(cfg: RunConfig, data_root: str | None) -> MNISTTensors:
    """The images the run trained and was tested on, on the CPU."""
    root = data_root if data_root is not None else cfg.data.root
    d = cfg.data
    return load_mnist(root, d.scaling, "cpu", d.train_subset, d.test_subset, log=lambda m: None)


@torch.no_grad()
def zero_init_weights(run: Run, data_root: str | None) -> dict[str, Any]:
    """Largest |weight| after training, and what the output bias learned against the class
    frequencies of the training images."""
    model, cfg, _ = load_model(run)
    data = load_data(cfg, data_root)
    max_abs = max(float(model.weight(i).abs().max()) for i in range(model.depth))
    bias = model.bias(model.depth - 1)
    if bias is None:  # no output bias: nothing can learn
        raise ValueError(f"{run.path}: zero-init needs a net with biases")
    logits = bias[0, 0].clone()
    freqs = torch.bincount(data.train_y, minlength=logits.numel()).double()
    freqs /= freqs.sum()
    return {
        "max_abs_weight": max_abs,
        "output_bias_softmax": torch.softmax(logits.double(), dim=0).tolist(),
        "class_frequencies": freqs.tolist(),
        "label_entropy": float(-(freqs * freqs.log()).sum()),
    }


@torch.no_grad()
def weight_norms(run: Run) -> dict[str, float]:
    """Exact ‖W‖_F over all weight matrices (biases left out), at init and after training."""
    model, _, state = load_model(run)
    result = {}
    for key, vector in (("init", state["params_init"]), ("final", state["model"]["params"])):
        model.set_member_vector(model.flat, 0, vector)
        squares = sum(float(torch.sum(model.weight(i).double() ** 2))
                      for i in range(model.depth))
        result[f"weight_norm_{key}"] = math.sqrt(squares)
    return result


@torch.no_grad()
def batchnorm_logits(run: Run, data_root: str | None, image: int, batches: int,
                     seed: int) -> dict[str, Any]:
    """Logits of one fixed test image inside ``batches`` random batches of other test images
    (at a random place in each), in training mode (batch statistics) and in evaluation mode
    (running averages). Running averages are left as trained."""
    model, cfg, _ = load_model(run)
    data = load_data(cfg, data_root)
    batch = cfg.train.batch_size
    gen = torch.Generator().manual_seed(seed)
    others = torch.tensor([i for i in range(data.test_x.shape[0]) if i != image])
    logits: dict[str, list[list[float]]] = {"train": [], "eval": []}
    positions = []
    for _ in range(batches):
        chosen = others[torch.randperm(len(others), generator=gen)[: batch - 1]]
        pos = int(torch.randint(batch, (1,), generator=gen))
        idx = torch.cat([chosen[:pos], torch.tensor([image]), chosen[pos:]])
        x = data.test_x[idx].unsqueeze(0)
        positions.append(pos)
        for mode in ("train", "eval"):
            model.train(mode == "train")
            out = model(x, update_running=False, use_dropout=False)
            logits[mode].append(out[0, pos].double().tolist())
    return {"image": image, "label": int(data.test_y[image]), "batch_size": batch,
            "positions": positions, "train_logits": logits["train"],
            "eval_logits": logits["eval"]}


@torch.no_grad()
def error_rates(run: Run, data_root: str | None) -> dict[str, float]:
    """Error rates of the trained model in evaluation mode (no dropout; batch norm's running
    averages) on every training image the run trained on and on its test images."""
    model, cfg, _ = load_model(run)
    data = load_data(cfg, data_root)
    model.eval()
    result = {}
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x,
                                                                data.test_y)):
        wrong = 0
        for start in range(0, x.shape[0], EVAL_CHUNK):
            logits = model(x[start : start + EVAL_CHUNK].unsqueeze(0))
            wrong += int((logits[0].argmax(dim=-1) != y[start : start + EVAL_CHUNK]).sum())
        result[f"{split}_error"] = wrong / x.shape[0]
    result["train_images"] = int(data.train_x.shape[0])
    return result


@torch.no_grad()
def dropout_noise(run: Run, data_root: str | None, images: int, draws: int,
                  seed: int) -> dict[str, Any]:
    """How much dropout perturbs each layer's input Z_l, at init and after training: the
    signal S_l = mean over the first ``images`` training images of ‖Z_l‖² without dropout (the
    network as evaluated) and the noise N_l = mean over those images and ``draws`` draws of
    the masks of ‖Z_l(dropout) − Z_l‖². Batch norm (if any) uses the batch's statistics and
    leaves its running averages alone."""
    model, cfg, state = load_model(run)
    data = load_data(cfg, data_root)
    x = data.train_x[:images].unsqueeze(0)
    model.set_dropout([cfg.model.dropout], [seed])
    model.train()
    result: dict[str, Any] = {"dropout": cfg.model.dropout, "images": int(x.shape[1]),
                              "draws": draws}
    for which, vector in (("init", state["params_init"]), ("final", state["model"]["params"])):
        model.set_member_vector(model.flat, 0, vector)
        clean = layer_inputs(model, x, dropout=False)
        noise = [torch.zeros((), dtype=torch.float64) for _ in clean]
        for _ in range(draws):
            for total, z, z_clean in zip(noise, layer_inputs(model, x, dropout=True), clean,
                                         strict=True):
                total += (z - z_clean).double().square().sum(dim=-1).mean()
        result[f"{which}_signal"] = [float(z.double().square().sum(dim=-1).mean())
                                     for z in clean]
        result[f"{which}_noise"] = [float(total) / draws for total in noise]
    return result


def layer_inputs(model: StackedMLP, x: Tensor, dropout: bool) -> list[Tensor]:
    """Each Linear layer's input Z_1..Z_L [B, n] of member 0 in one forward pass."""
    recorder = ActivityRecorder()
    model(x, recorder, update_running=False, use_dropout=dropout)
    return [z[0].clone() for z in recorder.inputs]
