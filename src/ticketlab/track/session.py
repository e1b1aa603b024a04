"""Trackers for the commands that train outside the engine's runs and levels: `train`,
`supermask`, `franken`, `combine`, `stability`, `reproduce`.

A command opens one tracker run with `tracking(...)`: for a one-shot command a fresh id per
invocation (`command_run`), for a study that resumes (a stability study of a stored run, a
reproduction) the id it is stored under, so a rerun appends to the same tracker run. Inside,
code names what it trains:

    with unit("a_ticket", seed=0, level=3):
        train(...)          # streams its evaluations; ends as one level unit with its summary

Every `train()` call inside a `unit` block is one level unit (the first at `level`, the next
at level + 1, ...): its evaluations go to the trackers as they are made, and its summary is
the training's (early stop, final accuracy, wall time, and the mask it trained under, overall
and per layer). `note(...)` adds numbers to the unit's summary (a supermask's sampled
accuracy, a barrier); a `unit` block with notes and no training logs a summary-only unit, once
(a rerun does not repeat one the ledger marks done). A `train()` call in a session outside
any `unit` block is a level of the default unit "train". Outside a session `unit`, `note` and
the training hook do nothing, so library code names its units unconditionally and untracked
training runs exactly as before.

The session and unit are context variables: a worker process (an engine task) opens its own
session with `driver=False` (no run description, no run end) around the units it trains.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ticketlab.track.base import LevelKey, RunInfo, UnitSummary
from ticketlab.track.spec import TrackSpec

_SESSION: ContextVar["Session | None"] = ContextVar("ticketlab_track_session", default=None)
_UNIT: ContextVar["Unit | None"] = ContextVar("ticketlab_track_unit", default=None)


def command_run(command: str, options: dict) -> RunInfo:
    """A one-shot command's tracker run: a fresh id (`<command>-<UTC time>-<4 hex>`), its
    options as parameters and as the "spec" text."""
    run_id = f"{command.replace(' ', '-')}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"
    return described_run(run_id, command, options)


def described_run(run_id: str, command: str, options: dict) -> RunInfo:
    """RunInfo of tracker run `run_id` made by `command` with `options` (name -> value)."""
    from ticketlab.track.provenance import provenance

    plain = {name: _plain(value) for name, value in sorted(options.items()) if not callable(value) and value is not None}
    params = {name: str(value) for name, value in plain.items()} | {"run_id": run_id, "command": command}
    text = "\n".join(f"{name} = {json.dumps(value)}" for name, value in plain.items())
    return RunInfo(run_id, params, {"command": command}, dict(provenance()), f"# ticketlab {command}\n{text}\n")


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) else str(value)


@dataclass
class Session:
    """One tracker run in this process: its hub (backends, queue, ledgers) and description."""

    hub: object
    run: RunInfo
    driver: bool = True
    figures: list[Path] = field(default_factory=list)
    default: "Unit | None" = None
    started: bool = False

    def start(self) -> None:
        """Describe the run to the backends, once, when its first unit starts (the driver's): a
        command refused before anything trains leaves no trace in the trackers."""
        if self.started or not self.driver:
            return
        self.started = True
        hub, run = self.hub, self.run
        for backend in hub.backends:
            hub.submit(lambda backend=backend: hub.call(backend, "start_run", run))

    @property
    def spec(self) -> TrackSpec:
        """The trackers this session uses (the usable ones): what its engine tasks are given."""
        return self.hub.spec

    def add_figures(self, paths) -> None:
        """Files (PNG, SVG) to log as the run's artifacts when it ends."""
        self.figures += [Path(p) for p in paths]


@contextlib.contextmanager
def tracking(track: TrackSpec | None, runs_dir: Path, run: RunInfo, *, driver: bool = True) -> Iterator[Session | None]:
    """Within the block, `unit`s and `train()` calls log to `track`'s backends under `run`.

    The driver (default) checks the backends first (one warning for each that cannot work,
    dropped), describes the run when its first unit starts, and on a normal exit waits for the
    queue and ends the run with the session's figures. A worker (`driver=False`) only logs its units; its queue drains when
    the process ends. With no backends the block runs untracked (None)."""
    if track is None or not track.on:
        yield None
        return
    from ticketlab.track.hub import hub_for
    from ticketlab.track.run import usable

    if driver:
        track = usable(track, runs_dir)
        if not track.on:
            yield None
            return
    hub = hub_for(track, runs_dir)
    session = Session(hub, run, driver)
    token = _SESSION.set(session)
    try:
        yield session
        if session.default is not None:
            session.default.close()
    finally:
        _SESSION.reset(token)
    if session.started:
        hub.flush()
        for backend in hub.backends:
            hub.call(backend, "end_run", run, session.figures)


def current() -> Session | None:
    """The session of this context, or None (untracked)."""
    return _SESSION.get()


def add_figures(paths) -> None:
    """Log `paths` as the current run's artifacts when it ends (nothing when untracked)."""
    session = current()
    if session is not None:
        session.add_figures(paths)


@dataclass
class _Level:
    key: LevelKey
    backends: list = field(default_factory=list)
    values: dict = field(default_factory=dict)


class Unit:
    """One (seed, branch) of the current run: each training inside is a level of it."""

    def __init__(self, session: Session, branch: str, seed: int, level: int):
        self.session, self.branch, self.seed, self.next_level = session, branch, seed, level
        self.open: _Level | None = None
        self.notes: dict[str, float] = {}

    def _key(self) -> LevelKey:
        key = LevelKey(self.session.run.run_id, self.seed, self.branch, self.next_level)
        self.next_level += 1
        return key

    def start_training(self) -> Callable:
        """A level starts: the training loop's `on_evaluation` hook for it (queues points only)."""
        if self.open is not None:
            self._end()
        self.session.start()
        level = self.open = _Level(self._key())
        level.backends, on_evaluation = self.session.hub.live_level(level.key, self.session.run)
        return on_evaluation

    def trained(self, result, constraints) -> None:
        """The level's training ended: its summary (kept until the block ends or the next training)."""
        if self.open is not None:
            self.open.values |= training_summary(result, constraints)

    def note(self, values: dict[str, float]) -> None:
        if self.open is not None:
            self.open.values |= values
        else:
            self.notes |= values

    def _end(self) -> None:
        hub, level = self.session.hub, self.open
        self.open = None
        summary = UnitSummary(dict(level.values))
        hub.submit(lambda: hub.end_level(level.backends, level.key, summary))

    def close(self) -> None:
        if self.open is not None:
            self._end()
        elif self.notes:
            self.session.start()
            hub, run, key, summary = self.session.hub, self.session.run, self._key(), UnitSummary(dict(self.notes))

            def log() -> None:
                hub.end_level(hub.begin_level(key, run, only_new=True), key, summary)

            hub.submit(log)
        self.notes = {}


@contextlib.contextmanager
def unit(branch: str, *, seed: int = 0, level: int = 0) -> Iterator[Unit | None]:
    """Name what trains inside: (seed, branch), levels from `level` on (see the module)."""
    session = current()
    if session is None:
        yield None
        return
    tracked = Unit(session, branch, seed, level)
    token = _UNIT.set(tracked)
    try:
        yield tracked
        tracked.close()
    finally:
        _UNIT.reset(token)


def note(**values: float) -> None:
    """Add numbers to the current unit's summary (nothing when untracked)."""
    tracked = _UNIT.get()
    if tracked is not None:
        tracked.note({name: float(value) for name, value in values.items()})


def record(branch: str, values: dict[str, float], *, seed: int = 0, level: int = 0) -> None:
    """A summary-only unit (a result, not a training), logged once per run."""
    with unit(branch, seed=seed, level=level):
        note(**values)


def training_unit() -> Unit | None:
    """The unit a `train()` call starting now belongs to: the current `unit` block's, else the
    session's default "train" unit, else None (untracked)."""
    tracked = _UNIT.get()
    if tracked is not None:
        return tracked
    session = current()
    if session is None:
        return None
    if session.default is None:
        session.default = Unit(session, "train", 0, 0)
    return session.default


def training_summary(result, constraints) -> dict[str, float]:
    """A training's summary: early stop (min validation loss) iteration and test accuracy, final
    test accuracy and loss, wall seconds; with a mask, the fraction of prunable weights it
    trained overall and per layer: `density` when the others are held at zero (pruning),
    `trainable` when some are held at other values (frozen weights)."""
    early, final = result.early_stop, result.final
    values = {"early_stop_iteration": float(early.step), "early_stop_test_acc": early.test_acc,
              "final_test_acc": final.test_acc, "final_test_loss": final.test_loss, "seconds": result.seconds}
    if constraints is not None:
        mask = constraints.trainable
        name = "trainable" if any(held is not None for _, _, held in constraints.entries()) else "density"
        values[name] = mask.density
        values["kept"] = float(mask.kept)
        values |= {f"{name}/{layer.name}": layer.density for layer in mask.layers()}
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
