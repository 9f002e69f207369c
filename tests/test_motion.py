import numpy as np

from voxmesh.data.synthetic.dataset import phoneme_targets
from voxmesh.data.synthetic.motion import (
    MAX_JAW_RADIANS,
    PhonemeTarget,
    articulation,
    blink_track,
    emotion_track,
    motion_from_phonemes,
    num_frames_for,
)
from voxmesh.data.synthetic.phonemes import VISEMES
from voxmesh.data.synthetic.speech import EMOTIONS, Voice, synthesize

NAMES = list(VISEMES)


def timeline(*items):
    """(viseme, jaw, seconds) items laid end to end."""
    out, t = [], 0.0
    for viseme, jaw, length in items:
        out.append(PhonemeTarget(t, t + length, viseme, jaw))
        t += length
    return out, t


def test_bilabial_frames_are_fully_closed_between_open_vowels():
    targets, duration = timeline(("rest", 0, 0.2), ("open_vowel", 1.0, 0.15), ("bilabial", 0.0, 0.09),
                                 ("open_vowel", 1.0, 0.15), ("rest", 0, 0.2))
    frames = num_frames_for(duration, 30)
    visemes, jaw = articulation(targets, frames, 30, NAMES)
    times = np.arange(frames) / 30
    inside = (times >= 0.35) & (times <= 0.44)
    assert inside.sum() >= 2
    assert np.all(visemes[inside, NAMES.index("bilabial")] == 1.0) and np.all(jaw[inside] <= 0.08)
    vowel = np.argmin(np.abs(times - 0.275))
    assert jaw[vowel] > 0.6 and visemes[vowel, NAMES.index("open_vowel")] > 0.6
    np.testing.assert_allclose(visemes.sum(axis=1), 1.0, atol=1e-5)


def test_silence_is_rest_and_rounding_is_anticipated():
    targets, duration = timeline(("rest", 0, 0.5), ("alveolar", 0.1, 0.08), ("mid_vowel", 0.5, 0.1),
                                 ("alveolar", 0.1, 0.08), ("rounded_vowel", 0.4, 0.15), ("rest", 0, 0.5))
    frames = num_frames_for(duration, 30)
    visemes, jaw = articulation(targets, frames, 30, NAMES)
    assert visemes[2, NAMES.index("rest")] > 0.99 and jaw[2] < 0.01
    # during the consonant between the mid and the rounded vowel, the coming rounding
    # outweighs the vowel just spoken: rounding is anticipated
    times = np.arange(frames) / 30
    consonant = np.argmin(np.abs(times - 0.72))
    rounded = visemes[consonant, NAMES.index("rounded_vowel")]
    assert rounded > 0.15 and rounded > visemes[consonant, NAMES.index("mid_vowel")]


def test_diphthongs_glide_from_first_to_second_shape():
    targets = [PhonemeTarget(0.0, 0.4, "open_vowel", 0.9, "close_vowel", 0.2)]
    visemes, jaw = articulation(targets, 12, 30, NAMES)
    assert visemes[1, NAMES.index("open_vowel")] > visemes[1, NAMES.index("close_vowel")]
    assert visemes[11, NAMES.index("close_vowel")] > visemes[11, NAMES.index("open_vowel")]
    assert jaw[1] > jaw[11]


def test_emotion_rises_to_its_intensity_and_neutral_is_zero():
    rng = np.random.default_rng(0)
    names = list(EMOTIONS)
    strong = emotion_track("happy", 2, 90, 30, names, rng)
    normal = emotion_track("happy", 1, 90, 30, names, np.random.default_rng(0))
    assert strong[0].max() < 0.1 and 0.85 < strong[60, 2] < 1.15
    assert 0.5 < normal[60, 2] / strong[60, 2] < 0.7
    assert np.count_nonzero(strong[:, [0, 1, 3, 4, 5, 6, 7]]) == 0
    assert not emotion_track("neutral", 1, 90, 30, names, rng).any()


def test_blinks_are_short_and_complete():
    blink = blink_track(30 * 120, 30, np.random.default_rng(1))
    closed = blink > 0.99
    onsets = np.count_nonzero(np.diff((blink > 0).astype(int)) == 1)
    assert onsets == np.count_nonzero(np.diff(closed.astype(int)) == 1)  # every blink shuts fully
    assert 15 <= onsets <= 50  # about one every 3-4 s
    assert blink.min() == 0.0 and blink.max() <= 1.0
    assert np.mean(blink > 0) < 0.15


def test_real_speech_drives_closure_on_every_bilabial():
    clip = synthesize("Bob made a big map for Pam.", Voice())
    duration = len(clip.audio) / 16000
    track = motion_from_phonemes(phoneme_targets(clip.phonemes), duration, 30, "neutral", 1, NAMES,
                                 list(EMOTIONS), np.random.default_rng(0))
    assert len(track.jaw) == round(duration * 30)
    bilabial = NAMES.index("bilabial")
    count = 0
    for p in clip.phonemes:
        if p.symbol in ("p", "b", "m"):
            count += 1
            centre = min(len(track.jaw) - 1, int(round(0.5 * (p.start + p.end) * 30)))
            frames = [k for k in range(len(track.jaw)) if p.start <= k / 30 <= p.end] or [centre]
            assert all(track.visemes[k, bilabial] == 1.0 for k in frames)
    assert count >= 7
    assert track.jaw.max() <= MAX_JAW_RADIANS * 1.01 and track.jaw.max() > 0.3 * MAX_JAW_RADIANS
