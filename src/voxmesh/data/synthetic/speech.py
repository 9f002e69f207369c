"""Synthesized English speech with sample-exact phoneme timings, from espeak-ng.

espeak-ng comes from the ``espeakng-loader`` wheel (library and voice data, no system
package) and is driven through its C API with ctypes: ``espeak_Initialize`` in
synchronous mode with phoneme events on, and a synth callback that collects the int16
samples (22050 Hz) and the ``espeak_EVENT`` list of every buffer.

Timing: a phoneme event's ``sample`` field is the index, counted from the start of the
utterance, of the first sample espeak generated after that phoneme's marker in its command
queue (``audio_position`` is the same instant in whole milliseconds, truncated, so we use
``sample``). Boundaries are therefore sample-exact at 22050 Hz with respect to what espeak
synthesized: a pause is digital silence from its first sample to its last. Two of espeak's
conventions are corrected so the times describe the mouth:
- espeak emits a phoneme's event after the silence that precedes it, so a stop's closure
  (about 40 ms for p, t, k, ch) ends the previous phoneme. The silent run at the end of a
  spoken phoneme is found in the audio and given to the phoneme that follows it.
- a dark l after a stressed vowel ("wheel", "always") is synthesized inside the vowel's
  ending and reported with no duration; it gets the last 40% of that vowel.
What remains: a vowel after l, r, m or n gets its event after its onset transition, so
that transition counts toward the consonant; and coarticulation straddles every boundary,
as in any forced alignment. Times are converted to seconds from the 22050 Hz indices and
the audio is resampled to 16 kHz, so a boundary falls within one 16 kHz sample of the
true instant.

Determinism: espeak keeps synthesis state in C statics that no API call resets (the
pitch-flutter phase, the automatic gain, breath-noise filters, libc ``rand``), so the
same text and voice sound slightly different depending on what was spoken before. To
make every clip a pure function of (text, voice), each request is synthesized in a
child forked from a small server process that has loaded espeak but never spoken: every
synthesis starts from the same state. The server is a bare Python (only the standard
library part of this file runs in it), started on first use, one per process that
synthesizes (it is restarted in a forked worker); requests are serialised by a lock.
Without ``os.fork`` (Windows) espeak runs in-process under the lock and clips are
deterministic only for the same sequence of calls.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

# ---------------------------------------------------------------------------------------
# espeak-ng C API. Standard library only above the server entry point: this part also
# runs in the bare espeak server process, which must not import numpy, torch or voxmesh.
# ---------------------------------------------------------------------------------------

ESPEAK_SAMPLE_RATE = 22050  # what espeak-ng's own voices synthesize at

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # a pause after the last clause, so the final phoneme decays naturally
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``. On LP64: six 4-byte ints, then ``user_data`` at offset 24 (pointer
    alignment), then the 8-byte ``id`` union at 32; 40 bytes in all. A phoneme event's
    ``id.string`` is the phoneme mnemonic, NUL-terminated unless it fills all 8 bytes."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character index in the text
        ("length", ctypes.c_int),  # word length in characters (word events)
        ("audio_position", ctypes.c_int),  # ms from the utterance start, truncated
        ("sample", ctypes.c_int),  # sample index from the utterance start: exact
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


assert ctypes.sizeof(ctypes.c_void_p) != 8 or (ctypes.sizeof(_Event), _Event.id.offset) == (40, 32)

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

# What a synthesis returns before any numpy: int16 little-endian samples at 22050 Hz and
# the events (kind, text_position, length, sample, phoneme mnemonic or "").
RawEvent = tuple[int, int, int, int, str]


def espeak_data_path() -> str:
    try:
        import espeakng_loader
    except ImportError:  # only ever in voxmesh's own process: the server starts after this succeeded
        from voxmesh.extras import require

        espeakng_loader = require("espeakng_loader", "Speaking with espeak-ng")
    return espeakng_loader.get_data_path()


class _Engine:
    """The espeak-ng library, initialised once in this process."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib = lib
        # espeak seeds libc rand() from the clock and draws breath noise from it: reseed it
        # (and espeak's own generator) before every utterance.
        self._seeders: list[Any] = []
        if hasattr(lib, "espeak_ng_SetRandSeed"):
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            self._seeders.append(lib.espeak_ng_SetRandSeed)
        try:
            libc_srand = ctypes.CDLL(None).srand
            libc_srand.argtypes = [ctypes.c_uint]
            self._seeders.append(libc_srand)
        except (OSError, AttributeError, TypeError):  # no libc symbols (Windows)
            pass
        # 500 ms buffers: fewer Python callbacks per utterance.
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 500, os.fsencode(espeak_data_path()),
            _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT,
        )
        if rate != ESPEAK_SAMPLE_RATE:
            raise RuntimeError(f"espeak_Initialize returned {rate}; expected {ESPEAK_SAMPLE_RATE} Hz.")
        self._chunks: list[bytes] = []
        self._events: list[RawEvent] = []
        self._callback = _SynthCallback(self._collect)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, num_samples: int, events: Any) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, 2 * num_samples))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            name = event.id.string.decode("utf-8", "replace") if event.type == _EVENT_PHONEME else ""
            self._events.append((event.type, event.text_position, event.length, event.sample, name))
            i += 1
        return 0  # 0 = continue synthesis

    def set_voice(self, name: str, rate: int, pitch: int, pitch_range: int, volume: int) -> None:
        if self.lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {name!r}")
        for parameter, value in (
            (_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range), (_PARAM_VOLUME, volume),
        ):
            self.lib.espeak_SetParameter(parameter, int(value), 0)

    def render(self, text: str, voice: tuple[str, int, int, int, int]) -> tuple[bytes, list[RawEvent]]:
        """Speak ``text``: (int16 samples at 22050 Hz, events)."""
        self.set_voice(*voice)
        for seed in self._seeders:
            seed(0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status:#x}")
        return b"".join(self._chunks), self._events

    def phonemize(self, text: str, voice: tuple[str, int, int, int, int]) -> list[str]:
        """espeak's transcription of ``text`` (mnemonics, one string a clause)."""
        self.set_voice(*voice)
        data = ctypes.c_char_p(text.encode("utf-8"))
        pointer = ctypes.pointer(data)
        clauses: list[str] = []
        while pointer.contents.value:
            # phonememode: bits 8-23 hold a separator put between phonemes.
            out = self.lib.espeak_TextToPhonemes(pointer, _CHARS_UTF8, ord("|") << 8)
            clauses.append((out or b"").decode("utf-8", "replace"))
        return clauses

    def run(self, request: tuple[str, str, tuple[str, int, int, int, int]]) -> Any:
        kind, text, voice = request
        return self.render(text, voice) if kind == "render" else self.phonemize(text, voice)


def _write_frame(stream: BinaryIO, payload: Any) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _read_frame(stream: BinaryIO) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        return None
    (size,) = struct.unpack("<Q", header)
    return pickle.loads(stream.read(size))


def _serve() -> None:
    """The espeak server: read a request, fork, let the child answer and exit.

    The parent only ever initialises espeak and loads the default English voice, so every
    child starts from the same library state."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    # Anything printed by accident goes to stderr, never into the reply stream.
    sys.stdout = sys.stderr
    engine = _Engine()
    engine.set_voice("en-us", 175, 50, 50, 100)  # warm: dictionary loaded once, in the parent
    while True:
        request = _read_frame(requests)
        if request is None:  # the client closed the pipe or exited
            return
        child = os.fork()
        if child == 0:
            try:
                reply: tuple[bool, Any] = (True, engine.run(request))
            except Exception as error:  # reported to the client, which raises it there
                reply = (False, str(error))
            _write_frame(replies, reply)
            os._exit(0)
        _, status = os.waitpid(child, 0)
        if status != 0:
            _write_frame(replies, (False, f"the espeak-ng worker died (wait status {status})"))


if __name__ == "__voxmesh_espeak_server__":
    _serve()
    sys.exit(0)

# ---------------------------------------------------------------------------------------
# Everything below runs in the client process only.
# ---------------------------------------------------------------------------------------

import random  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402

import numpy as np  # noqa: E402

from voxmesh.audio.io import SAMPLE_RATE, to_mono_16k  # noqa: E402
from voxmesh.data.layout import Phoneme  # noqa: E402
from voxmesh.data.synthetic.phonemes import SILENCE, normalize_symbol, split_stress  # noqa: E402
from voxmesh.errors import VoxmeshError  # noqa: E402

# The share of a vowel given to a phoneme espeak synthesizes inside that vowel's ending.
_MERGED_PHONEME_SHARE = 0.4
_SERVER_BOOTSTRAP = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__voxmesh_espeak_server__')"


class _ServerClient:
    """A running espeak server process and the pipes to it."""

    def __init__(self) -> None:
        espeak_data_path()  # a missing espeak-ng is said here, in voxmesh's process: the server imports no voxmesh
        flags = ["-P"] if sys.version_info >= (3, 11) else []  # no cwd on sys.path in the server
        self.owner_pid = os.getpid()
        self.process = subprocess.Popen(
            [sys.executable, *flags, "-c", _SERVER_BOOTSTRAP, __file__],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )

    def request(self, request: tuple) -> Any:
        """Send one request and wait for its reply; None if the server is gone."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            _write_frame(self.process.stdin, request)
            return _read_frame(self.process.stdout)
        except Exception:  # a dead server or a torn reply: the stream can't be trusted
            return None

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()  # EOF on stdin: the server returns
            except OSError:
                pass
        if self.owner_pid != os.getpid():
            return  # a forked child only drops its copies of the parent's pipes
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_lock = threading.Lock()
_server: _ServerClient | None = None
_in_process_engine: _Engine | None = None
_inherited: list[_ServerClient] = []  # a parent's server seen after fork: kept alive, unused


def _after_fork_in_child() -> None:
    # The parent's server belongs to the parent: drop our copies of its pipes (so it still
    # sees EOF when the parent exits) and start our own on demand.
    global _lock, _server
    _lock = threading.Lock()
    if _server is not None:
        _server.close()
        _inherited.append(_server)  # referenced, so no Popen finaliser runs on it here
        _server = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _shutdown() -> None:
    if _server is not None and _server.owner_pid == os.getpid():
        _server.close()


atexit.register(_shutdown)


def _espeak(request: tuple) -> Any:
    """Run one request in a pristine espeak (server) or, without fork, in this process."""
    global _server, _in_process_engine
    with _lock:
        if not hasattr(os, "fork"):
            if _in_process_engine is None:
                _in_process_engine = _Engine()
            return _in_process_engine.run(request)
        reply = None
        for _ in range(2):  # one retry, with a fresh server, if the old one died
            if _server is None or _server.process.poll() is not None:
                _server = _ServerClient()
            reply = _server.request(request)
            if reply is not None:
                break
            _server.close()
            _server = None
        if reply is None:
            raise RuntimeError("the espeak-ng server process stopped answering")
        ok, value = reply
    if not ok:
        raise RuntimeError(value)
    return value


# ---------------------------------------------------------------------------------------
# Voices
# ---------------------------------------------------------------------------------------


def _voice_files(folder: Path) -> dict[str, Path]:
    return {path.name.lower(): path for path in folder.rglob("*") if path.is_file()}


def available_languages() -> list[str]:
    """The English voices (languages and accents) in the wheel's data, e.g. ``en-us``."""
    names = _voice_files(Path(espeak_data_path()) / "lang")
    # en-shaw is English written in the Shavian alphabet: no use for Latin-script text.
    return sorted(name for name in names if name.split("-")[0] == "en" and name != "en-shaw")


def available_variants() -> list[str]:
    """Voice variants (``m1``..``m8``, ``f1``..``f5`` and espeak's named ones)."""
    return sorted(_voice_files(Path(espeak_data_path()) / "voices" / "!v"))


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: an English accent, a variant (speaker timbre) and prosody.

    ``pitch`` and ``pitch_range`` are espeak's 0-100 scales (50 is the voice's own),
    ``rate`` is words per minute (80-450), ``volume`` espeak's amplitude (0-200, 100 normal).
    """

    language: str = "en-us"
    variant: str | None = None
    pitch: int = 50
    pitch_range: int = 50
    rate: int = 175
    volume: int = 100

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language

    def validated(self) -> Voice:
        """Check the names against the wheel's data and the numbers against espeak's ranges."""
        if self.language.lower() not in _voice_files(Path(espeak_data_path()) / "lang"):
            raise VoxmeshError(
                f"Voice language {self.language!r} is not in espeak-ng's data; use one of {available_languages()}."
            )
        if self.variant is not None and self.variant.lower() not in available_variants():
            raise VoxmeshError(
                f"Voice variant {self.variant!r} is not in espeak-ng's data; use one of m1-m8, f1-f5 or None."
            )
        for name, value, low, high in (
            ("pitch", self.pitch, 0, 100), ("pitch_range", self.pitch_range, 0, 100),
            ("rate", self.rate, 80, 450), ("volume", self.volume, 0, 200),
        ):
            if not low <= value <= high:
                raise VoxmeshError(f"Voice {name}={value} is outside {low}-{high}; choose a value in that range.")
        return self

    def _request(self) -> tuple[str, int, int, int, int]:
        return (self.espeak_name, int(self.rate), int(self.pitch), int(self.pitch_range), int(self.volume))


EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

# Per emotion and intensity (1 normal, 2 strong): pitch shift (espeak 0-100 units), and
# factors for pitch range, rate and volume. Chosen from the acoustic correlates of vocal
# emotion (high arousal: higher, wider, faster, louder; low arousal: the reverse), strong
# enough that espeak's otherwise flat prosody makes the difference audible.
_EMOTION_PROSODY: dict[str, dict[int, tuple[int, float, float, float]]] = {
    "neutral": {1: (0, 1.0, 1.0, 1.0)},
    "calm": {1: (-4, 0.8, 0.9, 0.85), 2: (-8, 0.65, 0.8, 0.75)},
    "happy": {1: (10, 1.4, 1.08, 1.1), 2: (18, 1.8, 1.15, 1.2)},
    "sad": {1: (-10, 0.55, 0.8, 0.75), 2: (-18, 0.35, 0.68, 0.6)},
    "angry": {1: (4, 1.35, 1.1, 1.4), 2: (8, 1.7, 1.18, 1.75)},
    "fearful": {1: (14, 1.15, 1.15, 0.95), 2: (22, 1.3, 1.25, 1.0)},
    "disgust": {1: (-6, 1.2, 0.85, 1.0), 2: (-10, 1.4, 0.76, 1.05)},
    "surprised": {1: (16, 1.6, 1.02, 1.15), 2: (26, 2.0, 1.05, 1.3)},
}


def emotional_voice(voice: Voice, emotion: str, intensity: int = 1) -> Voice:
    """``voice`` with the prosody of a RAVDESS emotion at intensity 1 (normal) or 2 (strong)."""
    table = _EMOTION_PROSODY.get(emotion)
    if table is None:
        raise VoxmeshError(f"Emotion {emotion!r} is not one of {', '.join(EMOTIONS)}.")
    if intensity not in table:
        raise VoxmeshError(
            f"Emotion {emotion!r} has intensities {sorted(table)}, not {intensity}; RAVDESS has no strong neutral."
        )
    shift, range_factor, rate_factor, volume_factor = table[intensity]

    def clamp(value: float, low: int, high: int) -> int:
        return int(round(min(max(value, low), high)))

    return replace(
        voice,
        pitch=clamp(voice.pitch + shift, 0, 100),
        pitch_range=clamp(voice.pitch_range * range_factor, 0, 100),
        rate=clamp(voice.rate * rate_factor, 80, 450),
        volume=clamp(voice.volume * volume_factor, 0, 200),
    )


# Speaker timbres: espeak's numbered variants (formant scaling, breathiness, base pitch).
_MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
_FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
_SPEAKER_LANGUAGES = ("en-us", "en-us", "en", "en-gb-x-rp")  # mostly American, some British


def speaker_voices(n: int, seed: int = 0) -> list[Voice]:
    """``n`` distinct speakers: different variants, accents, base pitch, range and rate.

    The first 12 use 12 different variants (7 male, 5 female); more reuse variants with
    other accents and prosody. Deterministic for a seed."""
    if n < 0:
        raise VoxmeshError(f"Number of speakers {n} is negative; ask for 0 or more.")
    rng = random.Random(seed)
    variants = list(_MALE_VARIANTS + _FEMALE_VARIANTS)
    rng.shuffle(variants)
    voices: list[Voice] = []
    seen: set[Voice] = set()
    while len(voices) < n:
        variant = variants[len(voices) % len(variants)]
        voice = Voice(
            language=rng.choice(_SPEAKER_LANGUAGES),
            variant=variant,
            pitch=rng.randint(35, 65),
            pitch_range=rng.randint(40, 75),
            rate=rng.randint(150, 195),
            volume=100,
        )
        if voice not in seen:
            seen.add(voice)
            voices.append(voice)
    return voices


# ---------------------------------------------------------------------------------------
# Synthesis
# ---------------------------------------------------------------------------------------


@dataclass
class Word:
    text: str
    start: float  # seconds: the start of its first phoneme
    end: float  # the end of its last non-pause phoneme


@dataclass
class SpeechClip:
    """A synthesized utterance. ``audio`` is float32 ``[samples]`` mono at ``sample_rate``;
    ``phonemes`` tile ``[0, duration]`` (each ends where the next starts, pauses and the rest
    before and after speech are ``"_"``); ``stress[i]`` is 2 for a primary-stressed phoneme,
    1 for secondary, 0 otherwise."""

    text: str
    voice: Voice
    audio: np.ndarray
    phonemes: list[Phoneme]
    stress: list[int]
    words: list[Word] = field(default_factory=list)
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.audio) / float(self.sample_rate)


def _quiet_run(samples: np.ndarray, start: int, end: int) -> int:
    """Length in samples of the near-silent run that ends at ``end`` within ``[start, end)``,
    found on 1 ms frames and then refined to the sample."""
    frame = ESPEAK_SAMPLE_RATE // 1000
    count = (end - start) // frame
    if count < 1:
        return 0
    frames = samples[end - count * frame : end].astype(np.float32).reshape(count, frame)
    energy = np.sqrt(np.mean(frames**2, axis=1))
    # The level of the silence itself, from the frames right before ``end``: zero, or the
    # echo of some variants. Quiet is close to that level, and always under 12% of the peak.
    floor = float(np.median(energy[-3:]))
    threshold = min(0.12 * float(energy.max()), max(4.0 * floor, 32.0))
    loud = np.flatnonzero(energy > threshold)
    quiet_frames = count if loud.size == 0 else count - 1 - int(loud[-1])
    run = quiet_frames * frame
    if 0 < run < end - start:
        # to the sample: the first quiet frame may still hold the end of the sound before
        head = np.abs(samples[end - run : end - run + frame].astype(np.float32))
        above = np.flatnonzero(head > threshold)
        if above.size:
            run -= int(above[-1]) + 1
    return run


def _attribute_closures(samples: np.ndarray, spans: list[tuple[str, int, int, int, int]]) -> list:
    """Move each stop closure from the phoneme before it to the stop itself.

    espeak emits a phoneme's event after the silence that precedes it (a stop's closure,
    the "prepause"), so the event marks the release and the closure sits at the end of the
    previous phoneme. For the face the closure is part of the stop (lips already shut for
    p/b/m). A silent run of 3 ms or more at the end of a spoken phoneme goes to the next
    one; the previous phoneme keeps at least a quarter of its length."""
    minimum = 3 * (ESPEAK_SAMPLE_RATE // 1000)
    out = list(spans)
    for i in range(len(out)):
        symbol, stress, start, end, word = out[i]
        if symbol == SILENCE:
            continue
        if i == 0:
            # Before the first event espeak wrote only that phoneme's closure.
            if start > 0 and _quiet_run(samples, 0, start) == start:
                out[i] = (symbol, stress, 0, end, word)
            continue
        before, before_stress, before_start, before_end, before_word = out[i - 1]
        if before == SILENCE or before_end != start:
            continue
        run = _quiet_run(samples, before_start, start)
        if run >= minimum:
            onset = max(start - run, before_start + (start - before_start) // 4)
            out[i - 1] = (before, before_stress, before_start, onset, before_word)
            out[i] = (symbol, stress, onset, end, word)
    return out


def _check_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise VoxmeshError("Text to synthesize is empty; give at least one word.")
    return text


def _call(kind: str, text: str, voice: Voice) -> Any:
    try:
        return _espeak((kind, text, voice.validated()._request()))
    except (RuntimeError, ValueError) as error:
        raise VoxmeshError(f"espeak-ng could not speak with voice {voice.espeak_name!r}: {error}.") from error


def phonemize(text: str, voice: Voice = Voice()) -> list[str]:
    """espeak's phoneme transcription of ``text`` as normalised symbols, pauses left out.

    Almost always the phonemes :func:`synthesize` times, so the two can be checked against
    each other; the transcription occasionally differs at a clause boundary (it drops the
    w of "while" after a comma, which the synthesis speaks)."""
    clauses = _call("phonemize", _check_text(text), voice)
    symbols: list[str] = []
    for clause in clauses:
        for word in clause.split():
            for part in word.split("|"):
                symbol = normalize_symbol(part)
                if part and symbol != SILENCE:
                    symbols.append(symbol)
    return symbols


def synthesize(
    text: str,
    voice: Voice = Voice(),
    *,
    lead_silence: float = 0.2,
    tail_silence: float = 0.25,
) -> SpeechClip:
    """Speak ``text`` with ``voice``: 16 kHz mono float32 audio and its phoneme timings.

    espeak starts speaking at its first sample and ends with a long pause; the clip keeps
    exactly ``lead_silence`` seconds of rest before the first phoneme and ``tail_silence``
    after the last, so a model sees the face at rest in silence at both ends."""
    if lead_silence < 0 or tail_silence < 0:
        raise VoxmeshError(f"Silences must be >= 0 seconds, got lead={lead_silence}, tail={tail_silence}.")
    raw, events = _call("render", _check_text(text), voice)
    samples = np.frombuffer(raw, dtype="<i2")
    total = len(samples)

    # Phoneme spans in espeak samples; each ends where the next event starts.
    marks = [(event[3], event[4]) for event in events if event[0] == _EVENT_PHONEME]
    word_marks = [(event[3], event[1], event[2]) for event in events if event[0] == _EVENT_WORD]
    spans: list[tuple[str, int, int, int, int]] = []  # symbol, stress, start, end, word index
    word_index, next_word = -1, 0
    for i, (start, mnemonic) in enumerate(marks):
        end = min(marks[i + 1][0] if i + 1 < len(marks) else total, total)
        # A word event comes at or shortly before its first phoneme's event.
        while next_word < len(word_marks) and word_marks[next_word][0] <= start:
            word_index, next_word = next_word, next_word + 1
        symbol, stress = split_stress(mnemonic)
        symbol = normalize_symbol(symbol)
        stress = stress if symbol != SILENCE else 0
        if end > start:
            spans.append((symbol, stress, start, end, word_index))
        elif symbol != SILENCE and spans and spans[-1][0] != SILENCE:
            # espeak renders a dark l after a stressed vowel ("wheel", "always") inside the
            # vowel's ending and reports it with no duration: give it the vowel's last part.
            before, before_stress, before_start, before_end, before_word = spans[-1]
            split = before_start + int(round((1.0 - _MERGED_PHONEME_SHARE) * (before_end - before_start)))
            if before_start < split < before_end:
                spans[-1] = (before, before_stress, before_start, split, before_word)
                spans.append((symbol, stress, split, before_end, before_word))
    spans = _attribute_closures(samples, spans)
    speech = [span for span in spans if span[0] != SILENCE]
    if not speech:
        raise VoxmeshError(f"espeak-ng produced no phonemes for {text!r}; give words it can read.")

    # Crop to [first phoneme, last phoneme + tail], with exact silence around.
    first, last = speech[0][2], speech[-1][3]
    lead = int(round(lead_silence * ESPEAK_SAMPLE_RATE))
    tail = int(round(tail_silence * ESPEAK_SAMPLE_RATE))
    body = samples[first:last]
    after = samples[last : last + tail]  # espeak's pause: zeros, or the decay of an echo
    padded = np.zeros(lead + len(body) + tail, dtype=np.float32)
    padded[lead : lead + len(body)] = body / 32768.0
    padded[lead + len(body) : lead + len(body) + len(after)] = after / 32768.0
    audio = to_mono_16k(padded, ESPEAK_SAMPLE_RATE, source="espeak-ng output")
    duration = len(audio) / float(SAMPLE_RATE)

    def seconds(espeak_sample: int) -> float:
        return (espeak_sample - first + lead) / ESPEAK_SAMPLE_RATE

    # Tile [0, duration]: rest, the spoken spans (merging adjacent pauses), rest.
    phonemes: list[Phoneme] = []
    stresses: list[int] = []

    def add(symbol: str, stress: int, start: float, end: float) -> None:
        if phonemes and symbol == SILENCE and phonemes[-1].symbol == SILENCE:
            phonemes[-1].end = end
        elif end > start:
            phonemes.append(Phoneme(symbol, start, end))
            stresses.append(stress)

    if lead > 0:
        add(SILENCE, 0, 0.0, seconds(first))
    inner = [span for span in spans if first <= span[2] < last]
    for symbol, stress, start, end, _ in inner:
        add(symbol, stress, seconds(start), seconds(end))
    add(SILENCE, 0, seconds(last), duration)
    phonemes[-1].end = duration  # the 16 kHz length rounds the 22050 Hz one

    # Words: espeak reports a number's spoken words ("twenty", "four") as word events over
    # overlapping stretches of the digits; those merge into one written word.
    groups: list[list[int]] = []  # [first char, end char, first sample, end sample]

    def in_word(i: int) -> bool:
        return text[i].isalnum() or text[i] in "'\u2019"

    for index in sorted({span[4] for span in speech if span[4] >= 0}):
        own = [span for span in speech if span[4] == index]
        _, position, length = word_marks[index]
        begin, stop = position - 1, position - 1 + length
        while begin < stop < len(text) and in_word(stop - 1) and in_word(stop):
            stop += 1  # espeak's length stops at an apostrophe: "doesn" for "doesn't"
        if groups and begin < groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], stop)
            groups[-1][3] = own[-1][3]
        else:
            groups.append([begin, stop, own[0][2], own[-1][3]])
    words = [
        Word(text[begin:stop].strip(" \t\n.,;:!?\"()'\u2019"), seconds(start), seconds(end))
        for begin, stop, start, end in groups
    ]
    return SpeechClip(text=text, voice=voice, audio=audio, phonemes=phonemes, stress=stresses, words=words)
