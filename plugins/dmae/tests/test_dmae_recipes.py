"""The dmae plugin's recipes equal the reference's released scripts (quanlin-wu/dmae at 782f139).

The tables below are transcribed from PRETRAIN.md, FINETUNE.md and the argparse defaults of
main_pretrain.py, main_finetune.py and finetune_cifar10.py (a value the command line does not
pass is the script's default); the file each came from is named per row. They are written out
here, independently of the YAML files, so an edit of a recipe that drifts from the reference
fails this test.
"""

from __future__ import annotations

import pytest

from certkit.recipes import all_recipes, default_recipe, get_recipe
from certkit.training.options import settings_for

IMAGENET_RRC = [0.75, 1.3333333333333333]

PRETRAIN_B = {
    # PRETRAIN.md command line
    "sigma": 0.25, "mask_ratio": 0.75, "epochs": 1100, "warmup_epochs": 40, "blr": 1.5e-4, "weight_decay": 0.05,
    "batch": 64, "effective_batch": 4096,  # 64 x accum_iter 8 x 8 GPUs
    # main_pretrain.py: transform, min_lr default, AdamW betas, seed default
    "crop_scale": [0.2, 1.0], "crop_ratio": IMAGENET_RRC, "interpolation": "bicubic", "hflip": 0.5, "rand_augment": None,
    "min_lr": 0.0, "betas": [0.9, 0.95], "seed": 0, "data": "imagenet", "split": "train",
}
FINETUNE_B = {
    # FINETUNE.md "Fine-tuning on ImageNet"
    "batch": 32, "effective_batch": 1024, "epochs": 100, "blr": 5e-4, "layer_decay": 0.65, "weight_decay": 0.05, "drop_path": 0.1,
    "mixup": 0.8, "cutmix": 1.0, "consistency": True, "lbd": 2.0,
    # main_finetune.py defaults (--aa, --smoothing, --warmup_epochs, --min_lr, mixup prob/switch, seed)
    "rand_augment": "rand-m9-mstd0.5-inc1", "label_smoothing": 0.1, "warmup_epochs": 5, "min_lr": 1e-6, "mixup_prob": 1.0,
    "mixup_switch_prob": 0.5, "seed": 0,
    # util/datasets.py build_transform -> timm create_transform(is_training=True): scale, ratio, flip defaults; bicubic
    "crop_scale": [0.08, 1.0], "crop_ratio": IMAGENET_RRC, "hflip": 0.5, "interpolation": "bicubic",
    "betas": [0.9, 0.999], "data": "imagenet", "split": "train",  # AdamW(param_groups, lr): torch's default betas
}
FINETUNE_L = {
    **FINETUNE_B,
    # FINETUNE.md "Script for fine-tuning pretrained ViT-Large": no --con_reg
    "epochs": 50, "blr": 1e-3, "layer_decay": 0.75, "drop_path": 0.2, "consistency": False,
}
del FINETUNE_L["lbd"]
FINETUNE_CIFAR10 = {
    # FINETUNE.md "Fine-tuning on CIFAR-10"
    "batch": 64, "effective_batch": 256, "epochs": 50, "blr": 5e-4, "layer_decay": 0.65, "weight_decay": 0.05, "drop_path": 0.1,
    "consistency": True, "lbd": 2.0,
    # finetune_cifar10.py: flip + ToTensor only, no mixup (not passed: defaults 0), --smoothing 0.1, warmup 5, min_lr 1e-6
    "crop_scale": None, "hflip": 0.5, "rand_augment": None, "mixup": 0.0, "cutmix": 0.0, "label_smoothing": 0.1, "warmup_epochs": 5,
    "min_lr": 1e-6, "betas": [0.9, 0.999], "seed": 0, "data": "cifar10", "split": "train",
    # engine_finetune.py: noise at 32x32, then Resize((224, 224), bicubic); models_vit.py: ImageNet mean/std
    "model_options": {"spec": "cifar10", "resize_to": 224},
}
PROTOCOLS = {
    # FINETUNE.md "Evaluation" (--sample_interval 50; certify.py --num 10000) and certify_evaluate_dist (N0 100, alpha 0.001, batch 1000)
    "dmae-imagenet": {"n0": 100, "n": 10_000, "alpha": 0.001, "skip": 50, "batch": 1000},
    # FINETUNE.md "Evaluation on CIFAR-10" (--sample_interval 1 --num 100000)
    "dmae-cifar10": {"n0": 100, "n": 100_000, "alpha": 0.001, "skip": 1, "batch": 1000},
}

TABLE = {
    ("pretrain", "dmae-pretrain-vit-b"): PRETRAIN_B,
    ("pretrain", "dmae-pretrain-vit-l"): {**PRETRAIN_B, "epochs": 1600},  # PRETRAIN.md "Script for DMAE-Large"
    ("finetune", "dmae-finetune-vit-b"): FINETUNE_B,
    ("finetune", "dmae-finetune-vit-l"): FINETUNE_L,
    ("finetune", "dmae-finetune-vit-b-cifar10"): FINETUNE_CIFAR10,
    # FINETUNE.md: reg_lbd 2.0, reg_eta 0.5 for sigma 0.25 and 0.5, reg_eta 0.1 for sigma 1.0
    **{("finetune", f"dmae-finetune-vit-b-sigma{s}"): {**FINETUNE_B, "sigma": s, "eta": 0.1 if s == 1.0 else 0.5} for s in (0.25, 0.5, 1.0)},
    **{("finetune", f"dmae-finetune-vit-l-sigma{s}"): {**FINETUNE_L, "sigma": s} for s in (0.25, 0.5, 1.0)},
    **{("certify", name): values for name, values in PROTOCOLS.items()},
}


@pytest.mark.parametrize(("command", "name"), sorted(TABLE))
def test_recipe_values_equal_the_reference_scripts(command, name):
    recipe = get_recipe(name, command)
    expected = TABLE[(command, name)]
    values = {key: recipe.values.get(key) for key in expected}
    assert values == expected
    # Nothing beyond the table except settings about certkit's own validation while training.
    extra = set(recipe.values) - set(expected) - {"eval_every", "eval_images", "eval_n", "eta"}
    assert not extra, extra


def test_every_shipped_recipe_is_valid_and_covered():
    names = {r.name for r in all_recipes()}
    small = {"vit-mini-pretrain", "vit-mini-finetune", "vit-mini-scratch"}
    assert {name for _, name in TABLE} | small <= names
    for command in ("pretrain", "finetune"):
        known = settings_for(command)
        for recipe in all_recipes():
            if recipe.command == command:
                assert set(recipe.values) <= set(known), recipe.name


def test_models_get_their_recipes_by_default():
    assert default_recipe("pretrain", "mae-vit-b").name == "dmae-pretrain-vit-b"
    assert default_recipe("pretrain", "mae-vit-l").name == "dmae-pretrain-vit-l"
    assert default_recipe("finetune", "vit-b").name == "dmae-finetune-vit-b"
    assert default_recipe("finetune", "vit-l").name == "dmae-finetune-vit-l"
    assert default_recipe("pretrain", "mae-vit-mini").name == "vit-mini-pretrain"
    assert default_recipe("finetune", "vit-mini").name in ("vit-mini-finetune", "vit-mini-scratch")
