"""The DMAE model side: loss, masking, position embeddings, checkpoint formats, corruption."""

from __future__ import annotations

import argparse
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from certkit import InputSpec, plugins
from certkit.errors import CheckpointError
from certkit.models import load_classifier
from certkit_dmae.checkpoint_filter import checkpoint_filter_fn
from certkit_dmae.classifiers import IMAGENET_SPEC, vit_mini
from certkit_dmae.corruption import NoiseMaskCorruption
from certkit_dmae.mae import DenoisingMAE
from certkit_dmae.objective import DMAEObjective
from certkit_dmae.pretrain_models import mae_vit_base, mae_vit_mini

# 3 channels with very different statistics, a 2x3 grid of 4 px patches: per-channel
# normalization and MAE's within-patch order (pixel-major, channel-minor) both matter here.
TINY_SPEC = InputSpec(image_size=(8, 12), channels=3, mean=(0.2, 0.5, 0.7), std=(0.1, 0.3, 0.5), num_classes=2)


def tiny_mae() -> DenoisingMAE:
    torch.manual_seed(0)
    return DenoisingMAE(TINY_SPEC, patch_size=4, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


def hand_patch_losses(clean: torch.Tensor, pred: torch.Tensor, spec: InputSpec, patch: int, norm_pix: bool) -> torch.Tensor:
    """[N, L] per-patch MSE, written independently of the module (unfold, explicit moments)."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    normalized = (clean - mean) / std
    cols = F.unfold(normalized, kernel_size=patch, stride=patch)  # [N, C*p*p, L], channel-major
    n, channels = clean.shape[0], clean.shape[1]
    target = cols.view(n, channels, patch * patch, -1).permute(0, 3, 2, 1).reshape(n, cols.shape[-1], -1)  # [N, L, p*p*C]
    if norm_pix:
        size = target.shape[-1]
        mu = target.sum(-1, keepdim=True) / size
        unbiased_var = ((target - mu) ** 2).sum(-1, keepdim=True) / (size - 1)
        target = (target - mu) / torch.sqrt(unbiased_var + 1e-6)
    return ((pred - target) ** 2).sum(-1) / target.shape[-1]


def reference_run(model: DenoisingMAE, clean: torch.Tensor, sigma: float, mask_ratio: float, seed: int):
    """Noise then mask drawn from one generator, in the order the objective draws them."""
    generator = torch.Generator().manual_seed(seed)
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator)
    latent, mask, ids_restore = model.forward_encoder(noisy, mask_ratio, generator)
    return model.forward_decoder(latent, ids_restore), mask


@pytest.mark.parametrize("norm_pix", [True, False])
def test_dmae_loss_matches_independent_computation(norm_pix):
    model = tiny_mae()
    clean = torch.rand(3, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pred, mask = reference_run(model, clean, sigma=0.25, mask_ratio=0.75, seed=7)
        per_patch = hand_patch_losses(clean, pred, TINY_SPEC, 4, norm_pix)
        all_out = DMAEObjective(norm_pix=norm_pix)(model, clean, torch.Generator().manual_seed(7))
        masked_out = DMAEObjective(loss_on="masked", norm_pix=norm_pix)(model, clean, torch.Generator().manual_seed(7))

    assert mask.sum(1).tolist() == [5.0, 5.0, 5.0]  # 6 patches, int(6 * 0.25) = 1 kept
    expected_all = per_patch.sum() / per_patch.numel()
    expected_masked = (per_patch * mask).sum() / mask.sum()
    expected_visible = (per_patch * (1 - mask)).sum() / (1 - mask).sum()
    assert all_out.loss.item() == pytest.approx(expected_all.item(), abs=1e-6)
    assert masked_out.loss.item() == pytest.approx(expected_masked.item(), abs=1e-6)
    assert abs(masked_out.loss.item() - all_out.loss.item()) > 1e-3
    assert all_out.logs["loss_masked"] == pytest.approx(expected_masked.item(), abs=1e-6)
    assert all_out.logs["loss_visible"] == pytest.approx(expected_visible.item(), abs=1e-6)
    assert all_out.logs["loss"] == pytest.approx(all_out.loss.item())


def test_target_is_the_normalized_clean_image():
    """Per-patch normalization does not cancel per-channel mean/std on multi-channel patches."""
    model = tiny_mae()
    clean = torch.rand(2, 3, 8, 12, generator=torch.Generator().manual_seed(2))
    pred = torch.randn(2, 6, 48, generator=torch.Generator().manual_seed(3))
    ours = model.patch_losses(clean, pred, norm_pix=True)
    assert torch.allclose(ours, hand_patch_losses(clean, pred, TINY_SPEC, 4, True), atol=1e-6)
    identity_spec = InputSpec((8, 12), 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 2)
    assert not torch.allclose(ours, hand_patch_losses(clean, pred, identity_spec, 4, True), atol=1e-3)


def test_patchify_roundtrip_and_order():
    model = tiny_mae()
    images = torch.rand(2, 3, 8, 12)
    patches = model.patchify(images)
    assert patches.shape == (2, 6, 48)
    assert torch.equal(model.unpatchify(patches), images)
    # patch (row 1, col 2), pixel (0, 1), channel 2 is element (0 * 4 + 1) * 3 + 2 of token 1 * 3 + 2
    assert patches[1, 5, 5] == images[1, 2, 4, 9]


def test_random_masking_keeps_a_fresh_subset_per_sample():
    model = mae_vit_mini()
    tokens = torch.randn(16, 49, 64)
    kept, mask, ids_restore = model.random_masking(tokens, 0.75, torch.Generator().manual_seed(0))

    len_keep = int(49 * (1 - 0.75))
    assert len_keep == 12 and kept.shape == (16, 12, 64)
    assert mask.sum(1).tolist() == [37.0] * 16
    assert len({tuple(row.tolist()) for row in mask}) == 16  # a different subset for every sample
    ids_shuffle = torch.argsort(ids_restore, dim=1)
    assert torch.equal(torch.sort(ids_restore, dim=1).values, torch.arange(49).expand(16, -1))  # permutations
    assert torch.equal(torch.gather(ids_shuffle, 1, ids_restore), torch.arange(49).expand(16, -1))  # inverse
    assert torch.equal(kept, torch.gather(tokens, 1, ids_shuffle[:, :12, None].expand(-1, -1, 64)))
    assert torch.all(torch.gather(mask, 1, ids_shuffle[:, :12]) == 0)
    # kept tokens + the rest in shuffled order, unshuffled by ids_restore, give the sequence back
    shuffled = torch.cat([kept, torch.gather(tokens, 1, ids_shuffle[:, 12:, None].expand(-1, -1, 64))], dim=1)
    assert torch.equal(torch.gather(shuffled, 1, ids_restore[..., None].expand(-1, -1, 64)), tokens)
    again = model.random_masking(tokens, 0.75, torch.Generator().manual_seed(0))[1]
    assert torch.equal(again, mask)


def test_pos_embed_is_fixed_sincos():
    model = mae_vit_mini()  # 7x7 grid, dim 64
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    assert {"pos_embed", "decoder_pos_embed"} <= set(model.state_dict())
    assert torch.all(model.pos_embed[0, 0] == 0)  # the class token's row

    row, col, dim = 2, 5, 64
    token = model.pos_embed[0, 1 + row * 7 + col]
    quarter = dim // 4
    for k in (0, 3, quarter - 1):
        omega = 1.0 / 10000 ** (k / quarter)
        assert token[k].item() == pytest.approx(math.sin(col * omega), abs=1e-6)
        assert token[quarter + k].item() == pytest.approx(math.cos(col * omega), abs=1e-6)
        assert token[2 * quarter + k].item() == pytest.approx(math.sin(row * omega), abs=1e-6)
        assert token[3 * quarter + k].item() == pytest.approx(math.cos(row * omega), abs=1e-6)

    images = torch.rand(2, 1, 28, 28)
    DMAEObjective()(model, images).loss.backward()
    assert model.pos_embed.grad is None and model.patch_embed.proj.weight.grad is not None


def test_layer_norms_use_eps_1e6_like_mae():
    for module in (mae_vit_mini(), vit_mini()):
        norms = [m for m in module.modules() if isinstance(m, nn.LayerNorm)]
        assert norms and all(m.eps == 1e-6 for m in norms)


def _reference_mae_keys(depth: int, decoder_depth: int) -> set[str]:
    """The keys of a released MAE/DMAE ViT pretraining checkpoint (models_mae.py / models_dmae.py)."""
    block = [
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
        "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
    ]  # fmt: skip
    keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    keys |= {f"blocks.{i}.{name}" for i in range(depth) for name in block}
    keys |= {"mask_token", "decoder_embed.weight", "decoder_embed.bias", "decoder_pos_embed"}
    keys |= {f"decoder_blocks.{i}.{name}" for i in range(decoder_depth) for name in block}
    keys |= {"decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"}
    return keys


@pytest.fixture(scope="module")
def mae_base() -> DenoisingMAE:
    torch.manual_seed(0)
    return mae_vit_base()


def test_mae_vit_base_state_dict_matches_released_checkpoints(mae_base):
    state = mae_base.state_dict()
    assert set(state) == _reference_mae_keys(depth=12, decoder_depth=8)
    assert state["pos_embed"].shape == (1, 197, 768)
    assert state["decoder_pos_embed"].shape == (1, 197, 512)
    assert state["mask_token"].shape == (1, 1, 512)
    assert state["decoder_pred.weight"].shape == (768, 512)  # 16 * 16 * 3 pixels per patch
    assert state["blocks.0.attn.qkv.weight"].shape == (2304, 768)
    assert sum(v.numel() for k, v in state.items() if not k.startswith(("decoder", "mask_token"))) == 85_798_656  # ViT-B/16 without its head


def _save_reference_checkpoint(path, state_dict) -> None:
    """What the DMAE scripts write: ``{'model', 'optimizer', 'epoch', 'scaler', 'args'}``."""
    args = argparse.Namespace(model="vit_base_patch16", sigma=0.25)
    torch.save({"model": state_dict, "optimizer": {}, "epoch": 99, "scaler": {}, "args": args}, path)


def _random_timm_vit_b() -> VisionTransformer:
    """A fine-tuned DMAE ViT-B as timm builds it, with random weights (skipping timm's slow init)."""
    with torch.device("meta"):
        vit = VisionTransformer(
            img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, global_pool="avg", fc_norm=True, num_classes=1000
        )
    vit.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(1)
    for name, param in vit.named_parameters():
        is_norm_scale = param.ndim == 1 and "norm" in name and name.endswith("weight")
        param.data.normal_(1.0 if is_norm_scale else 0.0, 0.1 if is_norm_scale else 0.02, generator=generator)
    return vit.eval()


def test_fine_tuned_timm_checkpoint_gives_the_same_logits(tmp_path):
    timm_vit = _random_timm_vit_b()
    path = tmp_path / "checkpoint-best.pth"
    # saved from a DistributedDataParallel wrapper: every key has the `module.` prefix
    _save_reference_checkpoint(path, {f"module.{k}": v for k, v in timm_vit.state_dict().items()})

    loaded = load_classifier("vit-b", 0.25, checkpoint=path)
    images = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(IMAGENET_SPEC.mean).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_SPEC.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = timm_vit((images - mean) / std)
        ours = loaded.model(images)
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0)
    assert expected.abs().max() > 1e-2  # a real comparison, not two near-zero heads


def test_pretrained_checkpoint_loads_for_fine_tuning(tmp_path, mae_base):
    path = tmp_path / "dmae-pretrain.pth"
    _save_reference_checkpoint(path, mae_base.state_dict())
    torch.manual_seed(2)
    classifier = load_classifier("vit-b", 0.25, checkpoint=path).model
    state, pretrained = classifier.state_dict(), mae_base.state_dict()

    assert not any(k.startswith(("decoder", "mask_token", "norm.")) for k in state)
    encoder = [k for k in state if not k.startswith(("fc_norm.", "head."))]
    assert len(encoder) == 4 + 12 * 12
    assert all(torch.equal(state[k], pretrained[k]) for k in encoder)
    assert torch.all(state["fc_norm.weight"] == 1) and torch.all(state["fc_norm.bias"] == 0)
    assert torch.all(state["head.bias"] == 0)
    assert 1e-5 < state["head.weight"].std().item() < 3e-5  # MAE: trunc_normal_(head.weight, std=2e-5)


def test_pos_embed_is_resized_for_another_grid():
    pretrained = mae_vit_mini().state_dict()  # 28 px -> 7x7 patches
    spec32 = InputSpec((32, 32), 1, (0.5,), (0.5,), 10)
    classifier = vit_mini(spec=spec32)  # 8x8 patches
    state = checkpoint_filter_fn(pretrained, classifier)
    grid = pretrained["pos_embed"][:, 1:].reshape(1, 7, 7, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 64, 64)
    assert state["pos_embed"].shape == (1, 65, 64)
    assert torch.equal(state["pos_embed"][:, :1], pretrained["pos_embed"][:, :1])
    assert torch.allclose(state["pos_embed"][:, 1:], expected, atol=1e-6)
    classifier.load_state_dict(state, strict=True)
    assert pretrained["pos_embed"].shape == (1, 50, 64)  # the input was not modified


class _CreatesAFile:
    def __init__(self, target) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


class _OwnDict(OrderedDict):
    pass


def test_checkpoints_with_code_are_refused(tmp_path):
    victim = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": _CreatesAFile(victim)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_classifier("vit-mini", 0.25, checkpoint=path)
    assert not victim.exists()
    torch.load(path, weights_only=False)  # the payload is real: unrestricted unpickling runs it
    assert victim.exists()

    own_type = tmp_path / "own-type.pth"
    torch.save({"model": _OwnDict(w=torch.zeros(1))}, own_type)
    with pytest.raises(CheckpointError, match="refused"):
        load_classifier("vit-mini", 0.25, checkpoint=own_type)


def test_noise_mask_corruption_statistics():
    corruption = NoiseMaskCorruption(sigma=0.5, mask_ratio=0.75)
    images = torch.full((8, 3, 64, 64), 0.5)
    batch = corruption(images, torch.Generator().manual_seed(0))
    noise = batch.images - images
    assert abs(noise.mean().item()) < 0.01
    assert noise.std().item() == pytest.approx(0.5, rel=0.01)
    assert batch.images.min() < 0 and batch.images.max() > 1  # no clipping
    assert batch.extras["mask_ratio"].item() == 0.75
    assert torch.equal(corruption(images, torch.Generator().manual_seed(0)).images, batch.images)


def test_preview_images_are_displayable():
    model = mae_vit_mini()
    images = torch.rand(2, 1, 28, 28)
    clean, noisy_masked, reconstruction = DMAEObjective().preview(model, images, torch.Generator().manual_seed(0))
    assert clean.shape == noisy_masked.shape == reconstruction.shape == (2, 1, 28, 28)
    for picture in (noisy_masked, reconstruction):
        assert picture.min() >= 0 and picture.max() <= 1
    gray_patches = (noisy_masked.unfold(2, 4, 4).unfold(3, 4, 4) == 0.5).all(-1).all(-1).sum().item()
    assert gray_patches == 2 * 37
    assert model.training  # preview leaves the mode as it found it


def test_components_are_registered():
    assert plugins.get("corruptions", "noise-mask").obj is NoiseMaskCorruption
    objective = plugins.get("objectives", "dmae").obj(sigma=0.5, loss_on="masked")
    assert objective.sigma == 0.5 and objective.loss_on == "masked"
    for name in ("mae-vit-mini", "mae-vit-b", "mae-vit-l"):
        assert plugins.get("models", name).details["pretraining"] is True
    for name in ("vit-mini", "vit-b", "vit-l"):
        assert plugins.get("models", name).details["checkpoint_filter"] is checkpoint_filter_fn
        assert not plugins.get("models", name).details.get("pretraining")


def test_cifar10_transfer_model_upsamples_the_noisy_input_inside():
    """-M spec=cifar10 resize_to=224: 32x32 inputs (so noise and radii are in CIFAR-10's pixel
    space) upsampled bicubically to the 224-pixel ViT, as DMAE's engine_finetune.py does."""
    import torch
    from torch.nn import functional as F

    from certkit_dmae.classifiers import IMAGENET_SPEC, vit_base

    torch.manual_seed(0)
    model = vit_base(spec="cifar10", resize_to=224, depth=1).eval()
    assert model.input_spec.image_size == (32, 32) and model.input_spec.num_classes == 10
    assert model.input_spec.mean == IMAGENET_SPEC.mean  # the pretrained encoder's statistics
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        direct = super(type(model), model).forward(model.normalize(F.interpolate(images, size=(224, 224), mode="bicubic", align_corners=False)))
        torch.testing.assert_close(model(images), direct)
