"""GPU check: every `--device` path of ticketlab on one device, one PASS/FAIL/SKIP line per step.

Written to be run once on a lent GPU (issue 23, item 1), and run here on the CPU with
`--device cpu` to show that the script itself works. Every step runs on `--device`, catches its
own failure and the next step starts anyway, so one run shows every failure; a summary table
(step, PASS/FAIL/SKIP, seconds) ends the output and the exit status is 1 when a step failed.
Tiny data (the bundled `digits`, tests/tinydata.py) and tiny budgets: a few minutes on a GPU.

Steps (`--only a,b` / `--skip a,b` pick them by name):

  preflight     the device, torch, and which optional packages are importable here
  epoch         (run last) one full ResNet-20 epoch on cifar10-jpeg (batch 128, the recipe's
                SGD, augmentation), fp32 then bf16: seconds per epoch (`--skip-epoch` skips it;
                needs --data-dir)
  determinism   a 2-level IMP of resnet8_4 (late rewinding, reinit) on random 3x8x8 blobs,
                twice: every mask and weight file equal (bitwise on the CPU and with
                --deterministic; otherwise the largest difference is printed)
  imp           `ticketlab imp` on digits, 2 seeds x 2 levels, baselines reinit and random_mask
                (the reference table of the later steps): every level recorded, pruned weights
                exactly zero, reinit keeps the IMP mask, random_mask its per-layer counts
  methods       every one-level method (SNIP, GraSP, SynFlow, GMP, prune-each-epoch, RigL, SET,
                Early-Bird) through the engine on the device and on the CPU: levels recorded,
                masks keep the CPU's count exactly, pruned weights exactly zero
  supermask     `supermask learn` (bernoulli, edge_popup with --out) and `supermask init-masks`
  reproduce     `reproduce zhou2019`, one tiny row (fc on digits, 1 epoch)
  combine       `combine` of the two seeds' level-1 tickets (fine-tuned), and `franken` (its
                isolated Frankenmodel leaves the A logits unchanged)
  export        `export` of a level of the imp step's run (trained on the device), every format
  sparse        `imp --sparse-training 0.9`: handled (the table equals the dense one up to
                rounding) or refused with one clear line; a traceback fails
  ray           `imp --executor ray --jobs 2 --device D`: on CUDA each task requests a GPU share
                (num_gpus); the table equals the local one. Off CUDA it still runs, then says
                "skipped: not CUDA"
  compile       `train(compile=True)` against eager on LeNet with a mask: weights equal up to
                rounding, masks exact, and `imp --compile` gives the reference table
  stack         `imp --stack auto` (on the CPU, where auto stacks nothing, `--stack 4`): how the
                engine grouped the tasks, and the table equal to `--stack off`'s per level
  resume        `imp` in a subprocess killed with SIGKILL after its second level, no worker left
                behind, then the same command again: the table equals the uninterrupted one
  profile       torch.profiler over the training loop (LeNet with Adam, Conv-2 with SGD and
                augmentation; masks on): host synchronisations (cudaStreamSynchronize,
                cudaDeviceSynchronize, cudaEventSynchronize, Memcpy DtoH) per step outside
                evaluation, from runs of 25 and 75 steps (same evaluations, so the difference
                is 50 steps' worth); where they come from. Off CUDA: skipped
  pytest        `python -m pytest -q tests -k "cuda or device"` in a subprocess

    PYTHONPATH=src python benchmarks/gpu_check.py --device cuda --data-dir DATA [--budget 540] [--out DIR]
    python benchmarks/gpu_check.py --device cpu --skip-epoch            # the CPU run of the script

(docs/networks.md, "GPU check", gives the exact command for a lent GPU.)

With --out, the whole log (gpu_check.log), the profiler trace (profile_trace.json.gz) and the
summary (summary.txt) are written there.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "tests", ROOT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


class Skip(Exception):
    """The step does not apply here (the message says why)."""


class Fail(Exception):
    """The step ran and found a problem (the message says which)."""


@dataclass
class Context:
    args: argparse.Namespace
    device: torch.device
    root: Path  # a temporary folder for this run's stores
    log: io.TextIOBase  # the whole log (every command's output)
    out: Path | None
    state: dict = field(default_factory=dict)  # what one step leaves for later ones

    @property
    def dev(self) -> str:
        return str(self.device)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def say(self, text: str) -> None:
        """A line on the console and in the log."""
        print(text, file=sys.__stdout__, flush=True)  # the console, also while a command's output is captured
        print(text, file=self.log, flush=True)


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


# ---------------------------------------------------------------------------------------------
# running commands


def cli(ctx: Context, argv: list[str], expect: int | None = 0) -> tuple[int, str]:
    """`ticketlab ARGV` in this process (no import cost), its output captured into the log;
    a different exit status than `expect` fails the step with the command's last line."""
    from ticketlab.cli import main

    buffer = io.StringIO()
    print(f"$ ticketlab {' '.join(argv)}", file=ctx.log, flush=True)
    with contextlib.redirect_stdout(Tee(buffer, ctx.log)), contextlib.redirect_stderr(Tee(buffer, ctx.log)):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    text = buffer.getvalue()
    if code in (130, 143):  # the command was interrupted (Ctrl-C, SIGTERM): stop the script, not just the step
        raise KeyboardInterrupt
    if expect is not None and code != expect:
        raise Fail(f"`ticketlab {' '.join(argv[:2])} ...` exited {code}: {last_line(text)}\n{tail(text)}")
    return code, text


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def run_subprocess(ctx: Context, command: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, str]:
    print(f"$ {' '.join(command)}", file=ctx.log, flush=True)
    try:
        done = subprocess.run(command, cwd=cwd or ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired as error:
        text = error.stdout if isinstance(error.stdout, str) else (error.stdout or b"").decode(errors="replace")
        print(text, file=ctx.log, flush=True)
        raise Fail(f"`{' '.join(command[2:5])} ...` did not finish in {timeout:.0f} s\n{tail(text)}") from None
    print(done.stdout, file=ctx.log, flush=True)
    return done.returncode, done.stdout


def ticketlab_command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "ticketlab", *argv]


