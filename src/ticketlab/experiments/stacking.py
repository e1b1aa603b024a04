"""Replicates that share a step: the engine's tasks grouped for `training.stacked`.

`--stack auto|off|R`: the branch tasks of an experiment that train the same network on the same
schedule -- the dense levels of its seeds, the IMP lines of its seeds, its baselines (every
branch of every seed) -- become `StackedBranchTask`s of at most R members that train their
levels in lockstep: level L of every member at once, as one stacked model, then level L+1.
Each level is recorded per replicate exactly as a lone task records it (its own mask, weights,
metrics, checksums), so the store cannot tell how it was trained, and a stack resumes where
its members stopped (finished levels are skipped per member).

Within a level, members whose schedules or start iterations differ (a baseline with its own
budget) and networks that cannot stack (batch norm, dropout, bf16: `stacked.why_not_stackable`)
train one by one. `auto` stacks on CUDA only: on the CPU it is measured not to pay for every
network (benchmarks/gpu_speed.py prints the CPU figures), so `auto` leaves CPU runs as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ticketlab.engine import Context
from ticketlab.errors import TicketlabError
from ticketlab.experiments.branches import MAIN
from ticketlab.experiments.imp import LevelJob, Replicate
from ticketlab.experiments.tasks import BranchTask, experiment_data
from ticketlab.store import ResultsStore
from ticketlab.training.sparse_kernels import parse_sparse_training
from ticketlab.training.stacked import train_stacked, why_not_stackable

MAX_STACK = 128  # replicates per stack under `auto`


def parse_stack(value: str) -> str:
    """`auto`, `off` or a count R >= 1 (as text), for --stack; anything else is one clear line."""
    text = str(value).strip().lower()
    if text in ("auto", "off"):
        return text
    if text.isdigit() and int(text) >= 1:
        return str(int(text))
    raise TicketlabError(f"--stack must be auto, off or a number of replicates >= 1, got {value!r}")


def stack_size(stack: str, device: str | None) -> int:
    """How many replicates one stack may hold: 1 (no stacking) for off, and for auto off CUDA."""
    if stack == "off":
        return 1
    if stack == "auto":
        return MAX_STACK if device is not None and str(device).startswith("cuda") else 1
    return int(stack)


def _group_key(task: BranchTask) -> tuple:
    kind = "dense" if task.dense_only else ("imp" if task.branch == MAIN else "baselines")
    return task.experiment.run_id, kind, tuple(task.levels())


def _stackable(task: BranchTask) -> bool:
    experiment = task.experiment
    if experiment.sparse_training != "off":
        return False
    replicate_model = _model_of(experiment)
    return why_not_stackable(replicate_model, experiment.spec.training.train_spec()) is None


_MODELS: dict = {}


def _model_of(experiment):
    """One network of the experiment (to ask whether it stacks), built once per run id."""
    if experiment.run_id not in _MODELS:
        from ticketlab.models import build_model

        data = experiment_data(experiment)
        _MODELS[experiment.run_id] = build_model(experiment.spec.model.name, data.input_shape, data.num_classes, seed=0)
    return _MODELS[experiment.run_id]


def group_tasks(tasks: list, stack: str, device: str | None) -> list:
    """`tasks` with the branch tasks that can share a step grouped into stacks of at most
    `stack_size(stack, device)` members (the order of first appearance kept); the others as given."""
    size = stack_size(stack, device)
    if size <= 1:
        return tasks
    unique = list({task.key: task for task in tasks}.values())
    groups: dict[tuple, list] = {}
    order: list = []
    for task in unique:
        if isinstance(task, BranchTask) and _stackable(task):
            key = _group_key(task)
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(task)
        else:
            order.append(task)
    grouped = []
    for item in order:
        if not isinstance(item, tuple):
            grouped.append(item)
            continue
        members = groups[item]
        for start in range(0, len(members), size):
            chunk = tuple(members[start:start + size])
            grouped.append(chunk[0] if len(chunk) == 1 else StackedBranchTask(chunk))
    return grouped


@dataclass(frozen=True)
class StackedBranchTask:
    """Branch tasks of one experiment trained level by level in lockstep, stacked (see module)."""

    members: tuple[BranchTask, ...]

    @property
    def key(self) -> str:
        return "stack[" + " + ".join(member.key for member in self.members) + "]"

    @property
    def provides(self) -> tuple[str, ...]:
        return tuple(member.key for member in self.members)

    @property
    def needs(self) -> tuple[str, ...]:
        own = set(self.provides)
        needs = [need for member in self.members for need in member.needs if need not in own]
        return tuple(dict.fromkeys(needs))

    @property
    def locks(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(lock for member in self.members for lock in member.locks))

    def done(self) -> bool:
        return all(member.done() for member in self.members)

    def run(self, context: Context) -> None:
        experiment = self.members[0].experiment
        replicates = [Replicate(experiment.spec, experiment.run_id, member.seed, ResultsStore(experiment.runs_dir),
                                experiment_data(experiment), report=context.emit, check=context.check,
                                device=experiment.device, sparse=parse_sparse_training(experiment.sparse_training),
                                compile=experiment.compile)
                      for member in self.members]
        levels = sorted({level for member in self.members for level in member.levels()})
        for level in levels:
            todo = []
            for member, replicate in zip(self.members, replicates):
                if level not in member.levels():
                    continue
                if level == 0:
                    if replicate.finished(MAIN, 0) is None and not replicate.adopt_dense_level():
                        todo.append((replicate, MAIN))
                elif replicate.finished(member.branch, level) is None:
                    todo.append((replicate, member.branch))
            train_level_together(todo, level)


def train_level_together(todo: list[tuple[Replicate, str]], level: int) -> None:
    """Level `level` of each (replicate, branch): members that share a schedule and start
    iteration as one stacked model, the others (and any alone) one by one."""
    jobs = [(replicate, replicate.prepare_level(branch, level)) for replicate, branch in todo]
    together: dict[tuple, list[tuple[Replicate, LevelJob]]] = {}
    for replicate, job in jobs:
        together.setdefault((job.schedule, job.start), []).append((replicate, job))
    for (schedule, start), group in together.items():
        if len(group) == 1:
            replicate, job = group[0]
            replicate.train_job(job)
            continue
        first = group[0][0]
        results = train_stacked([r.model for r, _ in group], first.dataset, schedule,
                                seeds=[r.seed for r, _ in group], constraints=[j.constraints for _, j in group],
                                callbacks=[j.callbacks for _, j in group], start_step=start, device=first.device,
                                compile=first.compile, on_evaluation=[r.live(j.branch, level) for r, j in group])
        for (replicate, job), result in zip(group, results):
            replicate.finish_level(job, result)
