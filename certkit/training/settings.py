"""Settings of one training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; the defaults are DMAE's pretraining recipe (MAE's)."""

    out_dir: Path
    epochs: int
    batch_size: int = 64  # per process and step; the effective batch multiplies by accum_iter and ranks
    accum_iter: int = 1
    blr: float = 1.5e-4  # base lr: lr = blr * effective_batch / 256
    lr: float | None = None  # absolute lr; overrides blr when set
    min_lr: float = 0.0
    warmup_epochs: float = 40
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float | None = None
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16
    save_every: int = 20  # epochs between kept checkpoints; the last one is always kept
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    resume: bool = True  # continue from out_dir/checkpoint-last.pth when it exists
    accept_changes: bool = False  # resume even when identity settings differ (recorded in run.json)
    eval_every: int = 0  # fine-tuning: evaluate every k epochs (and after the last); 0 = never

    def effective_batch(self, world_size: int) -> int:
        return self.batch_size * self.accum_iter * world_size

    def base_lr(self, world_size: int) -> float:
        return self.lr if self.lr is not None else self.blr * self.effective_batch(world_size) / 256

    def to_dict(self) -> dict[str, Any]:
        """Plain values only, so training checkpoints load with weights_only=True."""
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["betas"] = list(self.betas)
        return data
