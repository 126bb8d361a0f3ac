#!/usr/bin/env bash
# The CUDA path in one short script (run on a GPU machine from the repo root):
# an inline search of the quickstart with training and latency measurement on CUDA,
# then a latency table for a reference net timed on CUDA and its fidelity check.
# Ray is not needed (inline executor). Results go to $OUT (default: ./cuda_check).
set -uo pipefail
OUT=${OUT:-cuda_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
NAS="python3 -m nas.cli"
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
$NAS search runs/quickstart.yaml --set search.executor=inline --set train.device=cuda \
  --set latency.kind=measure --set latency.device=cuda --set search.num_trials=6 \
  --set output_dir="$OUT/runs" 2>&1 | tee "$OUT/search.log"
run=$(ls -d "$OUT"/runs/quickstart/* | tail -1)
$NAS results "$run"
cp "$run/search/trials.csv" "$OUT/trials_cuda.csv"
$NAS latency build --space mobilenet_v3_small --device cuda --calibrate 5 \
  --out "$OUT/mbv3_small_cuda.csv" 2>&1 | tail -3
$NAS latency check --table "$OUT/mbv3_small_cuda.csv" --samples 6 --json > "$OUT/check_cuda.json"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in ('samples','within_10pct','mape','spearman','noise_within_10pct')})" "$OUT/check_cuda.json"
