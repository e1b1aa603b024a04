"""The slurm executor: its settings and errors everywhere, and against a real one-node Slurm
(Debian's slurm-wlm; started by .ci/slurm-up where it is installed and we are root, else
those tests are skipped with the reason and the way to run them).

The Slurm story is one test, because each step needs the one before and pytest-xdist would
otherwise run a shared fixture once per worker: a digits IMP study submitted while a blocker
job holds every CPU, its driver killed with -9 while the jobs are queued and started again,
then an IMP line job cancelled with scancel mid-way. It must end with the local executor's
level table, bit for bit, without a job submitted twice or a finished level trained twice.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import slurm_cluster
from tasks_for_tests import FileTask, SuicideTask
from ticketlab.engine import run_tasks
from ticketlab.cli import main
from ticketlab.engine.slurm import commands
from ticketlab.engine.slurm.records import JobRecord, TaskFiles, atomic_write, records_in
from ticketlab.engine.slurm.settings import SlurmSettings, load_settings
from ticketlab.engine.slurm.status import summary, table, task_jobs
from ticketlab.errors import TicketlabError
from ticketlab.store import ResultsStore

# A tiny digits study: 2 seeds, dense level + 3 IMP levels each, long enough per level (about
# a second) that an IMP line can be cancelled between its levels.
LEVELS = 3
STUDY = ["imp", "--dataset", "digits", "--levels", str(LEVELS), "--iterations", "200", "--eval-every", "100",
         "--seeds", "0,1"]
FAST = "[executor]\npoll = 0.5\nmax_tries = 2\n"  # watch the queue twice a second; one resubmission


# ---------------------------------------------------------------- without Slurm


def test_settings_load_from_an_executor_table_and_refuse_what_they_do_not_know(tmp_path):
    path = tmp_path / "slurm.toml"
    path.write_text('seeds = [0]\n[executor]\npartition = "gpu"\ntime = "01:30:00"\ncpus_per_task = 4\n'
                    'mem = "8G"\nsbatch_flags = ["--qos=short"]\n')
    settings = load_settings(path)
    assert settings.sbatch_options(gpus=1) == ["--cpus-per-task=4", "--partition=gpu", "--time=01:30:00",
                                               "--mem=8G", "--gpus-per-task=1", "--qos=short"]
    (tmp_path / "plain.toml").write_text("seeds = [0]\n")  # a spec without the table: the cluster's defaults
    assert load_settings(tmp_path / "plain.toml") == SlurmSettings()
    for text, message in (('[executor]\npartiton = "x"\n', "unknown field 'partiton'; valid fields: partition"),
                          ('[executor]\ncpus_per_task = "4"\n', "cpus_per_task must be an integer"),
                          ("[executor]\nmax_tries = 0\n", "max_tries must be at least 1"),
                          ('[executor]\nsbatch_flags = "--qos=x"\n', "sbatch_flags must be a list of strings")):
        path.write_text(text)
        with pytest.raises(TicketlabError, match=message):
            load_settings(path)


def test_slurms_complaints_become_one_line():
    stderr = ("sbatch: error: invalid partition specified: nope\n"
              "sbatch: error: Batch job submission failed: Invalid partition name specified\n")
    assert commands.reason(stderr) == ("invalid partition specified: nope; Batch job submission failed: "
                                       "Invalid partition name specified")
    assert commands.reason("sbatch: error: resolve_ctls_from_dns_srv: res_nsearch error\n"
                           "sbatch: fatal: Could not establish a configuration source\n").startswith("no slurm.conf")


def test_no_slurm_on_the_machine_is_one_line_before_anything_is_recorded(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    code = main(STUDY[:1] + ["--dataset", "digits", "--levels", "1", "--executor", "slurm",
                             "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "Slurm's sbatch is not on PATH: --executor slurm runs where Slurm's commands do" in err
    assert not (tmp_path / "runs").exists()


def test_a_job_result_counts_only_for_the_job_in_the_record(tmp_path):
    files = TaskFiles(tmp_path, "run/seed_0/imp")
    files.write_task(("task", "events"))
    (tmp_path / f"{files.stem}.error").write_text(json.dumps({"job_id": "7_0", "message": "boom", "retry": False}))
    assert files.outcome("7_0").error == "boom"
    assert files.outcome("9_0") is None  # an earlier job's error is not the new job's
    files.write_task(("task", "events"))  # submitting again clears it
    assert files.outcome("7_0") is None


def test_runs_and_show_name_each_unfinished_task_with_its_job_and_log(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    folder = run_dir / "slurm"
    states = {"a": ("1_0", "PENDING"), "b": ("1_1", "RUNNING"), "c": ("2_0", "TIMEOUT"), "d": ("3_0", None),
              "e": ("4_0", "COMPLETED")}
    for key, (job, _) in states.items():
        files = TaskFiles(folder, key)
        files.write_record(JobRecord(key=key, name="ticketlab-run", token="t", index=0, tries=1, submitted=0.0,
                                     job_id=job, log=f"/logs/{job}.log"))
    atomic_write(TaskFiles(folder, "e").path(".result"), pickle.dumps({"job_id": "4_0", "result": None}))
    fake = {job: commands.QueuedJob(job, state, "t") for job, state in states.values() if state}
    monkeypatch.setattr(commands, "queue", lambda names: fake if names == {"ticketlab-run"} else {})
    jobs = {job.key: job for job in task_jobs([run_dir])[run_dir]}
    assert [(jobs[k].state, jobs[k].job_id, jobs[k].log) for k in "abcde"] == [
        ("queued", "1_0", "/logs/1_0.log"), ("running", "1_1", "/logs/1_1.log"), ("failed", "2_0", "/logs/2_0.log"),
        ("failed", "3_0", "/logs/3_0.log"), ("finished", "4_0", "/logs/4_0.log")]
    assert summary(list(jobs.values())) == "slurm: 1 running, 1 queued, 2 failed"
    assert "TIMEOUT" in table(list(jobs.values())) and "4_0" not in table(list(jobs.values()))


def test_a_run_without_slurm_jobs_asks_slurm_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(commands, "queue", lambda names: pytest.fail("squeue was called"))
    (tmp_path / "run").mkdir()
    assert task_jobs([tmp_path / "run"]) == {}


# ---------------------------------------------------------------- against a real Slurm


@pytest.fixture(scope="session")
def slurm():
    """SLURM_CONF of a running one-node Slurm (started here if need be), or a skip that says why."""
    reason = slurm_cluster.why_not()
    if reason is None:
        conf, reason = slurm_cluster.start()
    if reason:
        pytest.skip(f"{reason}; {slurm_cluster.HOW}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    yield conf
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    slurm_cluster.stop()


@pytest.mark.parametrize("table, says", [
    ('partition = "no_such_partition"', "invalid partition specified: no_such_partition"),
    ('time = "99:00:00"', "Requested time limit is invalid"),
])
def test_settings_slurm_refuses_are_one_line_before_anything_is_submitted(slurm, tmp_path, capsys, table, says):
    (tmp_path / "slurm.toml").write_text(f"[executor]\n{table}\n")
    code = main(STUDY[:1] + ["--dataset", "digits", "--levels", "1", "--executor", "slurm",
                             "--address", str(tmp_path / "slurm.toml"), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Slurm refuses jobs with" in err and says in err
    assert not (tmp_path / "runs").exists()  # nothing recorded, so nothing submitted


@pytest.fixture
def tiny_tasks(slurm, tmp_path, monkeypatch):
    """Settings for jobs of the engine's tiny test tasks: importable in the job, watched closely."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    settings = tmp_path / "slurm.toml"
    settings.write_text(FAST)
    return str(settings)


