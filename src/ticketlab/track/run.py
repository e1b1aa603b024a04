"""The driver's part: check the trackers before anything trains, describe the run to them,
and when the run's tasks are over, complete its logs from the store and add its figures.

Checking first (`open_tracking`) is what makes a bad tracker one clear line at the start
instead of a warning per worker: a tracker whose package is missing, whose folder cannot be
written or whose server does not answer is dropped from the experiments before their tasks
are made, and training goes on with the others.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from ticketlab.track.base import RunInfo, flatten
from ticketlab.track.hub import hub_for, track_root, warn
from ticketlab.track.level import LevelTracker, log_recorded_level
from ticketlab.track.registry import TRACKERS
from ticketlab.track.spec import TrackSpec


def run_info(spec, run_id: str) -> RunInfo:
    """A run as trackers show it: the resolved spec as parameters (seeds and baselines, which
    a later command may add to, as tags), the provenance."""
    from ticketlab.track.provenance import provenance

    data = spec.to_dict()
    tags = {"seeds": ",".join(map(str, data.pop("seeds"))), "baselines": ",".join(data.pop("baselines")) or "-"}
    data.pop("track", None)
    params = flatten(data) | {"run_id": run_id}
    return RunInfo(run_id, params, tags, dict(provenance()), spec.to_toml())


def replicate_tracker(spec, runs_dir: Path, run_id: str, seed: int) -> LevelTracker | None:
    """The trackers of one replicate, or None when the spec tracks nothing (the default: the
    training loop then runs exactly as without trackers)."""
    track: TrackSpec | None = getattr(spec, "track", None)
    if track is None or not track.on:
        return None
    return LevelTracker(track, runs_dir, run_id, seed, run_info(spec, run_id))


def usable(track: TrackSpec, runs_dir: Path) -> TrackSpec:
    """`track` without the backends that cannot work here, each refused with one warning."""
    keep = []
    root = track_root(track, runs_dir)
    for name in track.backends:
        backend = TRACKERS.get(name)(track, root)
        try:
            backend.check()
        except ImportError as error:
            warn(name, f"the {backend.package} package is not installed ({error.name or error}); "
                       f"pip install 'ticketlab[{name}]'")
            continue
        except Exception as error:
            warn(name, error)
            continue
        keep.append(name)
    return dataclasses.replace(track, backends=tuple(keep))


def open_tracking(experiments: Sequence) -> list:
    """The experiments with only usable trackers; each run described to them (parameters,
    tags, provenance). Called by the driver before any task is made."""
    out = []
    checked: dict[TrackSpec, TrackSpec] = {}
    for experiment in experiments:
        track = experiment.spec.track
        if not track.on:
            out.append(experiment)
            continue
        if track not in checked:
            checked[track] = usable(track, experiment.runs_dir)
        spec = dataclasses.replace(experiment.spec, track=checked[track])
        experiment = dataclasses.replace(experiment, spec=spec)
        if spec.track.on:
            hub = hub_for(spec.track, experiment.runs_dir)
            info = run_info(spec, experiment.run_id)
            for backend in hub.backends:
                hub.call(backend, "start_run", info)
        out.append(experiment)
    return out


def finish_tracking(experiments: Sequence) -> None:
    """After the tasks: wait for this process's trackers, log every recorded level a backend
    has not finished (levels killed between the store and the tracker, levels recorded before
    the tracker was turned on, levels of tasks that ran elsewhere and died), then the figures."""
    from ticketlab.store import ResultsStore

    for experiment in experiments:
        track = experiment.spec.track
        if not track.on:
            continue
        hub = hub_for(track, experiment.runs_dir)
        hub.flush()
        store = ResultsStore(experiment.runs_dir, readonly=True)
        info = run_info(experiment.spec, experiment.run_id)
        for row in store.levels(experiment.run_id):
            log_recorded_level(hub, store, row, info, only_new=True)
        figures = draw_figures(store, experiment.run_id, track_root(track, experiment.runs_dir))
        for backend in hub.backends:
            hub.call(backend, "end_run", info, figures)


def draw_figures(store, run_id: str, root: Path) -> list[Path]:
    """The run's `plot` figures (PNG and SVG) under the trackers' folder, to log as artifacts."""
    if not store.levels(run_id):
        return []
    from ticketlab.plots import plot_runs

    return plot_runs(store, [run_id], root / "figures" / run_id / "lth")


def with_track(experiment, backends: Sequence[str]):
    """`experiment` streaming to `backends` (the `--track` flag over a spec's or sweep's [track])."""
    track = dataclasses.replace(experiment.spec.track, backends=tuple(backends))
    return dataclasses.replace(experiment, spec=dataclasses.replace(experiment.spec, track=track))
