"""The papers' per-model schedules: training hyperparameters and per-level prune rates.

They sit below `training`, `masks`, `experiments` and `supermasks`, so every layer that
needs "the paper's schedule for this model" reads the same numbers without importing the
layers above it.
"""

from __future__ import annotations

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
