"""Memory a run needs, estimated from its config before anything starts, and memory there is.

The estimate counts what training allocates per member -- the flat parameter buffer and its
companions (gradient, initial weights, W - W(0), the weights before a captured step, the
optimizer's state and per-element hyperparameters), and the per-batch buffers of the
hand-written pass for the training batch, the probe batch and a test-set chunk -- plus the data
set, which a group's members share. It errs high: a refused run would not have fitted; a run
that fits has room.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from initlab.config import RunConfig
from initlab.data import EVAL_CHUNK, TRAIN_IMAGES
from initlab.model import IN_FEATURES, NUM_CLASSES, parameter_count
from initlab.norms import WEIGHT_NORMS

FLOAT = 4  # bytes of a float32
TEST_IMAGES = 10_000
USABLE = 0.8  # of the memory available now: the rest is for Python, torch and the system


def data_bytes(cfg: RunConfig) -> int:
    """The data set on the device: images as float32, labels as int64."""
    n_train = min(cfg.data.train_subset or TRAIN_IMAGES, TRAIN_IMAGES)
    n_test = min(cfg.data.test_subset or TEST_IMAGES, TEST_IMAGES)
    return (n_train + n_test) * (IN_FEATURES * FLOAT + 8)


def member_bytes(cfg: RunConfig) -> int:
    """What one member adds to its group."""
    m = cfg.model
    params = parameter_count(m)
    optimizer = {"sgd": 1, "adam": 4}[cfg.train.optimizer]  # momentum; moments + scratch
    flat = params * (FLOAT * (5 + 3 + optimizer) + 8)  # + per-element hyperparameters, ids
    # A weight norm's f(W) in each hand-written step's buffers (the training and the probe batch)
    flat += 0 if WEIGHT_NORMS[m.weight_norm].identity else 2 * params * FLOAT
    hidden = max(m.depth - 1, 0)

    def per_batch(b: int) -> int:
        # layer inputs (one block), norm inputs, dropout masks, unit inputs, logits
        return FLOAT * b * ((IN_FEATURES + 1) + 3 * hidden * (m.width + 1) + NUM_CLASSES)

    evaluation = FLOAT * min(EVAL_CHUNK, cfg.data.test_subset or TEST_IMAGES) * 3 * m.width
    return flat + per_batch(cfg.train.batch_size) + per_batch(cfg.log.probe_size) + evaluation


def group_bytes(cfg: RunConfig, members: int) -> int:
    return data_bytes(cfg) + members * member_bytes(cfg)


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a run on ``device`` now (None: unknown, nothing is refused)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def usable_bytes(device: torch.device, processes: int = 1) -> int | None:
    """What one of ``processes`` processes on this machine may plan to use."""
    free = available_bytes(device)
    return None if free is None else int(free * USABLE) // processes


def members_that_fit(cfg: RunConfig, limit: int | None) -> int | None:
    """How many members of this shape one stacked model may hold within ``limit`` bytes
    (None: no bound); 0 when not even one fits."""
    if limit is None:
        return None
    return max(0, (limit - data_bytes(cfg)) // member_bytes(cfg))


def gigabytes(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MB"


def too_big(configs: Sequence[RunConfig], limit: int | None) -> str | None:
    """Why a member of these cannot train within ``limit`` bytes, or None."""
    if limit is None:
        return None
    for cfg in configs:
        need = group_bytes(cfg, 1)
        if need > limit:
            return (f"{cfg.name}: one member needs about {gigabytes(need)} (model, batches and "
                    f"data), more than the {gigabytes(limit)} free to use here; make the "
                    f"network or its batches smaller")
    return None
