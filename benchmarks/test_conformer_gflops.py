"""Conformer-S/M/L encoder GFLOPs (encoder_embed + encoder, one 3000 x 80 input,
batch 1) with plain DeepSpeed ``get_model_profile``, against the paper's Table 2.

    python3 -m pytest benchmarks/test_conformer_gflops.py -s    # or run this file

Ours omit the authors' output layer Linear(d_model, 500), whose role the
joiner's encoder_proj takes in the harness; its 2 * d * 500 * 749 FLOPs are
printed beside, to compare with the authors' own count (29.15 / 77.13 / 294.40).
"""
from __future__ import annotations

import logging
import sys

import pytest
import torch
from torch import nn

from variants import get_spec
from variants.encoders.conformer import build

FRAMES, FEATURES = 3000, 80
OUT_FRAMES = ((FRAMES - 1) // 2 - 1) // 2


class _EmbedAndEncoder(nn.Module):
    def __init__(self, embed: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder_embed, self.encoder = embed, encoder

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        return self.encoder(*self.encoder_embed(x, x_lens))


def conformer_gflops(variant: str) -> tuple[float, float, float]:
    """(our GFLOPs, GFLOPs with the authors' output layer added, paper GFLOPs)."""
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    from deepspeed.profiling.flops_profiler import get_model_profile

    spec = get_spec(variant)
    model = _EmbedAndEncoder(*build(spec.encoder)).eval()
    x, x_lens = torch.ones(1, FRAMES, FEATURES), torch.tensor([FRAMES])
    with torch.no_grad():
        flops, _, _ = get_model_profile(model, args=[x, x_lens], print_profile=False, as_string=False)
    d = spec.encoder.d_model
    output_layer = 2 * d * spec.heads.vocab_size * OUT_FRAMES
    return flops / 1e9, (flops + output_layer) / 1e9, float(spec.paper_gflops)


@pytest.mark.parametrize("variant", ["conformer-s", "conformer-m", "conformer-l"])
def test_conformer_gflops_match_paper(variant):
    ours, with_output_layer, paper = conformer_gflops(variant)
    print(f"{variant}: {ours:.2f} GFLOPs (with the authors' output layer {with_output_layer:.2f}; paper {paper})")
    assert abs(ours - paper) / paper < 0.02


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name in sys.argv[1:] or ["conformer-s", "conformer-m", "conformer-l"]:
        ours, with_out, paper = conformer_gflops(name)
        print(f"{name}: {ours:.2f} GFLOPs (with the authors' output layer {with_out:.2f}; paper {paper})")
