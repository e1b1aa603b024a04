"""Evidence: kill -9 at any moment loses no finished level and leaves no worker behind.

`--drivers N` (issue 16): N times, start `ticketlab imp` with two worker processes, SIGKILL
the driver after a random 0-3 s, and check within 5 s that no process of it is left; then
`--late M` more kills 5-25 s in, while levels finish. Then finish the run and compare its
`ticketlab show` table byte for byte with an uninterrupted run in another store.

`--ray` (issue 11): a sweep on a local Ray cluster; SIGKILL one Ray worker mid-level, later
the driver; snapshot the store's (level, finished time) pairs; rerun; every level finished
before the rerun keeps its time (none was trained twice), counted from the store.

    python benchmarks/engine_kill.py --drivers 20 --ray
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

IMP = ["imp", "--levels", "6", "--seeds", "0,1", "--baselines", "reinit", "--iterations", "600", "--eval-every", "100"]
SWEEP = """
[spec]
pruning = { levels = 4 }
training = { iterations = 800, eval_every = 100 }
[grid]
seeds = [0, 1]
"pruning.criterion" = ["large_final", "random"]
"""


def ticketlab(*argv: str, env: dict | None = None, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ticketlab", *argv], env=env, **options)


def marked(mark: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark.encode() in (entry / "environ").read_bytes():
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def show(runs: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "ticketlab", "runs", "--runs-dir", str(runs)],
                         capture_output=True, text=True).stdout
    run_id = out.splitlines()[1].split()[0]
    out = subprocess.run([sys.executable, "-m", "ticketlab", "show", run_id, "--runs-dir", str(runs)],
                         capture_output=True, text=True).stdout
    return out.split("\n", 1)[1]  # the first line names the store's folder


def finished(runs: Path) -> dict[tuple, float]:
    with sqlite3.connect(f"file:{runs / 'results.sqlite'}?mode=ro", uri=True) as db:
        return {row[:4]: row[4] for row in db.execute("SELECT run_id, seed, branch, level, finished FROM levels")}


def kill_drivers(times: int, late: int, root: Path, rng: random.Random) -> None:
    """`times` kills 0-3 s after the start (the issue's), then `late` kills 5-25 s after it,
    when levels are finishing, so the rerun has finished levels to keep."""
    runs = root / "killed"
    left_total = 0
    for attempt in range(times + late):
        mark = uuid.uuid4().hex
        driver = ticketlab(*IMP, "--jobs", "2", "--runs-dir", str(runs), env=os.environ | {"TL_MARK": mark},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0, 3) if attempt < times else rng.uniform(5, 25)
        time.sleep(delay)
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 5
        while marked(f"TL_MARK={mark}") and time.monotonic() < deadline:
            time.sleep(0.05)
        left = marked(f"TL_MARK={mark}")
        left_total += len(left)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        levels = len(finished(runs)) if (runs / "results.sqlite").exists() else 0
        print(f"kill {attempt + 1:>2} after {delay:.2f} s: {len(left)} processes left after 5 s; "
              f"{levels} levels in the store", flush=True)
    subprocess.run([sys.executable, "-m", "ticketlab", *IMP, "--jobs", "2", "--runs-dir", str(runs)],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "ticketlab", *IMP, "--jobs", "2", "--runs-dir", str(root / "clean")],
                   check=True, capture_output=True)
    same = show(runs) == show(root / "clean")
    print(f"\n{times + late} driver kills: {left_total} processes outlived their driver by 5 s; the finished run's "
          f"table is {'byte-identical to' if same else 'DIFFERENT from'} an uninterrupted run's\n", flush=True)


def kill_ray(root: Path) -> None:
    runs = root / "ray"
    sweep = root / "sweep.toml"
    sweep.write_text(SWEEP)
    argv = ["sweep", str(sweep), "--executor", "ray", "--jobs", "2", "--runs-dir", str(runs)]
    log = open(root / "ray.log", "w")
    driver = ticketlab(*argv, stdout=log, stderr=subprocess.STDOUT)
    while not (runs / "results.sqlite").exists() or len(finished(runs)) < 4:
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-f", "ray::run_in_ray_worker"], capture_output=True, text=True).stdout.split()
    if workers:
        os.kill(int(workers[0]), signal.SIGKILL)
    print(f"killed Ray worker {workers[0] if workers else '(none busy)'} with "
          f"{len(finished(runs))} levels in the store", flush=True)
    target = len(finished(runs)) + 4
    while len(finished(runs)) < target and driver.poll() is None:
        time.sleep(0.2)
    driver.kill()
    driver.wait()
    subprocess.run(["ray", "stop", "--force"], capture_output=True)
    before = finished(runs)
    print(f"killed the driver with {len(before)} levels in the store", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ticketlab", *argv], check=True, stdout=log, stderr=subprocess.STDOUT)
    after = finished(runs)
    retrained = [key for key, when in before.items() if after.get(key) != when]
    print(f"rerun: {time.perf_counter() - started:.1f} s; {len(after)} levels now ({len(after) - len(before)} new), "
          f"{len(retrained)} of the {len(before)} finished before it trained again{': ' if retrained else ''}"
          f"{retrained or ''}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", type=int, default=20, help="driver kills (0: none)")
    parser.add_argument("--late", type=int, default=5, help="further kills 5-25 s after the start")
    parser.add_argument("--ray", action="store_true", help="also the Ray worker + driver kill")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill delays")
    args = parser.parse_args()
    print(f"seed {args.seed}; {os.cpu_count()} cores; {sys.platform}\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.drivers:
            kill_drivers(args.drivers, args.late, Path(tmp), random.Random(args.seed))
        if args.ray:
            kill_ray(Path(tmp))


if __name__ == "__main__":
    main()
