"""GPU check for the RNN-T backends, one JSON object per line.

1. Loss benchmark (the shapes of benchmarks/test_pruned_rnnt.py: B=8, T=500,
   S=100, V=500, Zipformer-S heads): the pruned path per backend (torch,
   triton), the full lattice (torchaudio's fused ``rnnt_loss`` when it imports,
   else the harness's full loss) and the Zipformer-S encoder, forward+backward,
   each with time and peak memory.
2. Training-step profile per backend: Zipformer-M, a batch filling the paper's
   max duration (Table 7: 1000 s of audio, here 66 x 15 s), bf16 autocast,
   ScaledAdam + Eden, each step split into encoder forward, loss forward
   (simple + pruned, decoder and joiner included), loss backward, encoder
   backward and optimizer, with the step's peak memory.

    python3 benchmarks/gpu_rnnt_check.py             # on a CUDA GPU
    python3 benchmarks/gpu_rnnt_check.py --smoke     # tiny shapes on any device

Without a GPU it runs the smoke sizes on the CPU, the Triton kernels in
Triton's interpreter (TRITON_INTERPRET=1 is set here): it proves the script,
not the speed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the Triton kernels are imported

import variants  # noqa: E402
from harness.losses import LossConfig  # noqa: E402
from harness.losses.transducer_loss import transducer_losses  # noqa: E402
from rnnt_steps import (FULL_LOSS, available_backends, encoder_step, full_step, make_batch,  # noqa: E402
                        measure, pruned_step, sync)
from variants.optim import build_optimizer, build_scheduler, default_scheduler_for  # noqa: E402


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def loss_benchmark(device: torch.device, B: int, T: int, S: int, rounds: int, prune_range: int) -> None:
    torch.manual_seed(0)
    model = variants.build_model("zipformer-s", objective="transducer").to(device).train()
    batch = make_batch(model, B, T, S, 4 * T + 5, device)  # 4T+5 fbank frames -> T encoder frames
    shape = {"B": B, "T": T, "S": S, "V": model.vocab_size, "prune_range": prune_range}
    full = measure(full_step, model, batch, rounds=1)
    emit(part="loss", what="full", impl=FULL_LOSS, **shape, **full)
    encoder = measure(encoder_step, model, batch, rounds=rounds)
    emit(part="loss", what="zipformer-s encoder", **shape, **encoder)
    for backend in available_backends(device):
        r = measure(pruned_step(backend, prune_range), model, batch, rounds=rounds)
        emit(part="loss", what="pruned path", backend=backend.name, **shape, **r,
             over_full=round(r["ms"] / full["ms"], 3), over_encoder=round(r["ms"] / encoder["ms"], 3),
             full_over_pruned_memory=round(full["peak_mib"] / max(r["peak_mib"], 1e-9), 1))


def timed(device: torch.device, phases: dict[str, list[float]], name: str, fn):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    phases.setdefault(name, []).append(time.perf_counter() - t0)
    return out


def step_profile(device: torch.device, variant: str, max_duration: float, utt_seconds: float,
                 steps: int, warmup: int) -> None:
    n, frames = int(max_duration // utt_seconds), int(utt_seconds * 100)
    n_tok = max(1, int(utt_seconds * 4))  # ~4 BPE tokens per second, as LibriSpeech with 500 units
    feat_lens = torch.full((n,), frames, dtype=torch.int64, device=device)
    y_lens = torch.full((n,), n_tok, dtype=torch.int64, device=device)
    cfg = LossConfig()
    simple_scale, pruned_scale = cfg.transducer_scales(cfg.warm_step)
    for backend in available_backends(device):  # the same initial model and batch for each backend
        torch.manual_seed(0)
        model = variants.build_model(variant, objective="transducer").to(device).train()
        optimizer = build_optimizer(model.spec.optimizer, model)
        scheduler = build_scheduler(default_scheduler_for(model.spec.optimizer), optimizer)
        g = torch.Generator().manual_seed(0)
        feats = torch.randn(n, frames, 80, generator=g).to(device)
        y = torch.randint(1, model.vocab_size, (n, n_tok), generator=g).to(device)
        losses = []
        phases: dict[str, list[float]] = {}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for i in range(warmup + steps):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                enc, enc_lens = timed(device, phases, "encoder_fwd", lambda: model.forward_encoder(feats, feat_lens))
                enc_in = enc.detach().requires_grad_(True)
                simple, pruned = timed(device, phases, "loss_fwd", lambda: transducer_losses(
                    model, enc_in, enc_lens, y, y_lens, cfg.prune_range, cfg.lm_scale, cfg.am_scale, backend))
                loss = simple_scale * simple + pruned_scale * pruned
            losses.append(round(float(loss.detach()) / n, 3))
            timed(device, phases, "loss_bwd", loss.backward)
            timed(device, phases, "encoder_bwd", lambda: enc.backward(enc_in.grad))
            timed(device, phases, "optimizer", lambda: (optimizer.step(), optimizer.zero_grad(set_to_none=True),
                                                        scheduler.step_batch(cfg.warm_step + i)))
        ms = {k: round(statistics.median(v[warmup:]) * 1e3, 2) for k, v in phases.items()}
        emit(part="step", variant=variant, backend=backend.name, batch=f"{n} x {utt_seconds:g} s",
             tokens_per_utt=n_tok, precision="bf16", **{f"{k}_ms": v for k, v in ms.items()},
             step_ms=round(sum(ms.values()), 2), loss_share=round((ms["loss_fwd"] + ms["loss_bwd"])
                                                                  / sum(ms.values()), 3),
             loss_per_utt_by_step=losses,
             peak_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None)
        del model, optimizer, scheduler, enc, enc_in, loss
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (the default without a GPU)")
    ap.add_argument("--variant", default="zipformer-m", help="model of the step profile")
    ap.add_argument("--max-duration", type=float, default=1000.0)
    ap.add_argument("--utt-seconds", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    smoke = args.smoke or device.type != "cuda"
    emit(part="env", device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
         torch=torch.__version__, smoke=smoke, triton_interpret=os.environ.get("TRITON_INTERPRET"))
    if smoke:
        loss_benchmark(device, B=2, T=12, S=4, rounds=1, prune_range=5)
        step_profile(device, args.variant, max_duration=2.0, utt_seconds=1.0, steps=2, warmup=0)
    else:
        loss_benchmark(device, B=8, T=500, S=100, rounds=3, prune_range=5)
        step_profile(device, args.variant, args.max_duration, args.utt_seconds, args.steps, args.warmup)


if __name__ == "__main__":
    main()
