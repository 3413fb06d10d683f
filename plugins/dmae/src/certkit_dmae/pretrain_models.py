"""Named DMAE pretraining models. Each encoder matches the classifier of the same size in
:mod:`certkit_dmae.classifiers`, so pretrained weights load into it for fine-tuning
(:func:`certkit_dmae.checkpoint_filter.checkpoint_filter_fn`).

All use mlp ratio 4, qkv bias and LayerNorm eps 1e-6, as MAE/DMAE (``partial(nn.LayerNorm,
eps=1e-6)``) and as timm's ``VisionTransformer`` under the classifiers (timm's LayerNorm
defaults to eps 1e-6).
"""

from __future__ import annotations

from certkit import InputSpec
from certkit_dmae.classifiers import FASHION_MNIST_SPEC, IMAGENET_SPEC, resolve_spec
from certkit_dmae.mae import DenoisingMAE

#: The paper's decoder for ViT-B and ViT-L: 512-dim, 8 blocks, 16 heads.
PAPER_DECODER = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)


def _build(default_spec: InputSpec, spec: InputSpec | str | None, defaults: dict, overrides: dict) -> DenoisingMAE:
    return DenoisingMAE(resolve_spec(spec, default_spec), **{**defaults, **overrides})


def mae_vit_mini(spec: InputSpec | str | None = None, **overrides) -> DenoisingMAE:
    """For 28 px images on a CPU; encoder = ``vit-mini`` (patch 4, dim 64, 4 blocks, 4 heads).

    The decoder (dim 64, 2 blocks, 4 heads; ~0.1M parameters) keeps MAE's asymmetry of a
    decoder shallower than the encoder; at this width narrowing it further would starve a
    16-pixel patch prediction.
    """
    defaults = dict(patch_size=4, embed_dim=64, depth=4, num_heads=4, decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4)
    return _build(FASHION_MNIST_SPEC, spec, defaults, overrides)


def mae_vit_base(spec: InputSpec | str | None = None, **overrides) -> DenoisingMAE:
    """DMAE ViT-B/16 at 224 px (``dmae_vit_base_patch16``): encoder 768/12/12, decoder 512/8/16."""
    defaults = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, **PAPER_DECODER)
    return _build(IMAGENET_SPEC, spec, defaults, overrides)


def mae_vit_large(spec: InputSpec | str | None = None, **overrides) -> DenoisingMAE:
    """DMAE ViT-L/16 at 224 px (``dmae_vit_large_patch16``): encoder 1024/24/16, decoder 512/8/16."""
    defaults = dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16, **PAPER_DECODER)
    return _build(IMAGENET_SPEC, spec, defaults, overrides)
