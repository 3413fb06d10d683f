#!/usr/bin/env bash
# Reproduces vit-mini-uniform-sigma0.25.safetensors shipped in certkit-dmae: the Gaussian vit-mini
# (sigma 0.25) shipped before 2026-12-02 (60 + 20 epochs, sha256 889ee352...; the repository's
# history has it, at commit c117026) fine-tuned for 20 epochs on uniform noise U[-sqrt(3) 0.25, sqrt(3) 0.25]
# (the built-in noisy-uniform objective: consistency regularization, label smoothing 0.1), on the
# embedded Fashion-MNIST subset, on a CPU (run with OMP_NUM_THREADS=1; about 15 min idle).
#   bash tools/train_uniform_model.sh [RUN_DIR [INIT]]
# RUN_DIR defaults to runs/uniform-sigma0.25; INIT, the Gaussian weights to start from, to that
# earlier model taken from git (run from the repository), or pass the shipped one to start from it.
set -euo pipefail
run="${1:-runs/uniform-sigma0.25}"
weights="$(python -c 'import certkit_dmae, pathlib; print(pathlib.Path(certkit_dmae.__file__).parent / "weights")')"
init="${2:-}"
if [[ -z "$init" ]]; then
  mkdir -p "$(dirname "$run")"
  init="$run-init-vit-mini-sigma0.25-before-2026-12-02.safetensors"
  git show c117026:plugins/dmae/src/certkit_dmae/weights/vit-mini-sigma0.25.safetensors > "$init"
fi
certkit finetune --model vit-mini --objective noisy-uniform --init "$init" --sigma 0.25 \
  --epochs 20 --batch 128 --blr 1e-3 --warmup-epochs 2 --layer-decay 0.75 --drop-path 0.1 --save-every 10 --seed 0 \
  --out-dir "$run"
echo "ship it: cp $run/weights.safetensors $weights/vit-mini-uniform-sigma0.25.safetensors"
