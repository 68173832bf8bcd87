"""Zipformer-S/M/L encoder GFLOPs (encoder_embed + encoder, one 3000 x 80 input,
batch 1) with plain DeepSpeed ``get_model_profile``, against the authors' own
count (notes: 40.67 / 62.78 / 107.54) and the paper's Table 2 (40.8 / 62.9 / 107.7).

    python3 -m pytest benchmarks/test_zipformer_gflops.py -s    # or run this file

Slow on CPU (about 1 / 3 / 4 minutes on one core); it is a correctness check of
the structure (every linear, convolution and matmul is where the authors have it),
not a speed benchmark.
"""
from __future__ import annotations

import logging
import sys

import pytest
import torch
from torch import nn

from variants import get_spec
from variants.encoders.zipformer import build

FRAMES, FEATURES = 3000, 80
OUT_FRAMES = ((FRAMES - 7) // 2 + 1) // 2  # 748
#: plain DeepSpeed GFLOPs of the authors' implementation (notes)
AUTHORS_GFLOPS = {"zipformer-s": 40.67, "zipformer-m": 62.78, "zipformer-l": 107.54}


class _EmbedAndEncoder(nn.Module):
    def __init__(self, embed: nn.Module, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder_embed, self.encoder = embed, encoder

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor):
        return self.encoder(*self.encoder_embed(x, x_lens))


def zipformer_gflops(variant: str) -> tuple[float, int, float]:
    """(our plain-DeepSpeed GFLOPs, output frames, paper GFLOPs)."""
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    from deepspeed.profiling.flops_profiler import get_model_profile

    spec = get_spec(variant)
    model = _EmbedAndEncoder(*build(spec.encoder)).eval()
    x, x_lens = torch.randn(1, FRAMES, FEATURES), torch.tensor([FRAMES])
    with torch.no_grad():
        flops, _, _ = get_model_profile(model, args=[x, x_lens], print_profile=False, as_string=False)
        out, _ = model(x, x_lens)
    return flops / 1e9, out.shape[1], float(spec.paper_gflops)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("variant", sorted(AUTHORS_GFLOPS))
def test_zipformer_gflops_match_authors_and_paper(variant):
    ours, frames, paper = zipformer_gflops(variant)
    print(f"{variant}: {ours:.2f} GFLOPs (authors {AUTHORS_GFLOPS[variant]}, paper {paper}), {frames} frames")
    assert frames == OUT_FRAMES
    assert abs(ours - AUTHORS_GFLOPS[variant]) / AUTHORS_GFLOPS[variant] < 0.005
    assert abs(ours - paper) / paper < 0.02


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name in sys.argv[1:] or sorted(AUTHORS_GFLOPS):
        ours, frames, paper = zipformer_gflops(name)
        print(f"{name}: {ours:.2f} GFLOPs (authors {AUTHORS_GFLOPS[name]}, paper {paper}), {frames} frames")
