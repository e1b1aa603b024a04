"""The one training loop: minibatch steps, periodic evaluation, early-stop bookkeeping.

Early stopping follows Frankle & Carbin (2019): the early-stop iteration is the
evaluation step with the minimum validation loss, and "accuracy at early stop" is the
test accuracy measured at that step. Training itself always runs the full schedule.

A run that diverges stops with `DivergedError` instead of training on: see `diverged`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.data import BatchIterator, Dataset
from ticketlab.data.augment import crop_and_flip
from ticketlab.errors import DivergedError, TicketlabError
from ticketlab.training.constraints import WeightConstraints
from ticketlab.training.device import place
from ticketlab.training.evaluate import evaluate
from ticketlab.training.layout import channels_last_pays
from ticketlab.seeds import generator
from ticketlab.track.session import training_unit
from ticketlab.training.lr import lr_factor as schedule_factor
from ticketlab.training.progress import Progress
from ticketlab.training.sparse_kernels import SparseTraining, sparse_layers
from ticketlab.training.spec import TrainSpec

StepCallback = Callable[[int, nn.Module], None]
"""Called with (iterations done, model) before the first step and after every step."""

LrFactor = Callable[[int], float]
"""The learning-rate multiplier for iteration `step` (1-based), e.g. a cosine decay."""

EvaluationHook = Callable[["Evaluation", float, float], None]
"""Called after every evaluation with (evaluation, learning rate, wall seconds since the start
of training): how trackers (`ticketlab.track`) see a level live."""


@dataclass
class Evaluation:
    step: int
    train_loss: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in vars(self).items() if k != "step"}


@dataclass
class TrainResult:
    evaluations: list[Evaluation] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole call
    eval_seconds: float = 0.0  # of which spent evaluating
    sparse_layers: list[str] = field(default_factory=list)  # weights trained on sparse kernels

    @property
    def final(self) -> Evaluation:
        return self.evaluations[-1]

    @property
    def early_stop(self) -> Evaluation:
        """The evaluation with minimum validation loss (the last one if there is no val split)."""
        with_val = [e for e in self.evaluations if not math.isnan(e.val_loss)]
        if not with_val:
            return self.final
        return min(with_val, key=lambda e: e.val_loss)


DIVERGENCE_FACTOR = 1_000.0
# Device types on which the loop reads every step's loss at once (a wait that costs nothing
# on the CPU); elsewhere it reads the losses at evaluations only.
SYNC_EVERY_STEP = ("cpu",)


def diverged(loss: float, reference: float) -> bool:
    """Whether a step's training loss says the run has diverged.

    Definition: the loss is NaN or infinite, or above DIVERGENCE_FACTOR (1000) times
    `reference`, the larger of the run's first step loss and ln(classes) (the loss of a
    uniform guess). A learning rate far too high need not overflow: Adam at lr 1e6 on LeNet
    ends at chance accuracy with losses near 1e5-1e6, which this catches at once, while a
    healthy run never comes near it (thousands of nats on one batch).
    """
    return not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * reference


def make_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    """Adam or SGD with momentum, using torch's fused CPU/GPU kernels where they exist."""
    params = list(params)
    if spec.optimizer == "adam":
        kwargs = dict(lr=spec.lr, weight_decay=spec.weight_decay)
        cls = torch.optim.Adam
    else:
        kwargs = dict(lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
        cls = torch.optim.SGD
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return cls(params, foreach=True, **kwargs)


def batches_from(iterator: BatchIterator, start_step: int):
    """The endless batch stream of `iterator`, from the batch of iteration `start_step` + 1."""
    epoch, offset = divmod(start_step, len(iterator))
    yield from itertools.islice(iterator.epoch(epoch), offset, None)
    while True:
        epoch += 1
        yield from iterator.epoch(epoch)


@contextlib.contextmanager
def denormals_flushed():
    """Flush denormal floats to zero while training, then restore the caller's mode.

    Adam's moment estimates for weights whose gradient is zero most steps (inputs that are
    almost always 0, dead units) decay into the denormal range, where CPU float arithmetic is
    several times slower: flushing made a 20k-iteration LeNet-300-100 level 35 s instead of
    51 s here, with the same accuracies. The mode is per thread: it covers the calling thread.
    """
    was_flushing = torch.tensor(1e-40, dtype=torch.float32).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)


