"""Many replicates in one step: R copies of one network trained as one stacked model.

A lottery-ticket study is many small trainings of one network (seeds x levels x baselines);
on a GPU each of them leaves the device idle most of a step. `train_stacked` trains R
replicates that share a network and a schedule at once: their parameters are stacked along a
new leading dimension (`torch.func.stack_module_state`), one step runs the forward and
backward of all R with `vmap(grad_and_value(functional_call(...)))`, and one optimizer steps
the stacked tensors. Each replicate keeps its own initial weights, mask (and held values),
batch order and augmentation, drawn exactly as `train` draws them from its seed, so every
replicate's result equals its own `train` call up to float rounding (vmapped matmuls are
batched GEMMs, which may round differently). Adam and SGD are elementwise, so one optimizer
over the stacked tensors is R optimizers.

What stacks: networks without batch norm and dropout (batch norm's running statistics and
dropout's random draws are per replicate; networks that have them are refused with a line
saying so, and the engine trains them one by one), fp32, no density-aware sparse kernels.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from ticketlab.data import BatchIterator, Dataset
from ticketlab.data.augment import crop_and_flip
from ticketlab.errors import DivergedError, TicketlabError
from ticketlab.seeds import generator
from ticketlab.training.constraints import WeightConstraints
from ticketlab.training.device import place
from ticketlab.training.evaluate import evaluate
from ticketlab.training.loop import (
    DIVERGENCE_FACTOR, SYNC_EVERY_STEP, Evaluation, EvaluationHook, LrFactor, StepCallback, TrainResult, batches_from,
    denormals_flushed, diverged, make_optimizer,
)
from ticketlab.training.lr import lr_factor as schedule_factor
from ticketlab.training.spec import TrainSpec


def why_not_stackable(model: nn.Module, spec: TrainSpec) -> str | None:
    """The reason `model` under `spec` cannot train stacked, or None when it can."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            return (f"{type(module).__name__} {name!r} keeps running statistics per replicate; stacked training "
                    "has none (train batch-norm networks one by one: --stack off)")
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return f"dropout {name!r} draws its own randomness per replicate; stacked training cannot match it"
    if spec.precision != "fp32":
        return f"precision {spec.precision}: stacked training runs fp32 only"
    return None


def check_stackable(models: Sequence[nn.Module], spec: TrainSpec) -> None:
    """Refuse, in one line, replicates that cannot share a stacked step."""
    if len(models) < 1:
        raise TicketlabError("stacked training needs at least one replicate")
    reason = why_not_stackable(models[0], spec)
    if reason is not None:
        raise TicketlabError(f"cannot stack these replicates: {reason}")
    shapes = [{n: tuple(v.shape) for n, v in m.state_dict().items()} for m in models]
    if any(s != shapes[0] for s in shapes[1:]):
        raise TicketlabError("cannot stack these replicates: their networks differ (tensor names or shapes)")


class _Stack:
    """The stacked parameters of R replicates, their masks and held values, and the way back
    into each replicate's own module."""

    def __init__(self, models: Sequence[nn.Module], constraints: Sequence[WeightConstraints | None]):
        self.models = list(models)
        params, buffers = stack_module_state(self.models)
        self.params = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
        self.buffers = {n: b.detach().clone() for n, b in buffers.items()}
        trainable = dict(self.models[0].named_parameters())
        self.trained = [n for n in self.params if trainable[n].requires_grad]
        self.keep: dict[str, torch.Tensor] = {}
        self.held: dict[str, torch.Tensor] = {}
        entries = [{n: (k, h) for n, k, h in c.entries()} if c is not None else {} for c in constraints]
        for name in self.params:
            if not any(name in e for e in entries):
                continue
            like = self.params[name]
            self.keep[name] = torch.stack([e[name][0] if name in e else torch.ones_like(like[0]) for e in entries])
            helds = [e[name][1] if name in e else None for e in entries]
            if any(h is not None for h in helds):
                self.held[name] = torch.stack([h if h is not None else torch.zeros_like(like[0]) for h in helds])

    @torch.no_grad()
    def mask_grads_(self) -> None:
        for name, keep in self.keep.items():
            grad = self.params[name].grad
            if grad is not None:
                grad.mul_(keep)

    @torch.no_grad()
    def apply_(self) -> None:
        for name, keep in self.keep.items():
            self.params[name].mul_(keep)
            if name in self.held:
                self.params[name].add_(self.held[name])

    @torch.no_grad()
    def write_back(self, replicate: int) -> nn.Module:
        """Replicate `replicate`'s module with its current stacked values."""
        model = self.models[replicate]
        for name, value in model.named_parameters():
            value.copy_(self.params[name][replicate])
        return model