# ---------------------------------------------------------------------------------------------
# stores and their comparison


def the_run(runs_dir: Path) -> str:
    runs = sorted(p.name for p in runs_dir.iterdir() if (p / "spec.toml").is_file())
    if len(runs) != 1:
        raise Fail(f"expected one run in {runs_dir}, found {runs}")
    return runs[0]


def level_table(runs_dir: Path) -> tuple[str, dict]:
    from ticketlab.store import ResultsStore

    run = the_run(runs_dir)
    return run, {(r.seed, r.branch, r.level): r for r in ResultsStore(runs_dir).levels(run)}


def level_files(runs_dir: Path, run: str, key: tuple) -> Path:
    seed, branch, level = key
    return runs_dir / run / f"seed_{seed}" / branch / f"level_{level}"


def digits_test_size() -> int:
    from ticketlab.data import load_dataset

    return len(load_dataset("digits", None).test)


def compare_tables(ctx: Context, a_dir: Path, b_dir: Path, examples: int = 2, flips: float = 1e-3) -> str:
    """Fail unless the two stores hold the same levels with the same kept counts, test
    accuracies within `examples` test examples, and masks that differ in at most a `flips`
    fraction of kept weights (rounding can move a weight across the pruning threshold); the
    largest differences as one line."""
    from ticketlab.store import load_tensors

    run_a, a = level_table(a_dir)
    run_b, b = level_table(b_dir)
    if run_a != run_b:
        raise Fail(f"different run ids: {run_a} and {run_b}")
    if a.keys() != b.keys():
        raise Fail(f"different levels: only in {a_dir.name}: {sorted(a.keys() - b.keys())}; "
                   f"only in {b_dir.name}: {sorted(b.keys() - a.keys())}")
    n_test = ctx.state.setdefault("digits_test", digits_test_size())
    problems, worst_acc, worst_weight, flipped, kept_total = [], 0, 0.0, 0, 0
    for key in sorted(a):
        ra, rb = a[key], b[key]
        if (ra.kept, ra.total) != (rb.kept, rb.total):
            problems.append(f"{key}: kept {ra.kept}/{ra.total} against {rb.kept}/{rb.total}")
        acc = round(abs(ra.final_test_acc - rb.final_test_acc) * n_test)
        worst_acc = max(worst_acc, acc)
        if acc > examples:
            problems.append(f"{key}: final test acc {ra.final_test_acc:.2%} against {rb.final_test_acc:.2%}")
        fa, fb = level_files(a_dir, run_a, key), level_files(b_dir, run_b, key)
        ma, mb = load_tensors(fa / "mask.safetensors"), load_tensors(fb / "mask.safetensors")
        flipped += sum(int((ma[n].bool() != mb[n].bool()).sum()) for n in ma)
        kept_total += ra.kept
        wa, wb = load_tensors(fa / "final.safetensors"), load_tensors(fb / "final.safetensors")
        worst_weight = max([worst_weight] + [(wa[n].float() - wb[n].float()).abs().max().item()
                                             for n in wa if wa[n].is_floating_point()])
    if flipped > flips * max(kept_total, 1):
        problems.append(f"{flipped} mask entries differ (of {kept_total} kept)")
    line = (f"{len(a)} levels; largest difference: {worst_acc} of {n_test} test examples, "
            f"{flipped} mask entries, {worst_weight:.2g} in a final weight")
    if problems:
        raise Fail(line + "; " + "; ".join(problems[:6]))
    return line


# ---------------------------------------------------------------------------------------------
# the steps


def step_preflight(ctx: Context) -> str:
    import importlib.util

    import ticketlab

    where = ctx.dev
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        where = f"{torch.cuda.get_device_name(ctx.device)} ({props.total_memory / 2**30:.0f} GiB, " \
                f"{props.multi_processor_count} SMs), CUDA {torch.version.cuda}"
    optional = ["ray", "onnx", "onnxruntime", "pooch", "pytest", "xdist", "triton"]
    missing = [name for name in optional if importlib.util.find_spec(name) is None]
    ctx.state["missing"] = set(missing)
    return (f"{where}; torch {torch.__version__}; ticketlab from {Path(ticketlab.__file__).parent}; "
            f"not installed: {', '.join(missing) or 'none'}")


