#!/usr/bin/env bash
# The paper's claim in miniature (docs/dmae-in-miniature.md): certify the DMAE-pretrained
# vit-mini and the same architecture trained from scratch with Gaussian augmentation, on the
# same 200 embedded test images (every 5th), same N0, N, alpha and seed, at sigma 0.25 and 0.5.
#   bash tools/compare_default.sh [RUNS_DIR] [OUT_DIR]
set -euo pipefail
runs="${1:-runs/default}"
out="${2:-runs/default/compare}"
common=(--model vit-mini --skip 5 --n0 100 --n 1000 --alpha 0.001 --seed 0 --batch 1100)
for sigma in 0.25 0.5; do
  for method in dmae scratch; do
    certkit certify "${common[@]}" --sigma "$sigma" --checkpoint "$runs/$method-sigma$sigma/weights.safetensors" \
      --out "$out/$method-sigma$sigma.tsv"
  done
done
certkit report "$out"/dmae-sigma0.25.tsv "$out"/scratch-sigma0.25.tsv "$out"/dmae-sigma0.5.tsv "$out"/scratch-sigma0.5.tsv \
  --label "DMAE σ=0.25" --label "scratch σ=0.25" --label "DMAE σ=0.5" --label "scratch σ=0.5" \
  --radii 0,0.25,0.5,0.75,1.0 --out-dir "$out" --name dmae-vs-scratch
