"""Run one cell of the Table 1 plan and store its result, or find it already stored.

A cell writes `<out>/cells/<id>.safetensors` (the trained weights, or a learned mask) and
then `<out>/cells/<id>.json` (its numbers and config), each atomically; a cell counts as
finished when its JSON holds the same config and its tensors load, so a run killed at any
moment resumes by recomputing only unfinished cells.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import ticketlab
from ticketlab.data import Dataset
from ticketlab.models import Network, build_model
from ticketlab.store import atomic_write_bytes, load_tensors, save_tensors
from ticketlab.supermasks.init_masks import best_point, init_mask_curve, level_masks
from ticketlab.supermasks.learn import learn_supermask
from ticketlab.supermasks.spec import SupermaskSpec
from ticketlab.supermasks.zhou2019 import Cell
from ticketlab.training import Progress, TrainResult, TrainSpec, train


def cell_path(out: Path, cell_id: str, suffix: str) -> Path:
    return Path(out) / "cells" / f"{cell_id}{suffix}"


def load_result(out: Path, cell: Cell) -> dict | None:
    """The stored result of `cell`, if it finished under the same config."""
    try:
        result = json.loads(cell_path(out, cell.id, ".json").read_text())
    except (OSError, ValueError):
        return None
    if result.get("config") != cell.config or load_tensors(cell_path(out, cell.id, ".safetensors")) is None:
        return None
    return result


def run_cell(cell: Cell, dataset: Dataset, out: Path, show_progress: bool = False) -> dict:
    """Compute `cell` on `dataset`, store its tensors and result, and return the result."""
    started = time.perf_counter()
    config = cell.config
    model = build_model(config["model"], dataset.input_shape, dataset.num_classes, seed=config["seed"])
    steps = _iterations(config, dataset)
    with Progress(f"{cell.network} {cell.column}", steps, enabled=show_progress and steps > 0) as progress:
        result, tensors = _KINDS[config["kind"]](cell, model, dataset, out, progress)
    result |= dict(seconds=time.perf_counter() - started, config=config, code_version=ticketlab.__version__)
    save_tensors(cell_path(out, cell.id, ".safetensors"), tensors, metadata={"cell": cell.id})
    atomic_write_bytes(cell_path(out, cell.id, ".json"), json.dumps(result, indent=1).encode())
    return result


def _iterations(config: dict, dataset: Dataset) -> int:
    """Training steps of the cell, for its progress bar (init masks train nothing)."""
    if config["kind"] == "trained":
        return config["training"]["iterations"]
    if config["kind"] == "learn":
        return SupermaskSpec(**config["supermask"]).train_spec(len(dataset.train)).iterations
    return 0


def _trained(cell: Cell, model: Network, dataset: Dataset, out: Path, progress: Progress):
    training = train(model, dataset, TrainSpec(**cell.config["training"]), seed=cell.config["seed"],
                     progress=progress)
    result = dict(accuracy=training.final.test_acc, early_stop_iteration=training.early_stop.step,
                  early_stop_acc=training.early_stop.test_acc, curve=_curve(training))
    return result, model.state_dict()


def _init_mask(cell: Cell, model: Network, dataset: Dataset, out: Path, progress: Progress):
    config = cell.config
    trained = load_tensors(cell_path(out, cell.needs[0], ".safetensors"))
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    masks = level_masks(model, config["model"], initial, trained, dataset, criterion=config["criterion"],
                        levels=config["levels"], seed=config["seed"])
    points = init_mask_curve(model, initial, masks, dataset, config["weights"])
    best = best_point(points)
    result = dict(accuracy=best.test_acc, best_level=best.level, density=best.density,
                  curve=[[point.level, point.density, point.test_acc] for point in points])
    return result, dict(masks[best.level].items())


def _learned(cell: Cell, model: Network, dataset: Dataset, out: Path, progress: Progress):
    config = cell.config
    learned = learn_supermask(model, dataset, SupermaskSpec(**config["supermask"]), seed=config["seed"],
                              evaluations=config["evaluations"], progress=progress)
    result = dict(accuracy=learned.accuracy, sampled_accs=learned.sampled_accs,
                  deterministic_acc=learned.deterministic_acc, expected_density=learned.expected_density,
                  density=learned.mask.density, curve=_curve(learned.training))
    return result, dict(learned.mask.items())


_KINDS = {"trained": _trained, "init_mask": _init_mask, "learn": _learned}


def _curve(training: TrainResult) -> list[list[float]]:
    """[step, validation accuracy, test accuracy] at every evaluation of a training run."""
    return [[e.step, e.val_acc, e.test_acc] for e in training.evaluations]
