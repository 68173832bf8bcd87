"""Confidence intervals and verdicts for WER: blockwise bootstrap per row and over
seeds, paired differences with the probability of improvement and NIST's MAPSSWE
test, and the verdict on each claim.

Pure numpy; imports no other harness package. All WERs are in percent.
"""
from .bootstrap import compare, summarize
from .intervals import Comparison, Interval, RowSummary
from .mapsswe import mapsswe_p
from .verdicts import (BETTER, HOLDS, NOT_RESOLVED, PAPER_VERDICTS, PLAIN_VERDICTS, REVERSED, VERDICTS,
                       WORSE, seeds_to_resolve, verdict)

__all__ = ["Interval", "RowSummary", "Comparison", "summarize", "compare", "verdict", "seeds_to_resolve",
           "mapsswe_p", "VERDICTS", "PAPER_VERDICTS", "PLAIN_VERDICTS", "HOLDS", "REVERSED", "NOT_RESOLVED",
           "BETTER", "WORSE"]
