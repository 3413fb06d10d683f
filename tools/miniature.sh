#!/usr/bin/env bash
# The paper's claim in miniature (docs/dmae-in-miniature.md), redone with the small recipe's
# augmentation: DMAE pretraining vs MAE pretraining (sigma 0, masked-patch loss) vs training from
# scratch, vit-mini on the embedded Fashion-MNIST subset, at sigma 0.25 and 0.5,
#   - full labels: pretrain P epochs, fine-tune F epochs; scratch trains P + F epochs;
#   - label-scarce: the same pretrained encoders (all 6,000 training images), fine-tuned on a
#     class-balanced 10% of the labels (600 images) for FS epochs; scratch trains P + FS epochs
#     on those 600 images;
# then certifies every model (and the model shipped before) on the same 200 test images
# (--skip 5), N0 100, N 1,000, alpha 0.001, seed 0.
#
# Two lanes run at once, one thread each; each model is certified as soon as it is trained, and
# the cheap label-scarce runs come first, so a run cut short still answers the main question.
# Every step resumes when rerun.
#   bash tools/miniature.sh [RUNS_DIR]          (default runs/miniature)
#   CERTKIT="python -m certkit" bash tools/miniature.sh ...
set -euo pipefail
runs="${1:-runs/miniature}"
ck=(${CERTKIT:-certkit})
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=60
F=20
FS=100
mkdir -p "$runs"

# The small recipe: RandomResizedCrop(28, scale 0.6-1, bicubic) + flip on both stages.
aug=(--crop-scale 0.6,1 --hflip 0.5)
pretrain=(--model mae-vit-mini --epochs "$P" --batch 128 --blr 1.5e-3 --warmup-epochs 5 --save-every 20 --seed 0 "${aug[@]}")
finetune=(--model vit-mini --batch 128 --blr 1e-3 --warmup-epochs 2 --layer-decay 0.75 --drop-path 0.1 --save-every 20 --seed 0 "${aug[@]}")
# From scratch: the same, without layer decay (it would only slow the lower layers of a random init).
scratch=(--model vit-mini --batch 128 --blr 1e-3 --warmup-epochs 2 --drop-path 0.1 --save-every 20 --seed 0 "${aug[@]}")

finetune_from() {  # method sigma setting
  local method=$1 sigma=$2 setting=$3 extra=()
  [[ $setting == scarce ]] && extra=(--label-fraction 0.1 --epochs "$FS") || extra=(--epochs "$F")
  "${ck[@]}" finetune "${finetune[@]}" "${extra[@]}" --init "$runs/pretrain-$method/weights.safetensors" \
    --sigma "$sigma" --out-dir "$runs/$setting-$method-sigma$sigma"
}

from_scratch() {  # sigma setting
  local sigma=$1 setting=$2 extra=()
  [[ $setting == scarce ]] && extra=(--label-fraction 0.1 --epochs $((P + FS))) || extra=(--epochs $((P + F)))
  "${ck[@]}" finetune "${scratch[@]}" "${extra[@]}" --sigma "$sigma" --out-dir "$runs/$setting-scratch-sigma$sigma"
}

certify_one() {  # run sigma [weights]
  mkdir -p "$runs/certify"
  "${ck[@]}" certify --model vit-mini --skip 5 --n0 100 --n 1000 --alpha 0.001 --seed 0 --batch 1100 \
    --sigma "$2" --checkpoint "${3:-$runs/$1-sigma$2/weights.safetensors}" --out "$runs/certify/$1-sigma$2.tsv"
}

lane_a() {
  "${ck[@]}" pretrain dmae "${pretrain[@]}" --out-dir "$runs/pretrain-dmae"
  for sigma in 0.25 0.5; do finetune_from dmae "$sigma" scarce; certify_one scarce-dmae "$sigma"; done
  for sigma in 0.25 0.5; do finetune_from dmae "$sigma" full; certify_one full-dmae "$sigma"; done
  from_scratch 0.25 full
  certify_one full-scratch 0.25
  if [[ -n "${SHIPPED_BEFORE:-}" ]]; then  # the model shipped before this study, for reference
    for sigma in 0.25 0.5; do certify_one shipped-before "$sigma" "$SHIPPED_BEFORE/vit-mini-sigma$sigma.safetensors"; done
  fi
}

lane_b() {
  "${ck[@]}" pretrain dmae "${pretrain[@]}" --sigma 0 -O loss_on=masked --out-dir "$runs/pretrain-mae"
  for sigma in 0.25 0.5; do finetune_from mae "$sigma" scarce; certify_one scarce-mae "$sigma"; done
  for sigma in 0.25 0.5; do from_scratch "$sigma" scarce; certify_one scarce-scratch "$sigma"; done
  for sigma in 0.25 0.5; do finetune_from mae "$sigma" full; certify_one full-mae "$sigma"; done
  from_scratch 0.5 full
  certify_one full-scratch 0.5
}

lane_a > "$runs/lane-a.log" 2>&1 &
a=$!
lane_b > "$runs/lane-b.log" 2>&1 &
b=$!
wait "$a" "$b"
echo "done: $runs"
