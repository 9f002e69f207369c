"""Varied English sentences from a built-in vocabulary and a handful of grammars.

The vocabulary is chosen for the face, not for meaning: words with lip closures
(p, b, m), lip-teeth contact (f, v), tongue-between-teeth (th), protruded lips (sh, ch,
j), rounding (w, oo, o) and r come often, so every viseme class is well represented.
"""

from __future__ import annotations

import random
from typing import Callable

from voxmesh.errors import VoxmeshError

MIN_WORDS, MAX_WORDS = 4, 14

NAMES = (
    "Maria", "Peter", "Sophie", "Thomas", "William", "Ruth", "Beth", "Michael", "Fiona", "Victor",
    "Charlotte", "Joshua", "Rachel", "Oliver", "Bob", "Martha", "Walter", "Judy", "Hugo", "Owen",
    "Bruno", "Phoebe", "Matthew", "Sharon", "Vivian", "George", "Paula", "Ray", "Wendy", "Arthur",
)

# (singular, plural)
NOUNS = (
    ("bottle", "bottles"), ("puppy", "puppies"), ("movie", "movies"), ("photo", "photos"), ("vase", "vases"),
    ("feather", "feathers"), ("map", "maps"), ("ship", "ships"), ("chair", "chairs"), ("shoe", "shoes"),
    ("watch", "watches"), ("window", "windows"), ("wagon", "wagons"), ("rope", "ropes"), ("robot", "robots"),
    ("boat", "boats"), ("spoon", "spoons"), ("book", "books"), ("ball", "balls"), ("fish", "fish"),
    ("van", "vans"), ("bridge", "bridges"), ("jacket", "jackets"), ("orange", "oranges"), ("garden", "gardens"),
    ("violin", "violins"), ("trumpet", "trumpets"), ("pumpkin", "pumpkins"), ("mirror", "mirrors"),
    ("umbrella", "umbrellas"), ("pillow", "pillows"), ("blanket", "blankets"), ("flower", "flowers"),
    ("hammer", "hammers"), ("wheel", "wheels"), ("brush", "brushes"), ("cheese", "cheeses"), ("rumour", "rumours"),
    ("moth", "moths"), ("thumb", "thumbs"), ("mouth", "mouths"), ("tooth", "teeth"), ("muffin", "muffins"),
    ("pebble", "pebbles"), ("broom", "brooms"), ("parrot", "parrots"), ("wolf", "wolves"), ("shovel", "shovels"),
    ("rubber boot", "rubber boots"), ("phone", "phones"), ("cherry", "cherries"), ("peach", "peaches"),
    ("purse", "purses"), ("whistle", "whistles"), ("novel", "novels"), ("ruby", "rubies"), ("mushroom", "mushrooms"),
    ("sofa", "sofas"), ("picture", "pictures"), ("bowl", "bowls"), ("towel", "towels"), ("wallet", "wallets"),
    ("fork", "forks"), ("envelope", "envelopes"), ("glove", "gloves"), ("stove", "stoves"),
    ("coffee cup", "coffee cups"), ("waffle", "waffles"), ("giraffe", "giraffes"), ("fountain pen", "fountain pens"), ("video", "videos"),
)

ADJECTIVES = (
    "purple", "brown", "bright", "warm", "smooth", "thick", "thin", "fresh", "cheap", "whole", "huge", "tiny",
    "shiny", "rough", "soft", "broken", "golden", "quiet", "famous", "heavy", "yellow", "round", "blue", "new",
    "old", "wooden", "cool", "pretty", "funny", "beautiful", "rich", "sharp", "muddy", "woolly", "polished",
    "orange", "fluffy", "frozen", "valuable", "wonderful", "strange", "modern", "plump", "bumpy", "rusty",
    "lovely", "velvet", "fancy", "flat", "vivid", "fair", "brave", "favourite",
)

