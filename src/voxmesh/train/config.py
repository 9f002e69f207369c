"""Training configuration: one YAML file a method and dataset.

```yaml
method: faceformer            # a registered method (voxmesh.models.registry)
encoder: mel                  # a speech encoder spec: a name / Hugging Face id / folder, or a dict
model: {hidden: 64}           # the method's own section, handed to its constructor as is
data:  {preset: generic, fps: 30, window_seconds: 3.0, batch_size: 4}
train: {epochs: 50, lr: 1.0e-4, weight_decay: 0.0, grad_clip: 1.0, schedule: cosine,
        warmup_steps: 100, mixed_precision: "no", seed: 0, num_workers: 0, val_every: 1,
        keep_last: 1}               # keep_last k > 1: also RUN/<stage>/epoch-NNNN of the last k epochs
stages:                       # staged methods only: overrides of train keys a stage
  vqvae: {epochs: 20}
  predictor: {epochs: 40, lr: 5.0e-5}
```

Every problem is reported as one :class:`VoxmeshError` sentence naming the key and file.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from voxmesh.errors import VoxmeshError

SCHEDULES = ("cosine", "constant")
PRECISIONS = ("no", "bf16", "fp16")


@dataclass(frozen=True)
class DataSettings:
    """How the dataset is read and cut into batches."""

    preset: str = "generic"
    fps: float | None = None  # None: the preset's rate
    window_seconds: float = 3.0  # random training windows; validation uses whole sequences
    batch_size: int = 4


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one stage (``stages:`` overrides any of them)."""

    epochs: int | None = None
    max_steps: int | None = None  # stops at whichever of epochs / max_steps comes first
    lr: float = 1.0e-4
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # max gradient norm; null turns clipping off
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    mixed_precision: str = "no"
    seed: int = 0
    num_workers: int = 0
    val_every: int = 1  # epochs between validations (the last epoch is always validated)
    log_every: int = 10  # steps between train-loss rows in log.jsonl
    val_max_sequences: int | None = None  # cap on validation sequences (None: the whole split)
    # Epoch checkpoints kept: 1 keeps RUN/<stage>/last alone; k > 1 also keeps
    # RUN/<stage>/epoch-NNNN (weights and trainer state) of the last k epochs.
    keep_last: int = 1


