"""The Slurm executor's evidence on a real Slurm (issue 25; docs/slurm.md), printed as counts.

A digits IMP study (2 seeds, `--levels` levels, `--jobs 2`) runs with `--executor slurm`
through the issue's three accidents, then its table is compared with the local executor's:

1. every CPU held by a blocker job, so the dense levels wait in the queue as one array; the
   driver is killed with SIGKILL and started again (it should adopt them, not resubmit);
2. once an IMP line's job has finished level 1, that job is cancelled with scancel; with
   `max_tries = 1` the driver stops with one line, and the same command is run again;
3. the level tables, every level's `finished` time before and after, and every job sacct
   lists for the run (by name and work dir) are counted.

    .ci/slurm-up && export SLURM_CONF=/tmp/ticketlab-slurm/slurm.conf
    python benchmarks/slurm_evidence.py --out /tmp/slurm-evidence
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from ticketlab.engine.slurm import commands
from ticketlab.engine.slurm.records import records_in
from ticketlab.store import ResultsStore


def wait_for(condition, what: str, timeout: float = 600.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


def ticketlab(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ticketlab", *args], cwd=cwd, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"})


def table(runs: Path, run_id: str) -> str:
    out = subprocess.run([sys.executable, "-m", "ticketlab", "show", run_id, "--runs-dir", str(runs)],
                         capture_output=True, text=True, check=True).stdout
    return out[out.index("|"):].split("\nSlurm jobs")[0]


def finished(runs: Path, run_id: str) -> dict:
    return {(r.seed, r.branch, r.level): r.finished for r in ResultsStore(runs, readonly=True).levels(run_id)}


def level_one_seed(run_dir: Path) -> tuple[int] | None:
    for log in (run_dir / "slurm" / "logs").glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if " imp " in line and "level  1" in line:
                return (int(line.split()[1]),)  # a tuple: seed 0 is a find too
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the runs, logs and jobs' work dir")
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    out = args.out.absolute()
    out.mkdir(parents=True)
    study = ["imp", "--dataset", "digits", "--levels", str(args.levels), "--iterations", str(args.iterations),
             "--seeds", "0,1"]
    (out / "slurm.toml").write_text("[executor]\npoll = 1\nmax_tries = 1\n")
    command = study + ["--executor", "slurm", "--address", str(out / "slurm.toml"), "--jobs", "2",
                       "--runs-dir", str(out / "slurm")]
    started = time.perf_counter()
    cpus = int(commands.slurm("sinfo", "--noheader", "--format=%c").split()[0])
    blocker = commands.slurm("sbatch", "--parsable", "--job-name=evidence-blocker", f"--cpus-per-task={cpus}",
                             "--output=/dev/null", "--wrap", "sleep 900").strip()
    first = ticketlab(command, out / "driver1.log", out)
    assert ticketlab(study + ["--jobs", "2", "--runs-dir", str(out / "local")], out / "local.log", out).wait() == 0
    run_id = ResultsStore(out / "local", readonly=True).runs()[0][0]
    run_dir, name = out / "slurm" / run_id, f"ticketlab-{run_id}"
    jobs = lambda: {r.key: r.job_id for _, r in records_in(run_dir) if r.job_id}  # noqa: E731
    queued = wait_for(lambda: len(jobs()) == 2 and jobs(), "two queued dense jobs")
    states = commands.queue({name})
    print(f"1. queued behind blocker {blocker}: " + ", ".join(f"{k} = {j} {states[j].state}" for k, j in queued.items()))
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    print("   driver 1 killed with SIGKILL; driver 2 started with the same command")
    second = ticketlab(command, out / "driver2.log", out)
    wait_for(lambda: "adopted" in (out / "driver2.log").read_text(), "driver 2 to adopt the jobs")
    print("   driver 2: " + next(line for line in (out / "driver2.log").read_text().splitlines() if "adopted" in line))
    commands.cancel([blocker])
    (seed,) = wait_for(lambda: level_one_seed(run_dir), "an IMP line's level 1")
    victim = jobs()[f"{run_id}/seed_{seed}/imp"]
    commands.cancel([victim])
    code = second.wait()
    wait_for(lambda: not any(commands.is_live(job.state) for job in commands.queue({name}).values()),
             "every job of the run to end")
    before = finished(out / "slurm", run_id)
    log2 = (out / "driver2.log").read_text().strip().splitlines()
    print(f"2. scancel {victim} (seed {seed}'s IMP line, after its level 1); driver 2 exit code {code}: {log2[-1]}")
    print(f"   driver 2 on its way out: {next((line for line in log2 if 'cancelled job' in line), 'cancelled nothing')}; "
          f"{len(before)} levels in the store")
    third = ticketlab(command, out / "driver3.log", out)
    assert third.wait() == 0, (out / "driver3.log").read_text()
    after = finished(out / "slurm", run_id)
    retrained = [key for key, when in before.items() if after[key] != when]
    print(f"   the same command again: exit 0; levels trained by it {len(after) - len(before)}, "
          f"levels finished before the scancel retrained: {len(retrained)}")
    same = table(out / "slurm", run_id) == table(out / "local", run_id)
    print(f"3. level table (show) equal to the local executor's, bit for bit: {same} ({len(after)} level rows)")
    # sacct lists each array element under its own job id; squeue (within MinJobAge) names it <array>_<index>.
    element = dict(line.split("|") for line in commands.slurm(
        "squeue", "--noheader", "--states=all", "--array", f"--name={name}", "--format=%A|%i").split())
    task_of = {r.job_id: r.key for _, r in records_in(run_dir)}
    for log in (run_dir / "slurm" / "logs").glob("*.log"):
        first_line = log.read_text().splitlines()[0].split()
        task_of[first_line[2]] = first_line[5]  # "slurm: job <id> runs task <key> on <node>"
    rows = [line.split("|") for line in commands.slurm(
        "sacct", "--completion", "--noheader", "--parsable2", "--format=jobid,jobname,workdir,state").splitlines()]
    ours = [(element.get(job, job), state) for job, job_name, where, state in rows  # this run's, not an earlier one's
            if job_name == name and where == str(out) and int(job) > int(blocker)]
    per_task = Counter(task_of.get(job, "?") for job, _ in ours)
    print(f"   sacct: {len(ours)} jobs for {len(per_task)} tasks; " + "; ".join(
        f"{task}: {', '.join(f'{job} {state}' for job, state in sorted(ours) if task_of.get(job) == task)}"
        for task in sorted(per_task)))
    dense = {task: n for task, n in per_task.items() if task in queued}
    print(f"   jobs of the tasks queued at the kill -9: {dense} (submitted by driver 1, adopted by driver 2); "
          f"wall time {time.perf_counter() - started:.0f} s")
    return 0 if same and not retrained else 1


if __name__ == "__main__":
    sys.exit(main())
