"""Checkpoints: a folder that holds everything needed to rebuild a model.

```
CHECKPOINT/
  model.safetensors      the weights (a frozen speech encoder's are left out: its spec rebuilds it)
  model.json             method, method config, stage, step, topology hash, vertex and face
                         counts, encoder spec and name, speakers, emotions, fps, voxmesh
                         version, format_version, creation time
  topology.safetensors   faces int64 [F, 3], neutral float32 [V, 3], regions and vertex pairs
  trainer_state.pt       only in RUN/<stage>/last (and epoch-NNNN): optimiser, scheduler,
                         counters, RNG states
```

model.json records the sha256 of model.safetensors and topology.safetensors (``sha256``);
loading verifies them (checkpoints written before the checksums load unverified).

A folder is written under a temporary name and renamed into place, so a crash leaves the
previous checkpoint or none, never half of one; a crash between moving the previous one
aside and moving the new one in is undone by :func:`clean_checkpoint_leftovers`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxmesh import __version__
from voxmesh.errors import VoxmeshError
from voxmesh.files import OLD_FOLDER, TEMP_NAME, atomic_folder
from voxmesh.mesh.template import Template, topology_hash

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
TOPOLOGY_FILE = "topology.safetensors"
TRAINER_STATE_FILE = "trainer_state.pt"
# Weights under this prefix belong to the speech encoder; a frozen encoder's are rebuilt
# from its spec (pretrained weights), so saving them would only copy hundreds of MB.
ENCODER_PREFIX = "audio_encoder."
# model.json's key for {file name: sha256 hex digest} of the checked files.
CHECKSUM_KEY = "sha256"
CHECKSUM_FILES = (WEIGHTS_FILE, TOPOLOGY_FILE)
EPOCH_PREFIX = "epoch-"


# ---- building a model from its context ----------------------------------------------

def build_model(method: str, config: dict[str, Any], *, num_vertices: int, speakers: list[str], fps: float,
                encoder: dict | str, faces: np.ndarray | None = None, neutral: np.ndarray | None = None,
                emotions: list[str] | None = None, regions: dict[str, np.ndarray] | None = None):
    """A registered method's model from its constructor context; the one place where
    the trainer and :func:`load_checkpoint` build models, so both build the same one.

    faces: int64 ``[F, 3]`` (an empty array means none); neutral: float32 ``[V, 3]``."""
    from voxmesh.models.registry import model_class

    cls = model_class(method)
    faces_arg = None if faces is None or np.asarray(faces).size == 0 else np.asarray(faces, dtype=np.int64)
    neutral_arg = None if neutral is None else np.asarray(neutral, dtype=np.float32)
    return cls(dict(config), num_vertices=int(num_vertices), speakers=list(speakers), fps=float(fps),
               encoder=encoder, faces=faces_arg, neutral=neutral_arg, emotions=list(emotions or []) or None,
               regions=regions)


def encoder_spec_of(model: torch.nn.Module) -> dict | str | None:
    encoder = getattr(model, "audio_encoder", None)
    spec = getattr(encoder, "spec", None)
    return spec() if callable(spec) else None


def encoder_is_trainable(model: torch.nn.Module) -> bool:
    return bool(getattr(getattr(model, "audio_encoder", None), "trainable", True))


# ---- saving ----------------------------------------------------------------------------

def clean_checkpoint_leftovers(parent: str | os.PathLike) -> list[str]:
    """Undo what a crash (SIGKILL, power loss) inside :func:`atomic_folder` left in
    ``parent``: a folder moved aside whose replacement never arrived is moved back, and
    temporary and moved-aside folders (and atomic_path's temporary files) are deleted.
    Call it where nothing else writes to ``parent`` at the time (the trainer does, before
    it resumes). Returns what it did, a line an action."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    done = []
    entries = sorted(parent.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)  # newest first
    for path in entries:
        match = OLD_FOLDER.match(path.name)
        if match and path.is_dir():
            target = parent / match["name"]
            if not target.exists():
                os.rename(path, target)
                done.append(f"restored {target}")
            else:
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path}")
    for path in entries:
        if TEMP_NAME.match(path.name) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path}")
        elif TEMP_NAME.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            done.append(f"removed {path}")
    return done