def step_epoch(ctx: Context) -> str:
    if ctx.args.skip_epoch:
        raise Skip("--skip-epoch")
    if not ctx.args.data_dir:
        raise Skip("needs --data-dir (cifar10-jpeg)")
    from ticketlab.data import load_dataset
    from ticketlab.models import build_model
    from ticketlab.training import TrainSpec, train

    data = load_dataset("cifar10-jpeg", ctx.args.data_dir, seed=0).to(ctx.device)
    per_epoch = math.ceil(len(data.train) / 128)
    lines = []
    for precision in ("fp32", "bf16"):
        spec = TrainSpec(optimizer="sgd", lr=0.1, batch_size=128, momentum=0.9, weight_decay=1e-4,
                         iterations=per_epoch, eval_every=per_epoch, precision=precision, augment=True)
        model = build_model("resnet20", data.input_shape, data.num_classes, seed=0)
        result = train(model, data, spec, seed=0, device=ctx.device)
        ctx.sync()
        lines.append(f"{precision} {result.seconds - result.eval_seconds:.1f} s/epoch "
                     f"(+{result.eval_seconds:.1f} s eval, acc {result.final.test_acc:.1%})")
    return f"ResNet-20, {per_epoch} iterations: " + "; ".join(lines)


def tiny_imp(ctx: Context, root: Path) -> dict[str, torch.Tensor]:
    from tinydata import make_tiny_dataset

    from ticketlab.experiments import Replicate, prepare, spec_from_dict
    from ticketlab.experiments.runner import register
    from ticketlab.store import ResultsStore, load_tensors

    dataset = make_tiny_dataset(n_train=512, shape=(3, 8, 8))
    spec = spec_from_dict({"model": {"name": "resnet8_4"}, "pruning": {"levels": 2}, "rewind": {"iteration": 20},
                           "training": {"iterations": 100, "eval_every": 50, "batch_size": 64, "lr": 0.05},
                           "baselines": ["reinit"]})
    experiment, _ = prepare(spec, root, dataset=dataset)
    store = ResultsStore(root)
    register(experiment, store)
    replicate = Replicate(experiment.spec, experiment.run_id, 0, store, dataset, device=ctx.dev)
    started = time.perf_counter()
    for branch in ("imp", "reinit"):
        replicate.run_branch(branch)
    ctx.sync()
    rows = store.levels(experiment.run_id)
    ctx.say(f"    tiny IMP: {len(rows)} levels in {time.perf_counter() - started:.1f} s: "
            + ", ".join(f"{r.branch}/{r.level} {r.density:.0%} acc {r.final_test_acc:.2%}" for r in rows))
    if len(rows) != 5:
        raise Fail(f"{len(rows)} levels recorded, expected 5 (imp 0-2, reinit 1-2)")
    files = {}
    for path in sorted((root / experiment.run_id).rglob("*.safetensors")):
        for key, value in load_tensors(path).items():
            files[f"{path.relative_to(root)}:{key}"] = value
    return files


def step_determinism(ctx: Context) -> str:
    deterministic = ctx.args.deterministic or not ctx.cuda  # the CPU is deterministic as it is
    previous = torch.are_deterministic_algorithms_enabled()
    if ctx.args.deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        a, b = tiny_imp(ctx, ctx.root / "det-1"), tiny_imp(ctx, ctx.root / "det-2")
    finally:
        torch.use_deterministic_algorithms(previous)
    if a.keys() != b.keys():
        raise Fail("the two runs wrote different files")
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    worst = max(((a[k].float() - b[k].float()).abs().max().item() for k in unequal), default=0.0)
    line = f"{len(a) - len(unequal)}/{len(a)} tensors bitwise equal; largest difference {worst:.3g}"
    if deterministic and unequal:
        raise Fail(f"not deterministic: {line}; e.g. {unequal[:3]}")
    return line + ("" if deterministic else " (not required without --deterministic)")


def imp_argv(ctx: Context, runs_dir: Path, *extra: str) -> list[str]:
    """The reference study of the later steps: 2 seeds x 2 levels of LeNet-300-100 on digits,
    with both baselines (14 trainings of 100 iterations)."""
    return ["imp", "--dataset", "digits", "--levels", "2", "--iterations", "100", "--eval-every", "50",
            "--seeds", "0,1", "--baselines", "reinit,random_mask", "--device", ctx.dev,
            "--runs-dir", str(runs_dir), *extra]


def reference_run(ctx: Context) -> Path:
    """The imp step's store (runs it now when that step was not run)."""
    if "reference" not in ctx.state:
        runs = ctx.root / "imp-reference"
        cli(ctx, imp_argv(ctx, runs, "--stack", "off"))
        ctx.state["reference"] = runs
    return ctx.state["reference"]


