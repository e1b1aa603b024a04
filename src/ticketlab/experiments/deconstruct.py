"""The studies of Zhou et al. (2019), "Deconstructing Lottery Tickets", as sets of IMP runs.

Each study varies one part of the ticket and holds the other two at the base spec's (by
default the standard ticket: criterion `large_final`, mask-1 `rewind`, mask-0 `zero`):
  criteria  the mask criterion M(w_i, w_f): `pruning.criterion`
  mask1     the values the kept weights restart from: `ticket.mask1`
  mask0     what the pruned weights are held at: `ticket.mask0`
A variant is an ordinary IMP experiment whose spec differs from the base only in that one
field (and runs no baselines: the `random` criterion is the studies' baseline). Equal
specs have equal run ids, so the standard ticket, a variant of all three studies, is one
run, and every stage the store already holds is reused, not retrained.
The criterion equal to the spec's default (`large_final`, alias `magnitude`) is written as
the default, so its run id is the one `ticketlab imp` gives the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ticketlab.data import Dataset
from ticketlab.errors import SpecError, TicketlabError
from ticketlab.experiments.branches import MAIN
from ticketlab.experiments.imp import LevelReport
from ticketlab.experiments.runner import Experiment, prepare, run_experiments, spec_with_overrides
from ticketlab.experiments.spec import ExperimentSpec, PruningSpec
from ticketlab.masks import CRITERIA
from ticketlab.store import ResultsStore
from ticketlab.store.report import Summary, summarise
from ticketlab.tickets import MASK0_ACTIONS, MASK1_ACTIONS

STUDIES = {"criteria": ("pruning", "criterion"), "mask1": ("ticket", "mask1"), "mask0": ("ticket", "mask0")}
DEFAULT_DENSITIES = (0.5, 0.2, 0.05, 0.02)


def study_choices() -> dict[str, list[str]]:
    """Every study's variants: each registered criterion once (aliases left out), every action."""
    criteria = [name for name in CRITERIA.names() if CRITERIA.get(name).name == name]
    return {"criteria": criteria, "mask1": MASK1_ACTIONS.names(), "mask0": MASK0_ACTIONS.names()}


def spec_value(study: str, name: str) -> str:
    """The spec field value for variant `name` of `study`; unknown names list the valid ones."""
    registry = {"criteria": CRITERIA, "mask1": MASK1_ACTIONS, "mask0": MASK0_ACTIONS}[study]
    entry = registry.get(name)
    default = PruningSpec().criterion
    return default if study == "criteria" and entry is CRITERIA.get(default) else name


@dataclass(frozen=True)
class Variant:
    study: str
    name: str
    experiment: Experiment


@dataclass(frozen=True)
class Sweep:
    """The resolved variants of the chosen studies, and the standard ticket they share."""

    standard: Experiment
    variants: tuple[Variant, ...]

    def experiments(self, first: Sequence[tuple[str, str]] = ()) -> list[Experiment]:
        """Each distinct experiment once: those of the (study, variant) pairs in `first`, in
        that order, then the rest in study order."""
        named = {(v.study, v.name): v.experiment for v in self.variants}
        missing = [pair for pair in first if pair not in named]
        if missing:
            study, name = missing[0]
            valid = [v.name for v in self.variants if v.study == study]
            raise TicketlabError(f"no variant {name!r} in study {study!r} of this sweep; "
                                 + (f"valid: {', '.join(valid)}" if valid else f"studies: {', '.join(self.studies())}"))
        ordered = [named[pair] for pair in first] + [v.experiment for v in self.variants]
        return list({e.run_id: e for e in ordered}.values())

    def subset(self, pairs: Sequence[tuple[str, str]]) -> "Sweep":
        """The sweep of just these (study, variant) pairs; unknown ones are refused."""
        self.experiments(pairs)
        return Sweep(self.standard, tuple(v for v in self.variants if (v.study, v.name) in pairs))

    def studies(self) -> list[str]:
        return list(dict.fromkeys(v.study for v in self.variants))

    def runs(self, study: str) -> dict[str, str]:
        """Variant name -> run id, for one study."""
        return {v.name: v.experiment.run_id for v in self.variants if v.study == study}

    def title(self, study: str) -> str:
        """What the study varies and what it holds fixed."""
        spec = self.standard.spec
        held = {
            "criteria": f"mask-1 {spec.ticket.mask1}, mask-0 {spec.ticket.mask0}",
            "mask1": f"criterion {CRITERIA.get(spec.pruning.criterion).name}, mask-0 {spec.ticket.mask0}",
            "mask0": f"criterion {CRITERIA.get(spec.pruning.criterion).name}, mask-1 {spec.ticket.mask1}",
        }
        return f"{study} study ({held[study]})"

    @property
    def figure_dir(self) -> Path:
        return self.standard.runs_dir / "deconstruct" / self.standard.run_id


