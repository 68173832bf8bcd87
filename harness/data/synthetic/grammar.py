"""A seeded English sentence generator: a small grammar and vocabulary of our own.

Sentences are upper-case words separated by single spaces (LibriSpeech's
transcript convention), so the same tokenizer and scoring serve both corpora.
``vocab_level`` (0..1) takes a prefix of every word class: lower levels give a
smaller vocabulary, which is what makes the easy tier easy.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

# Word classes, most common-sounding first (a tier keeps a prefix of each).
NOUNS = (
    "CAT DOG BIRD HORSE FISH TREE HOUSE BOAT TRAIN BOOK DOOR GARDEN RIVER HILL "
    "CAR CHAIR TABLE WINDOW LAMP CLOCK APPLE BREAD LETTER BOX KEY SHIP ROAD FARM "
    "CITY LAKE FOREST BRIDGE TOWER MARKET KITCHEN PENCIL BASKET BLANKET CANDLE "
    "COAT HAT SHOE BOTTLE CUP PLATE BELL DRUM GUITAR PIANO RABBIT TIGER MONKEY "
    "ELEPHANT TURTLE SPIDER FLOWER STONE CLOUD STORM ISLAND MOUNTAIN VALLEY "
    "WAGON ROCKET PLANET PUZZLE MIRROR LADDER HAMMER BUCKET PILLOW ENVELOPE "
    "TICKET BLOSSOM LANTERN CASTLE CARPET TRUMPET VIOLIN ORCHARD HARBOR MEADOW"
).split()
ADJECTIVES = (
    "BIG SMALL RED BLUE GREEN OLD NEW HAPPY QUIET LOUD WARM COLD BRIGHT DARK "
    "TALL SHORT HEAVY LIGHT YELLOW BROWN SLOW FAST CLEAN DIRTY SOFT ROUND EMPTY "
    "FRIENDLY PURPLE GOLDEN WOODEN SILVER GENTLE CLEVER NARROW WIDE ANCIENT "
    "FAMOUS CURIOUS MODERN"
).split()
# (past tense, takes an object)
TRANSITIVE = (
    "SAW FOUND TOOK MOVED OPENED CLOSED PAINTED CARRIED WATCHED CLEANED FOLLOWED "
    "BOUGHT SOLD BUILT FIXED PUSHED PULLED DROPPED CAUGHT HELD LIFTED COUNTED "
    "REMEMBERED DESCRIBED DISCOVERED ORDERED COLLECTED BORROWED DELIVERED "
    "NOTICED PROTECTED VISITED"
).split()
INTRANSITIVE = (
    "SLEPT RAN JUMPED WAITED LAUGHED SANG WALKED STOPPED FELL SMILED ARRIVED "
    "LEFT SHOUTED DANCED STAYED WORKED RESTED WANDERED VANISHED APPEARED"
).split()
ADVERBS = (
    "TODAY AGAIN SLOWLY QUICKLY TOGETHER OUTSIDE LATER EARLY QUIETLY LOUDLY "
    "YESTERDAY SOMETIMES CAREFULLY SUDDENLY HAPPILY GENTLY"
).split()
PREPOSITIONS = "IN ON NEAR UNDER BEHIND BESIDE ACROSS ABOVE AROUND THROUGH".split()
NAMES = (
    "ANNA TOM MARY JOHN LUCY PETER EMMA DAVID SARAH JACK NORA OLIVER "
    "GRACE HENRY CLARA SIMON"
).split()
NUMBERS = "TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN TWELVE TWENTY".split()
DETERMINERS = ("THE", "A", "THIS", "THAT", "MY", "YOUR", "HER", "HIS", "OUR", "EVERY")
PRONOUNS = ("SHE", "HE", "WE", "THEY", "I", "YOU")
TIMES = ("IN THE MORNING", "AT NIGHT", "ON MONDAY", "AFTER LUNCH", "BEFORE DINNER",
         "ON FRIDAY", "IN THE EVENING", "AT NOON")


@dataclass(frozen=True)
class Lexicon:
    """The word classes available at one vocabulary level."""

    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    transitive: tuple[str, ...]
    intransitive: tuple[str, ...]
    adverbs: tuple[str, ...]
    prepositions: tuple[str, ...]
    names: tuple[str, ...]
    numbers: tuple[str, ...]
    determiners: tuple[str, ...]
    pronouns: tuple[str, ...]
    times: tuple[str, ...]

    @classmethod
    def at_level(cls, level: float) -> "Lexicon":
        if not 0.0 < level <= 1.0:
            raise ValueError(f"vocab_level={level} must be in (0, 1]")

        def cut(words, minimum: int = 2) -> tuple[str, ...]:
            return tuple(words[:max(minimum, round(len(words) * level))])

        return cls(cut(NOUNS, 8), cut(ADJECTIVES, 4), cut(TRANSITIVE, 4), cut(INTRANSITIVE, 3),
                   cut(ADVERBS, 3), cut(PREPOSITIONS, 3), cut(NAMES, 3), cut(NUMBERS, 3),
                   cut(DETERMINERS, 3), cut(PRONOUNS, 3), cut(TIMES, 2))

    def vocabulary(self) -> set[str]:
        words: set[str] = {"AND", "THE", "WITH", "WAS", "WERE", "PLEASE", "BRING", "ME", "TO",
                           "LIKED", "THERE", "AN"}
        words.update(_plural(n) for n in self.nouns)
        for group in (self.nouns, self.adjectives, self.transitive, self.intransitive,
                      self.adverbs, self.prepositions, self.names, self.numbers,
                      self.determiners, self.pronouns, self.times):
            for item in group:
                words.update(item.split())
        return words


def _plural(noun: str) -> str:
    if noun.endswith(("S", "SH", "CH", "X")):
        return noun + "ES"
    if noun.endswith("Y") and noun[-2] not in "AEIOU":
        return noun[:-1] + "IES"
    return noun + "S"


def _fix_articles(words: list[str]) -> list[str]:
    """'A' before a vowel-initial word becomes 'AN'."""
    return [("AN" if w == "A" and i + 1 < len(words) and words[i + 1][0] in "AEIOU" else w)
            for i, w in enumerate(words)]


class SentenceGenerator:
    """Seeded sentences of ``min_words``..``max_words`` words from :class:`Lexicon` ``lexicon``."""

    def __init__(self, lexicon: Lexicon, min_words: int, max_words: int, seed: int):
        if not 2 <= min_words <= max_words:
            raise ValueError(f"need 2 <= min_words <= max_words, got {min_words}, {max_words}")
        self.lex = lexicon
        self.min_words = min_words
        self.max_words = max_words
        self.rng = random.Random(seed)

    def _noun_phrase(self) -> list[str]:
        r, lex = self.rng, self.lex
        if r.random() < 0.15:
            return [r.choice(lex.names)]
        if r.random() < 0.15:
            words = [r.choice(lex.numbers)]
            if r.random() < 0.5:
                words.append(r.choice(lex.adjectives))
            return words + [_plural(r.choice(lex.nouns))]
        words = [r.choice(lex.determiners)]
        if r.random() < 0.5:
            words.append(r.choice(lex.adjectives))
        return words + [r.choice(lex.nouns)]

    def _subject(self) -> list[str]:
        return [self.rng.choice(self.lex.pronouns)] if self.rng.random() < 0.25 else self._noun_phrase()

    def _clause(self) -> list[str]:
        r, lex = self.rng, self.lex
        kind = r.random()
        if kind < 0.45:
            words = self._subject() + [r.choice(lex.transitive)] + self._noun_phrase()
        elif kind < 0.70:
            words = self._subject() + [r.choice(lex.intransitive)]
            if r.random() < 0.6:
                words += [r.choice(lex.prepositions)] + self._noun_phrase()
        elif kind < 0.82:
            words = ["PLEASE", "BRING", "ME"] + self._noun_phrase()
        elif kind < 0.92:
            noun = r.choice(lex.nouns)
            words = ["THERE", "WAS", "A", noun, r.choice(lex.prepositions)] + self._noun_phrase()
        else:
            words = self._subject() + ["LIKED"] + self._noun_phrase()
        extra = r.random()
        if extra < 0.25:
            words.append(r.choice(lex.adverbs))
        elif extra < 0.35:
            words += r.choice(lex.times).split()
        return words

    def sentence(self) -> str:
        """One sentence within the word limits (retries clauses until one fits)."""
        for _ in range(1000):
            words = self._clause()
            if len(words) < self.min_words and self.rng.random() < 0.7:
                words += ["AND"] + self._clause()
            if self.min_words <= len(words) <= self.max_words:
                return " ".join(_fix_articles(words))
        raise RuntimeError(f"the grammar cannot make sentences of {self.min_words}-"
                           f"{self.max_words} words at this vocabulary level")

    def next_unique(self, seen: set[str], max_tries: int = 2000) -> str:
        """A sentence not in ``seen``, which it is added to."""
        for _ in range(max_tries):
            s = self.sentence()
            if s not in seen:
                seen.add(s)
                return s
        raise ValueError(f"the grammar ran out of distinct sentences after {len(seen)}; raise "
                         "vocab_level or max_words, or ask for fewer hours")

    def unique_sentences(self, count: int, exclude: set[str] | None = None) -> list[str]:
        """``count`` distinct sentences, none in ``exclude`` (which is not modified)."""
        seen = set(exclude or ())
        return [self.next_unique(seen) for _ in range(count)]