def step_imp(ctx: Context) -> str:
    from ticketlab.store import load_tensors

    runs = ctx.root / "imp-reference"
    started = time.perf_counter()
    cli(ctx, imp_argv(ctx, runs, "--stack", "off"))
    seconds = time.perf_counter() - started
    ctx.state["reference"] = runs
    run, rows = level_table(runs)
    expected = {(s, "imp", lv) for s in (0, 1) for lv in (0, 1, 2)} | {
        (s, b, lv) for s in (0, 1) for b in ("reinit", "random_mask") for lv in (1, 2)}
    if set(rows) != expected:
        raise Fail(f"levels recorded {sorted(rows)}, expected {sorted(expected)}")
    problems = []
    for key in sorted(rows):
        folder = level_files(runs, run, key)
        mask, final = load_tensors(folder / "mask.safetensors"), load_tensors(folder / "final.safetensors")
        if sum(int(m.sum()) for m in mask.values()) != rows[key].kept:
            problems.append(f"{key}: the mask file does not hold the recorded kept count")
        if any(final[name][~keep.bool()].any() for name, keep in mask.items()):
            problems.append(f"{key}: a pruned weight is not zero")
        seed, branch, level = key
        if branch == "imp" and level > 0:
            before = load_tensors(level_files(runs, run, (seed, "imp", level - 1)) / "mask.safetensors")
            if any((mask[n].bool() & ~before[n].bool()).any() for n in mask):
                problems.append(f"{key}: the mask is not inside the previous level's")
        if branch != "imp":
            imp = load_tensors(level_files(runs, run, (seed, "imp", level)) / "mask.safetensors")
            same = all(torch.equal(mask[n].bool(), imp[n].bool()) for n in mask)
            counts = all(int(mask[n].sum()) == int(imp[n].sum()) for n in mask)
            if branch == "reinit" and not same:
                problems.append(f"{key}: reinit does not keep the IMP mask")
            if branch == "random_mask" and (same or not counts):
                problems.append(f"{key}: random_mask is the IMP mask or has other per-layer counts")
    if problems:
        raise Fail("; ".join(problems[:6]))
    acc = {k: rows[k].final_test_acc for k in rows if k[0] == 0}
    return (f"run {run}: 14 levels in {seconds:.1f} s, masks exact; seed 0 at level 2: imp {acc[(0, 'imp', 2)]:.1%}, "
            f"reinit {acc[(0, 'reinit', 2)]:.1%}, random_mask {acc[(0, 'random_mask', 2)]:.1%}")


