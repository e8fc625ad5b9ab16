#!/usr/bin/env bash
# GPU figures and checks, in one go on one CUDA machine (about 3 minutes of figures on an H200, then the
# CUDA tests when their dependencies are there):
#   1. bench/gpu.py (imports only torch, numpy and w2vtk's source, so it runs on a bare GPU host with
#      another Python and torch): matmul peaks; base and large pre-training steps at fairseq's per-GPU
#      batch in fp32 and bf16 (audio-s/s, TFLOP/s, MFU against the bf16 peak of the same run, memory);
#      extraction per utterance vs padded batches in fp32 and bf16 (real-time factors, their ratio, the
#      largest deviation between the two outputs); an AM training step of the WSJ model. Each figure
#      lands in OUTDIR/gpu.json as soon as it is measured.
#   2. tests/gpu (pytest; skipped with a line saying what is missing when pytest or w2vtk's
#      dependencies are not installed): the CUDA paths held to fairseq's and the CPU's numbers, and
#      torchrun + NCCL pre-training.
# Figures measured on an H200, and what they led to: bench/GPU.md.
# Usage: bash bench/gpu.sh [--smoke] [--no-tests] [OUTDIR]   (OUTDIR default: $OUT, else bench/gpu_out)
#   --smoke: tiny shapes on the CPU, no GPU needed (CI runs this so the script never rots).
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=0 tests=1 out=
for arg in "$@"; do
  case $arg in
    --smoke) smoke=1 ;;
    --no-tests) tests=0 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench/gpu.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
out=${out:-${OUT:-bench/gpu_out}}
python=${PYTHON:-python3}
# before anything is written: without torch or (unless --smoke) a usable GPU, say so in one line and stop
SMOKE=$smoke "$python" - <<'PY'
import os, sys
try:
    import torch
except ImportError:
    sys.exit(f"bench/gpu.sh: {sys.executable} has no torch (activate the w2vtk venv or set PYTHON)")
if os.environ["SMOKE"] != "1" and not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: torch sees no CUDA GPU (--smoke runs the CPU check)")
PY
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$smoke" = 1 ]; then
  "$python" bench/gpu.py --smoke --out "$out" | tee "$out/figures.txt"
  exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt" || true

echo "== 1. figures"
"$python" bench/gpu.py --out "$out" | tee "$out/figures.txt"

echo "== 2. CUDA tests"
if [ "$tests" = 0 ]; then
  echo "skipped (--no-tests)"
elif missing=$("$python" -c "
import importlib.util as u
print(' '.join(m for m in ('pytest', 'yaml', 'rich', 'typer', 'soundfile', 'kaldiio') if u.find_spec(m) is None))") \
     && [ -n "$missing" ]; then
  echo "skipped: $python lacks $missing (pip install -e . in this checkout, or carry the wheels)" | tee "$out/tests_gpu.txt"
else
  "$python" -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$out/tests_gpu.txt"
fi
