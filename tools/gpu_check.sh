#!/usr/bin/env bash
# One pass over certkit's CUDA paths on a GPU machine (what CPU-only CI cannot run):
# engine benchmark on the GPU, certify fp32 vs bf16, AMP pretraining and fine-tuning, and
# torchrun with NCCL. Installs the working tree without dependencies (the machine's own torch).
#   bash tools/gpu_check.sh OUT_DIR
set -uo pipefail
out="${1:?usage: gpu_check.sh OUT_DIR}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1
step() { echo; echo "=== $* ==="; }
step setup
nvidia-smi -L
python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . -e plugins/dmae -e plugins/gaussian 2>&1 | tail -2
python3 -c "import torch, onnxruntime as ort; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'ort', ort.__version__, ort.get_available_providers())"
step "engines benchmark, vit-mini (shipped weights), N=10000"
timeout 170 python3 benchmarks/engines.py --device cuda --n 10000 --images 4 --batch 5000 --rounds 3 --compile 2>&1 | tee "$out/engines-vit-mini.txt"
step "engines benchmark, vit-b (random weights), N=2000"
timeout 120 python3 benchmarks/engines.py --model vit-b --checkpoint random --device cuda --n 2000 --images 2 --batch 500 --rounds 2 2>&1 | tee "$out/engines-vit-b.txt"
step "certify fp32 vs bf16 on cuda, 20 images N=10000"
for p in fp32 bf16; do
  timeout 60 certkit certify --device cuda --max 20 --n 10000 --precision "$p" --out "$out/certify-$p.tsv" 2>&1 | tail -12
done
python3 - "$out" <<'PY'
import sys, csv
rows = {p: list(csv.DictReader(open(f"{sys.argv[1]}/certify-{p}.tsv"), delimiter="\t")) for p in ("fp32", "bf16")}
same = sum(a["predict"] == b["predict"] for a, b in zip(rows["fp32"], rows["bf16"]))
dr = max(abs(float(a["radius"]) - float(b["radius"])) for a, b in zip(rows["fp32"], rows["bf16"]))
dn = max(abs(int(a["nA"]) - int(b["nA"])) for a, b in zip(rows["fp32"], rows["bf16"]))
print(f"fp32 vs bf16: same prediction {same}/{len(rows['fp32'])}, max |radius diff| {dr:.4f}, max |nA diff| {dn}")
PY
step "pretrain dmae, AMP on cuda, 2 epochs"
timeout 90 certkit pretrain dmae --device cuda --epochs 2 --max 4000 --batch 256 --out-dir /tmp/gpu-pretrain 2>&1 | tail -6
step "finetune from it, AMP, 1 epoch"
timeout 60 certkit finetune --model vit-mini --sigma 0.25 --init /tmp/gpu-pretrain/weights.safetensors --device cuda --epochs 1 --max 4000 --batch 256 --out-dir /tmp/gpu-ft 2>&1 | tail -4
step "torchrun, NCCL, 1 rank"
timeout 90 torchrun --nproc_per_node 1 -m certkit -- pretrain dmae --device cuda --epochs 1 --max 2000 --batch 128 --out-dir /tmp/gpu-ddp 2>&1 | tail -4
cp /tmp/gpu-pretrain/log.jsonl "$out/pretrain-log.jsonl" 2>/dev/null
ls /tmp/gpu-pretrain /tmp/gpu-ft /tmp/gpu-ddp
