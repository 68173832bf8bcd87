"""GPU check of training memory: peak training memory of Conv-Embed + encoder under bf16
autocast, batch 20 x 30 s, Zipformer-S/M/L, ours and (optionally) the authors'
implementation with the same weights and input in the same process.

    python3 benchmarks/gpu_memory_check.py [--authors DIR] [--variants zipformer-s,zipformer-m,zipformer-l]

``--authors DIR``: a folder holding the authors' icefall files exported from their
repository (``zipformer.py``, ``scaling.py``, ``subsampling.py``,
``encoder_interface.py``; never part of this project). They are imported with a
stand-in ``k2`` module whose Swoosh functions are the pure-torch ones from their
``scaling.py`` and a stand-in ``icefall.utils.torch_autocast``; our weights are
copied into theirs by name (``variants.interop.icefall_names``).

Per variant and implementation: peak memory of a forward + backward
(``torch.cuda.max_memory_allocated``, reset before it; also less what was
allocated before the forward), the bytes the forward saved for backward, the
median forward + backward time, and (issue 22):

- ``live_peak_gb``: the device-free proxy of peak memory, the peak of live
  tensor bytes over one forward + backward (:class:`harness.profile.live_bytes.LiveBytes`;
  weights and input excluded, gradients included); ``live_act_peak_gb`` the same
  with the gradients allocated beforehand (activations and temporaries only);
- ``host_syncs``: values read back to the host in one forward + backward
  (:class:`harness.profile.host_syncs.HostSyncs`, with the lines), and on CUDA
  ``cuda_sync_warnings``: what ``torch.cuda.set_sync_debug_mode("warn")`` reports;
- with ``--infer-batch``: eval-mode, no-grad forward time on ``--infer-batch`` x
  ``--infer-duration`` s (float32) in ``--infer-runs`` pairs, ours and theirs
  alternating (the first of a pair swapping): the median and quartiles of the per-pair
  ratios, of wall time and on CPU of process CPU time (``infer_time``: CPU time on
  CPU, wall time on CUDA), and their outputs' largest difference. On a shared CPU run
  it with ``OMP_WAIT_POLICY=PASSIVE`` (recorded in the summary): threads that wait
  for a preempted sibling then sleep instead of spinning, so CPU time counts the work. ``--device cpu`` runs the same code on CPU
(no peak memory; for checking the script with tiny sizes, e.g. ``--batch 1
--duration 1``). Prints one JSON line per measurement and a summary.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

import torch

from harness.profile.host_syncs import HostSyncs
from harness.profile.live_bytes import LiveBytes
from harness.profile.saved_bytes import count_saved_bytes
from variants import build_model, fast_paths
from variants.interop.icefall_names import icefall_to_ours

FRAME_RATE = 100


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def import_authors(path: Path):
    """The authors' (zipformer, subsampling, scaling) modules from ``path``."""
    for name in ("zipformer.py", "scaling.py", "subsampling.py", "encoder_interface.py"):
        if not (path / name).is_file():
            fail(f"{path}: {name}: missing; allowed: a folder with the authors' "
                 "zipformer.py, scaling.py, subsampling.py, encoder_interface.py")
    sys.path.insert(0, str(path))
    icefall, utils = types.ModuleType("icefall"), types.ModuleType("icefall.utils")
    utils.torch_autocast = lambda device_type="cuda", **kw: torch.amp.autocast(device_type, **kw)
    icefall.utils = utils
    sys.modules.setdefault("icefall", icefall)
    sys.modules.setdefault("icefall.utils", utils)
    k2 = sys.modules.setdefault("k2", types.ModuleType("k2"))
    import scaling  # noqa: E402  (the authors')
    k2.swoosh_l, k2.swoosh_r = scaling.SwooshLFunction.apply, scaling.SwooshRFunction.apply
    k2.swoosh_l_forward, k2.swoosh_r_forward = scaling.SwooshLForward, scaling.SwooshRForward
    k2.swoosh_l_forward_and_deriv = lambda x: (scaling.SwooshLForward(x), torch.sigmoid(x - 4.0) - 0.08)
    k2.swoosh_r_forward_and_deriv = lambda x: (scaling.SwooshRForward(x), torch.sigmoid(x - 1.0) - 0.08)
    import subsampling  # noqa: E402
    import zipformer  # noqa: E402
    return zipformer, subsampling, scaling