def step_methods(ctx: Context) -> str:
    from tinydata import make_tiny_dataset

    from ticketlab.experiments import prepare, run_experiment, spec_from_dict
    from ticketlab.methods import METHODS
    from ticketlab.store import ResultsStore, load_tensors

    dataset = make_tiny_dataset(n_train=512, shape=(3, 8, 8))
    params = {"gmp": {"every": 10}, "rigl": {"every": 10}, "set": {"every": 10}, "synflow": {"rounds": 10},
              "early_bird": {"window": 2, "threshold": 0.5}}
    problems, timings = [], []
    wheres = list(dict.fromkeys([ctx.dev, "cpu"]))  # the CPU as well, for the kept counts
    root = ctx.root / "methods"
    for name in (n for n in METHODS.names() if n not in ("imp", "transfer")):
        spec = spec_from_dict({"model": {"name": "resnet8_4"}, "pruning": {"target_density": 0.2},
                               "training": {"iterations": 60, "eval_every": 30, "batch_size": 64, "lr": 0.05},
                               "method": {"name": name} | params.get(name, {})})
        kept = {}
        for where in wheres:
            try:
                with contextlib.redirect_stdout(Tee(ctx.log)):
                    experiment, _ = prepare(spec, root / where, dataset=dataset, device=where)
                    started = time.perf_counter()
                    run_experiment(experiment, dataset=dataset)
                seconds = time.perf_counter() - started
            except Exception as error:  # one method failing must not hide the others
                problems.append(f"{name} on {where}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
                traceback.print_exc(file=ctx.log)
                break
            row = ResultsStore(root / where).level(experiment.run_id, 0, name, 1)
            folder = root / where / experiment.run_id / "seed_0" / name / "level_1"
            mask, final = load_tensors(folder / "mask.safetensors"), load_tensors(folder / "final.safetensors")
            kept[where] = sum(int(keep.sum()) for keep in mask.values())
            if row is None or any(final[layer][~keep.bool()].any() for layer, keep in mask.items()):
                problems.append(f"{name} on {where}: level not recorded or a pruned weight is not zero")
            elif where == ctx.dev:
                timings.append(f"{name} {seconds:.1f}s")
                ctx.say(f"    {name} on {where}: {seconds:.1f} s, density {row.density:.2%}, "
                        f"acc {row.final_test_acc:.2%}")
        if len(kept) == len(wheres) and len(set(kept.values())) != 1:
            problems.append(f"{name}: weights kept {kept}")
    if problems:
        raise Fail("; ".join(problems))
    return f"{len(timings)} methods, every level recorded, masks exact: " + ", ".join(timings)


def step_supermask(ctx: Context) -> str:
    from ticketlab.store import load_tensors

    common = ["--dataset", "digits", "--device", ctx.dev]
    out = ctx.root / "supermask"
    out.mkdir(exist_ok=True)
    found = []
    for learner, extra in (("bernoulli", []), ("edge_popup", ["--density", "0.5"])):
        path = out / f"{learner}.safetensors"
        _, text = cli(ctx, ["supermask", "learn", *common, "--learner", learner, "--epochs", "2",
                            "--eval-samples", "2", "--out", str(path), *extra])
        mask = load_tensors(path)
        density = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
        if learner == "edge_popup":
            wrong = {n: float(m.float().mean()) for n, m in mask.items() if abs(float(m.float().mean()) - 0.5) > 0.01}
            if wrong:
                raise Fail(f"edge_popup at density 0.5 kept per layer {wrong}")
        accuracy = [line for line in text.splitlines() if line.startswith("test accuracy, deterministic mask")]
        found.append(f"{learner} mask density {density:.1%}, {accuracy[-1].split(':')[-1].strip() if accuracy else '?'}")
    _, text = cli(ctx, ["supermask", "init-masks", *common, "--iterations", "100", "--levels", "4"])
    best = [line for line in text.splitlines() if line.startswith("best (")]
    if len(best) != 2:
        raise Fail(f"init-masks printed no best levels: {last_line(text)}")
    return "; ".join(found) + "; init-masks " + "; ".join(best)


def step_reproduce(ctx: Context) -> str:
    import csv

    out = ctx.root / "reproduce"
    cli(ctx, ["reproduce", "zhou2019", "--networks", "fc", "--epochs", "1", "--dense-iterations", "100",
              "--dataset", "digits", "--device", ctx.dev, "--runs-dir", str(out)])
    table = out / "zhou2019" / "zhou2019_table1.csv"
    if not table.is_file():
        raise Fail(f"no table at {table}")
    rows = list(csv.reader(table.open()))
    return f"fc on digits: {len(rows) - 1} rows in {table.name}"


def step_combine(ctx: Context) -> str:
    runs = reference_run(ctx)
    run = the_run(runs)
    _, text = cli(ctx, ["combine", f"{run}:1@0", f"{run}:1@1", "--finetune", "20", "--device", ctx.dev,
                        "--runs-dir", str(runs)])
    combined = len([line for line in text.splitlines() if "union" in line or "intersection" in line or
                    "ensemble" in line])
    _, text = cli(ctx, ["franken", "--dataset", "digits", "--levels", "1", "--iterations", "100",
                        "--b-iterations", "100", "--device", ctx.dev])
    isolated = [line for line in text.splitlines() if line.startswith("franken isolated")]
    if not isolated:
        raise Fail(f"franken printed no isolated row: {last_line(text)}")
    change = float(isolated[0].split()[-1])
    if not change <= 1e-5:
        raise Fail(f"franken isolated changed the A logits by {change:g} (must be 0)")
    return f"combine: {combined} lines of union/intersection/ensemble; franken isolated max |dA logit| {change:g}"


def step_export(ctx: Context) -> str:
    runs = reference_run(ctx)
    run = the_run(runs)
    missing = ctx.state.get("missing", set())
    out = ctx.root / "export"
    out.mkdir(exist_ok=True)
    written, skipped = [], []
    for fmt in ("masked", "torch_prune", "compact", "sparse", "onnx"):
        if fmt == "onnx" and {"onnx", "onnxruntime"} & missing:
            skipped.append("onnx (onnx/onnxruntime not installed)")
            continue
        path = out / f"ticket-{fmt}.{'onnx' if fmt == 'onnx' else 'safetensors'}"
        cli(ctx, ["export", run, "--level", "2", "--seed", "0", "--format", fmt, "--out", str(path),
                  "--runs-dir", str(runs)])
        if not path.is_file():
            raise Fail(f"export --format {fmt} wrote nothing at {path}")
        written.append(f"{fmt} {path.stat().st_size / 1024:.0f} KiB")
    return "level 2 verified on save: " + ", ".join(written) + ("; skipped " + ", ".join(skipped) if skipped else "")


def step_sparse(ctx: Context) -> str:
    import sqlite3

    runs = ctx.root / "imp-sparse"
    code, text = cli(ctx, imp_argv(ctx, runs, "--stack", "off", "--sparse-training", "0.9"), expect=None)
    if code == 2 and "Traceback" not in text:
        return f"refused in one line: {last_line(text)}"
    if code != 0:
        raise Fail(f"exit {code}: {last_line(text)}")
    line = compare_tables(ctx, reference_run(ctx), runs)
    run = the_run(runs)
    with contextlib.closing(sqlite3.connect(runs / "results.sqlite")) as db:
        sparse = db.execute("SELECT COUNT(*), MAX(value) FROM metrics WHERE run_id = ? AND name = 'sparse_layers'",
                            (run,)).fetchone()
    if not sparse[0]:
        raise Fail(f"handled, but no level trained a layer on sparse kernels (density 0.8 and 0.64 < 0.9); {line}")
    return f"handled: {sparse[0]} levels trained up to {sparse[1]:.0f} layers on sparse kernels; equal to dense: {line}"


def step_ray(ctx: Context) -> str:
    if "ray" in ctx.state.get("missing", set()):
        raise Skip("ray is not installed here (pip install 'ticketlab[ray]')")
    runs = ctx.root / "imp-ray"
    code, text = run_subprocess(ctx, ticketlab_command(imp_argv(ctx, runs, "--stack", "off", "--executor", "ray",
                                                                "--jobs", "2")), timeout=420)
    if code != 0:
        raise Fail(f"exit {code}: {last_line(text)}\n{tail(text)}")
    line = compare_tables(ctx, reference_run(ctx), runs)
    requests = [row for row in text.splitlines() if row.startswith("ray: each task requests")]
    if not ctx.cuda:
        if requests:
            raise Fail(f"off CUDA a task requested GPUs: {requests[0]}")
        raise Skip(f"not CUDA (the Ray run on {ctx.dev} equals the local one: {line})")
    if not requests or requests[0].split()[4] in ("0", "0.0"):
        raise Fail(f"no GPU share requested per task (num_gpus): {requests or 'no ray: line'}")
    return f"{requests[0]}; equal to the local run: {line}"


def step_compile(ctx: Context) -> str:
    import copy

    from ticketlab.data import load_dataset
    from ticketlab.errors import TicketlabError
    from ticketlab.masks import Mask
    from ticketlab.models import build_model
    from ticketlab.training import TrainSpec, WeightConstraints, train

    digits = load_dataset("digits", None)
    spec = TrainSpec(iterations=60, eval_every=30, batch_size=60)
    eager = build_model("lenet_300_100", digits.input_shape, digits.num_classes, seed=0)
    g = torch.Generator().manual_seed(0)
    mask = Mask({n: torch.rand(eager.get_parameter(n).shape, generator=g) < 0.3 for n in eager.prunable_names()})
    fast = copy.deepcopy(eager)
    started = time.perf_counter()
    want = train(eager, digits, spec, seed=0, constraints=WeightConstraints(eager, mask), device=ctx.device)
    ctx.sync()
    eager_seconds = time.perf_counter() - started
    started = time.perf_counter()
    try:
        got = train(fast, digits, spec, seed=0, constraints=WeightConstraints(fast, mask), device=ctx.device,
                    compile=True)
    except TicketlabError as error:
        if ctx.cuda:
            raise Fail(f"refused on CUDA: {error}") from None
        raise Skip(f"refused here in one line: {error}") from None
    ctx.sync()
    compiled_seconds = time.perf_counter() - started
    worst = 0.0
    for (name, a), b in zip(fast.named_parameters(), eager.parameters()):
        worst = max(worst, (a.detach().float() - b.detach().float()).abs().max().item())
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m.splitlines()[0]}")
        if name in mask and a[~mask[name].to(a.device)].any():
            raise Fail(f"{name}: a pruned weight is not zero after compiled training")
    n_test = len(digits.test)
    acc = [abs(round(e.test_acc * n_test) - round(f.test_acc * n_test)) for e, f in zip(got.evaluations, want.evaluations)]
    if max(acc) > 1:
        raise Fail(f"test accuracy differs by {max(acc)} examples")
    # the CLI flag through the engine: the reference study again, compiled
    runs = ctx.root / "imp-compile"
    started = time.perf_counter()
    cli(ctx, imp_argv(ctx, runs, "--stack", "off", "--compile"))
    study_seconds = time.perf_counter() - started
    line = compare_tables(ctx, reference_run(ctx), runs)
    return (f"train(compile=True) equals eager (largest difference {worst:.2g}, masks exact; "
            f"{compiled_seconds:.1f} s with compiling against {eager_seconds:.1f} s eager); "
            f"imp --compile ({study_seconds:.1f} s) equals the reference: {line}")