# Built-in model names and their folders inside the package.
BUILTIN_MODELS = {"default": "weights/default"}


def builtin_model_path(name: str) -> Path | None:
    relative = BUILTIN_MODELS.get(name)
    if relative is None:
        return None
    return Path(__file__).resolve().parents[1] / relative


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """The checkpoint folder a user means: a built-in name, a training run folder (its
    ``model``) or a checkpoint folder; anything else is one sentence."""
    path = builtin_model_path(str(name_or_path))
    if path is not None:
        if not (path / "model.json").is_file():
            raise VoxmeshError(
                f"The built-in model '{name_or_path}' is not in this installation ({path}); "
                "pass a trained checkpoint folder with --model RUN."
            )
        return path
    path = Path(name_or_path)
    if (path / "model" / "model.json").is_file():  # a training run folder
        return path / "model"
    if (path / "model.json").is_file():
        return path
    if path.is_dir():
        raise VoxmeshError(f"Folder {path} holds no trained model (no model.json in it or in {path / 'model'}); "
                           "finish `voxmesh train` first, or point at a checkpoint folder.")
    known = ", ".join(sorted(BUILTIN_MODELS))
    raise VoxmeshError(f"Model {name_or_path} is neither a folder nor a built-in name ({known}); check the path, or "
                       "train one with `voxmesh train`.")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    return {name: file_sha256(folder / name) for name in CHECKSUM_FILES if (folder / name).is_file()}


def verify_checksum(folder: str | os.PathLike, name: str, meta: dict[str, Any] | None = None) -> None:
    """Refuse ``folder/name`` when its sha256 differs from the one model.json records;
    a checkpoint without recorded checksums (older voxmesh) passes unverified."""
    folder = Path(folder)
    if meta is None:
        meta = read_checkpoint_info(folder)
    recorded = meta.get(CHECKSUM_KEY)
    if recorded is None:
        return
    if not isinstance(recorded, dict) or not isinstance(recorded.get(name, ""), str):
        raise VoxmeshError(f"Checkpoint file {folder / META_FILE} is corrupt ('{CHECKSUM_KEY}' is not a map of file "
                           "names to digests); copy the checkpoint again or retrain.")
    expected = recorded.get(name)
    if expected is None:
        return
    path = folder / name
    actual = file_sha256(path)
    if actual != expected:
        raise VoxmeshError(
            f"Checkpoint file {path} is corrupt or was changed after saving (its sha256 {actual[:16]} differs from "
            f"{expected[:16]} recorded in {META_FILE}); copy the checkpoint again or retrain."
        )


