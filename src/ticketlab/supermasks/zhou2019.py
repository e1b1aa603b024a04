"""Zhou et al. (2019), Table 1, as a plan of independent cells: what each cell computes.

A row is a network on its data set; a column is one way to get a supermask (or the trained
network). Each cell is described by a JSON-able config that fixes its result; the config's
hash names the cell's files, so a changed budget never reuses another budget's results.
The init-mask cells read the trained network's weights, so they wait for its cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ticketlab.data import DATASETS
from ticketlab.errors import SpecError
from ticketlab.masks import CRITERIA
from ticketlab.schedules import PAPER_TRAINING
from ticketlab.supermasks.init_masks import PAPER_LEVELS
from ticketlab.supermasks.spec import paper_spec
from ticketlab.training import TrainSpec

# network -> (model, the paper's data set); the CIFAR rows fall back to the JPEG stand-in.
NETWORKS = {
    "fc": ("lenet_300_100", "mnist"),
    "conv2": ("conv2", "cifar10"),
    "conv4": ("conv4", "cifar10"),
    "conv6": ("conv6", "cifar10"),
}
ROW_TITLES = {"fc": "MNIST FC", "conv2": "CIFAR Conv2", "conv4": "CIFAR Conv4", "conv6": "CIFAR Conv6"}

# column -> (title, what it computes); Table 1's order, then our edge-popup column.
COLUMNS = {
    "init_mask": ("Init mask", dict(kind="init_mask", weights="init")),
    "init_mask_sc": ("Signed-constant init", dict(kind="init_mask", weights="signed_constant")),
    "learned_init": ("Init + learned mask", dict(kind="learn", learner="bernoulli", weights="init")),
    "learned_sc": ("Learned mask (S.C.)", dict(kind="learn", learner="bernoulli", weights="signed_constant")),
    "learned_dwr": ("Learned mask (DWR)",
                    dict(kind="learn", learner="bernoulli", weights="signed_constant", dwr=True)),
    "trained": ("Trained network", dict(kind="trained")),
    "edge_popup": ("Edge-popup (S.C., 50%)", dict(kind="learn", learner="edge_popup")),
}

# Table 1 of Zhou et al. (2019): test accuracy (%), best over prune levels / mean of 4+ runs.
PAPER_TABLE1 = {
    "fc": dict(init_mask=79.3, init_mask_sc=86.3, learned_init=95.3, learned_sc=96.4, learned_dwr=97.8, trained=97.7),
    "conv2": dict(init_mask=22.3, init_mask_sc=37.4, learned_init=64.4, learned_sc=66.3, learned_dwr=65.0, trained=69.2),
    "conv4": dict(init_mask=23.7, init_mask_sc=39.7, learned_init=65.4, learned_sc=66.2, learned_dwr=71.7, trained=75.4),
    "conv6": dict(init_mask=24.0, init_mask_sc=41.0, learned_init=65.3, learned_sc=65.4, learned_dwr=76.3, trained=78.3),
}

# Evaluations while training, after the one at the start: enough to see whether a reduced
# budget converged. Each costs a pass over validation and test, seconds on CIFAR.
EVALUATIONS = 2


# The reference code scales pixels to [0, 1] and nothing more (`train.py`: images / max);
# mean/std normalisation costs the untrained init-mask networks about 10 points on MNIST.
NORMALIZATION = "unit"

@dataclass(frozen=True)
class Cell:
    network: str
    column: str
    config: dict  # everything that fixes the result
    needs: tuple[str, ...] = ()  # ids of cells whose outputs this one reads

    @property
    def id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.network}-{self.column}-{digest}"


@dataclass(frozen=True)
class Plan:
    """Which rows to run and on what budget. `epochs` caps each learner's mask-training
    epochs (the papers': 2000 Bernoulli, 100 edge-popup); `dense_iterations` replaces the
    trained network's schedule (Frankle & Carbin's: 50k iterations for FC). `dataset` runs
    every row on another data set (e.g. digits, for a smoke test)."""

    networks: tuple[str, ...] = tuple(NETWORKS)
    epochs: float | None = None
    dense_iterations: int | None = None
    seed: int = 0
    dataset: str | None = None
    criterion: str = "large_final_same_sign"
    levels: int = PAPER_LEVELS

    def __post_init__(self):
        if not self.networks:
            raise SpecError(f"no networks given; valid: {', '.join(NETWORKS)}")
        for name in self.networks:
            if name not in NETWORKS:
                raise SpecError(f"unknown network {name!r}; valid: {', '.join(NETWORKS)}")
        if len(set(self.networks)) != len(self.networks):
            raise SpecError(f"networks must be distinct, got {', '.join(self.networks)}")
        if self.epochs is not None and not self.epochs > 0:
            raise SpecError(f"epochs must be positive, got {self.epochs!r}")
        if self.dense_iterations is not None and self.dense_iterations < 1:
            raise SpecError(f"dense iterations must be positive, got {self.dense_iterations!r}")
        if self.levels < 1:
            raise SpecError(f"levels must be at least 1, got {self.levels!r}")
        if self.dataset is not None:
            DATASETS.get(self.dataset)  # unknown names list the valid ones
        CRITERIA.get(self.criterion)

    def cells(self, datasets: dict[str, str]) -> list[Cell]:
        """Every cell of the chosen rows, trained networks first; `datasets` maps network -> data set."""
        trained = {network: self._trained_cell(network, datasets[network]) for network in self.networks}
        cells = list(trained.values())
        for network in self.networks:
            base = trained[network]
            for column, (_, what) in COLUMNS.items():
                if what["kind"] == "init_mask":
                    config = dict(kind="init_mask", network=network, model=base.config["model"],
                                  dataset=base.config["dataset"], normalization=NORMALIZATION,
                                  seed=self.seed, trained=base.config,
                                  criterion=self.criterion, levels=self.levels, weights=what["weights"])
                    cells.append(Cell(network, column, config, needs=(base.id,)))
                elif what["kind"] == "learn":
                    cells.append(Cell(network, column, self._learn_config(network, datasets[network], what)))
        return cells

    def _trained_cell(self, network: str, dataset: str) -> Cell:
        model = NETWORKS[network][0]
        schedule = dict(PAPER_TRAINING[model])
        if self.dense_iterations is not None:
            schedule["iterations"] = self.dense_iterations
        schedule["eval_every"] = max(1, schedule["iterations"] // EVALUATIONS)
        config = dict(kind="trained", network=network, model=model, dataset=dataset, normalization=NORMALIZATION,
                      seed=self.seed, training=TrainSpec(**schedule).config())  # the pre-schedule fields: cell ids unchanged
        return Cell(network, "trained", config)

    def _learn_config(self, network: str, dataset: str, what: dict) -> dict:
        overrides = {key: value for key, value in what.items() if key not in ("kind", "learner")}
        spec = paper_spec(what["learner"], **overrides)
        if self.epochs is not None:
            spec = dataclasses.replace(spec, epochs=min(self.epochs, spec.epochs))
        return dict(kind="learn", network=network, model=NETWORKS[network][0], dataset=dataset,
                    normalization=NORMALIZATION, seed=self.seed,
                    evaluations=EVALUATIONS, supermask=dataclasses.asdict(spec))

    def paper_datasets(self) -> dict[str, str]:
        """Network -> the data set it runs on before any fallback: the paper's, or `dataset`."""
        return {network: self.dataset or NETWORKS[network][1] for network in self.networks}