def step_stack(ctx: Context) -> str:
    import ticketlab.experiments.stacking as stacking

    stack = "auto" if ctx.cuda else "4"  # auto stacks on CUDA only: on the CPU ask for stacks outright
    grouped: list = []
    original = stacking.group_tasks

    def recording(tasks, stack_value, device):
        result = original(tasks, stack_value, device)
        grouped.extend(result)
        return result

    runs = ctx.root / "imp-stack"
    stacking.group_tasks = recording
    try:
        started = time.perf_counter()
        cli(ctx, imp_argv(ctx, runs, "--stack", stack))
        seconds = time.perf_counter() - started
    finally:
        stacking.group_tasks = original
    sizes = [len(task.members) for task in grouped if isinstance(task, stacking.StackedBranchTask)]
    if not sizes:
        raise Fail(f"--stack {stack} on {ctx.dev} grouped no tasks into stacks ({len(grouped)} tasks)")
    line = compare_tables(ctx, reference_run(ctx), runs)
    return f"--stack {stack}: stacks of {sizes} ({seconds:.1f} s); equal to --stack off per level: {line}"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies of the group count as gone
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def step_resume(ctx: Context) -> str:
    from ticketlab.store import ResultsStore

    runs = ctx.root / "imp-resume"
    command = ticketlab_command(imp_argv(ctx, runs))  # the default --stack: auto (stacks on CUDA)
    print(f"$ {' '.join(command)}  (killed with SIGKILL after its second level)", file=ctx.log, flush=True)
    process = subprocess.Popen(command, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[str] = []
    second_level = threading.Event()

    def read():
        for line in process.stdout:
            seen.append(line)
            ctx.log.write("    | " + line)
            if sum(" level " in row and "remaining" in row for row in seen) >= 2:
                second_level.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not second_level.wait(timeout=300):
        process.kill()
        raise Fail(f"no second level within 300 s (exit {process.poll()}): {last_line(''.join(seen))}")
    time.sleep(0.3)  # into the next level's training
    if process.poll() is not None:
        raise Fail("the run finished before it could be killed: make the study longer")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    reader.join(timeout=10)
    deadline = time.monotonic() + 20
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = _group_alive(process.pid)
    if orphans:  # our own process group: end what is left of it before failing
        os.killpg(process.pid, signal.SIGKILL)
    run = the_run(runs)
    recorded = {(r.seed, r.branch, r.level) for r in ResultsStore(runs).levels(run)}
    _, text = cli(ctx, imp_argv(ctx, runs))
    trained = {(int(m[1]), m[2], int(m[3])) for m in re.finditer(r"^seed (\d+) (\S+)\s+level\s+(\d+)", text, re.M)}
    line = compare_tables(ctx, reference_run(ctx), runs)
    if orphans:
        raise Fail(f"workers outlived the killed driver for 20 s; the resumed table: {line}")
    if trained & recorded:
        raise Fail(f"the resumed run trained again levels recorded before the kill: {sorted(trained & recorded)}")
    return (f"killed after {len(recorded)} levels recorded; the same command trained the other {len(trained)} "
            f"and none again; equal to the uninterrupted run: {line}")


SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "Memcpy DtoH")


