#!/usr/bin/env bash
# The measurements that need a GPU, in one pass (device time is scarce; each step has its own
# timeout so one slow step cannot eat the others): sequential vs fixed-N certification at
# N = 100,000, the engine benchmark on a paper-sized ViT, and a longer DMAE pretraining for the
# ablation in docs/dmae-in-miniature.md. Installs the working tree without dependencies.
#   bash tools/gpu_benchmarks.sh OUT_DIR
set -uo pipefail
# Everything lands in a work folder; OUT_DIR gets the printed reports and one archive of the rest.
out="${1:?usage: gpu_benchmarks.sh OUT_DIR}"; mkdir -p "$out"
work=/tmp/gpu-benchmarks; mkdir -p "$work"
trap 'cp "$work"/*.txt "$out"/ 2>/dev/null; tar czf "$out/gpu-benchmarks.tgz" -C "$work" . 2>/dev/null' EXIT
export PYTHONUNBUFFERED=1
step() { echo; echo "=== $* ($(date +%T)) ==="; }
step setup
python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . -e plugins/dmae -e plugins/gaussian 2>&1 | tail -2
nvidia-smi -L
step "sequential vs cohen, sigma 0.5, 100 images, N=100000"
timeout 110 python3 benchmarks/sequential.py --device cuda --sigma 0.5 --images 100 --n 100000 --batch 10000 --chunk 20 --out-dir "$work/seq" 2>&1 | grep -v Warning | tee "$work/sequential-sigma0.5.txt"
step "sequential vs cohen, sigma 0.25, 50 images, N=100000"
timeout 70 python3 benchmarks/sequential.py --device cuda --sigma 0.25 --images 50 --n 100000 --batch 10000 --chunk 25 --out-dir "$work/seq" 2>&1 | grep -v Warning | tee "$work/sequential-sigma0.25.txt"
step "engines, vit-b random weights"
timeout 60 python3 benchmarks/engines.py --model vit-b --checkpoint random --device cuda --n 2000 --images 2 --batch 500 --rounds 2 --no-onnx 2>&1 | grep -v Warning | tee "$work/engines-vit-b.txt"
step "ablation: DMAE pretraining 150 epochs (the default model had 60)"
timeout 120 certkit pretrain dmae --model mae-vit-mini --epochs 150 --batch 128 --blr 1.5e-3 --warmup-epochs 5 \
  --save-every 75 --seed 0 --device cuda --out-dir /tmp/pre150 2>&1 | grep -E "^epoch (1|50|100|150):|weights" | tee "$work/pretrain150.txt"
cp /tmp/pre150/weights.safetensors "$work/pretrain150.safetensors" 2>/dev/null
cp /tmp/pre150/log.jsonl "$work/pretrain150-log.jsonl" 2>/dev/null
cp /tmp/pre150/preview-0150.png "$work/" 2>/dev/null
step "fine-tune it at sigma 0.5, 20 epochs (the default recipe)"
timeout 60 certkit finetune --model vit-mini --init /tmp/pre150/weights.safetensors --sigma 0.5 --epochs 20 --batch 128 \
  --blr 1e-3 --warmup-epochs 2 --layer-decay 0.75 --drop-path 0.1 --save-every 10 --seed 0 --device cuda --out-dir /tmp/ft150 2>&1 | tail -2
cp /tmp/ft150/weights.safetensors "$work/pre150-ft20-sigma0.5.safetensors" 2>/dev/null
cp /tmp/ft150/log.jsonl "$work/pre150-ft20-log.jsonl" 2>/dev/null
step done