def _state_for_saving(model: torch.nn.Module, skip_prefix: str | None) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors; tensors that share memory (tied weights) are cloned,
    since safetensors refuses shared storage."""
    state: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in model.state_dict().items():
        if skip_prefix and name.startswith(skip_prefix):
            continue
        t = tensor.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        if key in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(key)
        state[name] = t
    return state


def save_checkpoint(model: torch.nn.Module, folder: str | Path, *, template: Template | None = None,
                    stage: str = "main", step: int = 0, trainer_state: dict[str, Any] | None = None,
                    **extra: Any) -> Path:
    """Write ``model`` (an unwrapped :class:`TalkingFaceModel`) to ``folder`` atomically.

    template: the training topology (faces, neutral, regions), needed to rebuild graph
    models and to check topologies on load; trainer_state: written as trainer_state.pt
    (resume only); extra: more JSON-ready fields for model.json (e.g. ``val_metrics``)."""
    from safetensors.torch import save_file

    num_vertices = int(getattr(model, "num_vertices"))
    faces = np.zeros((0, 3), np.int64) if template is None else np.asarray(template.faces, np.int64)
    trainable_encoder = encoder_is_trainable(model)
    spec = encoder_spec_of(model)
    encoder = getattr(model, "audio_encoder", None)
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "voxmesh_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": getattr(model, "method", "") or type(model).__name__.lower(),
        "stage": stage,
        "step": int(step),
        # The resolved settings where the model keeps them, so a later change of a
        # default cannot rebuild a different network from an old checkpoint.
        "config": _resolved_config(model),
        "num_vertices": num_vertices,
        "faces_shape": list(faces.shape),
        "topology_hash": topology_hash(faces, num_vertices),
        "encoder": {"spec": spec, "name": getattr(encoder, "name", None), "trainable": trainable_encoder},
        "encoder_weights_saved": trainable_encoder,
        "speakers": list(getattr(model, "speakers", [])),
        "emotions": list(getattr(model, "emotions", [])),
        "fps": float(getattr(model, "fps")),
    }
    meta.update(extra)
    state = _state_for_saving(model, None if trainable_encoder else ENCODER_PREFIX)
    with atomic_folder(folder) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "method": meta["method"]})
        meta["weights_bytes"] = (tmp / WEIGHTS_FILE).stat().st_size
        topo: dict[str, torch.Tensor] = {"faces": torch.from_numpy(faces.copy())}
        if template is not None:
            topo["neutral"] = torch.from_numpy(np.asarray(template.vertices, np.float32).copy())
            for name, idx in template.regions.items():
                topo[f"region/{name}"] = torch.from_numpy(np.asarray(idx, np.int64).copy())
            for name, pairs in template.vertex_pairs.items():
                topo[f"pairs/{name}"] = torch.from_numpy(np.asarray(pairs, np.int64).copy())
        save_file(topo, str(tmp / TOPOLOGY_FILE))
        meta[CHECKSUM_KEY] = _checksums(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE_FILE)
    return Path(folder)


def _resolved_config(model: torch.nn.Module) -> dict[str, Any]:
    settings = getattr(model, "settings", None)
    return dict(settings) if isinstance(settings, dict) else dict(getattr(model, "config", {}))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def export_checkpoint(folder: str | Path, out: str | Path, *, half: bool = True,
                      min_half_values: int = 4096) -> dict[str, Any]:
    """Copy a checkpoint folder for shipping: without trainer state, and with ``half``
    its large floating tensors (``min_half_values`` values or more: the weight matrices
    and the codebook) stored as float16, which halves the file. Small tensors (biases,
    norms, running statistics and counters, where float16's range or precision could
    bite) stay float32. Loading casts everything back to the model's float32. Returns
    the written sizes."""
    import shutil

    from safetensors.torch import save_file

    folder, out = Path(folder), Path(out)
    meta = read_checkpoint_info(folder)
    state = _read_safetensors(folder / WEIGHTS_FILE, "weights")
    for name in CHECKSUM_FILES:  # never ship a damaged copy
        verify_checksum(folder, name, meta)
    halved = 0
    if half:
        for name, tensor in state.items():
            if tensor.is_floating_point() and tensor.dtype == torch.float32 and tensor.numel() >= min_half_values:
                state[name] = tensor.to(torch.float16)
                halved += tensor.numel()
    with atomic_folder(out) as tmp:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "method": meta["method"]})
        shutil.copyfile(folder / TOPOLOGY_FILE, tmp / TOPOLOGY_FILE)
        meta = {**meta, "weights_bytes": (tmp / WEIGHTS_FILE).stat().st_size,
                # the run's own name, not a path of the machine it was built on
                "exported": {"from": "/".join(folder.resolve().parts[-2:]), "float16_values": halved,
                             "float16_rule": f"float32 tensors of {min_half_values} values or more" if half else None}}
        meta.pop("trainer_state", None)
        meta[CHECKSUM_KEY] = _checksums(tmp)  # of the files written here, not the source's
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
    total = sum(f.stat().st_size for f in out.iterdir())
    return {"folder": str(out), "weights_bytes": meta["weights_bytes"], "total_bytes": total, "float16_values": halved}


# ---- loading ---------------------------------------------------------------------------

def read_checkpoint_info(folder: str | Path) -> dict[str, Any]:
    """model.json of a checkpoint folder, checked for a readable, supported format."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not folder.is_dir():
        raise VoxmeshError(f"Checkpoint folder {folder} does not exist; train a model first or check the path.")
    if not meta_path.is_file():
        raise VoxmeshError(f"Checkpoint {folder} has no {META_FILE}; point at a folder written by voxmesh train.")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise VoxmeshError(f"Checkpoint file {meta_path} is corrupt (not valid JSON); copy the checkpoint again or retrain.") from None
    if not isinstance(meta, dict):
        raise VoxmeshError(f"Checkpoint file {meta_path} is corrupt (not a JSON object); copy the checkpoint again or retrain.")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise VoxmeshError(f"Checkpoint file {meta_path} has no format_version; point at a folder written by voxmesh train.")
    if version > FORMAT_VERSION:
        raise VoxmeshError(
            f"Checkpoint {folder} has format version {version} (voxmesh {meta.get('voxmesh_version', '?')}) but this "
            f"voxmesh {__version__} reads up to {FORMAT_VERSION}; upgrade voxmesh to load it."
        )
    for key in ("method", "config", "num_vertices", "topology_hash", "encoder", "speakers", "fps"):
        if key not in meta:
            raise VoxmeshError(f"Checkpoint file {meta_path} lacks '{key}'; it is corrupt, copy it again or retrain.")
    fps = meta["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise VoxmeshError(f"Checkpoint file {meta_path} gives fps {fps!r}, not a positive frame rate; write the rate "
                           "the model was trained at (such as 30) there.")
    return meta


