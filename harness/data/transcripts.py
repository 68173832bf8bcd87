"""Transcripts: LibriSpeech's text as lhotse's recipe reads it, and its alphabet.

lhotse's ``prepare_librispeech`` (which icefall's prepare.sh runs with its
defaults) splits each ``*.trans.txt`` line at the first whitespace into the
utterance id and the text, and strips the text; with ``normalize_text="none"``
it keeps case and every character. :func:`parse_transcript_line` does the same,
so the checks here see the text the manifests hold.

LibriSpeech's transcripts use upper-case A-Z, the apostrophe and the space.
Other characters (diacritics, digits, CJK, lower case, tabs) would reach the
manifests and the BPE model unnoticed; :func:`outside_alphabet` finds them, and
:func:`alphabet_message` says, in one line, how many and which.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Iterable

LIBRISPEECH_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
LIBRISPEECH_ALPHABET_NAME = "the LibriSpeech alphabet (A-Z, apostrophe, space)"
OOV_POLICIES = ("report", "reject")
MAX_EXAMPLES = 3


def parse_transcript_line(line: str) -> tuple[str, str]:
    """(utterance id, text) of one ``*.trans.txt`` line, as lhotse's recipe parses it
    (text "" when the line holds only an id)."""
    fields = line.strip().split(maxsplit=1)
    return fields[0], (fields[1].strip() if len(fields) > 1 else "")


def outside_alphabet(texts: Iterable[tuple[str, str]], alphabet: frozenset[str]) -> dict[str, tuple[str, str]]:
    """{utterance id: (text, characters outside ``alphabet`` in order of appearance)}."""
    found = {}
    for utt_id, text in texts:
        bad = "".join(dict.fromkeys(c for c in text if c not in alphabet))
        if bad:
            found[utt_id] = (text, bad)
    return found


def describe_char(c: str) -> str:
    """``'É' (LATIN CAPITAL LETTER E WITH ACUTE)``; unprintable and combining ones by code point."""
    name = unicodedata.name(c, "control character" if unicodedata.category(c) == "Cc" else "unnamed")
    if c.isprintable() and not unicodedata.combining(c):
        return f"{c!r} ({name})"
    return f"U+{ord(c):04X} ({name})"


def alphabet_message(corpus: str, split: str, found: dict[str, tuple[str, str]], total: int,
                     alphabet_name: str = LIBRISPEECH_ALPHABET_NAME) -> str:
    """One line: how many transcripts hold which characters outside the alphabet, with examples."""
    counts = Counter(c for text, bad in found.values() for c in text if c in bad)
    chars = ", ".join(f"{describe_char(c)} x{n}" for c, n in counts.most_common(MAX_EXAMPLES * 2))
    if len(counts) > MAX_EXAMPLES * 2:
        chars += f", ... ({len(counts)} distinct)"
    examples = "; ".join(f'{utt} "{text}"' for utt, (text, _) in list(found.items())[:MAX_EXAMPLES])
    return (f"{corpus} {split}: {len(found)} of {total} transcripts hold characters outside "
            f"{alphabet_name}: {chars}; e.g. {examples}")