@denormals_flushed()
def train_stacked(
    models: Sequence[nn.Module],
    dataset: Dataset,
    spec: TrainSpec,
    *,
    seeds: Sequence[int],
    constraints: Sequence[WeightConstraints | None] | None = None,
    callbacks: Sequence[Sequence[StepCallback]] | None = None,
    start_step: int = 0,
    lr_factor: LrFactor | None = None,
    device: torch.device | str | None = None,
    compile: bool = False,
    on_evaluation: Sequence[EvaluationHook | None] | None = None,
) -> list[TrainResult]:
    """Train `models[r]` as `train(models[r], dataset, spec, seed=seeds[r], constraints=
    constraints[r], callbacks=callbacks[r], start_step=start_step, lr_factor=lr_factor)` would,
    all R in one stacked step; each model ends with its trained weights. Returns one
    `TrainResult` per replicate; each one's `seconds` is its share (1/R) of the wall time.

    `compile` wraps the stacked forward-and-backward in `torch.compile`. Callbacks see their
    replicate's module with its current weights (written back before each call: a cost per
    step only for replicates that have callbacks); `on_evaluation[r]` sees replicate r's
    evaluations as `train`'s hook does (trackers).
    """
    count = len(models)
    check_stackable(models, spec)
    if len(seeds) != count:
        raise TicketlabError(f"stacked training: {count} replicates but {len(seeds)} seeds")
    constraints = list(constraints) if constraints is not None else [None] * count
    callbacks = [list(c) for c in callbacks] if callbacks is not None else [[] for _ in range(count)]
    hooks = list(on_evaluation) if on_evaluation is not None else [None] * count
    if lr_factor is None:
        lr_factor = schedule_factor(spec)
    for model in models:
        placed = place(model, dataset, device)
    dataset = placed
    for c in constraints:
        if device is not None and c is not None:
            c.follow_parameters()
    device = next(models[0].parameters()).device
    stack = _Stack(models, constraints)
    base = copy.deepcopy(models[0]).to("meta")
    base.train()

    def loss_of(params, buffers, x, y):
        return F.cross_entropy(functional_call(base, (params, buffers), (x,)), y)

    step_fn = vmap(grad_and_value(loss_of), in_dims=(0, 0, 0, 0))
    if compile:
        step_fn = torch.compile(step_fn)
    optimizer = make_optimizer(spec, [stack.params[n] for n in stack.trained])
    streams = [batches_from(BatchIterator(dataset.train, spec.batch_size, seed=s), start_step) for s in seeds]
    results = [TrainResult() for _ in range(count)]
    started = time.perf_counter()
    stack.apply_()

    def record(step: int, train_losses: list[float]) -> None:
        eval_started = time.perf_counter()
        for r, result in enumerate(results):
            model = stack.write_back(r)
            val_loss, val_acc = evaluate(model, dataset.val.x, dataset.val.y)
            test_loss, test_acc = evaluate(model, dataset.test.x, dataset.test.y)
            result.evaluations.append(Evaluation(step, train_losses[r], val_loss, val_acc, test_loss, test_acc))
            if hooks[r] is not None:
                hooks[r](result.evaluations[-1], optimizer.param_groups[0]["lr"], eval_started - started)
        spent = time.perf_counter() - eval_started
        for result in results:
            result.eval_seconds += spent / count

    def call_back(step: int) -> None:
        for r, those in enumerate(callbacks):
            if those:
                model = stack.write_back(r)
                for callback in those:
                    callback(step, model)

    call_back(start_step)
    record(start_step, [float("nan")] * count)
    sync_every_step = device.type in SYNC_EVERY_STEP
    references = [math.log(dataset.num_classes) if dataset.num_classes > 1 else 1.0] * count
    loss_sums = torch.zeros(count, dtype=torch.float64, device=device)
    window_max = torch.full((count,), -math.inf, device=device)
    loss_count, window_start = 0, start_step + 1
    for step in range(start_step + 1, spec.iterations + 1):
        drawn = [next(stream) for stream in streams]
        xs = [x for x, _ in drawn]
        if spec.augment:
            xs = [crop_and_flip(x, generator(s, "augment", step)) for x, s in zip(xs, seeds)]
        x, y = torch.stack(xs), torch.stack([y for _, y in drawn])
        grads, losses = step_fn(stack.params, stack.buffers, x, y)
        for name in stack.trained:
            stack.params[name].grad = grads[name]
        values = losses.detach()
        if step == start_step + 1:
            firsts = values.tolist()  # one wait for the device, at the first step only
            references = [max(ref, first) if math.isfinite(first) else ref for ref, first in zip(references, firsts)]
        if sync_every_step:
            for r, loss_value in enumerate(values.tolist()):
                if diverged(loss_value, references[r]):
                    raise DivergedError(
                        f"training diverged at iteration {step} (replicate {r}, seed {seeds[r]}): loss "
                        f"{loss_value:.4g}, against {references[r]:.4g} at the start (diverged: NaN, infinite, or "
                        f"over {DIVERGENCE_FACTOR:g} times that). Lower the learning rate (now {spec.lr:g}) or check "
                        "the input data.")
        else:
            window_max = torch.maximum(window_max, torch.nan_to_num(values.float(), nan=math.inf))
        loss_sums += values.double()
        loss_count += 1
        stack.mask_grads_()
        if lr_factor is not None:
            for group in optimizer.param_groups:
                group["lr"] = spec.lr * lr_factor(step)
        optimizer.step()
        stack.apply_()
        call_back(step)
        if step % spec.eval_every == 0 or step == spec.iterations:
            if not sync_every_step:
                for r, worst in enumerate(window_max.tolist()):
                    if diverged(worst, references[r]):
                        raise DivergedError(
                            f"training diverged between iterations {window_start} and {step} (replicate {r}, seed "
                            f"{seeds[r]}): loss up to {worst:.4g}, against {references[r]:.4g} at the start. Lower "
                            f"the learning rate (now {spec.lr:g}) or check the input data.")
                window_max.fill_(-math.inf)
                window_start = step + 1
            record(step, (loss_sums / loss_count).tolist())
            loss_sums.zero_()
            loss_count = 0
    for r in range(count):
        stack.write_back(r)
    seconds = time.perf_counter() - started
    for result in results:
        result.seconds = seconds / count
    return results
