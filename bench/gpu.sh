#!/usr/bin/env bash
# GPU checks and figures, in one go on one CUDA machine:
#   1. tests/gpu: the CUDA paths held to fairseq's and the CPU's numbers (fairseq z / c / loss,
#      padded batches, bf16, torchrun + NCCL pre-training in bf16 / fp16 / fp32, AM training,
#      emissions, the extract command);
#   2. bench/pretrain.py: one training step of base and large at fairseq's per-GPU batch
#      (10 crops of 150000 samples = 1.5M samples) in fp32 (TF32 convolutions), bf16 and fp16:
#      audio-seconds/s, achieved TFLOP/s and their share of the matmul peak measured in the same run;
#   3. bench/extract.py: feature extraction per utterance vs padded batches, fp32 and bf16, on 120
#      utterances of distinct random lengths (every padded batch a new shape, as in a real corpus).
# Figures measured on an H200, and what they led to: bench/GPU.md.
# Usage: bash bench/gpu.sh [OUTDIR]   (default: $OUT if set, else bench/gpu_out); run from any directory.
# The correctness tests come first, so figures are never printed for a GPU path that computes wrong numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench/gpu_out}}
python=${PYTHON:-python3}
# before anything is written: without torch or a usable GPU, say so in one line and stop
"$python" - <<'PY'
import sys
try:
    import torch
except ImportError:
    sys.exit(f"bench/gpu.sh: {sys.executable} has no torch (activate the w2vtk venv or set PYTHON)")
if not torch.cuda.is_available():
    sys.exit("bench/gpu.sh: torch sees no CUDA GPU")
PY
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
"$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version())" \
  | tee -a "$out/gpu.txt"

echo "== 1. CUDA tests"
"$python" -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$out/tests_gpu.txt"

echo "== 2. pre-training step"
"$python" bench/pretrain.py --device cuda --amp none bf16 fp16 --batch 10 --seconds 9.375 \
  --warmup 2 --runs 5 --steps 3 --json "$out/pretrain_gpu.json" | tee "$out/pretrain_gpu.txt"

echo "== 3. extraction"
"$python" bench/extract.py --device cuda --precision fp32 bf16 --scale 20 --random-lengths --repeats 3 \
  --json "$out/extract_gpu.json" | tee "$out/extract_gpu.txt"