def plan(base: ExperimentSpec, names: dict[str, list[str] | None], runs_dir: str | Path,
         data_dir: str | Path | None = None, dataset: Dataset | None = None, *, device: str | None = None,
         sparse_training: str = "off") -> tuple[Sweep, Dataset]:
    """Resolve every variant of the studies in `names` ({study: [variant, ...], or None for
    all of them}) against the data and model: all names and specs are checked here, before
    any training. `device` and `sparse_training` are `prepare`'s."""
    where = dict(device=device, sparse_training=sparse_training)
    for study in names:
        if study not in STUDIES:
            raise SpecError(f"unknown study {study!r}; valid: {', '.join(STUDIES)}")
    names = {study: study_choices()[study] if chosen is None else chosen for study, chosen in names.items()}
    values = {study: [spec_value(study, name) for name in chosen] for study, chosen in names.items()}
    fixed = {"pruning": {"criterion": spec_value("criteria", base.pruning.criterion)}, "baselines": []}
    standard, dataset = prepare(spec_with_overrides(base, fixed), runs_dir, data_dir, dataset, **where)
    variants = []
    for study, chosen in names.items():
        section, key = STUDIES[study]
        for name, value in zip(chosen, values[study]):
            spec = spec_with_overrides(base, fixed | {section: {key: value}})
            experiment, _ = prepare(spec, runs_dir, data_dir, dataset, **where)
            variants.append(Variant(study, name, experiment))
    return Sweep(standard, tuple(variants)), dataset


def run_sweep(sweep: Sweep, *, jobs: int = 1, executor: str = "local", address: str | None = None,
              dataset: Dataset | None = None, report: LevelReport | None = None, show_progress: bool = False,
              first: Sequence[tuple[str, str]] = ()) -> int:
    """Run (or resume) each distinct experiment of `sweep` once, as one set of engine tasks:
    the (study, variant) pairs in `first` are started before the others, and every variant's
    dense level is the standard ticket's, trained once per seed. Returns how many tasks ran."""
    return run_experiments(sweep.experiments(first), jobs=jobs, executor=executor, address=address,
                           dataset=dataset, report=report, show_progress=show_progress)


@dataclass(frozen=True)
class StudyTable:
    """One study's results: per variant, the tickets' summary at the levels closest to the
    requested densities (None where a variant has not finished that level)."""

    study: str
    columns: tuple[tuple[int, float], ...]  # (level, density)
    rows: dict[str, tuple[Summary | None, ...]]

    def closest(self, density: float) -> int:
        """The index of the column whose density is closest to `density`."""
        if not self.columns:
            raise TicketlabError(f"the {self.study} study has no finished levels yet")
        return min(range(len(self.columns)), key=lambda i: abs(self.columns[i][1] - density))

    def at(self, name: str, density: float) -> Summary | None:
        """Variant `name`'s summary at the column closest to `density`."""
        return self.rows[name][self.closest(density)]

    def markdown(self) -> str:
        """Rows = variants, columns = % of weights remaining, cells = mean test accuracy at
        early stop over seeds."""
        if not self.columns:
            return f"({self.study}: no level has finished yet)"
        lines = [
            f"| {self.study} | " + " | ".join(f"{density:.1%}" for _, density in self.columns) + " |",
            "|---|" + "---|" * len(self.columns),
        ]
        for name, cells in self.rows.items():
            values = ["–" if s is None else f"{s.early_stop_acc[0]:.2%}" for s in cells]
            lines.append(f"| {name} | " + " | ".join(values) + " |")
        return "\n".join(lines)


def study_table(store: ResultsStore, study: str, runs: dict[str, str],
                densities: tuple[float, ...] = DEFAULT_DENSITIES) -> StudyTable:
    """The table of one study ({variant: run id}) from the store."""
    tickets = {name: [s for s in summarise(store.levels(run_id)) if s.branch == MAIN] for name, run_id in runs.items()}
    levels = {s.level: s.density for rows in tickets.values() for s in rows}
    chosen = {min(levels.items(), key=lambda kv: abs(kv[1] - d)) for d in densities} if levels else set()
    columns = tuple(sorted(chosen, key=lambda kv: kv[0]))
    rows = {
        name: tuple(next((s for s in summaries if s.level == level), None) for level, _ in columns)
        for name, summaries in tickets.items()
    }
    return StudyTable(study, columns, rows)
