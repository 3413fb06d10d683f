#!/usr/bin/env bash
# The models of docs/denoised.md, on the embedded Fashion-MNIST subset (6,000 training images),
# with OMP_NUM_THREADS=1 on a CPU, as they were run:
# - shipped by certkit-denoised: the clean vit-mini, the unet-mini diffusion denoiser, and the
#   dncnn-mini denoisers at 0.25, 0.5 and 1.0;
# - shipped by certkit-gaussian: cnn-mini at 0.25 and 0.5 (1.0 is trained for the comparison only);
# - DMAE vit-mini at 1.0 (the pipeline of tools/train_default_model.sh), for the comparison only.
#   bash tools/train_denoised.sh [RUNS_DIR]     (default runs/denoised)
set -euo pipefail
runs="${1:-runs/denoised}"

# 1. The clean classifier: vit-mini on clean images (noisy-ce at sigma 0), from scratch.
certkit finetune --model vit-mini --sigma 0 --no-consistency --epochs 20 --batch 128 --blr 1e-3 \
  --warmup-epochs 2 --drop-path 0.1 --save-every 10 --seed 0 --out-dir "$runs/vit-mini-clean"
# 2. The diffusion denoiser: DDPM noise prediction at uniform timesteps.
certkit pretrain ddpm --model unet-mini --epochs 4 --batch 128 --blr 2e-3 --weight-decay 0 \
  --warmup-epochs 1 --save-every 2 --seed 0 --out-dir "$runs/ddpm-unet-mini"
# 3. Salman et al.'s denoisers, one per sigma, MSE objective.
for sigma in 0.5 0.25 1.0; do
  certkit pretrain denoise-mse --model dncnn-mini --sigma "$sigma" --epochs 8 --batch 128 --blr 2e-3 \
    --weight-decay 0 --warmup-epochs 1 --save-every 4 --seed 0 --out-dir "$runs/dncnn-mini-sigma$sigma"
done
# 4. The Gaussian baseline (Cohen et al.): cnn-mini from scratch, plain Gaussian augmentation.
for sigma in 0.25 0.5 1.0; do
  certkit finetune --model cnn-mini --sigma "$sigma" --no-consistency --label-smoothing 0 --drop-path 0 \
    --epochs 30 --batch 128 --seed 0 --save-every 10 --out-dir "$runs/cnn-mini-sigma$sigma"
done
# 5. DMAE at sigma 1.0: the commands of tools/train_default_model.sh (pretraining 60 epochs, then
#    fine-tuning 80 epochs as shipped since 2026-12-02), fine-tuned at 1.0. A pretraining run of
#    that script can be reused: pass its weights.safetensors to --init and skip the first command.
certkit pretrain dmae --model mae-vit-mini --epochs 60 --batch 128 --blr 1.5e-3 \
  --warmup-epochs 5 --save-every 20 --seed 0 --out-dir "$runs/dmae-pretrain"
certkit finetune --model vit-mini --init "$runs/dmae-pretrain/weights.safetensors" --sigma 1.0 \
  --epochs 80 --batch 128 --blr 1e-3 --warmup-epochs 2 --layer-decay 0.75 \
  --drop-path 0.1 --save-every 20 --seed 0 --out-dir "$runs/dmae-sigma1.0"

# What ships:
#   cp $runs/vit-mini-clean/weights.safetensors plugins/denoised/src/certkit_denoised/weights/vit-mini-clean.safetensors
#   cp $runs/ddpm-unet-mini/weights.safetensors plugins/denoised/src/certkit_denoised/weights/unet-mini.safetensors
#   cp $runs/dncnn-mini-sigma$S/weights.safetensors plugins/denoised/src/certkit_denoised/weights/dncnn-mini-sigma$S.safetensors
#   cp $runs/cnn-mini-sigma$S/weights.safetensors plugins/gaussian/src/certkit_gaussian/weights/cnn-mini-sigma$S.safetensors  (S = 0.25, 0.5)
