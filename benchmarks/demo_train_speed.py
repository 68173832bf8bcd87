"""Steps per second of the main job's training step, before and after the speed-ups, in one run.

    python3 benchmarks/demo_train_speed.py [--rows zipformer,conformer,layernorm,adam]
        [--steps 12] [--rounds 2] [--authors /path/to/icefall-files] [--threads 1] [--allocator]

Each row of ``experiments/default.yaml`` (the demo's cells) is built as the
trainer builds it (model, optimizer, schedule, loss settings; vocabulary 500)
and trained on batches shaped like the demo's: about 10 s of audio per batch
(``--max-duration``), utterances of 1.3-2.7 s (the easy synthetic tier's
range), so 4-7 padded utterances per batch. One step is what the trainer does:
forward, loss, backward, optimizer step, schedule step.

Both code paths run in this process from the same weights, optimizer state
and random seeds, alternating, ``--rounds`` times:

- ``before``: ``variants.fast_paths.reference_paths()`` (the reference
  arithmetic each fused path replaced);
- ``after``: the fused paths (the default).

Reported per row: steps per second of each (total steps over total time), the
ratio, and the largest relative difference of the per-step losses between the
two (the same arithmetic within float rounding: it grows over steps only as
rounding differences do).

``--authors DIR`` (a folder of the authors' exported icefall files, never part
of this project; see benchmarks/gpu_memory_check.py): also times their
Conv-Embed + encoder forward + backward for the Zipformer row's size at
``--authors-batch`` (default 1 x 10 s) with our weights, and prints our
full training step's time over theirs (the issue's target: at most 0.42).

Both paths run with the trainer's allocator settings (``harness/train/allocator.py``:
glibc keeps freed memory instead of returning it, fewer page faults per step);
``--default-allocator`` keeps glibc's. ``--allocator`` also times the fast path in
two child processes, glibc's defaults against the trainer's settings, and reports
``speedup_with_allocator``: the in-process speedup times that gain (today's code ran
with glibc's defaults).

Times are this process's CPU time (one thread: the step's own time, free of the
waits a shared machine adds; ``--wall`` for the wall clock).
Prints one JSON line per row and a SUMMARY line; nothing is asserted (speed
targets are reported, not tested).
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.grid.cells import load_cells  # noqa: E402
from harness.evaluate.model_setup import (LossModule, build_asr_model, build_loss_config,  # noqa: E402
                                       build_optimization)
from harness.train.allocator import keep_freed_memory  # noqa: E402
from variants import fast_paths  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_step_timer  # noqa: E402  (benchmarks/: the child process of --against)

FRAME_RATE = demo_step_timer.FRAME_RATE
VOCAB = 500


#: CPU time of this process: on one thread it is the step's time without the waits that
#: other processes on a shared machine cause (``--wall``: wall-clock time instead)
_clock = time.process_time


class _Tokenizer:
    vocab_size, blank_id = VOCAB, 0


def demo_batches(n: int, max_duration: float, seed: int, min_s: float = 1.3, max_s: float = 2.7,
                 tokens_per_s: float = 4.0) -> list[tuple[torch.Tensor, torch.Tensor, list[list[int]]]]:
    """``n`` padded batches of utterances filling ``max_duration`` seconds each (vocabulary
    :data:`VOCAB`; the child timer of ``--against`` draws the same ones)."""
    return demo_step_timer.demo_batches(n, max_duration, seed, VOCAB, min_s, max_s, tokens_per_s)


def row_name(cell) -> str:
    """The grid row a cell belongs to (its name without the seed)."""
    return cell.labels.get("row", cell.name)


class Row:
    """One demo cell: model + loss + optimizer + schedule, restartable from one saved state."""

    def __init__(self, cell, batch_count: float):
        torch.manual_seed(0)
        self.model = build_asr_model(cell.spec, cell.config.objective, _Tokenizer())
        self.module = LossModule(self.model, build_loss_config(cell)).train()
        self.optimizer, self.scheduler, self.opt_name = build_optimization(cell, self.model)
        self.ref_duration = cell.config.data.ref_duration
        self.max_duration = cell.config.data.max_duration
        self.batch_count = batch_count
        self.start = (copy.deepcopy(self.model.state_dict()), None)

    def snapshot(self) -> None:
        self.start = (copy.deepcopy(self.model.state_dict()),
                      copy.deepcopy(self.optimizer.state_dict()))

    def restore(self) -> None:
        self.model.load_state_dict(self.start[0])
        if self.start[1] is not None:
            self.optimizer.load_state_dict(copy.deepcopy(self.start[1]))

    def step(self, i: int, batch) -> float:
        feats, lens, tokens = batch
        n = self.batch_count + i
        self.model.set_batch_count(n * self.max_duration / self.ref_duration)
        loss, _ = self.module(feats, lens, tokens, float(n))
        value = float(loss.detach())
        loss.backward()
        self.scheduler.step_batch(n)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value

    def run(self, batches, steps: int, reference: bool, seed: int) -> tuple[float, list[float]]:
        """Seconds for ``steps`` steps from the snapshot, and their losses."""
        self.restore()
        random.seed(seed)
        torch.manual_seed(seed)
        losses = []
        with fast_paths.reference_paths(reference):
            t0 = _clock()
            for i in range(steps):
                losses.append(self.step(i, batches[i % len(batches)]))
            seconds = _clock() - t0
        return seconds, losses


def measure_row(cell, steps: int, warmup: int, rounds: int, batch_count: float) -> dict:
    row = Row(cell, batch_count)
    batches = demo_batches(8, row.max_duration, seed=1)
    # warm-up (both paths), then the state every timed run starts from (seeded: the
    # Balancer's, Whitener's and layer skip's draws use Python's random module)
    random.seed(0)
    torch.manual_seed(0)
    for i in range(warmup):
        with fast_paths.reference_paths(i % 2 == 0):
            row.step(i, batches[i % len(batches)])
    row.snapshot()
    times: dict[str, float] = {"before": 0.0, "after": 0.0}
    losses: dict[str, list[float]] = {}
    for r in range(rounds):
        for name, reference in (("before", True), ("after", False)) if r % 2 == 0 else \
                (("after", False), ("before", True)):
            s, ls = row.run(batches, steps, reference, seed=100)
            times[name] += s
            losses[name] = ls
    n = steps * rounds
    before, after = losses["before"], losses["after"]
    rel = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(after, before))
    return {"row": row_name(cell), "seed": cell.config.seed, "optimizer": row.opt_name,
            "params_m": round(sum(p.numel() for p in row.model.parameters()) / 1e6, 3),
            "batch_shapes": [tuple(b[0].shape[:2]) for b in batches[:4]],
            "steps_timed_each": n, "before_steps_per_s": round(n / times["before"], 3),
            "after_steps_per_s": round(n / times["after"], 3),
            "speedup": round(times["before"] / times["after"], 3),
            "after_s_per_step": round(times["after"] / n, 4),
            "loss_max_rel_diff": float(f"{rel:.3g}"),
            "loss_first_last": [round(before[0], 3), round(before[-1], 3)]}


def measure_authors(cell, authors_dir: Path, batch: int, duration: float, steps: int,
                    batch_count: float) -> dict:
    """Ours and the authors' Conv-Embed + encoder forward + backward, same weights and input."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_memory_check import Ours, copy_weights, import_authors, set_batch_count

    modules = import_authors(authors_dir)
    zipformer, subsampling, scaling = modules
    torch.manual_seed(0)
    model = build_asr_model(cell.spec, cell.config.objective, _Tokenizer())
    cfg = model.spec.encoder
    ours = Ours(model)
    sf = scaling.ScheduledFloat

    class Authors(torch.nn.Module):
        def __init__(self):
            super().__init__()
            c1, c2, c3 = cfg.embed_channels
            self.encoder_embed = subsampling.Conv2dSubsampling(
                in_channels=cfg.num_features, out_channels=cfg.encoder_dim[0], layer1_channels=c1,
                layer2_channels=c2, layer3_channels=c3, dropout=sf((0.0, 0.3), (20000.0, 0.1)))
            self.encoder = zipformer.Zipformer2(
                output_downsampling_factor=cfg.output_downsampling_factor,
                downsampling_factor=tuple(cfg.downsampling_factor),
                num_encoder_layers=tuple(cfg.num_encoder_layers), encoder_dim=tuple(cfg.encoder_dim),
                encoder_unmasked_dim=tuple(cfg.encoder_unmasked_dim),
                query_head_dim=cfg.query_head_dim, pos_head_dim=cfg.pos_head_dim,
                value_head_dim=cfg.value_head_dim, pos_dim=cfg.pos_dim,
                num_heads=tuple(cfg.num_heads), feedforward_dim=tuple(cfg.feedforward_dim),
                cnn_module_kernel=tuple(cfg.cnn_module_kernel),
                dropout=sf((0.0, 0.3), (20000.0, 0.1)), warmup_batches=4000.0, causal=False,
                chunk_size=(-1,), left_context_frames=(-1,))

        def forward(self, x, x_lens):
            x, x_lens = self.encoder_embed(x, x_lens)
            mask = torch.arange(x.shape[1]).unsqueeze(0) >= x_lens.unsqueeze(1)
            return self.encoder(x.permute(1, 0, 2), x_lens, mask)[0].permute(1, 0, 2)

    theirs = Authors()
    copy_weights(ours, theirs)
    frames = int(round(duration * FRAME_RATE))
    x = torch.randn(batch, frames, cfg.num_features)
    lens = torch.full((batch,), frames, dtype=torch.int64)
    result = {}
    for name, m in (("ours", ours), ("authors", theirs)):
        m.train()
        set_batch_count(m, batch_count)
        times = []
        for i in range(steps + 2):
            torch.manual_seed(i)
            random.seed(i)
            t0 = _clock()
            m(x, lens).square().mean().backward()
            for p in m.parameters():
                p.grad = None
            if i >= 2:
                times.append(_clock() - t0)
        result[f"{name}_encoder_fwd_bwd_s"] = round(statistics.median(times), 4)
    result["batch"] = f"{batch} x {duration:g} s"
    result["runs_each"] = steps
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default=str(ROOT / "experiments" / "default.yaml"))
    ap.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per path per round")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-count", type=float, default=300.0,
                    help="optimizer steps already done (the demo's cells run ~1,100)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of every row's overrides (e.g. for a tiny check)")
    ap.add_argument("--authors", type=Path, default=None)
    ap.add_argument("--authors-batch", default="1x10", help="BATCHxSECONDS (default: %(default)s)")
    ap.add_argument("--wall", action="store_true",
                    help="time by the wall clock (default: this process's CPU time)")
    ap.add_argument("--allocator", action="store_true",
                    help="also time each row's fast path in two child processes, with glibc's "
                         "default allocator settings and with the trainer's "
                         "(harness/train/allocator.py), alternating --allocator-rounds times")
    ap.add_argument("--allocator-rounds", type=int, default=2)
    ap.add_argument("--default-allocator", action="store_true",
                    help="keep glibc's allocator settings (the trainer changes them on CPU)")
    ap.add_argument("--against", metavar="REV", default=None,
                    help="also time each row's step on the code of git revision REV (exported to "
                         "a temporary folder; glibc's allocator defaults, as that code ran) against "
                         "this code (the trainer's allocator settings), in alternating child "
                         "processes (benchmarks/demo_step_timer.py), --against-rounds pairs")
    ap.add_argument("--against-rounds", type=int, default=3)
    args = ap.parse_args(argv)
    global _clock
    _clock = time.perf_counter if args.wall or args.threads > 1 else time.process_time
    torch.set_num_threads(args.threads)
    if not args.default_allocator:
        keep_freed_memory()   # as the trainer does on CPU: both paths run with it
    _, all_cells = load_cells(args.grid)
    # one cell per row (the grid may repeat each row over seeds: same step, other seed)
    cells, seen = [], set()
    for c in all_cells:
        name = row_name(c)
        if name not in seen:
            seen.add(name)
            cells.append(c)
    if args.rows:
        wanted = args.rows.split(",")
        unknown = sorted(set(wanted) - {row_name(c) for c in cells})
        if unknown:
            print(f"error: --rows: {unknown}; allowed: {', '.join(row_name(c) for c in cells)}",
                  file=sys.stderr)
            raise SystemExit(2)
        cells = [c for c in cells if row_name(c) in wanted]
    for kv in args.set:
        key, _, value = kv.partition("=")
        cells = [_with_override(c, key, json.loads(value)) for c in cells]
    summary = {"torch": torch.__version__, "threads": args.threads,
               "clock": "wall" if _clock is time.perf_counter else "process CPU", "rows": []}
    summary["allocator"] = "glibc defaults" if args.default_allocator else "trainer's (keep_freed_memory)"
    old_tree = export_revision(args.against) if args.against else None
    for cell in cells:
        r = measure_row(cell, args.steps, args.warmup, args.rounds, args.batch_count)
        if args.allocator:
            r["allocator"] = measure_allocator(cell, args)
            # today's code ran with glibc's defaults: its steps per second over the fast path's
            # with the trainer's allocator settings (the in-process ratio times the children's)
            r["speedup_with_allocator"] = round(r["speedup"] * r["allocator"]["gain"], 3)
        if old_tree is not None:
            r["against"] = measure_against(cell, old_tree, args)
        if args.authors and row_name(cell) == "zipformer":
            b, _, s = args.authors_batch.partition("x")
            a = measure_authors(cell, args.authors, int(b), float(s), max(3, args.steps // 2),
                                args.batch_count * 10)
            a["ours_step_over_authors_encoder"] = round(r["after_s_per_step"]
                                                        / a["authors_encoder_fwd_bwd_s"], 3)
            a["ours_step_before_over_authors_encoder"] = round(
                1.0 / r["before_steps_per_s"] / a["authors_encoder_fwd_bwd_s"], 3)
            r["authors"] = a
        print(json.dumps(r), flush=True)
        summary["rows"].append(r)
    print("SUMMARY " + json.dumps(summary), flush=True)
    return summary


def measure_allocator(cell, args) -> dict:
    """The fast path's seconds per step with glibc's defaults over those with the trainer's
    allocator settings: each in its own child process (glibc's settings are per process;
    benchmarks/demo_step_timer.py on this code), alternating, ``args.allocator_rounds``
    pairs; the median of each side."""
    runs = time_children(timer_job(cell, args), {"default": (ROOT, False), "trainer": (ROOT, True)},
                         args.allocator_rounds)
    seconds = {side: [round(x["s_per_step"], 4) for x in rs] for side, rs in runs.items()}
    default, trainer = statistics.median(seconds["default"]), statistics.median(seconds["trainer"])
    return {"default_s_per_step": seconds["default"], "trainer_s_per_step": seconds["trainer"],
            "gain": round(default / trainer, 3)}


def timer_job(cell, args) -> dict:
    """``cell``'s row as the job of benchmarks/demo_step_timer.py."""
    from variants.optim import default_scheduler_for
    opt = cell.config.optimizer
    name = opt.name or cell.spec.optimizer
    return {"variant": cell.config.variant, "objective": cell.config.objective,
            "overrides": dict(cell.config.overrides), "vocab": VOCAB,
            "optimizer": {"name": name, "lr": opt.lr, "options": dict(opt.options),
                          "schedule": opt.schedule or default_scheduler_for(name),
                          "schedule_options": dict(opt.schedule_options)},
            "loss": dict(cell.config.loss), "max_duration": cell.config.data.max_duration,
            "ref_duration": cell.config.data.ref_duration, "batch_count": args.batch_count,
            "warmup": args.warmup, "steps": args.steps * args.rounds, "threads": args.threads}


def time_children(job: dict, sides: dict[str, tuple[Path, bool]], rounds: int) -> dict[str, list[dict]]:
    """benchmarks/demo_step_timer.py's results for ``job`` on each side (the code tree it
    imports, whether it keeps freed memory as the trainer does), each run in its own child
    process (``job``'s threads, glibc's allocator defaults unless kept), the sides
    alternating ``rounds`` times."""
    import os
    import subprocess
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base_env["OMP_NUM_THREADS"] = str(job.get("threads", 1))
    timer = str(ROOT / "benchmarks" / "demo_step_timer.py")
    names = list(sides)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            tree, keep = sides[name]
            out = subprocess.run([sys.executable, timer, json.dumps(dict(job, keep_freed_memory=keep))],
                                 env=dict(base_env, PYTHONPATH=str(tree)), cwd=str(tree),
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"demo_step_timer.py ({name}) failed:\n{out.stderr[-2000:]}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def export_revision(rev: str) -> Path:
    """The project's files at git revision ``rev`` in a temporary folder (removed at exit)."""
    import atexit
    import shutil
    import subprocess
    import tempfile
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        print(f"error: --against: {rev!r} is not a commit of this clone; allowed: a git revision "
              f"(e.g. a commit hash from `git log`)", file=sys.stderr)
        raise SystemExit(2)
    folder = Path(tempfile.mkdtemp(prefix="demo-speed-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", found.stdout.strip()],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def measure_against(cell, old_tree: Path, args) -> dict:
    """Seconds per step of ``cell``'s row on the exported old code (glibc's allocator
    defaults, as it ran) and on this code (the trainer's settings), each in its own child
    process (:func:`time_children`), alternating; medians and their ratio."""
    runs = time_children(timer_job(cell, args), {"old": (old_tree, False), "new": (ROOT, True)},
                         args.against_rounds)
    old = statistics.median(x["s_per_step"] for x in runs["old"])
    new = statistics.median(x["s_per_step"] for x in runs["new"])
    lo, ln = runs["old"][0]["losses"], runs["new"][0]["losses"]
    return {"rev": args.against, "pairs": args.against_rounds,
            "old_s_per_step": [round(x["s_per_step"], 4) for x in runs["old"]],
            "new_s_per_step": [round(x["s_per_step"], 4) for x in runs["new"]],
            "speedup": round(old / new, 3),
            "loss_max_rel_diff": float(f"{max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ln, lo)):.3g}")}


def _with_override(cell, key: str, value):
    from dataclasses import replace
    cfg = cell.config.model_copy(deep=True)
    cfg.overrides[key] = value
    return replace(cell, config=cfg)


if __name__ == "__main__":
    main()
