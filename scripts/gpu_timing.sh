#!/usr/bin/env bash
# GPU timing table of issue #7 for every registered restorer, on a lent GPU machine (see reports/timing_gpu/).
# Usage: bash scripts/gpu_timing.sh OUTDIR   (needs a CUDA GPU and the project importable: pip install -e . or
# PYTHONPATH=.).  Each size is written to OUTDIR/<dtype>/timing.json as soon as it is measured; running the
# script again resumes (finished sizes are kept), so a run cut short by a time limit loses nothing.
set -uo pipefail
out=${1:?output folder}
mkdir -p "$out"
methods=${METHODS:-identity,onerestore,vlur,promptir,airnet}
common=(--methods "$methods" --sizes 1080p,2k --device cuda --random-weights --max-seconds "${MAX_SECONDS:-6}"
        --detail --resume)
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" \
  | tee -a "$out/gpu.txt"
# fp32 without TF32: the paper's setting (Titan RTX, FP32); then bf16 autocast, the fastest numerics the card offers.
for dtype in fp32 bf16; do
  python3 -m harness.timing "${common[@]}" --dtype "$dtype" --out "$out/$dtype" 2>&1 | tee -a "$out/run.log"
done
