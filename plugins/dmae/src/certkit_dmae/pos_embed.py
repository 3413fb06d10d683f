"""Fixed 2D sine-cosine position embeddings, as MAE and DMAE use them (MAE ``util/pos_embed.py``).

Layout, which pretrained checkpoints depend on: token ``i * grid_w + j`` (row ``i``, column ``j``,
the order ``PatchEmbed`` flattens in) gets ``[sin(j w), cos(j w), sin(i w), cos(i w)]`` with
``w_k = 1 / 10000 ** (k / (dim / 4))``, k = 0 .. dim/4 - 1. The column comes first: MAE builds
its grid with ``np.meshgrid(grid_w, grid_h)`` ("here w goes first"). A leading zero row is the
class token's.
"""

from __future__ import annotations

import torch


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[M] -> [M, dim]``: sines of ``positions * omega`` then cosines, ``dim / 2`` frequencies each."""
    if dim % 2:
        raise ValueError(f"a sin-cos embedding needs an even dimension, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # [dim/2]
    angles = positions.reshape(-1, 1).double() * omega  # [M, dim/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # [M, dim]


def sincos_2d(dim: int, grid_size: int | tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """``[1 + H*W, dim]`` (or ``[H*W, dim]`` without the class token), float32.

    Computed in float64 and rounded once; MAE's float32 numpy differs by < 1e-6, and released
    checkpoints carry their own ``pos_embed`` anyway.
    """
    if dim % 4:
        raise ValueError(f"a 2D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    grid_h, grid_w = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")  # [H, W] each
    embed = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)  # [H*W, dim]
    if cls_token:
        embed = torch.cat([torch.zeros(1, dim, dtype=embed.dtype), embed], dim=0)  # [1 + H*W, dim]
    return embed.float()
