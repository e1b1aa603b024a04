"""The papers' per-model schedules: training hyperparameters and per-level prune rates.

They sit below `training`, `masks`, `experiments` and `supermasks`, so every layer that
needs "the paper's schedule for this model" reads the same numbers without importing the
layers above it.
"""

from __future__ import annotations

import re

# Frankle & Carbin (2019), Figure 2: optimizer, learning rate, batch 60, training iterations.
PAPER_TRAINING: dict[str, dict] = {
    "lenet_300_100": dict(optimizer="adam", lr=1.2e-3, batch_size=60, iterations=50_000),
    "conv2": dict(optimizer="adam", lr=2e-4, batch_size=60, iterations=20_000),
    "conv4": dict(optimizer="adam", lr=3e-4, batch_size=60, iterations=25_000),
    "conv6": dict(optimizer="adam", lr=3e-4, batch_size=60, iterations=30_000),
}
# The embedded default data set is tiny: a short schedule keeps `ticketlab imp` at about a minute.
SMALL_DATA_TRAINING = dict(iterations=1_500, eval_every=50)

# Frankle & Carbin (2019): the fraction of each layer kind's remaining weights pruned per
# IMP level -- LeNet-300-100 20% of the hidden layers and 10% of the output layer; Conv-2
# and Conv-4 10% of conv and 20% of FC layers; Conv-6 15% of conv and 20% of FC; the output
# layer at half the FC rate. Zhou et al.'s (2019) reference code uses the same rates
# (`--prune_base`, `--layer_cutoff`).
PAPER_PRUNE_RATES: dict[str, dict[str, float]] = {
    "lenet_300_100": {"conv": 0.0, "fc": 0.2, "output": 0.1},
    "conv2": {"conv": 0.1, "fc": 0.2, "output": 0.1},
    "conv4": {"conv": 0.1, "fc": 0.2, "output": 0.1},
    "conv6": {"conv": 0.15, "fc": 0.2, "output": 0.1},
}
# Any other network: 20% FC, 10% conv, half the FC rate for the output layer.
OTHER_PRUNE_RATES: dict[str, float] = {"conv": 0.1, "fc": 0.2, "output": 0.1}


def paper_training(model_name: str) -> dict:
    """The LTH paper's training hyperparameters for `model_name` ({} for other networks)."""
    return dict(PAPER_TRAINING.get(model_name, {}))


def paper_prune_rates(model_name: str) -> dict[str, float]:
    """The papers' per-kind prune rates for `model_name` (20% FC, 10% conv, half for output otherwise)."""
    return dict(PAPER_PRUNE_RATES.get(model_name, OTHER_PRUNE_RATES))


# ---------------------------------------------------------------- CIFAR ResNets and VGGs
# The recipes of OpenLTH's `cifar_resnet.py` / `cifar_vgg.py` default_hparams (Frankle et al.
# 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis", Table 1): SGD with
# momentum 0.9, lr 0.1, batch 128, weight decay 1e-4, 160 epochs, the rate divided by 10 at
# epochs 80 and 120 (He et al. 2016's CIFAR schedule), no warm-up (OpenLTH's defaults for
# these two have none; `warmup` is there for the recipes that do, e.g. Frankle et al. 2019's
# VGG-19 and ResNet-18), standard augmentation (random 32x32 crop of the 4-pixel padded image
# and a horizontal flip). Epoch counts become iterations from the training-set size when a
# spec is resolved.
CIFAR_TRAINING = dict(
    optimizer="sgd", lr=0.1, batch_size=128, momentum=0.9, weight_decay=1e-4, epochs=160.0,
    lr_schedule="step", milestone_epochs=(80.0, 120.0), gamma=0.1, augment=True,
)
# OpenLTH's `sparse_global` pruning: 20% of the remaining weights per level under one global
# threshold, with the output layer (`fc.weight`, `pruning_layers_to_ignore`) left dense; that
# is OpenLTH's VGG default only: its ResNet default_hparams ignore no layer (docs/networks.md).
CIFAR_PRUNING = dict(strategy="global", global_rate=0.2, exclude_output=True)
# Late rewinding (Frankle et al. 2019; 2020): IMP on these networks matches the dense accuracy
# only when survivors restart from an early iteration rather than from initialisation. The
# iteration used by default (about 5.7 epochs at batch 128 on CIFAR-10's 45k training images);
# applied when the schedule is longer than it. Not OpenLTH's default: OpenLTH rewinds to
# iteration 0 unless `--rewinding_steps` is given (lottery/desc.py; default_hparams set none).
# 2000 follows Frankle et al. 2020's ResNet-20 value as recalled (VGG-16's there: about 1000);
# unverified against the paper's text, see docs/networks.md "Recipes".
CIFAR_REWIND_ITERATION = 2000

_RESNET = re.compile(r"resnet\d+(_\d+)?")
_VGG = re.compile(r"vgg\d+")


def model_recipe(model_name: str) -> dict | None:
    """The recipe of a CIFAR ResNet or VGG as {"training", "pruning", "rewind_iteration"}
    (None for other networks: their schedules are `paper_training`'s). The rewind iteration
    (2000, for ResNets and VGGs alike) is ticketlab's choice, not an OpenLTH default (which
    rewinds to 0): see `CIFAR_REWIND_ITERATION`."""
    if _RESNET.fullmatch(model_name) or _VGG.fullmatch(model_name):
        return {"training": dict(CIFAR_TRAINING), "pruning": dict(CIFAR_PRUNING),
                "rewind_iteration": CIFAR_REWIND_ITERATION}
    return None


def recipe_name(model_name: str, dataset_name: str | None = None) -> str:
    """Where a network's default training recipe comes from, for the line every training command
    starts with (one recipe per network, whichever command trains it)."""
    if model_recipe(model_name) is not None:
        name = "CIFAR ResNet/VGG recipe (OpenLTH; Frankle et al. 2020)"
    elif model_name in PAPER_TRAINING:
        name = f"{model_name} recipe (Frankle & Carbin 2019, Figure 2)"
    else:
        name = "default recipe (LeNet-300-100's, Frankle & Carbin 2019)"
    if dataset_name == "digits":
        name += f", short schedule for the embedded digits ({SMALL_DATA_TRAINING['iterations']} iterations)"
    return name