class Ours(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder_embed, self.encoder = model.encoder_embed, model.encoder

    def forward(self, x, x_lens):
        x, x_lens = self.encoder_embed(x, x_lens)
        return self.encoder(x, x_lens)[0]


class Authors(torch.nn.Module):
    def __init__(self, cfg, modules):
        super().__init__()
        zipformer, subsampling, scaling = modules
        sf = scaling.ScheduledFloat
        self.encoder_embed = subsampling.Conv2dSubsampling(
            in_channels=cfg.num_features, out_channels=cfg.encoder_dim[0],
            dropout=sf((0.0, 0.3), (20000.0, 0.1)))
        self.encoder = zipformer.Zipformer2(
            output_downsampling_factor=cfg.output_downsampling_factor,
            downsampling_factor=tuple(cfg.downsampling_factor),
            num_encoder_layers=tuple(cfg.num_encoder_layers), encoder_dim=tuple(cfg.encoder_dim),
            encoder_unmasked_dim=tuple(cfg.encoder_unmasked_dim), query_head_dim=cfg.query_head_dim,
            pos_head_dim=cfg.pos_head_dim, value_head_dim=cfg.value_head_dim, pos_dim=cfg.pos_dim,
            num_heads=tuple(cfg.num_heads), feedforward_dim=tuple(cfg.feedforward_dim),
            cnn_module_kernel=tuple(cfg.cnn_module_kernel), dropout=sf((0.0, 0.3), (20000.0, 0.1)),
            warmup_batches=4000.0, causal=False, chunk_size=(-1,), left_context_frames=(-1,))

    def forward(self, x, x_lens):
        x, x_lens = self.encoder_embed(x, x_lens)
        mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) >= x_lens.unsqueeze(1)
        return self.encoder(x.permute(1, 0, 2), x_lens, mask)[0].permute(1, 0, 2)


def copy_weights(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """Our parameters (and the buffer holding their never-used bypass_scale) into theirs."""
    mine = dict(ours.named_parameters())
    tensors = {**mine, **dict(ours.named_buffers())}
    names = {n: icefall_to_ours(n) for n, _ in theirs.named_parameters()}
    unknown = [n for n, o in names.items() if o not in tensors]
    uncovered = set(mine) - set(names.values())
    if unknown or uncovered:
        fail(f"--authors: parameter names: theirs without ours {unknown[:3]}, ours without theirs "
             f"{sorted(uncovered)[:3]}; allowed: names equal after variants.interop.icefall_names")
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(tensors[names[name]])


def set_batch_count(model: torch.nn.Module, n: float) -> None:
    for m in model.modules():
        if hasattr(m, "batch_count"):
            m.batch_count = n


def measure(name: str, model: torch.nn.Module, x, lens, device: str, bf16: bool,
            steps: int) -> dict:
    model.to(device).train()
    cuda = device == "cuda"
    params = list(model.parameters())

    def step(seed: int, count: bool = False, live: LiveBytes | None = None):
        torch.manual_seed(seed)
        random.seed(seed)
        with contextlib.ExitStack() as stack:
            if live is not None:
                stack.enter_context(live)
            stack.enter_context(torch.autocast(device, dtype=torch.bfloat16, enabled=bf16))
            if count:
                out, saved = count_saved_bytes(lambda: model(x, lens), exclude=params)
            else:
                out, saved = model(x, lens), None
            # the authors' custom_bwd re-enters CUDA autocast only: on CPU, backward under it too
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16 and not cuda):
                out.float().square().mean().backward()
        for p in params:
            p.grad = None
        return saved

    saved = step(0, count=True)   # warm-up, and what the forward keeps
    live = LiveBytes()            # the CPU proxy of peak memory: live tensor bytes, one step
    step(0, live=live)
    for p in params:              # the same without the gradients: activations and temporaries
        p.grad = torch.zeros_like(p)
    live_act = LiveBytes()
    step(0, live=live_act)
    syncs = HostSyncs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            step(0, live=syncs)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    cuda_syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(1 + i)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    r = {"impl": name, "saved_gb": round(sum(s.nbytes for s in saved) / 1e9, 3),
         "live_peak_gb": round(live.peak / 1e9, 3), "live_act_peak_gb": round(live_act.peak / 1e9, 3),
         "host_syncs": len(syncs.calls), "host_sync_lines": sorted(set(syncs.calls)),
         "fwd_bwd_s_median": round(statistics.median(times), 4)}
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        r.update(peak_gib=round(peak / 2**30, 2), peak_above_start_gib=round((peak - base) / 2**30, 2),
                 cuda_sync_warnings=len(cuda_syncs))
    model.to("cpu")
    if cuda:
        torch.cuda.empty_cache()
    return r


