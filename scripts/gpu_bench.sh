#!/usr/bin/env bash
# GPU benchmark on one H100/H200 (bf16 autocast, fp32 weights): larpo vs TRL DPOTrainer on identical pairs,
# larpo's trainer step against list size m and response length R, and the shared-prefix speed-up; larpo's
# defaults (shared_prefix and logprob_chunk_size: auto) run as their own arm and grid.
# Usage: OUT=dir scripts/gpu_bench.sh   (default OUT: runs/gpu_bench). Missing trl/datasets (and their
# dill/multiprocess/pyarrow) are installed from the wheels in ./.whl (carry .whl to the GPU machine).
#
# Every step runs under `timeout`, capped by a budget of BUDGET_S (default 420 s) counted from the start of
# this script, so the whole script ends within ~7 min; a step that would start with < 15 s left is skipped.
# Steps run most important first. Estimated wall time on an H200 (model: Llama hidden 1024 x 8 layers,
# vocab 32000, prompt 128; each process ~8-10 s of imports and CUDA start-up, ~3-5 s per list size for
# model init, reference pass and 8 steps; the doc's R=256 step times: m=2 0.04 s, m=8 0.12 s, m=16 0.22 s):
#   pip (only when trl/datasets are missing)                           ~10-20 s
#   1. larpo (auto, shared_prefix on/off) vs TRL, B=8 pairs, R=256     ~150-170 s (4 arms x up to 3
#      repeats, one process each; stops starting repeats after ~150 s; Triton compiles TRL's kernel once)
#   2. trainer step, R=256, m = 2 4 8 16, batch 8                       ~30 s
#   2a. the same with the defaults (auto)                               ~30 s
#   2b. the same with logprob_chunk_size 4096, m = 2 8 16               ~25 s
#   3. the same with --no-shared-prefix, m = 2 8                        ~20 s
#   4. trainer step, R=64, m = 2 4 8 16, batch 8                        ~25 s
#   5. trainer step, R=1024, m = 2 4 8, batch 2 (peak < ~30 GiB)        ~25 s
#   total                                                               ~5-6 min (cap BUDGET_S + pip)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu_bench}"
mkdir -p "$out"
start=$(date +%s)
budget="${BUDGET_S:-420}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; assert torch.cuda.is_available(), 'no CUDA device';
print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"

# trl (the TRL arm) and datasets (larpo's trainer and TRL) from ./.whl, only the packages not installed at all
# (find_spec: an installed package whose import fails is not replaced); --no-deps --no-index: the machine is
# offline and the image has the other dependencies (pandas, xxhash, fsspec, huggingface_hub, accelerate).
if ! python3 -c "import trl, datasets" 2>/dev/null; then
    wheels=()
    for pkg in pyarrow dill multiprocess datasets trl; do
        if ! python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$pkg') is None)"; then
            whl=$(ls .whl/"$pkg"-*.whl 2>/dev/null | head -n 1 || true)
            if [ -n "$whl" ]; then wheels+=("$whl"); else echo "WARNING: $pkg is missing and .whl has no wheel"; fi
        fi
    done
    if [ "${#wheels[@]}" -gt 0 ]; then
        echo "installing ${wheels[*]}"
        python3 -m pip install --quiet --no-deps --no-index "${wheels[@]}" || echo "WARNING: pip install failed"
    fi
fi
python3 -c "import trl, datasets; print('trl', trl.__version__, 'datasets', datasets.__version__)" \
    || echo "WARNING: trl/datasets do not import: the TRL step (and larpo's trainer) will fail"
echo "preamble wall time: $(( $(date +%s) - start )) s" | tee "$out/wall_times.txt"

# step NAME CAP_S LOGFILE COMMAND...: run COMMAND under timeout min(CAP_S, budget left), tee its output
step() {
    local name=$1 cap=$2 log=$3 left limit t0 rc
    shift 3
    t0=$(date +%s)
    left=$(( start + budget - t0 ))
    limit=$(( cap < left ? cap : left ))
    if [ "$limit" -lt 15 ]; then
        echo "== $name: skipped, ${left} s of the ${budget} s budget left" | tee -a "$out/wall_times.txt"
        return 0
    fi
    echo "== $name (timeout ${limit} s)"
    set +e
    timeout -k 5 "$limit" "$@" 2>&1 | grep --line-buffered -v -e "train_runtime" | tee "$out/$log"
    rc=${PIPESTATUS[0]}
    set -e
    echo "$name: wall time $(( $(date +%s) - t0 )) s, exit $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')" \
        | tee -a "$out/wall_times.txt"
}

grid=(python3 benchmarks/bench_trainer_step.py --device cuda --dtype bfloat16 --objective contrastive
      --hidden 1024 --layers 8 --vocab 32000 --prompt-len 128 --steps 6 --warmup 2)

step "1. larpo (auto/shared/plain) vs TRL DPOTrainer, bf16, B=8 pairs, P=128, R=256" 210 trl_cost_gpu.log \
    python3 benchmarks/bench_trl_cost.py --device cuda --dtype bfloat16 --settings gpu \
    --larpo-variants auto,shared,plain --repeats 3 --max-seconds 150 --output "$out/trl_cost_gpu.md"
step "2. trainer step R=256, batch 8, m = 2 4 8 16" 75 trainer_step_r256.log \
    "${grid[@]}" --response-len 256 --batch 8 --sizes 2 4 8 16
step "2a. trainer step R=256, batch 8, m = 2 4 8 16, defaults (auto)" 75 trainer_step_r256_auto.log \
    "${grid[@]}" --response-len 256 --batch 8 --sizes 2 4 8 16 --auto
step "2b. trainer step R=256, batch 8, m = 2 8 16, logprob_chunk_size 4096" 60 trainer_step_r256_chunk.log \
    "${grid[@]}" --response-len 256 --batch 8 --sizes 2 8 16 --logprob-chunk 4096
step "3. trainer step R=256, batch 8, m = 2 8, shared_prefix=False" 45 trainer_step_r256_plain.log \
    "${grid[@]}" --response-len 256 --batch 8 --sizes 2 8 --no-shared-prefix
step "4. trainer step R=64, batch 8, m = 2 4 8 16" 60 trainer_step_r64.log \
    "${grid[@]}" --response-len 64 --batch 8 --sizes 2 4 8 16
step "5. trainer step R=1024, batch 2, m = 2 4 8" 60 trainer_step_r1024_b2.log \
    "${grid[@]}" --response-len 1024 --batch 2 --sizes 2 4 8

echo "total wall time: $(( $(date +%s) - start )) s" | tee -a "$out/wall_times.txt"
