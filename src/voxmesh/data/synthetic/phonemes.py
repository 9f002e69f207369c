"""From espeak-ng's English phoneme mnemonics to what the mouth does: viseme classes,
jaw opening, lip rounding.

The table holds every mnemonic espeak-ng emits for the English voices in its data
(en-us, en, en-gb-x-rp, en-029, en-gb-scotland, en-gb-x-gbclan, en-gb-x-gbcwmd,
en-us-nyc) over the built-in sentences, plus the rest of espeak's English inventory.
Diphthongs (and r- or l-coloured vowels) name a start and an end shape so a motion
generator can glide between them; for every other phoneme start and end are the same.
Jaw opening and lip rounding are on 0..1 scales: 0 is closed / spread, 1 wide open /
fully rounded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SILENCE = "_"  # pauses, and the rest before and after speech

VISEMES: tuple[str, ...] = (
    "rest", "bilabial", "labiodental", "dental", "alveolar", "postalveolar", "velar", "r",
    "open_vowel", "mid_vowel", "close_vowel", "rounded_vowel", "w",
)
VISEME_INDEX: dict[str, int] = {name: index for index, name in enumerate(VISEMES)}

# espeak prefixes a stressed syllable's vowel with these (primary 2, secondary 1);
# "%" and "=" mark unstressed / stress on the preceding syllable in its transcriptions.
_STRESS_MARKS = {"'": 2, ",": 1, "%": 0, "=": 0}


@dataclass(frozen=True)
class PhonemeInfo:
    """What the mouth does for one phoneme. ``viseme_end``, ``jaw_end`` and
    ``rounding_end`` differ from the start values only for gliding phonemes (diphthongs);
    ``known`` is False when the symbol is not in the table and a guess was made."""

    symbol: str
    viseme: str
    viseme_end: str
    jaw: float
    jaw_end: float
    rounding: float
    rounding_end: float
    is_vowel: bool
    known: bool = True

    @property
    def is_diphthong(self) -> bool:
        return self.viseme != self.viseme_end or self.jaw != self.jaw_end or self.rounding != self.rounding_end


def _consonant(viseme: str, jaw: float, rounding: float = 0.0) -> tuple:
    return (viseme, viseme, jaw, jaw, rounding, rounding, False)


def _vowel(viseme: str, jaw: float, rounding: float = 0.0) -> tuple:
    return (viseme, viseme, jaw, jaw, rounding, rounding, True)


def _glide(viseme: str, jaw: float, rounding: float, viseme_end: str, jaw_end: float, rounding_end: float) -> tuple:
    return (viseme, viseme_end, jaw, jaw_end, rounding, rounding_end, True)


_TABLE: dict[str, tuple] = {
    SILENCE: _consonant("rest", 0.0),
    # lips closed
    "p": _consonant("bilabial", 0.0), "b": _consonant("bilabial", 0.0), "m": _consonant("bilabial", 0.0),
    "m-": _consonant("bilabial", 0.0),  # syllabic m
    # lower lip to upper teeth
    "f": _consonant("labiodental", 0.1), "v": _consonant("labiodental", 0.1),
    # tongue between the teeth; t[ is the dental t of the Caribbean voice ("three")
    "T": _consonant("dental", 0.15), "D": _consonant("dental", 0.15), "t[": _consonant("dental", 0.15),
    # tongue tip at the ridge; t# is the American flap ("butter"), t2 an unaspirated t,
    # d# the -ed ending, n- / l- syllabic
    "t": _consonant("alveolar", 0.1), "d": _consonant("alveolar", 0.1), "n": _consonant("alveolar", 0.1),
    "l": _consonant("alveolar", 0.2), "s": _consonant("alveolar", 0.05), "z": _consonant("alveolar", 0.05),
    "t#": _consonant("alveolar", 0.15), "t2": _consonant("alveolar", 0.1), "d#": _consonant("alveolar", 0.1),
    "d2": _consonant("alveolar", 0.1), "n-": _consonant("alveolar", 0.1), "l-": _consonant("alveolar", 0.2),
    "L": _consonant("alveolar", 0.2), "l/": _consonant("alveolar", 0.2), "l/2": _consonant("alveolar", 0.2),
    "z#": _consonant("alveolar", 0.05), "s#": _consonant("alveolar", 0.05),
    # sh, zh, ch, j: lips pushed forward
    "S": _consonant("postalveolar", 0.1, 0.5), "Z": _consonant("postalveolar", 0.1, 0.5),
    "tS": _consonant("postalveolar", 0.1, 0.5), "dZ": _consonant("postalveolar", 0.1, 0.5),
    # back of the tongue, and the throat sounds that leave the lips alone
    "k": _consonant("velar", 0.2), "g": _consonant("velar", 0.2), "N": _consonant("velar", 0.15),
    "x": _consonant("velar", 0.2), "h": _consonant("velar", 0.3), "?": _consonant("velar", 0.2),
    # r: slight rounding; r- links a final r to a following vowel
    "r": _consonant("r", 0.15, 0.4), "r-": _consonant("r", 0.15, 0.4), "r/": _consonant("r", 0.15, 0.4),
    "*": _consonant("r", 0.15, 0.3),  # tapped r
    # w (w# is the Scottish voiceless "wh"), and the palatal glides: j and ";", espeak's
    # linking glide between vowels ("Fiona", "the ocean")
    "w": _consonant("w", 0.1, 0.9), "w#": _consonant("w", 0.1, 0.9),
    "j": _consonant("close_vowel", 0.15), ";": _consonant("close_vowel", 0.2),
    # open vowels
    "a": _vowel("open_vowel", 0.8), "aa": _vowel("open_vowel", 0.9), "A:": _vowel("open_vowel", 0.95),
    "A": _vowel("open_vowel", 0.9), "A@": _vowel("open_vowel", 0.9), "a2": _vowel("open_vowel", 0.8),
    "aI": _glide("open_vowel", 0.85, 0.0, "close_vowel", 0.25, 0.0),
    "aI2": _glide("open_vowel", 0.8, 0.0, "close_vowel", 0.25, 0.0),
    "aI@": _glide("open_vowel", 0.85, 0.0, "mid_vowel", 0.45, 0.0),
    "aI3": _glide("open_vowel", 0.85, 0.0, "mid_vowel", 0.4, 0.2),
    "aU": _glide("open_vowel", 0.85, 0.0, "rounded_vowel", 0.35, 0.7),
    "aU@": _glide("open_vowel", 0.85, 0.0, "mid_vowel", 0.45, 0.2),
    # mid vowels; a# is the reduced "a" (article, "ago"), 3 the r-coloured schwa (en-us)
    "E": _vowel("mid_vowel", 0.55), "E2": _vowel("mid_vowel", 0.55), "E3": _vowel("mid_vowel", 0.55),
    "e": _vowel("mid_vowel", 0.45), "@": _vowel("mid_vowel", 0.4), "@2": _vowel("mid_vowel", 0.35),
    "@5": _vowel("mid_vowel", 0.35, 0.3), "@-": _vowel("mid_vowel", 0.35), "a#": _vowel("mid_vowel", 0.5),
    "V": _vowel("mid_vowel", 0.6),
    "3": _vowel("mid_vowel", 0.4, 0.2), "3:": _vowel("mid_vowel", 0.45, 0.2),
    "eI": _glide("mid_vowel", 0.5, 0.0, "close_vowel", 0.25, 0.0),
    "e@": _glide("mid_vowel", 0.55, 0.0, "mid_vowel", 0.45, 0.0),
    "@L": _glide("mid_vowel", 0.4, 0.0, "alveolar", 0.2, 0.0),  # syllabic l ("bottle")
    "VR": _glide("mid_vowel", 0.55, 0.0, "r", 0.2, 0.4),  # Scottish "church"
    # close vowels; I# is the reduced American "i" ("painted"), I2 the unstressed one
    "i:": _vowel("close_vowel", 0.15), "i": _vowel("close_vowel", 0.2), "I": _vowel("close_vowel", 0.3),
    "I2": _vowel("close_vowel", 0.3), "I#": _vowel("close_vowel", 0.3),
    "i@": _glide("close_vowel", 0.25, 0.0, "mid_vowel", 0.45, 0.0),
    "i@3": _glide("close_vowel", 0.25, 0.0, "mid_vowel", 0.4, 0.2),
    "IR": _glide("close_vowel", 0.3, 0.0, "r", 0.2, 0.4),  # Scottish "thirty"
    # rounded vowels; 0 is the "lot" vowel (open, lightly rounded), O2 the American "on"
    "u:": _vowel("rounded_vowel", 0.2, 1.0), "U": _vowel("rounded_vowel", 0.3, 0.7),
    "O:": _vowel("rounded_vowel", 0.6, 0.7), "O": _vowel("rounded_vowel", 0.6, 0.7),
    "O2": _vowel("rounded_vowel", 0.65, 0.6), "O@": _vowel("rounded_vowel", 0.55, 0.7),
    "o@": _vowel("rounded_vowel", 0.5, 0.7), "0": _vowel("rounded_vowel", 0.75, 0.4),
    "oU": _glide("rounded_vowel", 0.45, 0.6, "rounded_vowel", 0.25, 0.9),
    "OI": _glide("rounded_vowel", 0.55, 0.7, "close_vowel", 0.25, 0.0),
    "U@": _glide("rounded_vowel", 0.3, 0.7, "mid_vowel", 0.45, 0.2),
    "u@": _glide("rounded_vowel", 0.25, 0.9, "mid_vowel", 0.45, 0.2),
}

PHONEME_TABLE: dict[str, PhonemeInfo] = {symbol: PhonemeInfo(symbol, *row) for symbol, row in _TABLE.items()}

_VOWEL_STARTS = set("aAeEiIoOuUV03@")
_DECORATIONS = "#-/[;:0123456789"


def split_stress(mnemonic: str) -> tuple[str, int]:
    """``"'aI"`` -> ``("aI", 2)``: espeak marks stress with a prefix on the vowel."""
    stress = 0
    while mnemonic and mnemonic[0] in _STRESS_MARKS:
        stress = max(stress, _STRESS_MARKS[mnemonic[0]])
        mnemonic = mnemonic[1:]
    return mnemonic, stress


def normalize_symbol(mnemonic: str) -> str:
    """A mnemonic as voxmesh stores it: no stress mark, every pause (``_``, ``_:``, ``_!``) ``"_"``."""
    symbol, _ = split_stress(mnemonic)
    return SILENCE if not symbol or symbol.startswith("_") else symbol


def viseme_of(symbol: str) -> PhonemeInfo:
    """Mouth shape of an espeak mnemonic (stress marks allowed). A symbol outside the table
    takes the entry of its undecorated form or of its first letters, else a mid vowel or
    an alveolar consonant by its first letter; such a guess has ``known=False``."""
    symbol = normalize_symbol(symbol)
    info = PHONEME_TABLE.get(symbol)
    if info is not None:
        return info
    candidates = [symbol.rstrip(_DECORATIONS), symbol[:2], symbol[:1]]
    for candidate in candidates:
        if candidate and candidate in PHONEME_TABLE:
            return replace(PHONEME_TABLE[candidate], symbol=symbol, known=False)
    row = _vowel("mid_vowel", 0.45) if symbol[:1] in _VOWEL_STARTS else _consonant("alveolar", 0.1)
    return PhonemeInfo(symbol, *row, known=False)