# (base, past)
VERBS = (
    ("buy", "bought"), ("move", "moved"), ("push", "pushed"), ("find", "found"), ("throw", "threw"),
    ("bring", "brought"), ("wash", "washed"), ("fix", "fixed"), ("watch", "watched"), ("paint", "painted"),
    ("borrow", "borrowed"), ("carry", "carried"), ("open", "opened"), ("choose", "chose"), ("follow", "followed"),
    ("measure", "measured"), ("share", "shared"), ("polish", "polished"), ("wrap", "wrapped"), ("fetch", "fetched"),
    ("remove", "removed"), ("prepare", "prepared"), ("approve", "approved"), ("pack", "packed"), ("visit", "visited"),
    ("show", "showed"), ("boil", "boiled"), ("mop", "mopped"), ("rub", "rubbed"), ("weigh", "weighed"),
    ("photograph", "photographed"), ("sell", "sold"), ("break", "broke"), ("keep", "kept"), ("grab", "grabbed"),
    ("fold", "folded"), ("save", "saved"), ("deliver", "delivered"), ("fill", "filled"), ("love", "loved"),
)

INTRANSITIVE = (
    ("laugh", "laughed"), ("run", "ran"), ("swim", "swam"), ("whisper", "whispered"), ("shout", "shouted"),
    ("move", "moved"), ("wave", "waved"), ("breathe", "breathed"), ("vote", "voted"), ("shiver", "shivered"),
    ("frown", "frowned"), ("smile", "smiled"), ("bow", "bowed"), ("jump", "jumped"), ("worry", "worried"),
)

PLACES = (
    "in the kitchen", "by the river", "near the bridge", "at the market", "under the bed", "through the window",
    "on the porch", "behind the shop", "over the fence", "across the road", "in the bathroom", "on the roof",
    "beside the fountain", "in the forest", "at the museum", "by the harbour", "on the ferry", "in the garage",
    "at the theatre", "in the church", "under the bridge", "near the pharmacy", "at the beach", "in the warehouse",
)

TIMES = (
    "yesterday", "this morning", "on Thursday", "every week", "last summer", "before lunch", "at noon",
    "after school", "tonight", "on Monday", "in February", "every Friday", "next month", "this evening",
    "at midnight", "before breakfast", "in the afternoon", "three weeks ago", "last Wednesday", "on Sunday",
)

ADVERBS = (
    "quickly", "slowly", "carefully", "quietly", "happily", "proudly", "gently", "boldly", "bravely",
    "thoughtfully", "patiently", "wisely", "roughly", "smoothly", "fearlessly", "warmly", "promptly",
    "softly", "faithfully", "very gently", "forcefully",
)

NUMBERS = (
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "fifteen", "twenty",
    "thirty", "forty", "fifty", "ninety", "a hundred", "3", "7", "12", "24", "58", "99", "150",
)

PRONOUNS = ("he", "she", "we", "they", "you", "I")


def _noun_phrase(rng: random.Random, plural: bool = False) -> str:
    singular, plural_form = rng.choice(NOUNS)
    noun = plural_form if plural else singular
    words = []
    if plural:
        words.append(rng.choice(("the", "some", "those", "my", "our", "your")))
    else:
        words.append(rng.choice(("the", "a", "my", "your", "her", "his", "that", "this")))
    if rng.random() < 0.6:
        words.append(rng.choice(ADJECTIVES))
    words.append(noun)
    if words[0] == "a" and words[1][0] in "aeiou":  # "an orange", "an old ..."
        words[0] = "an"
    return " ".join(words)


