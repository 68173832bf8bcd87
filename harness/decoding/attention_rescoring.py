"""Attention-decoder rescoring of CTC n-best lists (the authors'
"attention-decoder-rescoring-no-ngram", with the n-best taken by CTC prefix
beam search instead of sampling lattice paths)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .ctc_prefix_beam_search import ctc_prefix_beam_search


@torch.no_grad()
def attention_scores(attention_decoder: nn.Module, enc: Tensor, enc_lens: Tensor,
                     hyps: list[list[int]]) -> Tensor:
    """log p(hyp + eos | enc) under the attention decoder, (N,); ``enc`` rows align with ``hyps``."""
    tokens_in, tokens_in_lens, targets = attention_decoder.make_inputs_and_targets(hyps, device=enc.device)
    logp = attention_decoder(enc, enc_lens, tokens_in, tokens_in_lens).float().log_softmax(dim=-1)
    mask = targets != attention_decoder.ignore_id
    picked = torch.gather(logp, 2, targets.clamp(min=0).unsqueeze(2)).squeeze(2)
    return (picked * mask).sum(dim=1)


@torch.no_grad()
def attention_rescoring(model: nn.Module, enc: Tensor, enc_lens: Tensor, nbest: int = 10,
                        attention_scale: float = 1.0) -> list[list[int]]:
    """Per utterance, the CTC n-best entry maximising ``ctc_score + attention_scale * attention_score``.

    The authors sweep ``attention_scale`` on the test sets and report the best;
    here it is a fixed argument (default 1.0).
    """
    log_probs = model.ctc_output(enc)
    nbest_lists = ctc_prefix_beam_search(log_probs, enc_lens, model.blank_id, beam=nbest)
    owners = [b for b, lst in enumerate(nbest_lists) for _ in lst]
    hyps = [h for lst in nbest_lists for h, _ in lst]
    ctc_scores = torch.tensor([s for lst in nbest_lists for _, s in lst], dtype=torch.float64)
    idx = torch.tensor(owners, device=enc.device)
    att = attention_scores(model.attention_decoder, enc[idx], enc_lens[idx], hyps).double().cpu()
    total = ctc_scores + attention_scale * att
    out: list[list[int]] = []
    row = 0
    for lst in nbest_lists:
        n = len(lst)
        out.append(hyps[row + int(total[row: row + n].argmax())])
        row += n
    return out
