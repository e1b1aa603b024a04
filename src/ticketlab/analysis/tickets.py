"""Tickets read from the store: `RUN[/BRANCH][:LEVEL][@SEED]` references and their files.

A reference names a run (a unique prefix of its id), optionally a branch (default `imp`), a
level (default: the last level the store records for that branch and seed; `*` = every
recorded level) and a seed (default: the smallest recorded; `*` = every recorded seed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.store import ResultsStore, load_tensors, sha256_file
from ticketlab.store.report import resolve_run

_REF = re.compile(r"^(?P<run>[^/:@]+)(?:/(?P<branch>[^:@]+))?(?::(?P<level>\d+|\*))?(?:@(?P<seed>\d+|\*))?$")


@dataclass(frozen=True)
class Ticket:
    run_id: str
    seed: int
    branch: str
    level: int
    density: float
    dir: Path  # the level folder
    spec: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        branch = "" if self.branch == "imp" else f"/{self.branch}"
        return f"{self.run_id[:6]}{branch}:{self.level}@{self.seed}"

    def mask(self) -> Mask:
        path = self.dir / "mask.safetensors"
        _check_sidecar(path)
        return Mask.load(path)

    def final(self) -> dict[str, torch.Tensor]:
        return _tensors(self.dir / "final.safetensors")

    def init(self) -> dict[str, torch.Tensor]:
        """The seed's initial weights (the start of every level unless the run rewinds late)."""
        return _tensors(self.dir.parents[1] / "init.safetensors")

    def seed_dir(self) -> Path:
        return self.dir.parents[1]


def _check_sidecar(path: Path) -> None:
    """Refuse a file whose `.sha256` sidecar (written beside it by the run) disagrees with it."""
    sidecar = path.with_name(path.name + ".sha256")
    text = sidecar.read_text().strip() if sidecar.is_file() else ""
    if text and path.is_file() and text.split()[0] != sha256_file(path):
        raise TicketlabError(f"{path} does not match its recorded SHA-256; rerun the run's command to recompute it")


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    _check_sidecar(path)
    tensors = load_tensors(path)
    if tensors is None:
        raise TicketlabError(f"{path} is missing or unreadable; `ticketlab store check` says what the store holds")
    return tensors


def parse_ref(text: str) -> tuple[str, str, str | None, str | None]:
    """(run, branch, level, seed) of a reference; level and seed are None, '*' or digits."""
    match = _REF.match(text)
    if not match:
        raise TicketlabError(f"{text!r} is not a ticket reference RUN[/BRANCH][:LEVEL][@SEED], e.g. 3f2a:5@1 or 3f2a:*@*")
    return match["run"], match["branch"] or "imp", match["level"], match["seed"]


def resolve(store: ResultsStore, text: str) -> list[Ticket]:
    """The tickets a reference names, in (seed, level) order."""
    run, branch, level, seed = parse_ref(text)
    run_id = resolve_run(store, run)
    spec = store.run_spec(run_id) or {}
    rows = [r for r in store.levels(run_id) if r.branch == branch]
    if not rows:
        branches = sorted({r.branch for r in store.levels(run_id)})
        raise TicketlabError(f"run {run_id} has no finished level of branch {branch!r}; it has: "
                             f"{', '.join(branches) or 'none yet'}")
    seeds = sorted({r.seed for r in rows})
    if seed is None:
        seeds = seeds[:1]
    elif seed != "*":
        if int(seed) not in seeds:
            raise TicketlabError(f"run {run_id} has no finished {branch} level for seed {seed}; it holds seeds "
                                 f"{', '.join(map(str, seeds))}")
        seeds = [int(seed)]
    tickets = []
    for s in seeds:
        held = {r.level: r for r in rows if r.seed == s}
        if level is None:
            levels = [max(held)]
        elif level == "*":
            levels = sorted(held)
        elif int(level) in held:
            levels = [int(level)]
        else:
            raise TicketlabError(f"run {run_id} seed {s} has no finished {branch} level {level}; it holds levels "
                                 f"{', '.join(map(str, sorted(held)))}")
        for lv in levels:
            row = held[lv]
            tickets.append(Ticket(run_id, s, branch, lv, row.density, store.level_dir(run_id, s, branch, lv), spec))
    return tickets


def resolve_all(store: ResultsStore, refs: list[str]) -> list[Ticket]:
    """Every ticket the references name, each once, in the order given."""
    tickets = [t for ref in refs for t in resolve(store, ref)]
    return list(dict.fromkeys(tickets))
