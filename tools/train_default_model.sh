#!/usr/bin/env bash
# Reproduces the default model shipped in certkit-dmae (vit-mini at sigma 0.25 and 0.5) and the
# from-scratch Gaussian-augmentation baseline it is compared with in docs/dmae-in-miniature.md.
# Everything runs on the embedded Fashion-MNIST subset (6,000 training images) on a CPU.
#   bash tools/train_default_model.sh [RUNS_DIR]     (default runs/default)
set -euo pipefail
runs="${1:-runs/default}"
PRETRAIN_EPOCHS=60
FINETUNE_EPOCHS=80  # 20 gave the models shipped before 2026-12-02 (docs/default-model.md)

# 1. DMAE pretraining: noise sigma 0.25 + 75% masking, MSE over all patches, norm-pix target.
certkit pretrain dmae --model mae-vit-mini --epochs "$PRETRAIN_EPOCHS" --batch 128 --blr 1.5e-3 \
  --warmup-epochs 5 --save-every 20 --seed 0 --out-dir "$runs/pretrain"

for sigma in 0.25 0.5; do
  # 2. Fine-tune the pretrained encoder at each sigma (consistency regularization, LLRD 0.75).
  certkit finetune --model vit-mini --init "$runs/pretrain/weights.safetensors" --sigma "$sigma" \
    --epochs "$FINETUNE_EPOCHS" --batch 128 --blr 1e-3 --warmup-epochs 2 --layer-decay 0.75 \
    --drop-path 0.1 --save-every 20 --seed 0 --out-dir "$runs/dmae-sigma$sigma"
  # 3. Baseline: the same classifier and recipe from scratch, for the same total number of epochs.
  certkit finetune --model vit-mini --sigma "$sigma" --epochs $((PRETRAIN_EPOCHS + FINETUNE_EPOCHS)) \
    --batch 128 --blr 1e-3 --warmup-epochs 2 --drop-path 0.1 --save-every 20 --seed 0 \
    --out-dir "$runs/scratch-sigma$sigma"
done
