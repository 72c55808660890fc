"""The config schema: every key, its default, its scope (whether the members of a stacked
model share it) and what it does, as dataclasses; its choices from ``initlab.choices``.

A YAML file has the sections ``model``, ``init``, ``data``, ``train``, ``log`` and an optional
``sweep`` (dotted key -> list of values) plus a top-level ``name``. The other modules of this
package read the schema through ``SECTIONS``, ``FIELDS`` and ``DEFAULTS``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, get_args, get_type_hints

from initlab.choices import (
    ACTIVATION_CHOICES,
    INIT_CHOICES,
    NORM_CHOICES,
    POSITIONS,
    WEIGHT_NORM_CHOICES,
)


def shared(default: Any, doc: str) -> Any:
    """A field every member of a group shares (members that differ in it train apart), and
    what it does (the README's config reference shows ``doc``)."""
    return field(default=default, metadata={"scope": "group", "doc": doc})


def member(default: Any, doc: str) -> Any:
    """A field each member of a group may set for itself (the stacked model trains it)."""
    return field(default=default, metadata={"scope": "member", "doc": doc})


@dataclass
class ModelConfig:
    depth: int = shared(50, "number of Linear layers L")
    width: int = shared(100, "units in each hidden layer")
    activation: str = shared("relu", "the nonlinearity after each hidden Linear layer")
    norm: str = shared("none", "normalization of each hidden layer (placed by "
                               "`norm_position`)")
    norm_position: str = shared("post", "post: after the activation, the lecture's placement, "
                                        "norm(act(z W + b)); pre: before it, act(norm(z W + b))")
    weight_norm: str = shared("none", "what each hidden Linear layer multiplies by: W itself "
                                      "(none), or W standardized per output unit over its "
                                      "fan-in (standardize, Qiao et al. 2019)")
    groups: int = shared(10, "groups of features for `norm: group`; must divide `width`")
    dropout: float = member(0.0, "dropout rate after each hidden layer, in [0, 1)")
    bias: bool = shared(True, "Linear layers have biases (they start at 0)")


@dataclass
class InitConfig:
    scheme: str = member("normal", "how each W_i is drawn: normal N(0, c/n), uniform with the "
                                   "same variance, zeros, or kaiming (normal with c = 2)")
    c: float = member(2.0, "the scale: Var(W_i) = c / n_in, n_in the layer's fan-in; > 0")


@dataclass
class DataConfig:
    root: str | None = shared(None, "where MNIST is (null: --data-root, else $INITLAB_DATA, "
                                    "else ~/.cache/initlab)")
    scaling: str = shared("unit", "pixels in [0, 1] (unit), or standardized with MNIST's "
                                  "mean 0.1307 and std 0.3081 (standard)")
    train_subset: int | None = shared(None, "train on the first N training images only")
    test_subset: int | None = shared(None, "evaluate on the first N test images only")


@dataclass
class TrainConfig:
    optimizer: str = shared("sgd", "plain SGD (with `momentum`) or Adam")
    lr: float = member(0.01, "learning rate, > 0")
    momentum: float = member(0.0, "SGD momentum, in [0, 1)")
    weight_decay: float = member(0.0, "L2 weight decay, >= 0")
    batch_size: int = shared(128, "examples per update (with several processes: the global "
                                  "batch)")
    epochs: int = shared(12, "passes over the training set (0: measure the initial network "
                             "only)")
    max_steps: int | None = shared(None, "stop after this many updates in all")
    target_test_error: float | None = member(None, "stop a member at the end of the first "
                                                   "epoch whose test error is <= this (e.g. "
                                                   "0.05); null: train all epochs")
    seed: int = member(0, "seeds the weights, the data order and dropout")
    device: str = shared("auto", "where to train: auto takes a GPU when there is one")
    cuda_graph: str = shared("auto", "replay the training step from CUDA graphs (auto: on a "
                                     "GPU, in one process)")
    backward: str = shared("auto", "auto: the hand-written backward where the net has one; "
                                   "autograd: always autograd")
    checkpoint: str = shared("keep", "keep: the newest checkpoint and the one before it (a "
                                     "sweep killed mid-write resumes); last: only the newest "
                                     "once every member has it; none: no checkpoint, no resume")


@dataclass
class LogConfig:
    every: int = shared(100, "updates between 'train' records; 0: only init, epoch ends and "
                             "final")
    probe_size: int = shared(512, "fixed training images the init, epoch and final records "
                                  "measure")
    checkpoint_every: int = shared(1000, "updates between checkpoints; 0: only at epoch ends")


@dataclass
class RunConfig:
    name: str = "run"  # each member's own (a sweep names its members)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


NAME_DOC = ("the run's directory under --out (default: the config file's name); a sweep's "
            "members are named by their values, e.g. `c=1.7_lr=0.01`")


@dataclass(frozen=True)
class Field:
    kind: type  # int, float, bool or str
    optional: bool  # accepts null
    choices: tuple[str, ...] = ()


CHOICES: dict[str, tuple[str, ...]] = {
    "model.activation": tuple(ACTIVATION_CHOICES),
    "model.norm": tuple(NORM_CHOICES),
    "model.norm_position": POSITIONS,
    "model.weight_norm": tuple(WEIGHT_NORM_CHOICES),
    "init.scheme": tuple(INIT_CHOICES),
    "data.scaling": ("unit", "standard"),
    "train.optimizer": ("sgd", "adam"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.cuda_graph": ("auto", "on", "off"),
    "train.backward": ("auto", "autograd"),
    "train.checkpoint": ("keep", "last", "none"),
}


def _field_table() -> tuple[dict[str, type], dict[str, Field]]:
    """Sections and fields, read from the dataclasses above so that they stay the one source."""
    hints = get_type_hints(RunConfig)
    sections = {f.name: hints[f.name] for f in fields(RunConfig)}
    table = {"name": Field(sections.pop("name"), optional=False)}
    for section, cls in sections.items():
        for name, hint in get_type_hints(cls).items():
            args = [a for a in get_args(hint) if a is not type(None)]
            key = f"{section}.{name}"
            kind = args[0] if args else hint
            table[key] = Field(kind, optional=bool(args), choices=CHOICES.get(key, ()))
    return sections, table


SECTIONS, FIELDS = _field_table()


def section_keys(section: str) -> list[str]:
    return [key for key in FIELDS if key.startswith(section + ".")]


def flat_values(cfg: RunConfig) -> dict[str, object]:
    """``dotted key -> value`` of every field of a config."""
    flat: dict[str, object] = {"name": cfg.name}
    for section in SECTIONS:
        for name, value in asdict(getattr(cfg, section)).items():
            flat[f"{section}.{name}"] = value
    return flat


DEFAULTS = flat_values(RunConfig())


def config_to_dict(cfg: RunConfig) -> dict:
    """Nested plain dict: name, model, init, data, train, log."""
    return asdict(cfg)


def _scoped_keys(scope: str) -> tuple[str, ...]:
    return tuple(f"{section}.{f.name}" for section, cls in SECTIONS.items()
                 for f in fields(cls) if f.metadata.get("scope") == scope)


GROUP_KEYS = _scoped_keys("group")  # every member of a stacked model shares these
MEMBER_KEYS = _scoped_keys("member")  # each member sets these for itself
