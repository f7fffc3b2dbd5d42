#!/usr/bin/env bash
# GPU check: the demo and the trainer micro-benchmark in bf16 on a CUDA device; prints tokens/s and
# peak memory. Finishes in a few minutes on one H100/H200. Usage: scripts/gpu_check.sh [OUTPUT_DIR]
# Missing Python packages can be installed from wheels in ./.whl first (see docs/scaling.md).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu_check}}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; assert torch.cuda.is_available(), 'no CUDA device';
print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"

echo "== demo (SFT + 4 LarPO iterations, bf16 autocast on the GPU)"
start=$(date +%s)
python3 -m larpo.cli demo --output "$out/demo" 2>&1 | grep -v -e "Loading weights" -e "Writing model"
echo "demo wall time: $(( $(date +%s) - start )) s"
cp "$out/demo/report.json" "$out/demo_report.json" 2>/dev/null || true

echo "== trainer micro-benchmark (bf16, Llama hidden 1024 x 8 layers, vocab 32000, 8 lists/step)"
python3 benchmarks/bench_trainer_step.py --device cuda --dtype bfloat16 --sizes 2 8 16 2>&1 \
    | grep -v -e "train_runtime" | tee "$out/trainer_step.md"
echo "== the same in fp32"
python3 benchmarks/bench_trainer_step.py --device cuda --dtype float32 --sizes 2 8 2>&1 \
    | grep -v -e "train_runtime" | tee "$out/trainer_step_fp32.md"