def test_a_task_error_comes_back_as_one_line_with_its_job_and_log(tiny_tasks, tmp_path):
    tasks = [FileTask(tmp_path, "a", 1), FileTask(tmp_path, "b", 2, needs=("a",), fail=True)]
    with pytest.raises(TicketlabError, match=r"task b failed on purpose \(task b, Slurm job \d+_0, log .*\.log\)"):
        run_tasks(tasks, executor="slurm", address=tiny_tasks)
    assert json.loads((tmp_path / "a.json").read_text())["total"] == 1  # what finished is kept


def test_a_job_that_keeps_dying_is_resubmitted_then_left_for_the_next_command(tiny_tasks, tmp_path):
    with pytest.raises(TicketlabError, match=r"task x: Slurm job \d+_0 ended \w+ without finishing \(2 tries in this "
                                             r"command; log .*\); finished work is kept: run the same command again"):
        run_tasks([SuicideTask(tmp_path, "x", 1)], executor="slurm", address=tiny_tasks)
    assert len(sacct_states(f"ticketlab-{tmp_path.name}", tmp_path)) == 2  # max_tries = 2


def table_of(runs: Path, run_id: str, capsys) -> str:
    capsys.readouterr()
    assert main(["show", run_id, "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    return out[out.index("|"):].split("\nSlurm jobs")[0]  # the table and its sentence


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def driver(command: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    """`ticketlab <command>` in its own process (its jobs' Slurm work dir `cwd`), output in `log`."""
    return subprocess.Popen([sys.executable, "-m", "ticketlab", *command], stdout=log.open("w"), cwd=cwd,
                            stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"})


def jobs_of(run_dir: Path) -> dict[str, str]:
    """{task key: job id} of the run's records that have a job id."""
    return {record.key: record.job_id for _, record in records_in(run_dir) if record.job_id}


def finished_level_one(run_dir: Path) -> tuple[int] | None:
    """The seed of an IMP line whose job log says level 1 is finished, if any."""
    for log in (run_dir / "slurm" / "logs").glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if " imp " in line and "level  1" in line:
                return (int(line.split()[1]),)  # a tuple: seed 0 is a find too
    return None


def sacct_states(name: str, workdir: Path) -> list[str]:
    """The end state of every job named `name` submitted from `workdir`, as `sacct` (reading the
    controller's job-completion log) lists them."""
    out = commands.slurm("sacct", "--completion", "--noheader", "--parsable2", "--format=jobname,workdir,state")
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
    return sorted(state for job_name, where, state in rows if job_name == name and where == str(workdir))


def out_of(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


def test_a_study_survives_kill_9_and_scancel_and_gives_the_local_table(slurm, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # every job of this test has this Slurm work dir: sacct tells them from others'
    settings = tmp_path / "slurm.toml"
    settings.write_text(FAST)
    runs = tmp_path / "slurm"
    command = STUDY + ["--executor", "slurm", "--address", str(settings), "--jobs", "2", "--runs-dir", str(runs)]
    cpus = int(commands.slurm("sinfo", "--noheader", "--format=%c").split()[0])
    blocker = commands.slurm("sbatch", "--parsable", "--job-name=ticketlab-test-blocker", f"--cpus-per-task={cpus}",
                             "--output=/dev/null", "--wrap", "sleep 600").strip()
    drivers = [driver(command, tmp_path / "first.log", tmp_path)]
    try:
        # The local executor's table meanwhile, in this process.
        assert main(STUDY + ["--runs-dir", str(tmp_path / "local")]) == 0
        run_id = ResultsStore(tmp_path / "local", readonly=True).runs()[0][0]
        run_dir, name = runs / run_id, f"ticketlab-{run_id}"
        local = table_of(tmp_path / "local", run_id, capsys)

        # Both dense levels wait behind the blocker, as one array; runs and show say so.
        queued = wait_for(lambda: len(jobs_of(run_dir)) == 2 and jobs_of(run_dir), "both dense jobs queued", 240)
        assert len({job.split("_")[0] for job in queued.values()}) == 1
        assert {commands.queue({name})[job].state for job in queued.values()} == {"PENDING"}
        assert out_of(capsys, ["runs", "--runs-dir", str(runs)]).splitlines()[-1].endswith("slurm: 2 queued")
        shown = out_of(capsys, ["show", run_id, "--runs-dir", str(runs)])
        for key, job in queued.items():
            assert f"{key}  queued   {job:<10} {run_dir / 'slurm' / 'logs' / job}.log  (PENDING)" in shown

        # kill -9 the driver while they are queued; start it again; it adopts them.
        os.kill(drivers[0].pid, signal.SIGKILL)
        drivers[0].wait()
        drivers.append(driver(command, tmp_path / "second.log", tmp_path))
        wait_for(lambda: "adopted, not submitted again" in (tmp_path / "second.log").read_text(),
                 "the second driver to adopt the queued jobs", 240)
        commands.cancel([blocker])

        # scancel the first IMP line whose job has finished level 1 (of 3); wait for it to end.
        (seed,) = wait_for(lambda: finished_level_one(run_dir), "an IMP line's level 1", 240)
        victim = jobs_of(run_dir)[f"{run_id}/seed_{seed}/imp"]
        commands.cancel([victim])
        wait_for(lambda: not commands.is_live(commands.queue({name})[victim].state), f"job {victim} to end")
        before = {(r.seed, r.branch, r.level): r.finished for r in ResultsStore(runs, readonly=True).levels(run_id)}
        assert drivers[1].wait(timeout=240) == 0, (tmp_path / "second.log").read_text()
    finally:
        for process in drivers:
            process.kill()
        commands.cancel([blocker])
    second = (tmp_path / "second.log").read_text()
    assert f"slurm: job {victim} of task {run_id}/seed_{seed}/imp ended CANCELLED without finishing" in second

    # The same command again: nothing submitted, the local executor's table bit for bit.
    assert "slurm: submitted" not in out_of(capsys, command)
    assert table_of(runs, run_id, capsys) == local

    # No finished level trained twice: each level finished before the scancel kept its time;
    # the cancelled line had finished level 1 and not its last level.
    after = {(r.seed, r.branch, r.level): r.finished for r in ResultsStore(runs, readonly=True).levels(run_id)}
    assert [key for key, finished in before.items() if after[key] != finished] == []
    assert (seed, "imp", 1) in before and (seed, "imp", LEVELS) not in before

    # No job submitted twice (sacct): one per task (2 dense levels, 2 IMP lines) and the
    # cancelled one's resubmission.
    assert sacct_states(name, tmp_path) == ["CANCELLED"] + ["COMPLETED"] * 4
