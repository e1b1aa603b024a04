"""Executors: run a set of tasks in dependency order, skipping those already done.

`local` runs tasks in the driver (jobs = 1) or in spawned one-thread worker processes;
`ray` runs them as Ray tasks on a local or remote cluster (`pip install 'ticketlab[ray]'`).
On CUDA, local workers are placed one per GPU in turn (`engine.devices`) and Ray tasks
request a GPU (or a share of one) so that Ray places them.
Either way the driver holds every task's lock for the whole run, a task starts once the
tasks it needs are finished, and the results land in the same store.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Callable, Sequence

from ticketlab.engine.devices import place_workers, placement_line, ray_gpu_share
from ticketlab.engine.lock import LockGuard, held_locks, no_check
from ticketlab.engine.task import Context, Task
from ticketlab.engine.worker import flush_trackers, init_worker
from ticketlab.errors import TicketlabError
from ticketlab.registry import Registry

OnDone = Callable[[Task, Any], None]


def print_event(event: Any) -> None:
    """How a worker reports progress: one line on its standard output."""
    print(event, flush=True)


def provided(task: Task) -> tuple[str, ...]:
    """The keys a task finishes: its own, and those of the tasks it runs together (a task that
    trains several replicates in one stacked step provides each member's key)."""
    return (task.key, *getattr(task, "provides", ()))


@dataclass
class Graph:
    """Tasks by key, the order they were given in, and which keys are finished."""

    tasks: dict[str, Task]
    finished: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, tasks: Sequence[Task]) -> "Graph":
        graph = cls({})
        for task in tasks:
            graph.tasks.setdefault(task.key, task)
        known = {key for task in graph.tasks.values() for key in provided(task)}
        for task in graph.tasks.values():
            missing = [need for need in task.needs if need not in known]
            if missing:
                raise TicketlabError(f"task {task.key} needs {missing[0]}, which is not part of this run")
        graph.finished = {key for task in graph.tasks.values() if task.done() for key in provided(task)}
        return graph

    def ready(self, started: set[str]) -> list[Task]:
        """Tasks not started whose needs are finished, in the order given."""
        return [task for key, task in self.tasks.items()
                if key not in started and all(need in self.finished for need in task.needs)]


def run_tasks(tasks: Sequence[Task], *, executor: str = "local", jobs: int = 1, address: str | None = None,
              on_event: Callable[[Any], None] | None = None, on_done: OnDone | None = None,
              worker_events: Callable[[Any], None] = print_event, show_progress: bool = False,
              on_start: Callable[[], None] | None = None, device: str | None = None) -> int:
    """Run (or resume) `tasks`; returns how many ran (the others were already done).

    `device` is where the tasks train (they carry it themselves): with CUDA, worker i of the
    local executor makes cuda:(i mod GPUs) its current device (an explicit cuda:K: K), and
    Ray tasks request GPUs.

    `on_start()` is called once every lock is held, before anything is checked or run (to
    record what the run is, say: a refused second driver then records nothing). `on_event`
    receives the events of tasks run in the driver, `worker_events` (a module-level function:
    it travels to the workers) those of tasks run elsewhere; `on_done(task, result)` is called
    in the driver as each task finishes.
    """
    if jobs < 1:
        raise TicketlabError(f"jobs must be at least 1, got {jobs}")
    run = EXECUTORS.get(executor)
    check_executor(executor, address)
    with held_locks(path for task in tasks for path in task.locks):
        if on_start is not None:
            on_start()
        graph = Graph.of(tasks)
        return run(graph, jobs=jobs, address=address, on_event=on_event or worker_events, on_done=on_done,
                   worker_events=worker_events, show_progress=show_progress, device=device)


EXECUTORS: Registry[Callable[..., int]] = Registry("executor")


def check_executor(executor: str, address: str | None) -> None:
    """Refuse, in seconds and before anything is recorded or locked, an executor that cannot
    start: an unknown one, `address` without Ray, a Ray address where nothing listens.
    ("auto", and an address while this process is already connected to Ray, are Ray's to judge.)"""
    own_check = getattr(EXECUTORS.get(executor), "check", None)  # unknown names list the valid ones
    if own_check is not None:  # an executor that judges its own `address` (slurm: its settings file)
        own_check(address)
        return
    if address is None:
        return
    if executor != "ray":
        raise TicketlabError("--address names a Ray cluster: use it with --executor ray")
    ray = sys.modules.get("ray")
    if address != "auto" and not (ray is not None and ray.is_initialized()):
        _check_reachable(address)


def _dispatch(graph: Graph, submit: Callable[[Task], Any], wait_any: Callable[[list], tuple[list, Any]],
              slots: int, on_done: OnDone | None) -> int:
    """The one scheduling loop of every executor: keep `slots` tasks running, each started once
    its needs are finished; `submit(task)` returns a handle, `wait_any(handles)` the finished
    handles and a function giving a handle's result (which re-raises the task's error)."""
    started = set(graph.finished)
    running: dict[Any, Task] = {}
    count = 0
    while True:
        for task in graph.ready(started)[: slots - len(running)]:
            started.add(task.key)
            running[submit(task)] = task
        if not running:
            break
        done, result_of = wait_any(list(running))
        for handle in done:
            task = running.pop(handle)
            result = result_of(handle)
            graph.finished.update(provided(task))
            count += 1
            if on_done is not None:
                on_done(task, result)
    stuck = [key for key in graph.tasks if key not in graph.finished]
    if stuck:
        raise TicketlabError(f"tasks wait for results nothing computes: {stuck}")
    return count


