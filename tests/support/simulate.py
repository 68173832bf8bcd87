"""Simulated per-utterance errors with known population error rates (shared by the stats tests).

Speaker ``k`` has a difficulty ``d_k`` and utterance ``i`` a difficulty ``e_i``, both
``2 * Beta(2, 2)`` (mean 1, in [0, 2]); system ``s`` with population rate ``m_s`` errs on
each of the utterance's ``L_i`` reference words with probability ``m_s * d_k * e_i``.
The difficulties are shared by both systems, so their errors are paired as real
systems' are. Lengths are independent of the difficulties, so the population
corpus WER of system ``s`` is ``E[L m_s d e] / E[L] = m_s`` exactly: the true
difference of two systems is ``m_a - m_b``, with no finite-sample approximation.
"""
from __future__ import annotations

import numpy as np


def simulate(rng: np.random.Generator, rates, n_speakers: int = 100, per_speaker: int = 10,
             speaker_spread: float = 2.0, seed_offsets=None):
    """(errors per system (n_seeds, n_utts) or (n_utts,), ref_len, speaker labels).

    ``speaker_spread``: 2 gives ``d_k = 2 * Beta(2, 2)``; 0 makes every speaker alike.
    ``seed_offsets``: per seed, a relative change of every error probability, shared
    by the systems (the same seed's noise in both); None for one seed, 1-D errors.
    """
    spk = np.repeat(np.arange(n_speakers), per_speaker)
    n = spk.size
    ref_len = 5 + rng.poisson(15, n)
    d = (1 - speaker_spread / 2 + speaker_spread * rng.beta(2, 2, n_speakers))[spk]
    e = 2 * rng.beta(2, 2, n)
    out = []
    for m in rates:
        p = m * d * e
        if seed_offsets is None:
            out.append(rng.binomial(ref_len, p))
        else:
            out.append(np.stack([rng.binomial(ref_len, np.clip(p * (1 + o), 0, 1)) for o in seed_offsets]))
    return out, ref_len, np.array([f"spk{k}" for k in spk])
