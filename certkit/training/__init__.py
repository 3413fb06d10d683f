"""One trainer for pretraining and fine-tuning: AdamW, warmup + cosine, gradient accumulation,
AMP on GPU, checkpoints and resume, torchrun DDP. What is learned comes from a TrainTask."""

from certkit.training.settings import TrainSettings
from certkit.training.trainer import TrainOutcome, train

__all__ = ["TrainOutcome", "TrainSettings", "train"]
