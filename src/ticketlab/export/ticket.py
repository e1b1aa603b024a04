"""A stored ticket, read and verified: a level's mask and trained weights as a masked network.

`load_ticket` reads `<runs_dir>/<run>/seed_<s>/<branch>/level_<n>/{mask,final}.safetensors`
only when the store records the level, no driver holds the run's lock, and both files
match the SHA-256 the store recorded for them. It never writes.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ticketlab.data import Dataset
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import Network, build_model
from ticketlab.store import LevelRow, ResultsStore, load_tensors, sha256_file


@dataclass
class Ticket:
    """A level of a run as a network whose pruned weights are zero, with its mask and row."""

    run_id: str
    seed: int
    branch: str
    level: int
    model_name: str
    model: Network  # eval mode, mask applied
    mask: Mask
    row: LevelRow
    dataset: Dataset

    @property
    def density(self) -> float:
        return self.mask.density

    def metadata(self) -> dict[str, str]:
        """What every exported file carries about where it came from."""
        return {
            "run_id": self.run_id, "seed": str(self.seed), "branch": self.branch, "level": str(self.level),
            "density": f"{self.density:.6f}", "model": self.model_name,
            "input_shape": ",".join(map(str, self.dataset.input_shape)),
            "num_classes": str(self.dataset.num_classes),
        }


def run_is_running(run_dir: Path) -> bool:
    """Whether another process holds `<run_dir>/.lock` (probed with a shared, non-blocking
    `flock` on a read-only descriptor: nothing is created or changed)."""
    path = run_dir / ".lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock if we took it
    return False


def load_ticket(runs_dir: str | Path, run: str, level: int, *, seed: int | None = None, branch: str = "imp",
                data_dir: str | Path | None = None, dataset: Dataset | None = None) -> Ticket:
    """The verified ticket of `run` (a unique id prefix) at `level`.

    `seed` defaults to the run's only seed (several seeds: say which). `dataset` replaces the
    run's data set (tests on in-memory data); otherwise it is loaded as the run loaded it.
    """
    from ticketlab.experiments import spec_from_dict
    from ticketlab.experiments.tasks import load_data
    from ticketlab.store.report import resolve_run

    store = ResultsStore(runs_dir, readonly=True)
    run_id = resolve_run(store, run)
    if run_is_running(store.runs_dir / run_id):
        raise TicketlabError(f"run {run_id} is being run by another process (lock {store.runs_dir / run_id / '.lock'}); "
                             "export its levels once it has finished")
    rows = [r for r in store.levels(run_id) if r.branch == branch]
    seeds = sorted({r.seed for r in rows})
    if seed is None:
        if len(seeds) > 1:
            raise TicketlabError(f"run {run_id} has seeds {', '.join(map(str, seeds))}; choose one with --seed")
        seed = seeds[0] if seeds else 0
    row = store.level(run_id, seed, branch, level)
    if row is None:
        held = sorted(r.level for r in rows if r.seed == seed)
        branches = sorted({r.branch for r in store.levels(run_id)})
        raise TicketlabError(
            f"run {run_id} has no finished {branch} level {level} for seed {seed}; it holds levels "
            f"{', '.join(map(str, held)) or 'none'} (branches: {', '.join(branches) or 'none'})")
    directory = store.level_dir(run_id, seed, branch, level)
    files = {}
    for name in ("mask", "final"):
        path = directory / f"{name}.safetensors"
        expected = store.artifact_sha(str(path.relative_to(store.runs_dir)))
        if not path.is_file():
            raise TicketlabError(f"{path} is missing; rerun the run's command to recompute the level")
        if expected is not None and sha256_file(path) != expected:
            raise TicketlabError(f"{path} does not match the checksum the store recorded (a damaged or altered file); "
                                 "rerun the run's command to recompute the level")
        tensors = load_tensors(path)
        if tensors is None:
            raise TicketlabError(f"{path} is not a readable safetensors file; rerun the run's command to recompute it")
        files[name] = tensors
    stored = {k: v for k, v in (store.run_spec(run_id) or {}).items() if k != "identity"}
    spec = spec_from_dict(stored)
    if dataset is None:
        dataset = load_data(spec, Path(data_dir) if data_dir is not None else None)
    model = build_model(spec.model.name, dataset.input_shape, dataset.num_classes, seed=0)
    mask = Mask(files["mask"])
    mask.check_against(model)
    weights = files["final"]
    for name, keep in mask.items():
        if bool(weights[name][~keep].ne(0).any()):
            raise TicketlabError(
                f"run {run_id} level {level}: pruned weights of {name} are held at non-zero values "
                f"(ticket.mask0 = {spec.ticket.mask0!r}), so the trained network is not sparse and cannot be "
                "exported as a ticket")
    model.load_state_dict(weights)
    model.eval()
    return Ticket(run_id, seed, branch, level, spec.model.name, model, mask, row, dataset)
