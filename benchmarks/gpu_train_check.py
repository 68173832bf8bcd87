"""GPU check for the runner: Zipformer-M training steps with mixed
precision at the paper's max duration per GPU (Table 7: 1000 s for M), and the
peak GPU memory they take. Uses the harness's own pieces: the registry's model,
the losses' compute_loss, ScaledAdam + Eden, and the trainer's precision
selection (bf16 where supported, fp16 + GradScaler otherwise).

    python3 benchmarks/gpu_train_check.py [--variant zipformer-m] [--max-duration 1000]

Needs a CUDA GPU; prints one line per batch shape and a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from harness.losses import LossConfig, compute_loss
from harness.train.precision import LossScaler, select_precision
from variants import build_model
from variants.optim import build_optimizer, build_scheduler, default_scheduler_for


def run_shape(model, optimizer, scheduler, precision, scaler, n_utts: int, seconds: float,
              tokens_per_second: float, steps: int, warmup: int, device) -> dict:
    frames = int(seconds * 100)
    feats = torch.randn(n_utts, frames, 80, device=device)
    feat_lens = torch.full((n_utts,), frames, dtype=torch.long, device=device)
    n_tok = int(seconds * tokens_per_second)
    g = torch.Generator().manual_seed(0)
    tokens = [torch.randint(3, model.vocab_size, (n_tok,), generator=g).tolist() for _ in range(n_utts)]
    cfg = LossConfig()
    torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for i in range(warmup + steps):
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with precision.context():
            loss, info = compute_loss(model, feats, feat_lens, tokens, batch_count=3000 + i, cfg=cfg)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scheduler.step_batch(3000 + i)
        torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()) / n_utts)
    return {
        "batch": f"{n_utts} x {seconds:g} s = {n_utts * seconds:g} s of audio",
        "tokens_per_utt": n_tok,
        "step_s_median": round(statistics.median(times), 4),
        "step_s_min": round(min(times), 4),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
        "loss_per_utt_first_last": [round(losses[0], 2), round(losses[-1], 2)],
        "finite": all(map(lambda v: v == v and abs(v) != float("inf"), losses)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="zipformer-m")
    ap.add_argument("--max-duration", type=float, default=1000.0)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_train_check needs a CUDA GPU")
    device = torch.device("cuda")
    model = build_model(args.variant, objective="transducer").to(device).train()
    precision = select_precision(args.precision, device)
    scaler = LossScaler(precision)
    opt_name = model.spec.optimizer
    optimizer = build_optimizer(opt_name, model)
    scheduler = build_scheduler(default_scheduler_for(opt_name), optimizer)
    results = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
               "variant": args.variant, "precision": precision.name, "optimizer": opt_name,
               "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "shapes": []}
    # LibriSpeech-like buckets filling the max duration: many short, and fewer long utterances
    for seconds in (15.0, 30.0):
        n = int(args.max_duration // seconds)
        r = run_shape(model, optimizer, scheduler, precision, scaler, n, seconds, 4.0,
                      args.steps, args.warmup, device)
        print(json.dumps(r), flush=True)
        results["shapes"].append(r)
    print("SUMMARY " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