def _quantiles(v: list[float]) -> dict:
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return {"median": round(q[1], 3), "q1": round(q[0], 3), "q3": round(q[2], 3),
            "min": round(min(v), 3), "max": round(max(v), 3)}


def measure_inference(impls, x, lens, device: str, runs: int) -> dict:
    """Eval, no-grad forward time per implementation in ``runs`` pairs, and max |ours - theirs|.

    The two implementations alternate within each pair, the first one swapping from
    pair to pair, so a slow spell on a shared machine hits both about equally. Per pair:
    the ratio of wall times and, on CPU, of process CPU times (all threads; time spent
    waiting for a core while other jobs run is not counted). Reported: the per-pair
    ratios' median and quartiles (``infer_time`` is the median of the CPU-time ratios on
    CPU, of the wall-time ratios on CUDA) and each implementation's median times.
    """
    cuda = device == "cuda"
    wall: dict[str, list[float]] = {name: [] for name, _ in impls}
    cpu: dict[str, list[float]] = {name: [] for name, _ in impls}
    outs = {}
    for _, m in impls:
        m.to(device).eval()
    with torch.no_grad():
        for name, m in impls:               # warm-up, and the outputs to compare
            outs[name] = m(x, lens).float().cpu()
        for i in range(runs):
            for name, m in (impls if i % 2 == 0 else impls[::-1]):
                if cuda:
                    torch.cuda.synchronize()
                c0, t0 = time.process_time(), time.perf_counter()
                m(x, lens)
                if cuda:
                    torch.cuda.synchronize()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    for _, m in impls:
        m.to("cpu")
    r: dict = {f"infer_s_{name}": round(statistics.median(t), 4) for name, t in wall.items()}
    r.update({f"infer_times_{name}": [round(v, 3) for v in t] for name, t in wall.items()})
    if not cuda:
        r.update({f"infer_cpu_s_{name}": round(statistics.median(t), 4) for name, t in cpu.items()})
    r["infer_runs"] = runs
    if len(impls) == 2:
        (a, b) = (name for name, _ in impls)
        wall_ratio = [ta / tb for ta, tb in zip(wall[a], wall[b])]
        r["infer_pair_ratio_wall"] = _quantiles(wall_ratio)
        if not cuda:
            r["infer_pair_ratio_cpu"] = _quantiles([ta / tb for ta, tb in zip(cpu[a], cpu[b])])
        r["infer_time"] = r["infer_pair_ratio_wall" if cuda else "infer_pair_ratio_cpu"]["median"]
        r["infer_max_abs_diff"] = float((outs[a] - outs[b]).abs().max())
    return r


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="zipformer-s,zipformer-m,zipformer-l")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per utterance")
    ap.add_argument("--precision", choices=("bf16", "float32"), default="bf16")
    ap.add_argument("--steps", type=int, default=3, help="timed forward+backward passes")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--authors", type=Path, default=None,
                    help="folder with the authors' exported icefall zipformer files")
    ap.add_argument("--batch-count", type=float, default=30000.0,
                    help="training schedules' batch count (default: past every warm-up)")
    ap.add_argument("--infer-batch", type=int, default=0,
                    help="also time eval-mode inference on this many utterances (0: skip)")
    ap.add_argument("--infer-duration", type=float, default=30.0, help="seconds per inference utterance")
    ap.add_argument("--infer-runs", type=int, default=3, help="timed inference pairs (one pass of each implementation)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--no-train", action="store_true", help="inference timing only")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device: cuda: no CUDA device here; allowed: cpu")
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    authors = import_authors(args.authors) if args.authors else None
    frames = int(round(args.duration * FRAME_RATE))
    summary = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
               "torch": torch.__version__, "precision": args.precision,
               "batch": f"{args.batch} x {args.duration:g} s", "threads": torch.get_num_threads(),
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "results": []}
    for variant in args.variants.split(","):
        torch.manual_seed(0)
        model = build_model(variant, objective="ctc")
        ours = Ours(model)
        impls = [("ours", ours)]
        if authors:
            theirs = Authors(model.spec.encoder, authors)
            copy_weights(ours, theirs)
            impls.append(("authors", theirs))
            # the same function: eval outputs on a short input agree to float32 rounding
            x1, l1 = torch.randn(1, 200, model.spec.encoder.num_features), torch.tensor([200])
            with torch.no_grad():
                diff = (ours.eval()(x1, l1) - theirs.eval()(x1, l1)).abs().max().item()
            print(json.dumps({"variant": variant, "eval_max_abs_diff": diff}), flush=True)
            if diff > 1e-3:
                fail(f"--authors: {variant}: outputs differ by {diff:.3g} with the same weights; "
                     "allowed: the authors' zipformer recipe")
        x = torch.randn(args.batch, frames, model.spec.encoder.num_features, device=args.device)
        lens = torch.full((args.batch,), frames, dtype=torch.int64, device=args.device)
        rows = []
        for name, m in ([] if args.no_train else impls):
            set_batch_count(m, args.batch_count)
            # the GPU's arithmetic also on CPU (no CPU-only layout paths): the proxy predicts a GPU
            with fast_paths.device_independent():
                r = {"variant": variant, **measure(name, m, x, lens, args.device,
                                                   args.precision == "bf16", args.steps)}
            print(json.dumps(r), flush=True)
            rows.append(r)
        if args.infer_batch:
            f = int(round(args.infer_duration * FRAME_RATE))
            xi = torch.randn(args.infer_batch, f, model.spec.encoder.num_features, device=args.device)
            li = torch.full((args.infer_batch,), f, dtype=torch.int64, device=args.device)
            r = {"variant": variant, "infer_batch": f"{args.infer_batch} x {args.infer_duration:g} s",
                 **measure_inference(impls, xi, li, args.device, args.infer_runs)}
            print(json.dumps(r), flush=True)
            summary["results"].append(r)
            del xi, li
        if len(rows) == 2:
            ratio = {"variant": variant, "impl": "ours/authors",
                     "saved": round(rows[0]["saved_gb"] / rows[1]["saved_gb"], 3),
                     "live_peak": round(rows[0]["live_peak_gb"] / rows[1]["live_peak_gb"], 3),
                     "live_act_peak": round(rows[0]["live_act_peak_gb"] / rows[1]["live_act_peak_gb"], 3),
                     "time": round(rows[0]["fwd_bwd_s_median"] / rows[1]["fwd_bwd_s_median"], 3)}
            if "peak_gib" in rows[0]:
                ratio["peak"] = round(rows[0]["peak_gib"] / rows[1]["peak_gib"], 3)
            print(json.dumps(ratio), flush=True)
            rows.append(ratio)
        summary["results"] += rows
        del model, ours, impls, x, lens
    print("SUMMARY " + json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