@EXECUTORS.register("local")
def run_local(graph: Graph, *, jobs: int, address: str | None, on_event, on_done, worker_events,
              show_progress: bool, device: str | None = None) -> int:
    """In the driver when `jobs` is 1, else in `jobs` spawned worker processes, each on its
    own current CUDA device when `device` is CUDA (set before any task: spawned workers
    start with no CUDA context, which forked ones could not use)."""
    if jobs == 1:
        context = Context(no_check, on_event, show_progress)
        pending: dict[int, Any] = {}

        def submit(task: Task) -> int:
            pending[id(task)] = task.run(context)
            return id(task)

        return _dispatch(graph, submit, lambda handles: (handles, pending.pop), 1, on_done)

    spawn = get_context("spawn")
    devices = place_workers(device, jobs)
    if devices:
        print(placement_line(devices), flush=True)
    started = spawn.Value("i", 0) if devices else None  # how many workers took a device
    with ProcessPoolExecutor(jobs, mp_context=spawn, initializer=init_worker,
                             initargs=(os.getpid(), devices, started)) as pool:
        def wait_any(handles):
            done, _ = wait(handles, return_when=FIRST_COMPLETED)
            return done, _result

        try:
            return _dispatch(graph, lambda task: pool.submit(run_in_worker, task, worker_events), wait_any,
                             jobs, on_done)
        except BrokenProcessPool:
            raise TicketlabError("a worker process died (killed, or out of memory); finished work is kept: "
                                 "run the same command again to continue") from None
        except KeyboardInterrupt:  # Ctrl-C reaches the workers too, a SIGTERM only the driver: stop them, or
            for process in list((pool._processes or {}).values()):  # leaving the pool waits for their tasks
                process.terminate()
            raise


def _result(future):
    return future.result()  # re-raises the worker's error here


def run_in_worker(task: Task, events: Callable[[Any], None]) -> Any:
    """A task in a worker process: writes only while its driver holds the task's locks."""
    guard = LockGuard(task.locks)
    guard()
    result = task.run(Context(guard, events))
    flush_trackers()
    return result


@EXECUTORS.register("ray")
def run_ray(graph: Graph, *, jobs: int, address: str | None, on_event, on_done, worker_events,
            show_progress: bool, device: str | None = None) -> int:
    """As Ray tasks of one CPU each, `jobs` at a time; on a local cluster of `jobs` CPUs
    started here unless `address` (HOST:PORT, or "auto") names a running one. On "cuda"
    each task also requests `ray_gpu_share` GPUs: Ray picks the GPU and shows the task only
    that one (CUDA_VISIBLE_DEVICES), so "cuda" means it."""
    if device is not None and device.startswith("cuda:"):
        raise TicketlabError(f"--device {device}: with --executor ray, Ray chooses each task's GPU; "
                             "use --device cuda")
    try:
        import ray
    except ImportError:
        raise TicketlabError("the ray executor needs Ray: pip install 'ticketlab[ray]'") from None
    started_here = not ray.is_initialized()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every finished level is news: print each one
    if started_here:  # a HOST:PORT address was checked by `check_executor`
        began = time.perf_counter()
        options = dict(address=address) if address else dict(num_cpus=jobs)
        try:
            ray.init(include_dashboard=False, log_to_driver=True, configure_logging=False, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise TicketlabError(f"could not reach the Ray cluster at {address}: {error}; start one with "
                                 "`ray start --head` or leave out --address for a local one") from None
        print(f"ray: cluster ready in {time.perf_counter() - began:.1f} s", flush=True)

    def wait_any(handles):
        done, _ = ray.wait(handles, num_returns=1)
        return done, _ray_result

    try:
        gpus = ray_gpus(ray, device, jobs)
        # num_gpus given here (not in .options) also makes Ray start a fresh worker per GPU task
        # (max_calls=1), so no worker keeps a CUDA context on a GPU its next task was not given.
        remote = ray.remote(num_cpus=1, max_retries=2, **({"num_gpus": gpus} if gpus else {}))(run_in_ray_worker)
        return _dispatch(graph, lambda task: remote.remote(task, worker_events), wait_any, jobs, on_done)
    finally:
        if started_here:
            ray.shutdown()


def ray_gpus(ray, device: str | None, jobs: int) -> float:
    """The GPUs each Ray task requests (0 off CUDA), with one line saying so."""
    if device != "cuda":
        return 0.0
    gpus = ray.cluster_resources().get("GPU", 0)
    share = ray_gpu_share(jobs, gpus)
    print(f"ray: each task requests {share:g} GPU ({jobs} jobs, {gpus:g} GPUs in the cluster); Ray places them",
          flush=True)
    return share


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when nothing listens at `address`."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as error:
        raise TicketlabError(f"could not reach the Ray cluster at {address} ({error}); start one with "
                             "`ray start --head`, or leave out --address for a local one") from None


def _ray_result(ref):
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = error.as_instanceof_cause()
        if isinstance(cause, TicketlabError):
            raise TicketlabError(str(cause).splitlines()[-1]) from None
        raise
    except ray.exceptions.WorkerCrashedError:
        raise TicketlabError("a Ray worker died three times running one task; finished work is kept: "
                             "run the same command again to continue") from None


def run_in_ray_worker(task: Task, events: Callable[[Any], None]) -> Any:
    """A task in a Ray worker: one torch thread, and writes only while the driver holds its locks."""
    init_worker()
    return run_in_worker(task, events)
