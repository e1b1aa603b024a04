"""The trackers of one process: every call goes through a queue to one background thread.

Training only puts small records on the queue (no I/O, no network), so a slow or dead
tracker cannot slow or stop it. The thread runs each backend's calls in order; a backend that
raises is reported once (`warn`) and silenced for the rest of the process. The queue is
drained when the process ends (atexit in the driver, multiprocessing's finalizers in worker
processes) and explicitly by the driver before it completes the run's logs
(`track.run.finish_tracking`).
"""

from __future__ import annotations

import atexit
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from ticketlab.track.base import LevelKey, Point, RunInfo, Summary, Tracker
from ticketlab.track.ledger import Ledger
from ticketlab.track.registry import TRACKERS
from ticketlab.track.spec import TrackSpec

DRAIN_SECONDS = 120.0
"""How long a process waits, as it ends, for its trackers to take what is queued. A tracker
still busy after that (a server that stopped answering) loses the rest, with a warning; the
driver's catch-up (`track.run`) logs the levels it did not finish at the next run."""

_WARNED: set[str] = set()


def warn(name: str, reason: object) -> None:
    """One line per tracker and process: what failed, and that training goes on."""
    if name in _WARNED:
        return
    _WARNED.add(name)
    text = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
    print(f"ticketlab: warning: tracker {name}: {text[:300]}; training goes on without it", file=sys.stderr,
          flush=True)


def track_root(spec: TrackSpec, runs_dir: Path) -> Path:
    return Path(spec.dir) if spec.dir else Path(runs_dir) / "track"


class Hub:
    """The backends of one TrackSpec in this process, fed by one queue."""

    def __init__(self, spec: TrackSpec, root: Path):
        self.spec, self.root = spec, root
        self.backends: list[Tracker] = [TRACKERS.get(name)(spec, root) for name in spec.backends]
        self.failed: set[str] = set()
        self.ledgers: dict[tuple[str, int, str], Ledger] = {}
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.cpu_seconds = 0.0  # CPU time the tracker thread has spent on the backends (benchmarks read it)

    # ---- called from training (any thread): enqueue only
    def submit(self, work: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain_forever, name="ticketlab-trackers", daemon=True)
                self._thread.start()
        self._queue.put(work)

    def flush(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait until the queue is empty (True) or `timeout` passed (False, with a warning)."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done.set)
        if done.wait(timeout):
            return True
        for backend in self.backends:
            if backend.name not in self.failed:
                warn(backend.name, f"still busy after {timeout:g} s; the rest of its queue is dropped")
        return False

    # ---- run on the tracker thread (or in the driver once training is over)
    def _drain_forever(self) -> None:
        while True:
            work = self._queue.get()
            started = time.thread_time()
            try:
                work()
            except Exception as error:  # a bug in our own bookkeeping must not kill the thread
                warn("(all)", error)
            self.cpu_seconds += time.thread_time() - started

    def call(self, backend: Tracker, method: str, *args) -> bool:
        """`backend.method(*args)` unless the backend failed before; a failure silences it."""
        if backend.name in self.failed:
            return False
        try:
            getattr(backend, method)(*args)
            return True
        except Exception as error:
            self.failed.add(backend.name)
            warn(backend.name, error)
            return False

    def ledger(self, key: LevelKey) -> Ledger:
        index = (key.run_id, key.seed, key.branch)
        if index not in self.ledgers:
            self.ledgers[index] = Ledger(self.root, *index)
        return self.ledgers[index]

    def begin_level(self, key: LevelKey, run: RunInfo | None, only_new: bool = False) -> list[Tracker]:
        """Start `key` at every live backend; returns those that log it. A level a backend holds
        already (even in part) is discarded there first, unless `only_new` and it finished it
        (the driver's catch-up: a finished level stays)."""
        ledger = self.ledger(key)
        taking = []
        for backend in self.backends:
            where = backend.destination
            if only_new and ledger.done(where, key.level):
                continue
            if ledger.seen(where, key.level) and not self.call(backend, "discard_level", key):
                continue
            ledger.mark(where, key.level, "open")
            if self.call(backend, "start_level", key, run):
                taking.append(backend)
        return taking

    def live_level(self, key: LevelKey, run: RunInfo | None) -> tuple[list[Tracker], Callable]:
        """Start `key` (on the tracker thread) for a training about to run: the backends that
        take it (filled once started) and the training loop's `on_evaluation(evaluation, lr,
        seconds)` hook, which only queues each point."""
        backends: list[Tracker] = []
        self.submit(lambda: backends.extend(self.begin_level(key, run)))

        def on_evaluation(evaluation, lr: float, seconds: float) -> None:
            point = Point(evaluation.step, evaluation.train_loss, evaluation.val_loss, evaluation.val_acc,
                          evaluation.test_loss, evaluation.test_acc, lr, seconds)
            self.submit(lambda: [self.call(backend, "point", key, point) for backend in backends])

        return backends, on_evaluation

    def end_level(self, backends: list[Tracker], key: LevelKey, summary: Summary) -> None:
        ledger = self.ledger(key)
        for backend in backends:
            if self.call(backend, "end_level", key, summary):
                ledger.mark(backend.destination, key.level, "done")


_HUBS: dict[tuple[TrackSpec, Path], Hub] = {}


def hub_for(spec: TrackSpec, runs_dir: Path) -> Hub:
    """This process's hub for `spec` (one per spec and folder: one thread, one backend each)."""
    root = track_root(spec, runs_dir)
    key = (spec, root)
    if key not in _HUBS:
        _HUBS[key] = Hub(spec, root)
        if len(_HUBS) == 1:
            _register_exit()
    return _HUBS[key]


def flush_all() -> None:
    """Wait until every hub of this process has logged what is queued (a worker, at a task's end)."""
    for hub in list(_HUBS.values()):
        hub.flush()


def close_all() -> None:
    """Drain and close every hub of this process (at exit)."""
    started = time.perf_counter()
    for hub in list(_HUBS.values()):
        hub.flush(max(1.0, DRAIN_SECONDS - (time.perf_counter() - started)))
        for backend in hub.backends:
            hub.call(backend, "close")
    _HUBS.clear()


def _register_exit() -> None:
    """Drain at exit: atexit in a main process; in a multiprocessing worker atexit does not
    run, its finalizers do."""
    atexit.register(close_all)
    try:
        from multiprocessing import util

        util.Finalize(None, close_all, exitpriority=20)
    except ImportError:  # pragma: no cover - multiprocessing is always there
        pass