def _read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise VoxmeshError(f"Checkpoint {path.parent} has no {path.name}; copy the whole folder or retrain.")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise VoxmeshError(
            f"Checkpoint file {path} is truncated or corrupt ({type(exc).__name__}); copy the {what} again or retrain."
        ) from None


def load_checkpoint_template(folder: str | Path) -> Template:
    """The topology a checkpoint was trained on: neutral ``[V, 3]``, faces ``[F, 3]``,
    regions and vertex pairs (the neutral face is the first training subject's)."""
    folder = Path(folder)
    meta = read_checkpoint_info(folder)
    topo = _read_safetensors(folder / TOPOLOGY_FILE, "topology")
    verify_checksum(folder, TOPOLOGY_FILE, meta)
    faces = topo["faces"].numpy()
    neutral = topo["neutral"].numpy() if "neutral" in topo else np.zeros((meta["num_vertices"], 3), np.float32)
    # Checkpoints saved before checksums: the topology file must still be the one model.json describes.
    if len(neutral) != int(meta["num_vertices"]) or topology_hash(faces, len(neutral)) != meta["topology_hash"]:
        raise VoxmeshError(
            f"Checkpoint file {folder / TOPOLOGY_FILE} does not match {folder / META_FILE} ({len(neutral)} vertices "
            f"and {len(faces)} faces, another topology than the model's {meta['num_vertices']} vertices); copy the "
            "whole checkpoint folder again."
        )
    regions = {k.split("/", 1)[1]: v.numpy() for k, v in topo.items() if k.startswith("region/")}
    pairs = {k.split("/", 1)[1]: v.numpy() for k, v in topo.items() if k.startswith("pairs/")}
    return Template(neutral, faces, regions, pairs)


def _describe_topology(expected: str | Template) -> tuple[str, str]:
    if isinstance(expected, Template):
        return expected.topology_hash, f"{expected.num_vertices} vertices and {len(expected.faces)} faces"
    return str(expected), f"topology hash {expected}"


