"""No worker outlives its driver (issue: kill -9 of the driver in its first second left its
workers training, and writing levels without the run's lock, for ever)."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("death signals and /proc are Linux's", allow_module_level=True)


def marked(mark: str) -> list[int]:
    """Pids of live processes whose environment carries `mark`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("delay", [0.0, 0.3, 2.0])
def test_workers_die_with_a_driver_killed_at_any_moment(tmp_path, delay):
    """The issue's reproduction: kill -9 the driver `delay` s after it has 3 children (its
    resource tracker and two workers, still importing torch at 0-0.3 s)."""
    mark = f"TICKETLAB_TEST_MARK={uuid.uuid4().hex}"
    name, value = mark.split("=")
    driver = subprocess.Popen(
        [sys.executable, "-m", "ticketlab", "imp", "--levels", "10", "--seeds", "0,1", "--baselines", "reinit",
         "--iterations", "1500", "--jobs", "2", "--runs-dir", str(tmp_path)],
        env=os.environ | {name: value}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(children(driver.pid)) < 3 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 5
    while marked(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = marked(mark)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"{len(left)} processes outlived their driver by 5 s"