@dataclass
class TrainConfig:
    """A parsed, checked training configuration."""

    method: str
    encoder: dict[str, Any] | str
    model: dict[str, Any] = field(default_factory=dict)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<config>"

    def stage_names(self) -> tuple[str, ...]:
        """The method's stages in training order."""
        from voxmesh.models.registry import model_class

        return tuple(model_class(self.method).stages)

    def stage_settings(self, stage: str) -> TrainSettings:
        """``train`` with the stage's overrides applied."""
        overrides = self.stages.get(stage, {})
        settings = replace(self.train, **{k: _yaml_float(v) if k in _FLOAT_KEYS else v for k, v in overrides.items()})
        _check_train(settings, self.source, f"stages.{stage}" if overrides else "train")
        return settings

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML/JSON (the ``source`` is left out)."""
        return {
            "method": self.method,
            "encoder": copy.deepcopy(self.encoder),
            "model": copy.deepcopy(self.model),
            "data": asdict(self.data),
            "train": asdict(self.train),
            "stages": copy.deepcopy(self.stages),
        }


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, line: int):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key that a mapping sets twice (plain YAML keeps
    the last one silently, so a typo'd second block would quietly win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


# The configs shipped in the package (configs/ in the repository links here).
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def packaged_config(path: str | Path) -> Path:
    """``path`` if it is a file, else the shipped config of that name (``faceformer_synthetic``
    or ``configs/faceformer_synthetic.yaml`` work from any folder after ``pip install``)."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = PACKAGED_CONFIGS / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))
    raise VoxmeshError(f"Config file {path} does not exist; check the path, or name a shipped config ({names}).")


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a training YAML and apply ``overrides`` such as ``"train.lr=3e-4"`` or
    ``"stages.vqvae.epochs=2"`` (values are parsed as YAML)."""
    path = packaged_config(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except _DuplicateKey as exc:
        raise VoxmeshError(f"Config file {path} sets '{exc.key}' twice (line {exc.line}); keep one of them.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise VoxmeshError(f"Config file {path} is not valid YAML{where}; fix its syntax.") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise VoxmeshError(f"Config file {path} holds a {type(raw).__name__}; write a mapping with method, encoder, model, data and train.")
    for override in overrides or []:
        apply_override(raw, override, str(path))
    return config_from_dict(raw, source=str(path))


def apply_override(raw: dict[str, Any], override: str, source: str = "<config>") -> None:
    """Set ``a.b.c=value`` in a nested dict in place (value parsed as YAML)."""
    if "=" not in override:
        raise VoxmeshError(f"Override '{override}' for {source} has no '='; write it as key.subkey=value.")
    dotted, text = override.split("=", 1)
    keys = [k.strip() for k in dotted.strip().split(".")]
    if not all(keys):
        raise VoxmeshError(f"Override '{override}' for {source} has an empty key; write it as key.subkey=value.")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text  # not YAML: take it as a plain string
    node = raw
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise VoxmeshError(
                f"Override '{override}' for {source}: '{'.'.join(keys[:i + 1])}' is not a section; override it whole."
            )
        node = child
    node[keys[-1]] = value


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> TrainConfig:
    """Check a config mapping (as read from YAML) and build a :class:`TrainConfig`."""
    from voxmesh.models.registry import available_methods

    known_top = {"method", "encoder", "model", "data", "train", "stages"}
    for key in raw:
        if key not in known_top:
            raise VoxmeshError(f"Config {source} has an unknown key '{key}'; use only {', '.join(sorted(known_top))}.")
    for key in ("method", "encoder"):
        if raw.get(key) in (None, "", {}):
            raise VoxmeshError(f"Config {source} has no '{key}'; add it at the top level.")
    method = raw["method"]
    if not isinstance(method, str):
        raise VoxmeshError(f"Config {source}: 'method' must be a method name, not {type(method).__name__}.")
    methods = available_methods()
    if method.lower() not in methods:
        raise VoxmeshError(
            f"Config {source} names unknown method '{method}'; use one of {', '.join(methods) or 'none (no method is installed)'}."
        )
    encoder = raw["encoder"]
    if not isinstance(encoder, (str, dict)):
        raise VoxmeshError(f"Config {source}: 'encoder' must be a name or a mapping, not {type(encoder).__name__}.")
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise VoxmeshError(f"Config {source}: 'model' must be a mapping of the method's settings.")

    data = _build_section(DataSettings, raw.get("data"), "data", source)
    _check_data(data, source)
    train = _build_section(TrainSettings, raw.get("train"), "train", source)
    if train.epochs is None and train.max_steps is None:
        raise VoxmeshError(f"Config {source} has neither 'train.epochs' nor 'train.max_steps'; set one of them.")
    _check_train(train, source, "train")

    from voxmesh.models.registry import model_class

    stage_names = tuple(model_class(method).stages)
    stages_raw = raw.get("stages") or {}
    if not isinstance(stages_raw, dict):
        raise VoxmeshError(f"Config {source}: 'stages' must map stage names to train overrides.")
    stages: dict[str, dict[str, Any]] = {}
    train_keys = {f.name for f in fields(TrainSettings)}
    for name, overrides in stages_raw.items():
        if name not in stage_names:
            raise VoxmeshError(
                f"Config {source} has settings for stage '{name}' but {method} has stages {', '.join(stage_names)}; rename it."
            )
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise VoxmeshError(f"Config {source}: 'stages.{name}' must be a mapping of train keys.")
        for key in overrides:
            if key not in train_keys:
                raise VoxmeshError(
                    f"Config {source} has an unknown key 'stages.{name}.{key}'; use train keys ({', '.join(sorted(train_keys))})."
                )
        stages[name] = dict(overrides)
    config = TrainConfig(method=method.lower(), encoder=encoder, model=dict(model), data=data, train=train,
                         stages=stages, source=source)
    for name in stage_names:  # check each stage's merged settings now, not hours into training
        config.stage_settings(name)
    return config


def _build_section(cls, raw: Any, section: str, source: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise VoxmeshError(f"Config {source}: '{section}' must be a mapping.")
    known = {f.name for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise VoxmeshError(f"Config {source} has an unknown key '{section}.{key}'; use one of {', '.join(sorted(known))}.")
    return cls(**{k: _yaml_float(v) if k in _FLOAT_KEYS else v for k, v in raw.items()})


# PyYAML reads 1e-4 (no dot) as a string; take such strings as the numbers people meant.
_FLOAT_KEYS = {"lr", "weight_decay", "grad_clip", "min_lr_ratio", "window_seconds", "fps"}


def _yaml_float(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(source: str, key: str, value: Any, expected: str) -> VoxmeshError:
    return VoxmeshError(f"Config {source}: '{key}' is {value!r}; it must be {expected}.")


def _check_data(data: DataSettings, source: str) -> None:
    from voxmesh.data.presets import get_preset

    if not isinstance(data.preset, str):
        raise _bad(source, "data.preset", data.preset, "a preset name")
    try:
        get_preset(data.preset)
    except VoxmeshError as exc:
        raise VoxmeshError(f"Config {source}: 'data.preset' {data.preset!r} is unknown; {str(exc).split('; ', 1)[-1]}") from None
    if data.fps is not None and (not _is_number(data.fps) or data.fps <= 0):
        raise _bad(source, "data.fps", data.fps, "a positive frame rate or null")
    if not _is_number(data.window_seconds) or data.window_seconds <= 0:
        raise _bad(source, "data.window_seconds", data.window_seconds, "a positive number of seconds")
    if not _is_int(data.batch_size) or data.batch_size < 1:
        raise _bad(source, "data.batch_size", data.batch_size, "a positive integer")


def _check_train(t: TrainSettings, source: str, section: str) -> None:
    def key(name: str) -> str:
        return f"{section}.{name}"

    for name in ("epochs", "max_steps"):
        value = getattr(t, name)
        if value is not None and (not _is_int(value) or value < 1):
            raise _bad(source, key(name), value, "a positive integer or null")
    if t.epochs is None and t.max_steps is None:
        raise VoxmeshError(f"Config {source}: '{section}' sets neither epochs nor max_steps; set one of them.")
    if not _is_number(t.lr) or t.lr <= 0:
        raise _bad(source, key("lr"), t.lr, "a positive number")
    if not _is_number(t.weight_decay) or t.weight_decay < 0:
        raise _bad(source, key("weight_decay"), t.weight_decay, "a number >= 0")
    if t.grad_clip is not None and (not _is_number(t.grad_clip) or t.grad_clip <= 0):
        raise _bad(source, key("grad_clip"), t.grad_clip, "a positive number or null")
    if t.schedule not in SCHEDULES:
        raise _bad(source, key("schedule"), t.schedule, f"one of {', '.join(SCHEDULES)}")
    if not _is_int(t.warmup_steps) or t.warmup_steps < 0:
        raise _bad(source, key("warmup_steps"), t.warmup_steps, "an integer >= 0")
    if not _is_number(t.min_lr_ratio) or not 0 <= t.min_lr_ratio <= 1:
        raise _bad(source, key("min_lr_ratio"), t.min_lr_ratio, "a number between 0 and 1")
    # YAML reads a bare `no` as False: accept it as "no".
    precision = "no" if t.mixed_precision is False else t.mixed_precision
    if precision not in PRECISIONS:
        raise _bad(source, key("mixed_precision"), t.mixed_precision, "one of \"no\", bf16, fp16")
    if not _is_int(t.seed):
        raise _bad(source, key("seed"), t.seed, "an integer")
    if not _is_int(t.num_workers) or t.num_workers < 0:
        raise _bad(source, key("num_workers"), t.num_workers, "an integer >= 0")
    if not _is_int(t.val_every) or t.val_every < 1:
        raise _bad(source, key("val_every"), t.val_every, "a positive integer")
    if not _is_int(t.log_every) or t.log_every < 1:
        raise _bad(source, key("log_every"), t.log_every, "a positive integer")
    if t.val_max_sequences is not None and (not _is_int(t.val_max_sequences) or t.val_max_sequences < 1):
        raise _bad(source, key("val_max_sequences"), t.val_max_sequences, "a positive integer or null")
    if not _is_int(t.keep_last) or t.keep_last < 1:
        raise _bad(source, key("keep_last"), t.keep_last, "a positive integer (epoch checkpoints to keep)")


def precision_of(settings: TrainSettings) -> str:
    """The mixed-precision mode asked for, with YAML's ``no`` -> False undone."""
    return "no" if settings.mixed_precision is False else str(settings.mixed_precision)


__all__ = ["DataSettings", "TrainConfig", "TrainSettings", "apply_override", "config_from_dict", "load_config",
           "precision_of"]