def load_checkpoint(folder: str | Path, expected_topology_hash: str | Template | None = None,
                    device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from a checkpoint folder through the registry and load its weights.

    expected_topology_hash: the data's topology (its :func:`topology_hash`, or a
    :class:`Template`); a checkpoint of another topology is refused. The model comes
    back in eval mode on ``device``, with ``model.checkpoint_info`` = its model.json."""
    folder = Path(folder)
    meta = read_checkpoint_info(folder)
    meta_path = folder / META_FILE
    if expected_topology_hash is not None:
        wanted, described = _describe_topology(expected_topology_hash)
        if wanted != meta["topology_hash"]:
            raise VoxmeshError(
                f"Checkpoint {folder} was trained on a mesh of {meta['num_vertices']} vertices and "
                f"{(meta.get('faces_shape') or [0])[0]} faces (topology {meta['topology_hash']}) but the data has "
                f"{described}; use a checkpoint trained on this topology or retrain on this data."
            )
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise VoxmeshError(f"Checkpoint {folder} has no {WEIGHTS_FILE}; copy the whole folder or retrain.")
    expected_bytes = meta.get("weights_bytes")
    if isinstance(expected_bytes, int) and weights_path.stat().st_size != expected_bytes:
        raise VoxmeshError(
            f"Checkpoint file {weights_path} is truncated or corrupt ({weights_path.stat().st_size} of "
            f"{expected_bytes} bytes); copy the checkpoint again or retrain."
        )
    state = _read_safetensors(weights_path, "checkpoint")
    verify_checksum(folder, WEIGHTS_FILE, meta)
    template = load_checkpoint_template(folder)

    encoder_spec = meta["encoder"].get("spec") if isinstance(meta["encoder"], dict) else meta["encoder"]
    encoder_name = (meta["encoder"].get("name") if isinstance(meta["encoder"], dict) else None) or encoder_spec
    try:
        model = build_model(meta["method"], meta["config"], num_vertices=meta["num_vertices"],
                            speakers=meta["speakers"], fps=meta["fps"], encoder=encoder_spec,
                            faces=template.faces, neutral=template.vertices, emotions=meta.get("emotions"),
                            regions=template.regions)
    except Exception as exc:
        _raise_build_error(exc, folder, meta, encoder_spec, encoder_name)
    weights_saved = bool(meta.get("encoder_weights_saved", True))
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape mismatch
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), "shapes differ")
        raise VoxmeshError(
            f"Checkpoint weights {weights_path} do not fit the {meta['method']} model described by {meta_path} "
            f"({detail.rstrip('.')}); the files come from different runs, copy the folder again or retrain."
        ) from None
    missing = [k for k in result.missing_keys if weights_saved or not k.startswith(ENCODER_PREFIX)]
    if missing or result.unexpected_keys:
        raise VoxmeshError(
            f"Checkpoint weights {weights_path} do not fit the {meta['method']} model described by {meta_path} "
            f"({len(missing)} missing and {len(result.unexpected_keys)} unexpected tensors, e.g. "
            f"'{(missing + list(result.unexpected_keys))[0]}'); they were saved by another method or config, retrain or "
            f"use the matching voxmesh version."
        )
    model.to(device)
    model.eval()
    model.checkpoint_info = meta
    return model


def _raise_build_error(exc: Exception, folder: Path, meta: dict, encoder_spec: Any, encoder_name: Any):
    """Tell a missing speech encoder apart from a config that does not fit the method."""
    from voxmesh.audio import build_encoder

    try:
        build_encoder(encoder_spec)
    except Exception as encoder_exc:
        reason = str(encoder_exc).strip().splitlines()[0] if str(encoder_exc).strip() else type(encoder_exc).__name__
        reason, _, fix = reason.rstrip(".").partition("; ")
        # The encoder's own message says best what to do; keep its fix, else give ours.
        fix = fix or "make it available offline (a local folder or the Hugging Face cache) and try again"
        raise VoxmeshError(
            f"Checkpoint {folder} needs the speech encoder '{encoder_name}', which cannot be loaded here "
            f"({reason[0].lower() + reason[1:] if reason else 'unknown reason'}); {fix}."
        ) from None
    if isinstance(exc, VoxmeshError) and "Unknown method" in str(exc):
        raise VoxmeshError(
            f"Checkpoint {folder} is a '{meta['method']}' model, which this voxmesh does not have; "
            f"upgrade voxmesh or install the package that registers it."
        ) from None
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    raise VoxmeshError(
        f"Checkpoint {folder / META_FILE} holds a config that the {meta['method']} model rejects "
        f"({type(exc).__name__}: {reason.rstrip('.')}); it was written for another method or version, retrain it."
    ) from None


def load_trainer_state(folder: str | Path) -> dict[str, Any]:
    """The optimiser, scheduler, counters and RNG states saved beside a ``last`` checkpoint."""
    path = Path(folder) / TRAINER_STATE_FILE
    if not path.is_file():
        raise VoxmeshError(f"{path} does not exist, so there is nothing to resume; train without --resume.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise VoxmeshError(
            f"Trainer state {path} is truncated or corrupt ({type(exc).__name__}); train without --resume."
        ) from None


def copy_checkpoint(source: str | Path, target: str | Path) -> Path:
    """Copy a checkpoint folder (without trainer state) atomically."""
    source = Path(source)
    with atomic_folder(target) as tmp:
        for name in (WEIGHTS_FILE, META_FILE, TOPOLOGY_FILE):
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
    return Path(target)


def epoch_checkpoint_name(epoch: int) -> str:
    """RUN/<stage>/epoch-NNNN: the checkpoint after ``epoch`` finished epochs."""
    return f"{EPOCH_PREFIX}{int(epoch):04d}"


def epoch_checkpoints(parent: str | Path) -> list[Path]:
    """The epoch-NNNN checkpoint folders of a stage folder, oldest first."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    found = [p for p in parent.iterdir() if p.is_dir() and re.fullmatch(rf"{EPOCH_PREFIX}\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name[len(EPOCH_PREFIX):]))


