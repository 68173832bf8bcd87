"""Encoder GFLOPs (encoder_embed + encoder, one 3000 x 80 input = 30 s, batch 1)
of Zipformer-S/M/L and Conformer-S/M/L, measured the way ``harness profile``
measures them (plain DeepSpeed ``get_model_profile``; torch's FlopCounterMode as
a cross-check), against the authors' own counts (their implementation, profiled) and the paper's Table 2.

    python3 -m pytest benchmarks/test_encoder_gflops.py -s     # or run this file

Slow on CPU (minutes per model): a correctness check of the structure (every
linear, convolution and matmul is where the authors have it), not a speed test.
The Conformer omits the authors' output layer Linear(d_model, 500), whose role the
joiner's encoder_proj takes here; its 2 * d * 500 * 749 FLOPs are added before
comparing with the authors' count.
"""
from __future__ import annotations

import sys

import pytest
import torch

from harness.profile.flops import measure_encoder_flops
from variants import build_model, get_spec

FRAMES = 3000
#: plain DeepSpeed GFLOPs of the authors' implementations
AUTHORS_GFLOPS = {"zipformer-s": 40.67, "zipformer-m": 62.78, "zipformer-l": 107.54,
                  "conformer-s": 29.15, "conformer-m": 77.13, "conformer-l": 294.40}
#: encoder output frames for 3000 input frames (authors' implementation)
OUT_FRAMES = {"zipformer": 748, "conformer": 749}


def encoder_gflops(variant: str) -> dict[str, float]:
    spec = get_spec(variant)
    model = build_model(variant, objective="ctc").eval()
    flops = measure_encoder_flops(model, frames=FRAMES)
    ours = flops.gflops("deepspeed")
    comparable = ours
    if spec.encoder.kind == "conformer":  # the authors' count includes their output layer
        comparable += 2 * spec.encoder.d_model * spec.heads.vocab_size * OUT_FRAMES["conformer"] / 1e9
    with torch.inference_mode():
        out, _ = model(torch.ones(1, FRAMES, 80), torch.tensor([FRAMES]))
    return {"ours": ours, "comparable_to_authors": comparable, "flop_counter": flops.gflops("flop_counter"),
            "authors": AUTHORS_GFLOPS[variant], "paper": float(spec.paper_gflops), "frames": out.shape[1]}


def _line(variant: str, r: dict[str, float]) -> str:
    return (f"{variant}: {r['ours']:.2f} GFLOPs plain DeepSpeed ({r['flop_counter']:.2f} FlopCounterMode; "
            f"{r['comparable_to_authors']:.2f} vs the authors' {r['authors']}), paper {r['paper']}, "
            f"{r['frames']} output frames")


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("variant", list(AUTHORS_GFLOPS))
def test_encoder_gflops_match_authors_and_paper(variant):
    r = encoder_gflops(variant)
    print(_line(variant, r))
    assert r["frames"] == OUT_FRAMES[get_spec(variant).encoder.kind]
    assert abs(r["comparable_to_authors"] - r["authors"]) / r["authors"] < 0.005
    assert abs(r["ours"] - r["paper"]) / r["paper"] < 0.02


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name in sys.argv[1:] or list(AUTHORS_GFLOPS):
        print(_line(name, encoder_gflops(name)))
