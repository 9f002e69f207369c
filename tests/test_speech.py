"""espeak-ng speech with phoneme timings, voices and emotions, and the viseme table."""

import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from voxmesh.data.synthetic import speech
from voxmesh.data.synthetic.phonemes import SILENCE, VISEMES, viseme_of
from voxmesh.data.synthetic.speech import (
    EMOTIONS,
    Voice,
    available_languages,
    available_variants,
    emotional_voice,
    phonemize,
    speaker_voices,
    synthesize,
)
from voxmesh.errors import VoxmeshError

PUPPY = "A happy puppy."


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


def segment(clip, phoneme) -> np.ndarray:
    return clip.audio[int(round(phoneme.start * clip.sample_rate)) : int(round(phoneme.end * clip.sample_rate))]


@pytest.fixture(scope="module")
def puppy():
    return synthesize(PUPPY, Voice())


def test_clip_is_audible_16k_mono_float32(puppy):
    assert puppy.sample_rate == 16000
    assert puppy.audio.dtype == np.float32 and puppy.audio.ndim == 1
    assert 0.6 < puppy.duration < 2.0  # three short words plus 0.45 s of rest
    assert rms(puppy.audio) > 0.03
    assert np.abs(puppy.audio).max() <= 1.0


def test_phonemes_tile_the_clip(puppy):
    phonemes = puppy.phonemes
    assert phonemes[0].start == 0.0 and phonemes[-1].end == pytest.approx(puppy.duration, abs=1e-9)
    assert all(a.end == b.start for a, b in zip(phonemes, phonemes[1:]))
    assert all(p.end > p.start for p in phonemes)
    assert len(puppy.stress) == len(phonemes)
    spoken = [p for p in phonemes if p.symbol != SILENCE]
    assert len(spoken) > len(PUPPY.split())
    # short rest at both ends, exactly as asked
    assert phonemes[0].symbol == SILENCE and phonemes[0].end == pytest.approx(0.2, abs=1e-6)
    assert phonemes[-1].symbol == SILENCE and phonemes[-1].end - phonemes[-1].start == pytest.approx(0.25, abs=1e-3)
    assert [w.text for w in puppy.words] == ["A", "happy", "puppy"]
    assert all(a.end <= b.start for a, b in zip(puppy.words, puppy.words[1:]))


def test_bilabial_p_is_timed_on_its_closure(puppy):
    symbols = [p.symbol for p in puppy.phonemes]
    assert symbols.count("p") == 3 and viseme_of("p").viseme == "bilabial"
    assert [p.symbol for p in puppy.phonemes if puppy.stress[puppy.phonemes.index(p)] == 2] == ["a", "V"]
    for phoneme in puppy.phonemes:
        if phoneme.symbol == "p":
            # the lips are shut first: a p starts with its silent closure, then the burst
            # (the first ms is the resampling filter's ringing)
            closure = segment(puppy, phoneme)[int(0.001 * puppy.sample_rate) : int(0.02 * puppy.sample_rate)]
            assert rms(closure) < 0.01 < rms(segment(puppy, phoneme))


def test_pauses_are_silent_and_speech_is_not():
    clip = synthesize("Bob waved, then Maria smiled.", Voice())
    pauses = [p for p in clip.phonemes if p.symbol == SILENCE]
    assert len(pauses) == 3  # lead, the comma, tail
    assert all(rms(segment(clip, p)) < 1e-3 for p in pauses)
    vowels = [p for p in clip.phonemes if viseme_of(p.symbol).is_vowel]
    assert np.median([rms(segment(clip, p)) for p in vowels]) > 0.05


def test_timed_phonemes_are_espeaks_transcription():
    text = "Peter bought a brown vase for Judy."
    clip = synthesize(text, Voice())
    assert [p.symbol for p in clip.phonemes if p.symbol != SILENCE] == phonemize(text)


def test_words_are_the_written_words():
    clip = synthesize("There weren't 24 cats, Ruth.", Voice())
    assert [w.text for w in clip.words] == ["There", "weren't", "24", "cats", "Ruth"]
    number = clip.words[2]
    spoken = [p.symbol for p in clip.phonemes if number.start <= p.start < number.end]
    assert spoken[:4] == ["t", "w", "E", "n"]  # "twenty four", one written word


def test_dark_l_gets_time():
    # espeak folds the l of "wheel" into the vowel and reports it with no duration
    clip = synthesize("The wheel.", Voice())
    symbols = [p.symbol for p in clip.phonemes]
    assert symbols[-3:] == ["i:", "l", SILENCE]
    assert clip.phonemes[-2].end - clip.phonemes[-2].start > 0.02


def test_same_text_and_voice_give_identical_samples():
    voice = Voice(variant="f3")  # breath noise and echo: the voice most sensitive to state
    first = synthesize("Where did you put the purple umbrella?", voice)
    synthesize("Something else in between, to disturb any state.", Voice("en", "m2", pitch=70))
    second = synthesize("Where did you put the purple umbrella?", voice)
    assert first.audio.tobytes() == second.audio.tobytes()
    assert first.phonemes == second.phonemes


def test_threads_share_espeak_safely():
    jobs = [(f"{name} found {count} shells.", Voice(variant=variant))
            for name, count, variant in [("Ruth", "two", "m1"), ("Bob", "six", "f2"), ("Ray", "ten", "m4")] * 2]
    expected = [synthesize(text, voice).audio.tobytes() for text, voice in jobs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda job: synthesize(*job).audio.tobytes(), jobs))
    assert got == expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork start method only")
