"""Transducer greedy search, batched over utterances, at most one symbol per frame
(the authors' ``greedy_search_batch``)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .transducer_context import initial_context, projected_decoder_out


@torch.no_grad()
def greedy_search(model: nn.Module, enc: Tensor, enc_lens: Tensor,
                  unk_id: int | None = None) -> list[list[int]]:
    """Best label at each frame given the labels so far; blank (and ``unk_id``,
    as in the authors' search) emits nothing.

    Args:
      model: has ``decoder``, ``joiner`` and ``blank_id``.
      enc: encoder output (B, T, D); enc_lens: (B,) valid frames.
    """
    B, T, _ = enc.shape
    silent = {model.blank_id, model.blank_id if unk_id is None else unk_id}
    enc_proj = model.joiner.encoder_proj(enc)  # (B, T, J)
    histories = [list(initial_context(model)) for _ in range(B)]
    dec = projected_decoder_out(model, histories, enc.device)  # (B, 1, J)
    lens = enc_lens.tolist()
    for t in range(T):
        active = [b for b in range(B) if lens[b] > t]
        if not active:
            break
        idx = torch.tensor(active, device=enc.device)
        logits = model.joiner(enc_proj[idx, t].unsqueeze(1), dec[idx], project_input=False)
        best = logits.squeeze(1).argmax(dim=-1).tolist()
        emitted = [b for b, y in zip(active, best) if y not in silent]
        if not emitted:
            continue
        for b, y in zip(active, best):
            if y not in silent:
                histories[b].append(y)
        dec = dec.clone()
        dec[torch.tensor(emitted, device=enc.device)] = projected_decoder_out(
            model, [histories[b] for b in emitted], enc.device)
    start = model.decoder.context_size
    return [h[start:] for h in histories]
