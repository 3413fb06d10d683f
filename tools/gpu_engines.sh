#!/usr/bin/env bash
# Issue 13, "The GPU path", in one pass on a lent GPU (about 9 minutes; each step has its own
# timeout so one slow step cannot eat the others). Prepared and tested at toy size on a CPU with
#   python tools/gpu_engines.py --toy utilisation | agreement | syncs
# Installs the working tree without dependencies (the machine's own torch). Output: OUT_DIR/*.txt
# and *.json, the numbers docs/engines.md quotes.
#   bash tools/gpu_engines.sh OUT_DIR
set -uo pipefail
out="${1:?usage: gpu_engines.sh OUT_DIR}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
step() { echo; echo "=== $* ($(date +%T)) ==="; }
step setup
nvidia-smi -L
python3 -m pip install -q --no-deps --no-index --no-build-isolation -e . -e plugins/dmae -e plugins/gaussian 2>&1 | tail -2
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
step "same numbers: direct block draws vs perturb path, on CUDA too"
timeout 90 python3 -m pytest tests/test_sampling_blocks.py -q -p no:cacheprovider 2>&1 | tail -3 | tee "$out/sampling-blocks.txt"
step "host-device waits in the sampler (vit-mini, packed cohen, batch 5000)"
timeout 60 python3 tools/gpu_engines.py --json "$out/syncs.json" syncs 2>&1 | tee "$out/syncs.txt"
step "certkit vs bare forward vs plain loop, vit-mini, N=10000 (target: certkit >= 0.95x bare forward)"
timeout 120 python3 benchmarks/engines.py --device cuda --n 10000 --images 4 --batch 5000 --rounds 3 --no-onnx 2>&1 | tee "$out/engines-vit-mini.txt"
step "fp32 vs bf16 certificates, vit-mini, 20 images, N=10000"
timeout 90 python3 tools/gpu_engines.py --json "$out/agreement.json" agreement --images 20 --n 10000 2>&1 | tee "$out/agreement.txt"
step "bf16 utilisation, vit-b (random weights)"
timeout 200 python3 tools/gpu_engines.py --json "$out/utilisation-vit-b.json" utilisation --model vit-b --batches 256,512,1024 --seconds 2 --compile default,reduce-overhead --compile-batch 512 2>&1 | tee "$out/utilisation-vit-b.txt"
step "bf16 utilisation, vit-l (random weights)"
timeout 150 python3 tools/gpu_engines.py --json "$out/utilisation-vit-l.json" utilisation --model vit-l --batches 128,256,512 --seconds 2 --compile default --compile-batch 256 2>&1 | tee "$out/utilisation-vit-l.txt"
step done
