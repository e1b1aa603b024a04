"""The engine: dependency order, skipping done work, locks, guards and executors' errors."""

import json
import os
import subprocess
import sys
import textwrap

import filelock
import pytest

from tasks_for_tests import FileTask, SuicideTask
from ticketlab.engine import DriverGone, LockGuard, run_tasks
from ticketlab.errors import TicketlabError


def chain(folder):
    """a (1) -> b (a + 2) -> c (b + 3), and d (4) alone."""
    return [FileTask(folder, "c", 3, needs=("b",)), FileTask(folder, "b", 2, needs=("a",)),
            FileTask(folder, "a", 1), FileTask(folder, "d", 4)]


def totals(folder):
    return {p.stem: json.loads(p.read_text())["total"] for p in folder.glob("*.json")}


@pytest.mark.parametrize("jobs", [1, 2])
def test_tasks_run_after_what_they_need_and_rerun_nothing(tmp_path, jobs):
    done = []
    ran = run_tasks(chain(tmp_path), jobs=jobs, on_done=lambda task, result: done.append((task.key, result)))
    assert ran == 4 and totals(tmp_path) == {"a": 1, "b": 3, "c": 6, "d": 4}
    assert done.index(("a", 1)) < done.index(("b", 3)) < done.index(("c", 6))
    if jobs == 2:  # the work ran in worker processes, not here
        assert all(json.loads(p.read_text())["pid"] != os.getpid() for p in tmp_path.glob("*.json"))
    assert run_tasks(chain(tmp_path), jobs=jobs) == 0


def test_tasks_with_equal_keys_run_once_and_events_reach_the_driver(tmp_path):
    events = []
    tasks = chain(tmp_path) + [FileTask(tmp_path, "a", 100)]  # a second "a": the first one wins
    assert run_tasks(tasks, on_event=events.append) == 4
    assert totals(tmp_path)["a"] == 1 and "a -> 1" in events and "c -> 6" in events


def test_a_need_outside_the_run_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(TicketlabError, match="task b needs zz, which is not part of this run"):
        run_tasks([FileTask(tmp_path, "a", 1), FileTask(tmp_path, "b", 1, needs=("zz",))])
    assert totals(tmp_path) == {}


def test_unknown_executor_and_bad_jobs_list_the_way_out(tmp_path):
    with pytest.raises(TicketlabError, match="unknown executor 'dask'; valid names: local, ray"):
        run_tasks(chain(tmp_path), executor="dask")
    with pytest.raises(TicketlabError, match="jobs must be at least 1"):
        run_tasks(chain(tmp_path), jobs=0)
    with pytest.raises(TicketlabError, match="--address names a Ray cluster"):
        run_tasks(chain(tmp_path), address="127.0.0.1:6379")


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_task_stops_the_run_with_its_message_and_keeps_finished_work(tmp_path, jobs):
    tasks = [FileTask(tmp_path, "a", 1), FileTask(tmp_path, "b", 2, needs=("a",), fail=True)]
    with pytest.raises(TicketlabError, match="task b failed on purpose"):
        run_tasks(tasks, jobs=jobs)
    assert totals(tmp_path) == {"a": 1}


def test_a_second_driver_on_the_same_run_is_refused(tmp_path):
    lock = filelock.FileLock(tmp_path / ".lock")
    lock.acquire()
    try:
        code = textwrap.dedent(f"""
            import sys; sys.path.insert(0, {str(os.path.dirname(__file__))!r})
            from pathlib import Path
            from tasks_for_tests import FileTask, SuicideTask
            from ticketlab.engine import run_tasks
            from ticketlab.errors import TicketlabError
            try:
                run_tasks([FileTask(Path({str(tmp_path)!r}), "a", 1)])
            except TicketlabError as error:
                print(error)
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    finally:
        lock.release()
    assert "is being run by another process" in out and "run the command again to continue" in out
    assert totals(tmp_path) == {}


def test_the_guard_passes_while_another_process_holds_the_lock_and_stops_a_worker_after(tmp_path):
    path = tmp_path / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import filelock, time
        lock = filelock.FileLock({str(path)!r}); lock.acquire(); print("held", flush=True); time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        LockGuard([path])()  # the driver is alive: no error
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(DriverGone, match="is gone; this worker stops without writing"):
        LockGuard([path])()


def test_a_killed_worker_gives_a_clear_message(tmp_path):
    with pytest.raises(TicketlabError, match="a worker process died"):
        run_tasks([FileTask(tmp_path, "a", 1), SuicideTask(tmp_path, "b", 1, needs=("a",))], jobs=2)
    assert totals(tmp_path) == {"a": 1}
