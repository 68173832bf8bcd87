"""Times one demo row's training step with whatever ``harness`` / ``variants`` are importable.

Run by ``benchmarks/demo_train_speed.py --against REV`` as a child process, once with
PYTHONPATH at an exported older tree of this project and once at the current one, so the
same steps are timed on two versions of the code. It uses only the API both versions
share (``variants.build_model``, ``variants.optim.build_optimizer`` /
``build_scheduler``, ``harness.losses.compute_loss`` / ``LossConfig``) and is not
imported by the project.

    python3 benchmarks/demo_step_timer.py '{"variant": ..., "overrides": {...}, ...}'

Prints one JSON line: seconds per step (this process's CPU time on one thread, the
default; the wall clock with ``"threads"`` > 1) and the per-step losses.
"""
from __future__ import annotations

import json
import random
import sys
import time

import torch

FRAME_RATE = 100


def demo_batches(n: int, max_duration: float, seed: int, vocab: int, min_s: float = 1.3,
                 max_s: float = 2.7, tokens_per_s: float = 4.0):
    """The batches of ``demo_train_speed.demo_batches`` (the same draws)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        lens: list[int] = []
        while True:
            d = min_s + (max_s - min_s) * float(torch.rand((), generator=g))
            if lens and (sum(lens) + d * FRAME_RATE) / FRAME_RATE > max_duration:
                break
            lens.append(int(d * FRAME_RATE))
        t = max(lens)
        feats = torch.randn(len(lens), t, 80, generator=g)
        tokens = [torch.randint(3, vocab, (max(1, int(l / FRAME_RATE * tokens_per_s)),),
                                generator=g).tolist() for l in lens]
        out.append((feats, torch.tensor(lens), tokens))
    return out


def main(argv: list[str]) -> dict:
    job = json.loads(argv[0])
    threads = int(job.get("threads", 1))
    torch.set_num_threads(threads)
    # one thread: this process's CPU time (free of other processes' waits); more: wall clock
    clock = time.process_time if threads == 1 else time.perf_counter
    if job.get("keep_freed_memory"):
        from harness.train.allocator import keep_freed_memory
        keep_freed_memory()
    from harness.losses import LossConfig, compute_loss
    from variants import build_model
    from variants.optim import build_optimizer, build_scheduler

    torch.manual_seed(0)
    overrides = dict(job["overrides"], **{"heads.vocab_size": job["vocab"], "heads.blank_id": 0})
    model = build_model(job["variant"], job["objective"], **overrides).train()
    opt = job["optimizer"]
    optimizer = build_optimizer(opt["name"], model, lr=opt["lr"], **opt["options"])
    scheduler = build_scheduler(opt["schedule"], optimizer, **opt["schedule_options"])
    loss_cfg = LossConfig(**job["loss"])
    batches = demo_batches(8, job["max_duration"], seed=1, vocab=job["vocab"])

    def step(i: int) -> float:
        feats, lens, tokens = batches[i % len(batches)]
        n = job["batch_count"] + i
        model.set_batch_count(n * job["max_duration"] / job["ref_duration"])
        loss, _ = compute_loss(model, feats, lens, tokens, float(n), loss_cfg)
        value = float(loss.detach())
        loss.backward()
        scheduler.step_batch(n)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return value

    random.seed(0)
    torch.manual_seed(0)
    for i in range(job["warmup"]):
        step(i)
    random.seed(100)
    torch.manual_seed(100)
    losses = []
    t0 = clock()
    for i in range(job["steps"]):
        losses.append(step(i))
    seconds = clock() - t0
    result = {"s_per_step": seconds / job["steps"], "losses": losses}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