def test_forked_worker_process_synthesizes_the_same():
    text, voice = "Fiona moved the yellow van.", Voice("en-gb-x-rp", "f1")
    here = synthesize(text, voice)  # the parent's server is running when the worker forks
    with multiprocessing.get_context("fork").Pool(1) as pool:
        there = pool.apply(synthesize, (text, voice))
    assert there.audio.tobytes() == here.audio.tobytes()
    assert synthesize(text, voice).audio.tobytes() == here.audio.tobytes()  # parent still served


def test_spawned_worker_process_synthesizes_the_same():
    text, voice = "Oliver shared the warm muffins.", Voice("en-us", "m5")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.apply(synthesize, (text, voice))
    assert there.audio.tobytes() == synthesize(text, voice).audio.tobytes()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the espeak server needs fork")
def test_a_killed_server_is_replaced():
    before = synthesize("Bob is back.", Voice())
    speech._server.process.kill()
    speech._server.process.wait()
    assert synthesize("Bob is back.", Voice()).audio.tobytes() == before.audio.tobytes()


def test_in_process_engine_without_fork(monkeypatch):
    text = "Thank you very much."
    served = synthesize(text, Voice())
    monkeypatch.delattr(os, "fork")  # as on Windows
    local = synthesize(text, Voice())
    assert [p.symbol for p in local.phonemes] == [p.symbol for p in served.phonemes]
    assert local.duration == pytest.approx(served.duration, abs=0.01)


def test_voices_in_the_wheel():
    assert {"en-us", "en", "en-gb-x-rp"} <= set(available_languages())
    assert {f"m{i}" for i in range(1, 8)} | {f"f{i}" for i in range(1, 6)} <= set(available_variants())


@pytest.mark.parametrize(
    "voice",
    [Voice(language="xx-nowhere"), Voice(variant="nobody"), Voice(pitch=150), Voice(rate=20), Voice(volume=-1)],
)
def test_bad_voices_are_refused_in_one_sentence(voice):
    with pytest.raises(VoxmeshError):
        synthesize("Hello.", voice)


def test_empty_text_is_refused():
    with pytest.raises(VoxmeshError, match="empty"):
        synthesize("  ", Voice())


def test_emotions_are_audible():
    text = "We moved the heavy wooden chair to the porch."
    base = Voice(variant="m3")
    happy = synthesize(text, emotional_voice(base, "happy", 2))
    sad = synthesize(text, emotional_voice(base, "sad", 2))
    angry = synthesize(text, emotional_voice(base, "angry", 2))
    calm = synthesize(text, emotional_voice(base, "calm", 2))
    assert sad.duration > 1.2 * happy.duration
    assert rms(angry.audio) > 1.3 * rms(calm.audio)
    # same words, same phonemes: only the prosody changes
    assert [p.symbol for p in sad.phonemes] == [p.symbol for p in happy.phonemes]


def test_emotional_voice_table():
    base = Voice()
    assert emotional_voice(base, "neutral", 1) == base
    for emotion in EMOTIONS:
        for intensity in (1,) if emotion == "neutral" else (1, 2):
            emotional_voice(base, emotion, intensity).validated()
    sad, happy = emotional_voice(base, "sad", 1), emotional_voice(base, "happy", 1)
    assert sad.pitch < base.pitch < happy.pitch and sad.rate < base.rate < happy.rate
    assert emotional_voice(base, "angry", 2).volume > emotional_voice(base, "angry", 1).volume > base.volume
    with pytest.raises(VoxmeshError):
        emotional_voice(base, "neutral", 2)
    with pytest.raises(VoxmeshError):
        emotional_voice(base, "bored", 1)


def test_speaker_voices_are_distinct_and_reproducible():
    voices = speaker_voices(12, seed=3)
    assert len(set(voices)) == 12 and len({v.variant for v in voices}) == 12
    assert speaker_voices(12, seed=3) == voices and speaker_voices(12, seed=4) != voices
    assert len(set(speaker_voices(30, seed=0))) == 30
    for voice in voices:
        voice.validated()


def test_viseme_table():
    assert VISEMES[0] == "rest" and len(VISEMES) == 13
    assert viseme_of(SILENCE).viseme == "rest"
    for symbol, viseme in [("b", "bilabial"), ("v", "labiodental"), ("T", "dental"), ("s", "alveolar"),
                           ("tS", "postalveolar"), ("N", "velar"), ("r", "r"), ("A:", "open_vowel"),
                           ("E", "mid_vowel"), ("i:", "close_vowel"), ("u:", "rounded_vowel"), ("w", "w")]:
        assert viseme_of(symbol).viseme == viseme and viseme_of(symbol).known
    # stress marks are decoration; diphthongs glide between two shapes
    glide = viseme_of("'aI")
    assert (glide.viseme, glide.viseme_end) == ("open_vowel", "close_vowel") and glide.jaw > glide.jaw_end
    assert glide.is_vowel and glide.is_diphthong and not viseme_of("a").is_diphthong
    assert viseme_of("A:").jaw > viseme_of("E").jaw > viseme_of("i:").jaw > viseme_of("m").jaw == 0.0
    assert viseme_of("u:").rounding > viseme_of("O:").rounding > viseme_of("i:").rounding
    # an unknown symbol borrows from its undecorated form, and says it guessed
    guess = viseme_of("t%9")
    assert guess.viseme == "alveolar" and not guess.known
    assert viseme_of("e~").viseme == "mid_vowel" and not viseme_of("e~").known