def keep_epoch_checkpoint(source: str | Path, parent: str | Path, epoch: int, keep: int) -> Path | None:
    """Policy ``train.keep_last``: with ``keep`` > 1, copy ``source`` (RUN/<stage>/last,
    trainer state included, so a run can go back to it) to ``parent/epoch-NNNN``, then,
    once that copy is complete, delete all but the ``keep`` newest epoch-NNNN folders.
    ``keep`` 1 (the default) keeps ``last`` alone: nothing is written, and nothing is
    deleted either (epoch folders of a run once trained with a larger ``keep`` stay). The
    large files are hard links where the file system allows: checkpoint files are never
    changed in place, only replaced."""
    if keep <= 1:
        return None
    source, parent = Path(source), Path(parent)
    written = parent / epoch_checkpoint_name(epoch)
    with atomic_folder(written) as tmp:
        for path in sorted(source.iterdir()):
            if not path.is_file():
                continue
            if path.name != META_FILE:
                try:
                    os.link(path, tmp / path.name)
                    continue
                except OSError:
                    pass  # no hard links here: copy
            shutil.copy2(path, tmp / path.name)
    folders = epoch_checkpoints(parent)
    for old in folders[:max(0, len(folders) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return written


__all__ = [
    "BUILTIN_MODELS", "builtin_model_path", "resolve_checkpoint", "FORMAT_VERSION", "TRAINER_STATE_FILE", "atomic_folder", "build_model", "clean_checkpoint_leftovers",
    "copy_checkpoint", "epoch_checkpoints", "export_checkpoint", "file_sha256", "keep_epoch_checkpoint",
    "load_checkpoint", "load_checkpoint_template", "load_trainer_state", "read_checkpoint_info", "save_checkpoint",
    "verify_checksum",
]