def _subject(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(NAMES)
    if roll < 0.6:
        return f"{rng.choice(NAMES)} and {rng.choice(NAMES)}"
    if roll < 0.8:
        return rng.choice(PRONOUNS)
    return _noun_phrase(rng)


def _statement(rng: random.Random) -> str:
    verb = rng.choice(VERBS)[1]
    tail = rng.choice(("", rng.choice(PLACES), rng.choice(TIMES), rng.choice(ADVERBS)))
    return " ".join(part for part in (_subject(rng), verb, _noun_phrase(rng, rng.random() < 0.3), tail) if part) + "."


def _fronted_adverbial(rng: random.Random) -> str:
    opener = _capital(rng.choice((rng.choice(TIMES), rng.choice(PLACES))))
    verb = rng.choice(VERBS)[1]
    return f"{opener}, {_subject(rng)} {verb} {_noun_phrase(rng)}."


def _question(rng: random.Random) -> str:
    kind = rng.randrange(6)
    base = rng.choice(VERBS)[0]
    if kind == 0:
        return f"Did {rng.choice(NAMES)} {base} {_noun_phrase(rng)} {rng.choice(TIMES)}?"
    if kind == 1:
        return f"Where did you put {_noun_phrase(rng, rng.random() < 0.3)}?"
    if kind == 2:
        return f"Why is {_noun_phrase(rng)} so {rng.choice(ADJECTIVES)}?"
    if kind == 3:
        return f"How many {rng.choice(NOUNS)[1]} did {rng.choice(NAMES)} {base}?"
    if kind == 4:
        return f"Would you {base} {_noun_phrase(rng)} {rng.choice(PLACES)}?"
    return f"Who {rng.choice(VERBS)[1]} {_noun_phrase(rng)} {rng.choice(('', rng.choice(TIMES)))}".rstrip() + "?"


def _numbers(rng: random.Random) -> str:
    number = rng.choice(NUMBERS)
    noun = rng.choice(NOUNS)[1]
    kind = rng.randrange(3)
    if kind == 0:
        return f"{rng.choice(NAMES)} {rng.choice(VERBS)[1]} {number} {rng.choice(ADJECTIVES)} {noun}."
    if kind == 1:
        return f"There were {number} {noun} {rng.choice(PLACES)}."
    return f"The {rng.choice(NOUNS)[0]} cost {number} dollars {rng.choice(TIMES)}."


def _imperative(rng: random.Random) -> str:
    base = rng.choice(VERBS)[0]
    opener = rng.choice(("Please ", "", "Now ", "Always "))
    return f"{opener}{base} {_noun_phrase(rng)} {rng.choice(PLACES)}{rng.choice(('.', '!'))}"


def _exclamation(rng: random.Random) -> str:
    singular = rng.choice(NOUNS)[0]
    adjective = rng.choice(ADJECTIVES)
    article = "an" if adjective[0] in "aeiou" else "a"
    return rng.choice((
        f"What {article} {adjective} {singular} that was!",
        f"Wow, the {singular} is so {adjective}!",
        f"Oh no, {rng.choice(NAMES)} {rng.choice(VERBS)[1]} the {singular}!",
    ))


def _compound(rng: random.Random) -> str:
    first = f"{rng.choice(NAMES)} {rng.choice(VERBS)[1]} {_noun_phrase(rng)}"
    joiner = rng.choice(("but", "and", "so", "while"))
    second = f"{rng.choice(PRONOUNS)} {rng.choice(INTRANSITIVE)[1]} {rng.choice(ADVERBS)}"
    return f"{first}, {joiner} {second}."


def _intransitive(rng: random.Random) -> str:
    verb = rng.choice(INTRANSITIVE)[1]
    extra = rng.choice((rng.choice(ADVERBS), rng.choice(PLACES), rng.choice(TIMES)))
    return f"{_subject(rng)} {verb} {extra}."


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


_GRAMMARS: tuple[Callable[[random.Random], str], ...] = (
    _statement, _statement, _fronted_adverbial, _question, _question, _numbers, _imperative, _exclamation,
    _compound, _intransitive,
)


def word_count(sentence: str) -> int:
    return len(sentence.split())


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct English sentences of 4-14 words, the same for the same seed."""
    if n < 0:
        raise VoxmeshError(f"Number of sentences {n} is negative; ask for 0 or more.")
    rng = random.Random(seed)
    sentences: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(sentences) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise VoxmeshError(f"Could not make {n} distinct sentences; ask for fewer.")
        sentence = _capital(" ".join(rng.choice(_GRAMMARS)(rng).split()))
        if MIN_WORDS <= word_count(sentence) <= MAX_WORDS and sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return sentences
