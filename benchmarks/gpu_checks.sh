#!/usr/bin/env bash
# Every GPU-only check of the project in one run (about 8-11 minutes on an H100/H200):
#   1. the CUDA twins of the device tests (tests parametrised over "cpu"/"cuda") and
#      the compiled Triton kernels against the PyTorch recursion;
#   2. benchmarks/gpu_rnnt_check.py: pruned RNN-T per backend (torch, triton), the fused
#      full loss, the Zipformer-S encoder, and a Zipformer-M bf16 step profile per backend;
#   3. benchmarks/gpu_memory_check.py: peak training memory, bf16, 20 x 30 s,
#      Zipformer-S/M/L, beside it the device-free proxy (peak live tensor bytes), the
#      host synchronisations of one forward + backward (set_sync_debug_mode("warn")),
#      and eval-mode inference time, float32, 30 x 30 s (issue 22); the authors'
#      implementation beside each when AUTHORS_DIR names a folder of their exported
#      icefall files (never part of this project): ratios ours/authors per variant.
# Usage: bash benchmarks/gpu_checks.sh [OUT_DIR]   (env: AUTHORS_DIR=/path/to/icefall-files)
# Each part's output goes to OUT_DIR (default runs/gpu-checks) as a log / JSON-lines file.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu-checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}.
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0), torch.__version__)" || exit 2
status=0
timeout 180 python3 -m pytest -q -p no:cacheprovider -k "cuda" tests 2>&1 | tee "$out/cuda-tests.log" || status=1
timeout 240 python3 benchmarks/gpu_rnnt_check.py 2>&1 | tee "$out/rnnt.jsonl" || status=1
authors=()
[ -n "${AUTHORS_DIR:-}" ] && authors=(--authors "$AUTHORS_DIR")
timeout 420 python3 benchmarks/gpu_memory_check.py "${authors[@]}" --infer-batch 30 --infer-duration 30 \
    --infer-runs 3 2>&1 | tee "$out/memory.jsonl" || status=1
exit $status
