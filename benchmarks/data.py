"""Training-loader throughput: certkit's data pipeline against a bare loop doing the same work.

Writes (once) a synthetic ImageNet-layout folder of JPEGs (default 2,000 images of 500x375 in
10 classes: smooth random colour fields with shapes, so they compress and decode like photos,
generated here, never downloaded), then measures images/s of

- a bare loop: PIL decode + timm's RandomResizedCrop(224, bicubic) + flip (+ RandAugment) +
  uint8 tensor, one image after another in this process;
- certkit's training loader (the trainer's DataLoader over ``TrainingImages``: per-item seeded
  augmentation, ``(epoch, index)`` keys, batches of 64) at 0, 1 and 2 worker processes;

for the fine-tuning transform (RRC 0.08-1 + flip + rand-m9-mstd0.5-inc1) and the pretraining
one (RRC 0.2-1 + flip). The ratio per worker is loader images/s / workers / bare images/s
(target >= 0.8; at 0 workers the loader works in this process). Rounds alternate the
contenders, so machine load hits them alike; the median round is reported. On a machine shared
with other jobs, wall-clock ratios depend on what else runs; the CPU-time ratio (images per
CPU-second of the training process and its workers, against the bare loop's) does not, and says
what the loader's machinery costs.

    python benchmarks/data.py [--root /tmp/certkit-bench-jpegs --images 2000 --rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT, CLASSES = 500, 375, 10
TRANSFORMS = {
    "finetune (RRC 0.08-1, flip, RandAugment m9)": dict(crop_scale=(0.08, 1.0), hflip=0.5, rand_augment="rand-m9-mstd0.5-inc1"),
    "pretrain (RRC 0.2-1, flip)": dict(crop_scale=(0.2, 1.0), hflip=0.5),
}


def write_jpegs(root: Path, count: int, seed: int = 0) -> Path:
    """``root/train/class_k/img_i.JPEG``; reused when it already holds ``count`` images."""
    train = root / "train"
    if train.is_dir() and sum(1 for _ in train.glob("*/*.JPEG")) == count:
        return train
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = train / f"class_{i % CLASSES:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)  # a smooth colour field
        image = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.integers(0, WIDTH), rng.integers(0, HEIGHT)
            r = int(rng.integers(10, 90))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, size=(HEIGHT, WIDTH, 3))  # sensor-like grain
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"img_{i:05d}.JPEG", quality=90)
    return train


def bare_loop(files: list[Path], transform) -> tuple[float, float]:
    """(images/s, CPU seconds per image) of decode + transform, one after another, nothing else."""
    began, cpu = time.perf_counter(), time.process_time()
    for path in files:
        with Image.open(path) as image:
            transform(image.convert("RGB"))
    return len(files) / (time.perf_counter() - began), (time.process_time() - cpu) / len(files)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (Linux /proc), e.g. loader workers that are still alive."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def certkit_loader(train: Path, augmentation, workers: int, batch: int = 64) -> tuple[float, float]:
    """(images/s, CPU seconds per image over the training process and its workers) of the
    second epoch through the trainer's own DataLoader: the first starts the persistent workers."""
    import torch

    from certkit.data.folders import image_folder
    from certkit.data.training import TrainingImages
    from certkit.data.transforms import train_transform
    from certkit.training.distributed import DistContext
    from certkit.training.settings import TrainSettings
    from certkit.training.trainer import _loader

    source = image_folder(train.parent, "train")
    dataset = TrainingImages(source, train_transform(augmentation, (224, 224), 3, (0.485, 0.456, 0.406)), seed=0)
    settings = TrainSettings(out_dir=Path("unused"), epochs=2, batch_size=batch, num_workers=workers)
    loader, sampler = _loader(dataset, settings, DistContext(), torch.device("cpu"))
    sampler.set_epoch(0)
    for _ in loader:  # a whole first epoch starts the workers and leaves no prefetched work behind: not measured
        pass
    pids = [w.pid for w in getattr(loader._iterator, "_workers", [])] if workers else []
    sampler.set_epoch(1)
    seen, began, cpu, workers_cpu = 0, time.perf_counter(), time.process_time(), _cpu_seconds(pids)
    for images, _ in loader:
        seen += len(images)
    wall = time.perf_counter() - began
    used = time.process_time() - cpu + _cpu_seconds(pids) - workers_cpu
    return seen / wall, used / max(seen, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/certkit-bench-jpegs"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    options = parser.parse_args()
    from certkit.data.transforms import TrainAugmentation, train_transform

    began = time.perf_counter()
    train = write_jpegs(options.root, options.images)
    files = sorted(train.glob("*/*.JPEG"))
    size = sum(p.stat().st_size for p in files) / len(files) / 1024
    print(f"{len(files)} JPEGs {WIDTH}x{HEIGHT} in {train} (mean {size:.0f} KiB; ready in {time.perf_counter() - began:.0f} s)", flush=True)
    for name, fields in TRANSFORMS.items():
        augmentation = TrainAugmentation(**fields)
        transform = train_transform(augmentation, (224, 224), 3, (0.485, 0.456, 0.406))
        rounds: dict[str, list[tuple[float, float]]] = {}
        for _ in range(options.rounds):
            rounds.setdefault("bare", []).append(bare_loop(files, transform))
            for workers in options.workers:
                rounds.setdefault(f"loader-{workers}", []).append(certkit_loader(train, augmentation, workers, batch=min(64, max(1, len(files) // 4))))
        bare, bare_cpu = (statistics.median(v) for v in zip(*rounds["bare"]))
        print(f"\n{name}: bare loop {bare:,.0f} images/s in one process; {1 / bare_cpu:,.0f} images per CPU-second")
        for workers in options.workers:
            speed, cpu = (statistics.median(v) for v in zip(*rounds[f"loader-{workers}"]))
            per_worker = speed / max(workers, 1)
            print(
                f"  certkit loader, {workers} worker{'s' if workers != 1 else ''}: {speed:7,.0f} images/s = {per_worker:6,.0f} per {'worker' if workers else 'process'}, "
                f"ratio {per_worker / bare:.2f} x bare; {1 / cpu:,.0f} images per CPU-second = {bare_cpu / cpu:.2f} x bare"
            )


if __name__ == "__main__":
    main()
