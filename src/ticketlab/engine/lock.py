"""Run locks: one driver per run folder, and no writes once that driver is gone.

The driver takes an exclusive `flock` on `<run folder>/.lock` for as long as it runs; the
kernel drops it the moment the driver dies, even by SIGKILL. A worker (a child process or a
Ray worker) checks before each write that the lock is still held, by trying to take it
itself: if it can, its driver is gone and it stops without writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterable, Iterator

import filelock

from ticketlab.errors import TicketlabError


class DriverGone(TicketlabError):
    """The driver that holds a run's lock died: this worker must not write."""


def not_writable(runs_dir: Path | str, error: OSError) -> TicketlabError:
    """One line for a write the file system refused under `runs_dir` (read-only media, no
    permission, a full disk), naming the file and the way out."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(runs_dir) else ""
    full = error.errno == errno.ENOSPC or "full" in reason
    hint = "free some space or pass --runs-dir another folder" if full else "pass --runs-dir a writable folder"
    return TicketlabError(f"runs dir {runs_dir} is not writable: {reason}{where}; {hint}")


@contextlib.contextmanager
def folder_lock(path: Path, runs_dir: Path) -> Iterator[None]:
    """Hold the blocking lock `path` (in `runs_dir`); a folder that refuses the lock file is one line."""
    try:
        lock = filelock.FileLock(path)
        lock.acquire()
    except OSError as error:
        raise not_writable(runs_dir, error) from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def held_locks(paths: Iterable[Path], what: str = "run") -> Iterator[None]:
    """Hold every lock in `paths` (or none: a lock held elsewhere is refused with a message)."""
    locks = []
    try:
        for path in sorted(set(paths)):
            lock = filelock.FileLock(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                lock.acquire(timeout=0)
            except filelock.Timeout:
                raise TicketlabError(
                    f"{what} {path.parent.name} is being run by another process (lock {path}); "
                    "wait for it to finish, then run the command again to continue"
                ) from None
            except OSError as error:  # a run's lock is <runs dir>/<run>/.lock, a study's <runs dir>/studies/.lock
                raise not_writable(path.parent.parent, error) from None
            locks.append(lock)
        yield
    finally:
        for lock in reversed(locks):
            lock.release()


class LockGuard:
    """`check()` raises DriverGone unless some other process holds every one of `paths`."""

    def __init__(self, paths: Iterable[Path]):
        self.paths = tuple(paths)

    def __call__(self) -> None:
        import fcntl

        for path in self.paths:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held by the driver, as it should be
            finally:
                os.close(fd)  # also drops the lock if we just took it
            raise DriverGone(f"the process that ran this job (lock {path}) is gone; this worker stops "
                             "without writing. Run the command again to continue.")


def no_check() -> None:
    """The guard of tasks that run inside the driver, which holds the locks itself."""
