"""CTC prefix beam search: the n best label sequences of a CTC output, each with its
total probability summed over all alignments that collapse to it."""
from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import Tensor

NEG_INF = -math.inf


def _log_add(*xs: float) -> float:
    m = max(xs)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _prefix_beam_search_one(lp: list[list[float]], top: list[list[int]], blank: int,
                            beam: int) -> list[tuple[list[int], float]]:
    # prefix -> [log p(ending in blank), log p(ending in a label)]
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, NEG_INF]}
    for frame, candidates in zip(lp, top):
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (p_b, p_nb) in beams.items():
            p_total = _log_add(p_b, p_nb)
            cell = nxt[prefix]
            cell[0] = _log_add(cell[0], p_total + frame[blank])
            last = prefix[-1] if prefix else None
            for c in candidates:
                if c == blank:
                    continue
                ext = nxt[prefix + (c,)]
                if c == last:
                    # a repeated label needs a blank in between; without one it merges
                    ext[1] = _log_add(ext[1], p_b + frame[c])
                    cell[1] = _log_add(cell[1], p_nb + frame[c])
                else:
                    ext[1] = _log_add(ext[1], p_total + frame[c])
        ranked = sorted(nxt.items(), key=lambda kv: _log_add(*kv[1]), reverse=True)
        beams = dict(ranked[:beam])
    return [(list(p), _log_add(*s)) for p, s in sorted(beams.items(), key=lambda kv: _log_add(*kv[1]),
                                                      reverse=True)]


@torch.no_grad()
def ctc_prefix_beam_search(log_probs: Tensor, lens: Tensor, blank_id: int,
                           beam: int = 10) -> list[list[tuple[list[int], float]]]:
    """Per utterance, up to ``beam`` (labels, log-probability) pairs, best first.

    At each frame only the ``beam`` most likely tokens extend a prefix.
    """
    if beam < 1:
        raise ValueError(f"beam (nbest) must be >= 1, got {beam}")
    V = log_probs.shape[-1]
    k = min(beam, V)
    lp64 = log_probs.double()
    top = lp64.topk(k, dim=-1).indices
    out = []
    for b, n in enumerate(lens.tolist()):
        out.append(_prefix_beam_search_one(lp64[b, :n].tolist(), top[b, :n].tolist(), blank_id, beam))
    return out
