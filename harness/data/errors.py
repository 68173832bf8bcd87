"""Errors raised by data preparation; each names the offending thing."""
from __future__ import annotations


class DataError(ValueError):
    """Base class of every data-preparation error."""


class CorpusNotFoundError(DataError, FileNotFoundError):
    """The corpus directory (or a part of it the recipe needs) does not exist."""


class MissingAudioError(DataError):
    """A transcript line names an utterance whose audio file does not exist."""


class EmptySplitError(DataError):
    """A split has no usable utterances."""


class UnknownCorpusError(DataError):
    """The corpus name is not one the harness can prepare."""
