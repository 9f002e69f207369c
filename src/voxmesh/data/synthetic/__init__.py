"""The synthetic talking-face dataset: built-in sentences, synthesized speech with exact
phoneme timings, and the phoneme-to-viseme table that drives the face rig."""

from voxmesh.data.synthetic.phonemes import SILENCE, VISEMES, PhonemeInfo, viseme_of
from voxmesh.data.synthetic.sentences import generate_sentences
from voxmesh.data.synthetic.speech import (
    EMOTIONS,
    SpeechClip,
    Voice,
    Word,
    available_languages,
    available_variants,
    emotional_voice,
    phonemize,
    speaker_voices,
    synthesize,
)

__all__ = [
    "EMOTIONS", "SILENCE", "VISEMES", "PhonemeInfo", "SpeechClip", "Voice", "Word", "available_languages",
    "available_variants", "emotional_voice", "generate_sentences", "phonemize", "speaker_voices", "synthesize",
    "viseme_of",
]
