#!/usr/bin/env bash
# Reproduces vit-mini-uniform-sigma0.25.safetensors shipped in certkit-dmae: the shipped Gaussian
# vit-mini (sigma 0.25) fine-tuned for 20 epochs on uniform noise U[-sqrt(3) 0.25, sqrt(3) 0.25]
# (the built-in noisy-uniform objective: consistency regularization, label smoothing 0.1), on the
# embedded Fashion-MNIST subset, on a CPU (run with OMP_NUM_THREADS=1; about 15 min idle).
#   bash tools/train_uniform_model.sh [RUN_DIR]     (default runs/uniform-sigma0.25)
set -euo pipefail
run="${1:-runs/uniform-sigma0.25}"
weights="$(python -c 'import certkit_dmae, pathlib; print(pathlib.Path(certkit_dmae.__file__).parent / "weights")')"
certkit finetune --model vit-mini --objective noisy-uniform --init "$weights/vit-mini-sigma0.25.safetensors" --sigma 0.25 \
  --epochs 20 --batch 128 --blr 1e-3 --warmup-epochs 2 --layer-decay 0.75 --drop-path 0.1 --save-every 10 --seed 0 \
  --out-dir "$run"
echo "ship it: cp $run/weights.safetensors $weights/vit-mini-uniform-sigma0.25.safetensors"