def _tally(prof) -> tuple[dict[str, int], dict[str, int]]:
    """Counts of the sync events (and of aten::_local_scalar_dense, the op behind .item()) in a
    profile, and where the sync events came from (the innermost ticketlab frame of the op that
    caused them, else the op's name)."""
    counts: dict[str, int] = {}
    where: dict[str, int] = {}
    for event in prof.events():
        name = event.name
        kind = next((s for s in SYNC_EVENTS if s in name), None)
        if kind is None and name == "aten::_local_scalar_dense":
            kind = "item()"
        if kind is None:
            continue
        counts[kind] = counts.get(kind, 0) + 1
        # with_stack: the Python frames are the op's ancestors ("ticketlab/training/loop.py(265): train")
        origin, node = name, event
        while node is not None:
            if "ticketlab/" in node.name or any("ticketlab/" in f for f in node.stack or []):
                origin = node.name if "ticketlab/" in node.name else next(f for f in node.stack if "ticketlab/" in f)
                break
            origin, node = node.name, node.cpu_parent
        where[f"{kind} <- {origin}"] = where.get(f"{kind} <- {origin}", 0) + 1
    return counts, where


def step_profile(ctx: Context) -> str:
    from torch.profiler import ProfilerActivity, profile

    from ticketlab.data import load_dataset
    from ticketlab.masks import Mask
    from ticketlab.models import build_model
    from ticketlab.training import TrainSpec, WeightConstraints, train

    digits = load_dataset("digits", None)
    configs = {
        "lenet_300_100": TrainSpec(iterations=1, eval_every=1, batch_size=60),
        "conv2": TrainSpec(iterations=1, eval_every=1, batch_size=60, optimizer="sgd", lr=0.05, momentum=0.9,
                           weight_decay=1e-4, augment=True),
    }
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ctx.cuda else [])
    short, long = 25, 75
    results, traced = [], False
    failing = []
    for name, base in configs.items():
        def run(iterations: int) -> None:
            model = build_model(name, digits.input_shape, digits.num_classes, seed=0)
            g = torch.Generator().manual_seed(0)
            mask = Mask({n: torch.rand(model.get_parameter(n).shape, generator=g) < 0.5
                         for n in model.prunable_names()})
            spec = replace(base, iterations=iterations, eval_every=iterations)  # evaluations at 0 and the end only
            train(model, digits, spec, seed=0, constraints=WeightConstraints(model, mask), device=ctx.device)
            ctx.sync()

        run(10)  # warm-up: CUDA context, cuDNN, the allocator
        counts = {}
        for iterations in (short, long):
            for attempt in range(3):  # torch's profiler can fail to decode an event name (UnicodeDecodeError)
                with profile(activities=activities, with_stack=True) as prof:
                    run(iterations)
                try:
                    counts[iterations] = _tally(prof)
                    break
                except UnicodeDecodeError as error:
                    ctx.say(f"    torch.profiler could not read its events ({error}); profiling again")
            else:
                raise Fail("torch.profiler could not read its events three times (UnicodeDecodeError)")
            if iterations == long and not traced and ctx.out is not None:
                path = ctx.out / "profile_trace.json.gz"
                prof.export_chrome_trace(str(path))
                traced = True
                ctx.say(f"    profiler trace of {long} steps of {name}: {path}")
        steps = long - short
        (a, _), (b, where_b) = counts[short], counts[long]
        per_step = {k: (b.get(k, 0) - a.get(k, 0)) / steps for k in set(a) | set(b)}
        syncs = sum(v for k, v in per_step.items() if k != "item()")
        detail = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_step.items())) or "none"
        results.append(f"{name}: {syncs:.2f} syncs/step ({detail})")
        ctx.say(f"    {name}: per step outside evaluation: {detail}; in {long} steps: "
                + (", ".join(f"{k} {v}" for k, v in sorted(b.items())) or "none"))
        if where_b:
            ctx.say("      from: " + "; ".join(f"{w} x{n}" for w, n in sorted(where_b.items(), key=lambda x: -x[1])[:5]))
        if syncs > 0:
            failing.append(name)
    if not ctx.cuda:
        raise Skip("not CUDA (the profiler ran here: " + "; ".join(results)
                   + "; the CPU loop reads the loss every step by design)")
    if failing:
        raise Fail("host synchronisations per training step: " + "; ".join(results))
    return "no host synchronisation per step: " + "; ".join(results)


def step_pytest(ctx: Context) -> str:
    if {"pytest", "xdist"} & ctx.state.get("missing", set()):
        raise Skip("pytest or pytest-xdist is not installed here")
    workers = "auto" if ctx.cuda else "2"
    # pyproject's addopts already hold -q (a second -q would drop the summary line); -rs: skip reasons
    code, text = run_subprocess(ctx, [sys.executable, "-m", "pytest", "-n", workers, "-rs", "-p", "no:cacheprovider",
                                      "tests", "-k", "cuda or device"], timeout=ctx.args.pytest_timeout)
    summary = last_line(text)
    if code != 0:
        failed = [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))]
        raise Fail(f"{summary}\n" + "\n".join(failed[:20]))
    if ctx.cuda and "skipped" in summary:
        skipped = [line for line in text.splitlines() if "SKIP" in line]
        return f"{summary} (on CUDA some still skipped: {skipped[:3]})"
    return summary


STEPS = [  # the order a short device lease wants: the slow epoch step last
    ("preflight", step_preflight),
    ("imp", step_imp),
    ("determinism", step_determinism),
    ("methods", step_methods),
    ("supermask", step_supermask),
    ("reproduce", step_reproduce),
    ("combine", step_combine),
    ("export", step_export),
    ("sparse", step_sparse),
    ("ray", step_ray),
    ("compile", step_compile),
    ("stack", step_stack),
    ("resume", step_resume),
    ("profile", step_profile),
    ("pytest", step_pytest),
    ("epoch", step_epoch),
]


