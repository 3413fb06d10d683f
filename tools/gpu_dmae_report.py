"""Summarise a tools/gpu_dmae.sh run: per stage, images/s, peak memory, data-wait share and the
loss curve from the run's log.jsonl, and the time per ImageNet-1k epoch (1,281,167 images) that
the measured images/s implies on one GPU.

    python tools/gpu_dmae_report.py runs/gpu-dmae
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

IMAGENET_TRAIN = 1_281_167


def main() -> None:
    out = Path(sys.argv[1])
    print("| stage | images/s (last epoch) | peak memory GiB | waiting for data | loss by epoch | one ImageNet epoch |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for stage in ("pretrain", "finetune"):
        log = out / stage / "log.jsonl"
        if not log.exists():
            print(f"| {stage} | not run | | | | |")
            continue
        epochs = [json.loads(line) for line in log.read_text().splitlines()]
        last = epochs[-1]
        speed = last["images_per_second"]
        memory = f"{last['peak_memory_gib']:.1f}" if "peak_memory_gib" in last else "n/a (CPU)"
        curve = " -> ".join(f"{e['loss']:.3f}" for e in epochs)
        hours = IMAGENET_TRAIN / speed / 3600
        print(f"| {stage} | {speed:,.1f} | {memory} | {100 * last.get('data_wait_share', 0):.1f} % | {curve} | {hours:.2f} h |")
    run = json.loads((out / "pretrain" / "run.json").read_text()) if (out / "pretrain" / "run.json").exists() else {}
    if run:
        print(f"\npretraining: {run['settings']['epochs']} epochs of {run['task']['model']}, batch {run['settings']['batch']}, world size {run['world_size']}, amp {run['settings']['amp']}")


if __name__ == "__main__":
    main()
