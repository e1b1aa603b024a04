"""The Frankenmodel: a frozen ticket for classes A, its free capacity trained on classes B.

Classes A = 0..k-1, B = k..C-1. Steps, for one seed:

1. **A-ticket.** A network with k outputs is trained on the A examples, then pruned by IMP
   (magnitude, the papers' per-layer rates, `levels` levels, rewinding to init) and the
   last level retrained: the ticket (mask M, trained weights w).
2. **Extension.** A network with C outputs takes w in every layer; its output rows k..C-1
   (and their biases) keep the C-class network's own initialisation; pruned weights are 0.
3. **B-training** on the B examples (labels k..C-1, softmax over all C outputs), `b_iterations`
   iterations. Frozen (held by `WeightConstraints`): every kept weight of M, every hidden
   bias, the A output rows and their biases. What trains depends on the mode:

   - `isolated` (default): a hidden unit is an *A-unit* when a kept weight leads from it to
     an A output (directly, or through other A-units). Only pruned weights whose *target* is
     not an A-unit train, plus the new B output rows. **Promise:** every A-unit reads only
     frozen weights, and the weights from free units into A-units are pruned and held at 0,
     so the A logits are the same function of the input as the A-ticket's: bit for bit,
     measured (`a_logit_change`) against the A-ticket extended to C outputs, whose products
     have the same shapes, so the same kernels and order of summation (the k-output network's
     own logits differ from the extended ticket's by the rounding of a product of another
     shape, a different GEMM blocking: 9.5e-7 on one AVX2 CPU). A inputs can still be
     *classified* as B (10-way argmax), since B logits are new.
   - `all_pruned`: every pruned weight trains (the literal "free capacity"). Only promise:
     the frozen weights are bit-identical. Hidden activations change, so A logits change:
     forgetting is measured, not excluded.

Baselines: `finetune_all` (the extended network, every weight trainable, the same B budget)
and `joint` (a dense C-class network trained on all classes for the A budget).

Reported per model: test accuracy on A examples (10-way argmax, and *task-aware*: argmax over
the A logits only), on B examples (10-way, and over the B logits), on all examples, and the
largest |change| of an A logit against the (extended) A-ticket over the test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ticketlab.data import Dataset, Split
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.models import Network, build_model
from ticketlab.track.session import note, unit
from ticketlab.training import TrainSpec, WeightConstraints, train

MODES = ("isolated", "all_pruned")


def a_units(model: Network, mask: Mask, k: int) -> dict[str, torch.Tensor]:
    """Per prunable fully connected layer, a bool vector over its *output* units: True for A-units
    (units with a path of kept weights to one of the first `k` outputs). The output layer's
    A-units are its first k rows."""
    names = model.prunable_names()
    if any(mask[n].dim() != 2 for n in names):
        raise TicketlabError("the Frankenmodel is defined for fully connected networks (e.g. lenet_300_100)")
    units = {names[-1]: torch.arange(mask[names[-1]].shape[0]) < k}
    for below, above in zip(reversed(names[:-1]), reversed(names[1:])):
        # unit i of `below` feeds A when a kept weight goes from it to an A-unit of `above`
        units[below] = (mask[above] & units[above][:, None]).any(dim=0)
    return units


def trainable_mask(model: Network, mask: Mask, k: int, mode: str) -> Mask:
    """Which entries train on B (True) in `mode`; biases are included (so frozen ones are held)."""
    if mode not in MODES:
        raise TicketlabError(f"unknown Frankenmodel mode {mode!r}; valid: {', '.join(MODES)}")
    units = a_units(model, mask, k)
    names = model.prunable_names()
    trainable = {}
    for name in names:
        free = ~mask[name]
        if mode == "isolated":
            free = free & ~units[name][:, None]
        bias = torch.zeros(mask[name].shape[0], dtype=torch.bool)
        if name == names[-1]:
            new_rows = torch.arange(mask[name].shape[0]) >= k
            free = free.clone()
            free[new_rows] = True
            bias = new_rows
        trainable[name] = free
        trainable[name.rsplit(".", 1)[0] + ".bias"] = bias
    return Mask(trainable)


def class_subset(data: Dataset, classes: list[int], num_classes: int) -> Dataset:
    keep = [torch.isin(s.y, torch.tensor(classes, device=s.y.device)) for s in (data.train, data.val, data.test)]
    splits = [Split(s.x[m].contiguous(), s.y[m].contiguous()) for s, m in zip((data.train, data.val, data.test), keep)]
    return Dataset(f"{data.name}[{classes[0]}-{classes[-1]}]", *splits, num_classes, data.input_shape)


@dataclass(frozen=True)
class FrankenRow:
    model: str
    a_acc: float  # on A test examples, argmax over all outputs
    a_task_acc: float  # argmax over the A logits only
    b_acc: float
    b_task_acc: float
    all_acc: float
    a_logit_change: float  # max |A logit - the A-ticket's| over the test set (NaN for joint)


@torch.no_grad()
def _test_logits(model, data: Dataset) -> torch.Tensor:
    model.eval()
    return torch.cat([model(data.test.x[i:i + 500]) for i in range(0, len(data.test), 500)])


def _row(name: str, model, data: Dataset, k: int, reference: torch.Tensor | None) -> FrankenRow:
    logits = _test_logits(model, data)
    y = data.test.y
    a, b = y < k, y >= k
    full = logits.argmax(1)
    change = float((logits[:, :k] - reference).abs().max()) if reference is not None else float("nan")
    return FrankenRow(name, float((full[a] == y[a]).float().mean()), float((logits[a, :k].argmax(1) == y[a]).float().mean()),
                      float((full[b] == y[b]).float().mean()), float((logits[b, k:].argmax(1) + k == y[b]).float().mean()),
                      float((full == y).float().mean()), change)


def frankenmodel(data: Dataset, *, k: int, model_name: str = "lenet_300_100", levels: int = 5,
                 iterations: int = 1000, b_iterations: int = 1000, seed: int = 0,
                 spec: TrainSpec | None = None, device: str | None = None) -> list[FrankenRow]:
    """The table of the module docstring for one seed (`iterations` per A training, `b_iterations` on B),
    every network trained and evaluated on `device` (auto, cpu, cuda, cuda:N, mps; default: the CPU)."""
    from ticketlab.masks.allocation import Layerwise, default_rates, rates_by_layer
    from ticketlab.masks.pipeline import prune
    from ticketlab.seeds import derived_seed
    from ticketlab.training.device import resolved_name

    classes = data.num_classes
    if not 0 < k < classes:
        raise TicketlabError(f"the A classes 0..k-1 need 0 < k < {classes}, got k = {k}")
    device = resolved_name(device) or "cpu"
    data = data.to(device)

    def new_model(outputs: int) -> Network:
        return build_model(model_name, data.input_shape, outputs, seed).to(device)

    spec = spec or TrainSpec()
    a_spec = TrainSpec(**{**vars(spec), "iterations": iterations, "eval_every": iterations})
    b_spec = TrainSpec(**{**vars(spec), "iterations": b_iterations, "eval_every": b_iterations})
    data_a = class_subset(data, list(range(k)), k)
    data_b = class_subset(data, list(range(k, classes)), classes)

    # 1. the A-ticket by IMP
    model = new_model(k)
    init = {n: t.clone() for n, t in model.state_dict().items()}
    mask = Mask.ones(model)
    with unit("a_ticket", seed=seed):  # trackers: levels 0..levels of the A-ticket's IMP
        train(model, data_a, a_spec, seed=seed)
        rates = rates_by_layer({n: model.layer_kind(n) for n in mask}, default_rates(model_name))
        for level in range(1, levels + 1):
            final = {n: t.clone() for n, t in model.state_dict().items()}
            mask = prune("magnitude", init, final, mask, Layerwise(rates),
                         torch.Generator().manual_seed(derived_seed(seed, "franken", level)))
            model.load_state_dict(init)
            train(model, data_a, a_spec, seed=seed, constraints=WeightConstraints(model, mask))
    ticket = {n: t.clone() for n, t in model.state_dict().items()}

    # 2. the extension to C outputs
    def extended() -> Network:
        big = new_model(classes)
        state = big.state_dict()
        for name, value in ticket.items():
            state[name][: value.shape[0]] = value
        big.load_state_dict(state)
        return big

    out = model.prunable_names()[-1]
    full_mask = Mask({n: (torch.cat([mask[n], torch.ones(classes - k, mask[n].shape[1], dtype=torch.bool)])
                          if n == out else mask[n]) for n in mask})
    # the reference: the ticket's A logits from products of the shapes every model below has
    a_ticket = extended()
    reference = _test_logits(a_ticket, data)[:, :k]
    with unit("a_ticket_extended", seed=seed):
        rows = [_tracked(_row(f"A-ticket ({mask.density:.1%} of weights, seed {seed})", a_ticket, data, k, reference))]
    for mode in MODES:
        big = extended()
        trainable = trainable_mask(big, full_mask, k, mode)
        params = dict(big.named_parameters())
        held = {n: params[n].detach().clone() for n in trainable}
        with unit(f"franken_{mode}", seed=seed):
            train(big, data_b, b_spec, seed=derived_seed(seed, "franken-b"),
                  constraints=WeightConstraints(big, trainable, held))
            frozen = {n: ~trainable[n].to(held[n].device) for n in trainable}
            frozen_same = all(torch.equal(params[n].detach()[frozen[n]], held[n][frozen[n]]) for n in trainable)
            if not frozen_same:
                raise TicketlabError("internal: a frozen weight moved")  # the mechanism's promise, checked every run
            free = sum(int(t.sum()) for n, t in trainable.items() if n.endswith("weight"))
            rows.append(_tracked(_row(f"franken {mode} ({free} weights train, seed {seed})", big, data, k, reference)))
    with unit("finetune_all", seed=seed):
        big = extended()
        train(big, data_b, b_spec, seed=derived_seed(seed, "franken-b"))
        rows.append(_tracked(_row("finetune_all on B", big, data, k, reference)))
    with unit("joint", seed=seed):
        joint = new_model(classes)
        train(joint, data, a_spec, seed=seed)
        rows.append(_tracked(_row("joint (dense, all classes)", joint, data, k, None)))
    return rows


def _tracked(row: FrankenRow) -> FrankenRow:
    """`row`, its numbers added to the current tracked unit's summary (`track.session`)."""
    note(**{name: value for name, value in vars(row).items() if name != "model"})
    return row


def franken_table(rows_per_seed: list[list[FrankenRow]]) -> str:
    """Mean (and min-max over seeds when there are several) of every column."""
    fields = ("a_acc", "a_task_acc", "b_acc", "b_task_acc", "all_acc", "a_logit_change")
    heads = ("A acc", "A task", "B acc", "B task", "all acc", "max |ΔA logit|")
    lines = [f"{'model':<44}" + "".join(f"{h:>22}" for h in heads)]
    for i, first in enumerate(rows_per_seed[0]):
        cells = []
        for field in fields:
            values = [getattr(rows[i], field) for rows in rows_per_seed]
            mean = sum(values) / len(values)
            fmt = ".2e" if field == "a_logit_change" else ".2%"
            cells.append(f"{mean:{fmt}}" if field == "a_logit_change" or len(values) == 1
                         else f"{mean:.1%} ({min(values):.1%}-{max(values):.1%})")
        cells[-1] = cells[-1] if len(values) == 1 else f"{max(values):.2e}"  # the worst seed
        lines.append(f"{first.model:<44}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)
