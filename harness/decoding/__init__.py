"""Decoding (transducer greedy and modified beam search, CTC greedy search,
attention-decoder rescoring of CTC n-best) and WER/CER scoring.

    >>> from harness.decoding import decode, available_methods, error_rate
    >>> hyps = decode(model, feats, feat_lens, "modified_beam_search", beam=4)
    >>> print(error_rate(refs, texts, unit="word"))   # %WER 12.34 [ 56 / 454, 7 ins, 8 del, 41 sub ]
"""
from .attention_rescoring import attention_rescoring, attention_scores
from .ctc_greedy_search import ctc_greedy_search
from .ctc_prefix_beam_search import ctc_prefix_beam_search
from .decode import BEAM_METHODS, METHOD_HEADS, available_methods, decode
from .error_rate import ErrorStats, UtteranceErrors, error_rate, split_units, utterance_errors
from .greedy_search import greedy_search
from .settings import DecodeSettings
from .modified_beam_search import modified_beam_search

__all__ = [
    "BEAM_METHODS", "DecodeSettings", "ErrorStats", "METHOD_HEADS", "attention_rescoring", "attention_scores", "available_methods",
    "ctc_greedy_search", "ctc_prefix_beam_search", "decode", "error_rate", "greedy_search",
    "modified_beam_search", "split_units", "UtteranceErrors", "utterance_errors",
]
