"""Train the interim default model shipped with certkit-dmae (``vit-mini`` at one sigma).

This is plain Gaussian-noise-augmentation training (Cohen et al. 2019) on the embedded
Fashion-MNIST subset, so that ``certkit certify`` has a real model out of the box. The DMAE
pipeline (``certkit pretrain dmae`` + ``certkit finetune``) replaces it once it lands; the
exact command that produced each shipped file is recorded in its metadata and in docs/.

    python tools/train_interim_default.py --sigma 0.25 --epochs 30 --seed 0
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from certkit import plugins
from certkit.checkpoints import write_weights
from certkit.interfaces import InputSpec
from certkit.data import BUILTIN_DATASETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    dataset = BUILTIN_DATASETS["fashion-mnist-mini"].factory(None, "train")
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    component = plugins.get("models", "vit-mini")
    model = component.obj()
    spec: InputSpec = model.input_spec
    spec = InputSpec(**{**spec.to_dict(), "sigma": args.sigma, "class_names": dataset.info.class_names, "image_size": tuple(spec.image_size)})
    model.input_spec = spec

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(images) / args.batch)
    total = args.epochs * steps_per_epoch
    warmup = steps_per_epoch * 2
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))
    )
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images))
        seen, loss_sum, hits = 0, 0.0, 0
        for step in range(steps_per_epoch):
            batch = order[step * args.batch : (step + 1) * args.batch]
            x = images[batch] + args.sigma * torch.randn_like(images[batch])
            logits = model(x)
            loss = F.cross_entropy(logits, labels[batch], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(batch)
            loss_sum += loss.item() * len(batch)
            hits += (logits.argmax(1) == labels[batch]).sum().item()
        print(f"epoch {epoch + 1}/{args.epochs} loss {loss_sum / seen:.4f} noisy-train-acc {hits / seen:.3f} ({time.time() - start:.0f}s)", flush=True)

    out = args.out or Path("plugins/dmae/src/certkit_dmae/weights") / f"vit-mini-sigma{args.sigma:g}.safetensors"
    command = f"python tools/train_interim_default.py --sigma {args.sigma:g} --epochs {args.epochs} --batch {args.batch} --lr {args.lr:g} --seed {args.seed}"
    write_weights(out, model, "vit-mini", spec, extra={"trained_by": command, "training": "gaussian-augmentation (interim, not DMAE)"})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
