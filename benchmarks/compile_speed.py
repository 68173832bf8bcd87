"""What ``train.compile`` buys on this machine for the main job's Zipformer row, in one process.

    python3 benchmarks/compile_speed.py [--row zipformer] [--steps 30] [--threads 1]

Builds the row as benchmarks/demo_train_speed.py does (the trainer's model, loss,
optimizer and schedule; demo-shaped batches of varying length), times ``--steps``
eager steps, then compiles the encoder's layers (harness/train/compile.py) and
times the first compiled step (the compile: Dynamo, AOT autograd and inductor,
forward and backward) and ``--steps`` more, with the schedules' batch count
advancing every step as in the demo (so the per-step decisions change). Prints
one JSON line: seconds per step eager and compiled (process CPU time: one
thread), the first step's seconds, Dynamo's graph count after the first and
the last step, and inductor's FX graph cache hits/misses (a second run in a new
process with the same TORCHINDUCTOR_CACHE_DIR shows what the on-disk cache saves).
Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from demo_train_speed import Row, demo_batches, row_name  # noqa: E402
from harness.grid.cells import load_cells  # noqa: E402
from harness.train.compile import compile_encoder, dynamo_counts  # noqa: E402


def timed(row: Row, batches, start: int, steps: int) -> list[float]:
    out = []
    for i in range(start, start + steps):
        t0 = time.process_time()
        row.step(i, batches[i % len(batches)])
        out.append(time.process_time() - t0)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", default="zipformer")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fixed-length", action="store_true",
                    help="pad every batch to the longest one's length (inductor compiles again for "
                         "each new length: this times the steady state of one set of graphs)")
    ap.add_argument("--backend", default="inductor",
                    help="torch.compile's backend (eager: Dynamo's graphs only, to count them fast)")
    ap.add_argument("--experiment", default=str(ROOT / "experiments" / "default.yaml"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    all_cells = load_cells(args.experiment)[1]
    cells = [c for c in all_cells if row_name(c) == args.row]
    if not cells:
        rows = ", ".join(dict.fromkeys(row_name(c) for c in all_cells))
        print(f"error: {args.experiment}: --row: {args.row!r}; allowed: {rows}", file=sys.stderr)
        raise SystemExit(2)
    random.seed(0)
    torch.manual_seed(0)
    row = Row(cells[0], batch_count=0.0)
    batches = demo_batches(8, row.max_duration, seed=1)
    if args.fixed_length:
        t = max(b[0].shape[1] for b in batches)
        batches = [(torch.nn.functional.pad(f, (0, 0, 0, t - f.shape[1])), lens, tok)
                   for f, lens, tok in batches]
    timed(row, batches, 0, 2)                                   # warm-up
    eager = timed(row, batches, 2, args.steps)
    from torch._dynamo.utils import counters
    # count this row's graphs only (earlier compiles in the process, e.g. other tests, would add theirs)
    torch._dynamo.reset()
    counters.clear()
    compile_encoder(row.model, backend=args.backend)
    t0, w0 = time.process_time(), time.time()
    first = timed(row, batches, 2 + args.steps, 1)[0]
    wall_first = time.time() - w0
    graphs_first = dynamo_counts()
    compiled = timed(row, batches, 3 + args.steps, args.steps)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    result = {
        "row": args.row, "backend": args.backend, "fixed_length": args.fixed_length, "threads": args.threads, "steps_each": args.steps,
        "eager_s_per_step": round(sum(eager) / len(eager), 4), "eager_median": round(med(eager), 4),
        "compiled_s_per_step": round(sum(compiled) / len(compiled), 4),
        "compiled_median": round(med(compiled), 4),
        "first_compiled_step_cpu_s": round(first, 1), "first_compiled_step_wall_s": round(wall_first, 1),
        "dynamo_after_first": graphs_first, "dynamo_after_last": dynamo_counts(),
        "fx_graph_cache": {k: int(v) for k, v in counters["inductor"].items()
                           if k.startswith("fxgraph_cache")},
        "fx_graph_cache_on": bool(__import__("torch._inductor.config").
                                  _inductor.config.fx_graph_cache),
        "speedup": round(sum(eager) / sum(compiled), 3)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
