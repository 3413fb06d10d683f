#!/usr/bin/env bash
# DMAE ViT-B/16 at 224 px on one GPU with the paper's recipes, on a synthetic ImageNet-layout
# folder of JPEGs (generated here; nothing is downloaded):
#   1. benchmarks/data.py: loader images/s at 0 ... W workers against a bare decode+augment loop;
#   2. pretraining (dmae-pretrain-vit-b: RRC 0.2-1 + flip, sigma 0.25, mask 0.75), bf16, a few
#      hundred steps: images/s, peak memory, the loss curve, the share of time waiting for data;
#   3. fine-tuning (dmae-finetune-vit-b-sigma0.25: RRC 0.08-1 + flip + RandAugment, 2 noise
#      copies, mixup/cutmix after the noise, layer decay 0.65) from those weights: the same numbers;
#   4. tools/gpu_dmae_report.py: one table, and the time per ImageNet epoch extrapolated from it.
# The effective batch is the per-step batch (no accumulation): the paper's 4096 / 1024 only
# change the optimizer step, not images/s.
#   bash tools/gpu_dmae.sh [OUT_DIR]                      (default runs/gpu-dmae; about 8 min on an H100-class GPU)
#   SIZE=toy bash tools/gpu_dmae.sh /tmp/gpu-dmae-toy     (the same steps on a CPU in a few minutes)
set -euo pipefail
out="${1:-runs/gpu-dmae}"
ck=(${CERTKIT:-certkit})
if [[ "${SIZE:-full}" == toy ]]; then
  images=16 batch=8 ft_batch=4 epochs=2 workers="0 1" loader_workers=1 device=cpu rounds=1
else
  images=9600 batch=128 ft_batch=64 epochs=4 workers="0 2 4 8 15" loader_workers=15 device=cuda rounds=1
fi
mkdir -p "$out"
python benchmarks/data.py --root "$out/jpegs" --images "$images" --rounds "$rounds" --workers $workers | tee "$out/loader.txt"

"${ck[@]}" pretrain dmae --recipe dmae-pretrain-vit-b --data "$out/jpegs" --split train --device "$device" \
  --batch "$batch" --effective-batch "$batch" --epochs "$epochs" --warmup-epochs 1 --workers "$loader_workers" \
  --save-every "$epochs" --out-dir "$out/pretrain" | tee "$out/pretrain.txt"

"${ck[@]}" finetune --recipe dmae-finetune-vit-b-sigma0.25 --init "$out/pretrain/weights.safetensors" --data "$out/jpegs" \
  --split train --device "$device" --batch "$ft_batch" --effective-batch "$ft_batch" --epochs "$epochs" --warmup-epochs 1 \
  --workers "$loader_workers" --eval-every 0 --save-every "$epochs" --out-dir "$out/finetune" | tee "$out/finetune.txt"

python tools/gpu_dmae_report.py "$out" | tee "$out/report.md"