def compiled(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """`torch.compile` of `model`'s forward. Dynamo keeps the compiled graph with the module's
    code, guarded on this module, so the next level of the same replicate reuses it. A machine
    where compiling fails (no C++ compiler for the CPU backend, say) gets one clear line at the
    first step instead of the compiler's traceback."""
    forward = torch.compile(model)
    first = True

    def run(x: torch.Tensor) -> torch.Tensor:
        nonlocal first
        if not first:
            return forward(x)
        first = False
        try:
            return forward(x)
        except Exception as error:  # dynamo and inductor raise many kinds; none is the model's fault here
            if "torch._dynamo" not in type(error).__module__ and "torch._inductor" not in type(error).__module__:
                raise
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise TicketlabError(f"--compile: torch.compile failed on this machine ({reason[:200]}); "
                                 "train without --compile") from None

    return run


@denormals_flushed()
def train(
    model: nn.Module,
    dataset: Dataset,
    spec: TrainSpec,
    *,
    seed: int,
    constraints: WeightConstraints | None = None,
    callbacks: Sequence[StepCallback] = (),
    progress: Progress | None = None,
    start_step: int = 0,
    lr_factor: LrFactor | None = None,
    device: torch.device | str | None = None,
    sparse: SparseTraining | None = None,
    on_evaluation: EvaluationHook | None = None,
    compile: bool = False,
) -> TrainResult:
    """Train `model` in place up to iteration `spec.iterations`; batches are drawn from `seed`.

    With `start_step` = k the run continues a schedule from iteration k (late rewinding):
    it takes the batches iterations k+1... would have taken, and steps are numbered from k.
    With `lr_factor` the learning rate of iteration `step` is `spec.lr * lr_factor(step)`;
    without it the spec's schedule (`spec.lr_schedule`, `spec.warmup`) sets it, and a
    constant schedule leaves the optimizer's rate alone. With `spec.augment` every batch is
    cropped and flipped (`data.augment`) by a generator seeded from (seed, "augment", step),
    so a run restarted at iteration k sees the same augmented batches.

    With `device` the model, the constraints and the data set move there once, before the
    first step; without it everything stays where it is. On a device other than the CPU the
    loop never waits for the device between evaluations: step losses are summed there and
    the divergence check reads the window's largest loss at each evaluation (on the CPU it
    checks every step, as before). `spec.precision = "bf16"` runs forward and loss under
    bfloat16 autocast, conv networks in channels-last memory format.

    With `sparse` (fp32 only), the masked linear layers it selects train on sparse kernels
    (`training.sparse_kernels`); their dense weights are written back before every callback
    and at the end, and `result.sparse_layers` names them.

    With `on_evaluation`, each evaluation is handed to it as it is made (one call per
    evaluation, none per step: without it the loop is unchanged). Without it, inside a
    tracker session (`track.session`: `train --track`, `franken --track`, ...) the call is a
    level of the current tracked unit and streams to its trackers; outside one, nothing.

    With `compile` the forward and backward of every step run through `torch.compile` (the
    model's module, so the compiled graph is cached across calls on one model); the masked
    update and the fused optimizer stay eager. Results equal eager up to float rounding and
    masks stay exact (the constraints write zeros after every step). Evaluation stays eager.
    """
    if lr_factor is None:
        lr_factor = schedule_factor(spec)
    tracked = training_unit() if on_evaluation is None else None
    if tracked is not None:
        on_evaluation = tracked.start_training()
    mask_constraints = constraints
    dataset = place(model, dataset, device)
    if device is not None and constraints is not None:
        constraints.follow_parameters()
    device = next(model.parameters()).device
    autocast = contextlib.nullcontext()
    if spec.precision == "bf16":
        autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    channels_last = channels_last_pays(model, device, spec.precision)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    result = TrainResult()
    with contextlib.ExitStack() as stack:
        sync_every_step = device.type in SYNC_EVERY_STEP
        window_sum = window_max = None
        window_start = start_step + 1
        sparse_names = sparse.layers(model, constraints, spec.batch_size) if sparse is not None and spec.precision == "fp32" else []
        switched = stack.enter_context(sparse_layers(model, constraints, sparse_names))
        result.sparse_layers = list(sparse_names)
        if sparse_names:
            constraints = constraints.without(sparse_names)  # the sparse kernels keep those masks exact
        optimizer = make_optimizer(spec, (p for p in model.parameters() if p.requires_grad))
        forward = compiled(model) if compile else model
        batches = batches_from(BatchIterator(dataset.train, spec.batch_size, seed=seed), start_step)
        started = time.perf_counter()
        if constraints is not None:
            constraints.apply_()
        model.train()

        def record(step: int, train_loss: float) -> None:
            eval_started = time.perf_counter()
            val_loss, val_acc = evaluate(model, dataset.val.x, dataset.val.y)
            test_loss, test_acc = evaluate(model, dataset.test.x, dataset.test.y)
            result.evaluations.append(Evaluation(step, train_loss, val_loss, val_acc, test_loss, test_acc))
            result.eval_seconds += time.perf_counter() - eval_started
            if on_evaluation is not None:
                on_evaluation(result.evaluations[-1], optimizer.param_groups[0]["lr"], eval_started - started)
            if progress is not None:
                progress.update(step, test_acc)

        if callbacks:
            switched.write_back()
        for callback in callbacks:
            callback(start_step, model)
        record(start_step, float("nan"))
        loss_sum, loss_count = 0.0, 0
        reference = math.log(dataset.num_classes) if dataset.num_classes > 1 else 1.0
        for step in range(start_step + 1, spec.iterations + 1):
            x, y = next(batches)
            if spec.augment:
                x = crop_and_flip(x, generator(seed, "augment", step))
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = F.cross_entropy(forward(x), y)
            loss.backward()
            if sync_every_step:
                loss_value = loss.item()
                if step == start_step + 1 and math.isfinite(loss_value):
                    reference = max(reference, loss_value)
                if diverged(loss_value, reference):
                    raise DivergedError(
                        f"training diverged at iteration {step}: loss {loss_value:.4g}, against {reference:.4g} at "
                        f"the start (diverged: NaN, infinite, or over {DIVERGENCE_FACTOR:g} times that). "
                        f"Lower the learning rate (now {spec.lr:g}) or check the input data."
                    )
                loss_sum += loss_value
            else:
                value = loss.detach().float()
                if step == start_step + 1:
                    first = value.item()  # one wait for the device, at the first step only
                    if math.isfinite(first):
                        reference = max(reference, first)
                window_sum = value if window_sum is None else window_sum + value
                window_max = value if window_max is None else torch.maximum(window_max, value)
            loss_count += 1
            if constraints is not None:
                constraints.mask_grads_()
            if lr_factor is not None:
                for group in optimizer.param_groups:
                    group["lr"] = spec.lr * lr_factor(step)
            optimizer.step()
            if constraints is not None:
                constraints.apply_()
            if callbacks:
                switched.write_back()
            for callback in callbacks:
                callback(step, model)
            if step % spec.eval_every == 0 or step == spec.iterations:
                if not sync_every_step:
                    worst = window_max.item()
                    if diverged(worst, reference):
                        raise DivergedError(
                            f"training diverged between iterations {window_start} and {step}: loss up to {worst:.4g}, "
                            f"against {reference:.4g} at the start (diverged: NaN, infinite, or over "
                            f"{DIVERGENCE_FACTOR:g} times that). Lower the learning rate (now {spec.lr:g}) or check "
                            "the input data."
                        )
                    loss_sum = window_sum.item()
                    window_sum = window_max = None
                    window_start = step + 1
                record(step, loss_sum / loss_count)
                loss_sum, loss_count = 0.0, 0
    if channels_last:
        model.to(memory_format=torch.contiguous_format)  # the caller's model as it came
    result.seconds = time.perf_counter() - started
    if tracked is not None:
        tracked.trained(result, mask_constraints)
    return result
