"""The built-in sentence generator: reproducible, varied, and good for every mouth shape."""

from collections import Counter

import pytest

from voxmesh.data.synthetic.phonemes import VISEMES, viseme_of
from voxmesh.data.synthetic.sentences import MAX_WORDS, MIN_WORDS, generate_sentences, word_count
from voxmesh.data.synthetic.speech import Voice, synthesize
from voxmesh.errors import VoxmeshError


def test_same_seed_same_sentences():
    assert generate_sentences(40, seed=7) == generate_sentences(40, seed=7)
    assert generate_sentences(40, seed=7) != generate_sentences(40, seed=8)
    # a longer list starts with the shorter one, so datasets can grow without reshuffling
    assert generate_sentences(60, seed=7)[:40] == generate_sentences(40, seed=7)


def test_five_hundred_distinct_well_formed_sentences():
    sentences = generate_sentences(500, seed=0)
    assert len(sentences) == 500 and len(set(sentences)) == 500
    for sentence in sentences:
        assert MIN_WORDS <= word_count(sentence) <= MAX_WORDS
        assert sentence[0].isupper() and sentence[-1] in ".?!"
    endings = Counter(sentence[-1] for sentence in sentences)
    assert endings["?"] > 50 and endings["!"] > 20  # questions and exclamations, not only statements
    assert sum(any(ch.isdigit() for ch in s) for s in sentences) > 5  # numbers in digits too
    assert len({s.split()[0] for s in sentences}) > 40  # many different openings


def test_lip_heavy_sounds_are_frequent():
    sentences = [s.lower() for s in generate_sentences(300, seed=1)]

    def share(*letters: str) -> float:
        return sum(any(x in s for x in letters) for s in sentences) / len(sentences)

    assert share("p", "b", "m") > 0.9
    assert share("f", "v") > 0.6
    assert share("th") > 0.6
    assert share("sh", "ch", "j", "ge") > 0.4
    assert share("w") > 0.4
    assert share("r") > 0.8
    assert share("oo", "o") > 0.8


def test_negative_count_is_refused():
    with pytest.raises(VoxmeshError):
        generate_sentences(-1, seed=0)


@pytest.mark.parametrize("language", ["en-us", "en"])
def test_every_emitted_phoneme_has_a_known_viseme(language):
    seen: Counter[str] = Counter()
    for sentence in generate_sentences(30, seed=2):
        clip = synthesize(sentence, Voice(language))
        for phoneme in clip.phonemes:
            info = viseme_of(phoneme.symbol)
            assert info.known, f"{phoneme.symbol!r} in {sentence!r} is not in the viseme table"
            seen[info.viseme] += 1
            seen[info.viseme_end] += 1
    assert set(seen) == set(VISEMES)  # every class occurs
    for viseme in ("bilabial", "labiodental", "dental", "postalveolar", "w", "rounded_vowel"):
        assert seen[viseme] >= 10, viseme
