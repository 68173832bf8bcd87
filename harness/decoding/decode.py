"""One entry point for every decoding method: :func:`decode`."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention_rescoring import attention_rescoring
from .ctc_greedy_search import ctc_greedy_search
from .ctc_prefix_beam_search import ctc_prefix_beam_search
from .greedy_search import greedy_search
from .modified_beam_search import modified_beam_search

#: decoding method -> heads it needs
METHOD_HEADS: dict[str, tuple[str, ...]] = {
    "greedy_search": ("transducer",),
    "modified_beam_search": ("transducer",),
    "ctc_greedy_search": ("ctc",),
    "ctc_prefix_beam_search": ("ctc",),
    "attention_rescoring": ("ctc", "attention"),
}
#: methods whose result depends on ``beam``
BEAM_METHODS = ("modified_beam_search", "ctc_prefix_beam_search")


def available_methods(model: nn.Module) -> list[str]:
    """The decoding methods the model's heads support."""
    return [m for m, heads in METHOD_HEADS.items() if all(h in model.head_names for h in heads)]


@torch.no_grad()
def decode(model: nn.Module, feats: Tensor, feat_lens: Tensor, method: str, beam: int = 4,
           nbest: int = 10, attention_scale: float = 1.0, unk_id: int | None = None) -> list[list[int]]:
    """Label ids per utterance for fbank ``feats`` (B, T, 80) with ``feat_lens`` (B,).

    ``beam`` is the modified beam search's beam (paper: 4); ``nbest`` the size
    of the CTC n-best list that attention rescoring rescores; ``unk_id`` (default:
    the model's ``unk_id`` attribute if it has one) is never emitted by the
    transducer searches, as in the authors' searches. The model runs in eval
    mode (its previous mode is restored).
    """
    if method not in METHOD_HEADS:
        raise ValueError(f"unknown decoding method {method!r}; allowed: {', '.join(METHOD_HEADS)}")
    missing = [h for h in METHOD_HEADS[method] if h not in model.head_names]
    if missing:
        raise ValueError(f"decoding method {method!r} needs the {' and '.join(missing)} head(s), but the "
                         f"model has only {', '.join(model.head_names)}; available methods: "
                         f"{', '.join(available_methods(model)) or 'none'}")
    if unk_id is None:
        unk_id = getattr(model, "unk_id", None)
    was_training = model.training
    model.eval()
    try:
        enc, enc_lens = model.forward_encoder(feats, feat_lens)
        if method == "greedy_search":
            return greedy_search(model, enc, enc_lens, unk_id=unk_id)
        if method == "modified_beam_search":
            return modified_beam_search(model, enc, enc_lens, beam=beam, unk_id=unk_id)
        if method == "ctc_greedy_search":
            return ctc_greedy_search(model.ctc_output(enc), enc_lens, model.blank_id)
        if method == "ctc_prefix_beam_search":  # the best of a CTC prefix beam of size ``beam``
            nbests = ctc_prefix_beam_search(model.ctc_output(enc), enc_lens, model.blank_id, beam=beam)
            return [hyps[0][0] if hyps else [] for hyps in nbests]
        return attention_rescoring(model, enc, enc_lens, nbest=nbest, attention_scale=attention_scale)
    finally:
        model.train(was_training)
