"""Transducer modified beam search (the paper's decoding: beam 4, at most one symbol
per frame), batched over utterances.

At each frame every hypothesis of every active utterance is extended by blank
or by one label; per utterance the ``beam`` best extensions survive, and
extensions that end with the same label sequence are merged by adding their
probabilities. The answer is the hypothesis with the best log-probability per
history token (the authors normalise by length, counting the initial context).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .transducer_context import initial_context, projected_decoder_out


def _log_add(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


@torch.no_grad()
def modified_beam_search(model: nn.Module, enc: Tensor, enc_lens: Tensor, beam: int = 4,
                         unk_id: int | None = None) -> list[list[int]]:
    """Best label sequence per utterance.

    Args:
      model: has ``decoder``, ``joiner`` and ``blank_id``.
      enc: encoder output (B, T, D); enc_lens: (B,) valid frames.
      beam: hypotheses kept per utterance.
      unk_id: a label that, like blank, extends no hypothesis (the authors' search does this for <unk>).
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    B, T, _ = enc.shape
    silent = {model.blank_id, model.blank_id if unk_id is None else unk_id}
    enc_proj = model.joiner.encoder_proj(enc)
    # per utterance: history (initial context + labels) -> log-probability
    beams: list[dict[tuple[int, ...], float]] = [{initial_context(model): 0.0} for _ in range(B)]
    lens = enc_lens.tolist()
    for t in range(T):
        active = [b for b in range(B) if lens[b] > t]
        if not active:
            break
        owners = [b for b in active for _ in beams[b]]
        histories = [h for b in active for h in beams[b]]
        scores = torch.tensor([beams[b][h] for b in active for h in beams[b]],
                              dtype=torch.float64, device=enc.device)
        dec = projected_decoder_out(model, histories, enc.device)  # (N, 1, J)
        frame = enc_proj[torch.tensor(owners, device=enc.device), t].unsqueeze(1)
        logp = model.joiner(frame, dec, project_input=False).squeeze(1).log_softmax(dim=-1)
        total = logp.double() + scores.unsqueeze(1)  # (N, V)
        V = total.shape[1]
        row = 0
        for b in active:
            n = len(beams[b])
            flat = total[row: row + n].reshape(-1)
            top_scores, top_idx = flat.topk(min(beam, flat.numel()))
            new: dict[tuple[int, ...], float] = {}
            for score, i in zip(top_scores.tolist(), top_idx.tolist()):
                hist = histories[row + i // V]
                token = i % V
                if token not in silent:
                    hist = hist + (token,)
                new[hist] = _log_add(new[hist], score) if hist in new else score
            beams[b] = new
            row += n
    start = model.decoder.context_size
    best = [max(hyps.items(), key=lambda kv: kv[1] / len(kv[0]))[0] for hyps in beams]
    return [list(h[start:]) for h in best]