class StepTimeout(Exception):
    pass


def run_step(ctx: Context, name: str, function, limit: int) -> tuple[str, float, str]:
    ctx.say(f"\n== {name}")
    print(f"\n==================== {name} ====================", file=ctx.log, flush=True)

    def expire(signum, frame):
        raise StepTimeout(f"over its {limit} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit)
    started = time.perf_counter()
    try:
        detail, status = function(ctx), "PASS"
    except Skip as skip:
        detail, status = str(skip), "SKIP"
    except Fail as fail:
        detail, status = str(fail), "FAIL"
    except BaseException as error:  # noqa: BLE001 - one step's crash must not stop the others
        if isinstance(error, KeyboardInterrupt):
            raise
        detail, status = f"{type(error).__name__}: {error}", "FAIL"
        trace = traceback.format_exc()
        print(trace, file=ctx.log, flush=True)
        print(tail(trace, 30), file=sys.stderr, flush=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - started
    first, _, rest = detail.partition("\n")
    ctx.say(f"{status} {name} ({seconds:.1f} s): {first}")
    if rest and status == "FAIL":
        ctx.say("\n".join("    " + line for line in rest.splitlines()))
    return status, seconds, first


def main() -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the script as Ctrl-C does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--data-dir", help="where data sets live (cifar10-jpeg, for the epoch step)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--deterministic", action="store_true",
                        help="the determinism step with torch.use_deterministic_algorithms: bitwise equal required")
    parser.add_argument("--skip-epoch", "--skip-epochs", action="store_true", help="skip the ResNet-20 epoch step")
    parser.add_argument("--skip-methods", action="store_true", help="skip the one-level methods step")
    parser.add_argument("--only", default="", help="run only these steps (comma-separated names)")
    parser.add_argument("--skip", default="", help="skip these steps (comma-separated names)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads of this process (default 1, as the CLI's: more threads on shared "
                             "cores can be many times slower)")
    parser.add_argument("--out", help="write gpu_check.log, profile_trace.json.gz and summary.txt here")
    parser.add_argument("--step-timeout", type=int, default=420, help="seconds any one step may take")
    parser.add_argument("--pytest-timeout", type=int, default=400, help="seconds the pytest step may take")
    parser.add_argument("--budget", type=int, default=0,
                        help="seconds for the whole script (0: no limit): a step that would start past it is "
                             "skipped, and each step's limit is cut to what is left (for a device lease)")
    args = parser.parse_args()
    names = [name for name, _ in STEPS]
    only = [n for n in args.only.split(",") if n]
    skip = [n for n in args.skip.split(",") if n] + (["methods"] if args.skip_methods else [])
    unknown = sorted(set(only + skip) - set(names))
    if unknown:
        parser.error(f"unknown steps {unknown}; steps: {', '.join(names)}")
    torch.set_num_threads(args.threads)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    from ticketlab.training.device import resolve_device

    from ticketlab.errors import TicketlabError

    try:
        device = resolve_device(args.device)
    except TicketlabError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        root = Path(tmp)
        # digits is bundled; a data dir set here keeps every command off the per-user cache
        os.environ.setdefault("TICKETLAB_DATA_DIR", args.data_dir or str(root / "data"))
        log = open(out / "gpu_check.log" if out else root / "gpu_check.log", "w")  # noqa: SIM115
        ctx = Context(args, device, root, log, out)
        ctx.say(f"gpu_check on {device} (torch {torch.__version__}); stores under {root}")
        table = []
        for name, function in STEPS:
            left = args.budget - (time.perf_counter() - began) if args.budget else args.step_timeout
            if (only and name not in only) or name in skip:
                table.append((name, "SKIP", 0.0, "not selected"))
            elif left < 10:
                table.append((name, "SKIP", 0.0, f"out of time (--budget {args.budget} s)"))
            else:
                try:
                    table.append((name, *run_step(ctx, name, function, int(min(args.step_timeout, left)))))
                except KeyboardInterrupt:
                    table.append((name, "FAIL", 0.0, "interrupted: the steps after it did not run"))
                    break
            lines, failed = summary(ctx, table, time.perf_counter() - began)
            if out is not None:  # after every step: a run cut short still leaves its table
                (out / "summary.txt").write_text("\n".join(lines).lstrip() + "\n")
        ctx.say("\n".join(lines))
        log.close()
    return 1 if failed else 0


def summary(ctx: Context, table: list, wall: float) -> tuple[list[str], list[str]]:
    width = max(len(name) for name, *_ in table)
    where = torch.cuda.get_device_name(ctx.device) if ctx.cuda else ctx.dev
    lines = [f"\nsummary on {where}, torch {torch.__version__}:",
             f"| {'step'.ljust(width)} | result | seconds | detail", f"|{'-' * (width + 2)}|--------|---------|-------"]
    lines += [f"| {name.ljust(width)} | {status:<6} | {seconds:7.1f} | {detail[:150]}"
              for name, status, seconds, detail in table]
    failed = [name for name, status, *_ in table if status == "FAIL"]
    lines.append(f"{len(table) - len(failed)} of {len(table)} steps without failure"
                 + (f"; FAILED: {', '.join(failed)}" if failed else "") + f"; wall time {wall:.0f} s")
    return lines, failed


if __name__ == "__main__":
    sys.exit(main())
