#!/usr/bin/env bash
# Every GPU-only check of the project in one run (about 8-11 minutes on an H100/H200):
#   1. the CUDA twins of the device tests (tests parametrised over "cpu"/"cuda") and
#      the compiled Triton kernels against the PyTorch recursion;
#   2. benchmarks/gpu_rnnt_check.py: pruned RNN-T per backend (torch, triton), the fused
#      full loss, the Zipformer-S encoder, and a Zipformer-M bf16 step profile per backend;
#   3. benchmarks/gpu_memory_check.py: peak training memory, bf16, 20 x 30 s,
#      Zipformer-S/M/L, beside it the device-free proxy (peak live tensor bytes), the
#      host synchronisations of one forward + backward (set_sync_debug_mode("warn")),
#      and eval-mode inference time, float32, 30 x 30 s, 6 alternating pairs (issue 22);
#      the authors' implementation beside each when AUTHORS_DIR names a folder of their exported
#      icefall files (never part of this project): ratios ours/authors per variant;
#   4. the Zipformer-M training step (bf16, 20 x 30 s, transducer, ScaledAdam) eager and
#      with train.compile (`harness bench --train --compile both`: steps/s, phase shares,
#      the first step's compile time), each in a fresh process; the issue-24 target is
#      0.22 s a step (0.438 s eager before it).
# Usage: bash benchmarks/gpu_checks.sh [OUT_DIR]   (env: AUTHORS_DIR=/path/to/icefall-files,
#        PARTS="1 2 3 4" the parts to run, default all; part 3 takes up to 7 minutes and
#        part 4 2-6 minutes, most of it compiling: run them in separate calls when a
#        device call is limited to 10 minutes)
# Each part's output goes to OUT_DIR (default runs/gpu-checks) as a log / JSON-lines file.
# DRY_RUN=cpu: no GPU needed; parts 3 and 4 run their commands on CPU with tiny sizes
#        (Zipformer-S, 1 x 1 s; part 4 eager only), part 3 beside the authors' when
#        AUTHORS_DIR is set, to check the script before a GPU is lent; its numbers measure
#        nothing (benchmarks/test_gpu_checks.py runs it).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu-checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}.
authors=()
[ -n "${AUTHORS_DIR:-}" ] && authors=(--authors "$AUTHORS_DIR")
if [ "${DRY_RUN:-}" = cpu ]; then
    parts=" ${PARTS:-3 4} "
    memory_args=(--device cpu --variants zipformer-s --batch 1 --duration 1 --steps 1
                 --infer-batch 1 --infer-duration 1 --infer-runs 2)
    step_args=(zipformer-s --device cpu --batch 1 --duration 1 --compile off --runs 1 --warmup 0)
    tag=-dry-run
else
    python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0), torch.__version__)" || exit 2
    parts=" ${PARTS:-1 2 3 4} "
    memory_args=(--infer-batch 30 --infer-duration 30 --infer-runs 6)
    step_args=(zipformer-m --device cuda --compile both --runs 10 --warmup 3)
    tag=
fi
status=0
run_part() { [[ "$parts" == *" $1 "* ]]; }
run_part 1 && { timeout 180 python3 -m pytest -q -p no:cacheprovider -k "cuda" tests 2>&1 | tee "$out/cuda-tests.log" || status=1; }
run_part 2 && { timeout 240 python3 benchmarks/gpu_rnnt_check.py 2>&1 | tee "$out/rnnt.jsonl" || status=1; }
run_part 3 && { timeout 420 python3 benchmarks/gpu_memory_check.py "${authors[@]}" "${memory_args[@]}" 2>&1 \
    | tee "$out/memory$tag.jsonl" || status=1; }
run_part 4 && { timeout 420 python3 -m harness.cli bench "${step_args[@]}" --train --precision bf16 --no-store 2>&1 \
    | tee "$out/train-compile$tag.log" || status=1; }
exit $status
