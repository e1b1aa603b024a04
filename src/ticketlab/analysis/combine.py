"""Combine two tickets of one network found from different seeds.

Given tickets A and B (same run spec, so the same architecture and data; typically the same
level of two seeds), with masks M_A, M_B and trained weights w_A, w_B (each level's
`final.safetensors`; pruned entries are 0 there):

- **union**: mask M_A ∪ M_B; a weight kept by one ticket takes that ticket's value, a weight
  kept by both takes the mean (w_A + w_B) / 2. Biases (never pruned) are averaged.
- **intersection**: mask M_A ∩ M_B with the same rule (every kept weight is kept by both, so
  every weight is the mean); biases averaged.
- **ensemble**: the mean of the two tickets' softmax outputs; prediction = its argmax.

With `finetune` = N > 0, union and intersection are then trained N iterations (the run's
optimizer, learning rate and batch size; pruned weights held at zero by `WeightConstraints`),
and for the ensemble each member is trained N iterations under its own mask (2N in all).
Batches are drawn from `seed`. Everything is evaluated on the run's test split.

Baselines: each parent as stored, and the *single ticket at the combined density*: the IMP
level of A's seed whose density is nearest the combined mask's, as stored (trained the
run's full schedule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ticketlab.analysis.tickets import Ticket, resolve
from ticketlab.errors import TicketlabError
from ticketlab.masks import Mask
from ticketlab.store import ResultsStore
from ticketlab.track.session import note, unit


def merge_weights(mask_a: Mask, w_a: dict[str, torch.Tensor], mask_b: Mask, w_b: dict[str, torch.Tensor],
                  mask: Mask) -> dict[str, torch.Tensor]:
    """Weights under `mask` (the union or intersection): each kept weight is the mean of the
    values of the tickets that keep it (the value of the one ticket, or the mean of both);
    a weight neither keeps, or `mask` drops, is 0. Entries without a mask (biases) are averaged."""
    if set(w_a) != set(w_b):
        raise TicketlabError("the two tickets have different parameters: combine tickets of the same network")
    merged = {}
    for name in w_a:
        if name not in mask:
            merged[name] = (w_a[name] + w_b[name]) / 2
            continue
        ka, kb = mask_a[name].to(w_a[name].dtype), mask_b[name].to(w_a[name].dtype)
        count = ka + kb
        total = w_a[name] * ka + w_b[name] * kb
        merged[name] = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total)) * mask[name]
    return merged


def union(a: Mask, b: Mask) -> Mask:
    return Mask({n: a[n] | b[n] for n in a})


def intersection(a: Mask, b: Mask) -> Mask:
    return Mask({n: a[n] & b[n] for n in a})


@dataclass(frozen=True)
class CombineRow:
    name: str
    density: float
    test_acc: float
    finetuned_acc: float | None  # None without fine-tuning, or where it does not apply


@torch.no_grad()
def _accuracy(models, x, y) -> float:
    """Test accuracy of one model, or of the mean softmax of several."""
    for model in models:
        model.eval()
    correct = 0
    for start in range(0, len(y), 500):
        probs = sum(F.softmax(m(x[start:start + 500]), dim=1) for m in models) / len(models)
        correct += int((probs.argmax(1) == y[start:start + 500]).sum())
    return correct / len(y)


def combine_tickets(store: ResultsStore, ref_a: str, ref_b: str, *, finetune: int = 0, seed: int = 0,
                    data_dir=None, device: str | None = None) -> list[CombineRow]:
    """The rows of the module docstring's table for tickets `ref_a`, `ref_b`, every network
    fine-tuned and evaluated on `device` (auto, cpu, cuda, cuda:N, mps; default: the CPU)."""
    from ticketlab.data import load_dataset
    from ticketlab.models import build_model
    from ticketlab.training import TrainSpec, WeightConstraints, train
    from ticketlab.training.device import resolved_name

    device = resolved_name(device) or "cpu"
    tickets = [resolve(store, ref) for ref in (ref_a, ref_b)]
    for ref, found in zip((ref_a, ref_b), tickets):
        if len(found) != 1:
            raise TicketlabError(f"{ref!r} names {len(found)} tickets; name one (RUN[:LEVEL][@SEED], no *)")
    ta, tb = tickets[0][0], tickets[1][0]
    if ta == tb:
        raise TicketlabError(f"{ref_a!r} and {ref_b!r} are the same ticket; combine two different ones")
    spec_a, spec_b = (dict(t.spec) for t in (ta, tb))
    for key in ("data", "model"):
        if spec_a.get(key) != spec_b.get(key):
            raise TicketlabError(f"the tickets' runs differ in [{key}] ({spec_a.get(key)} vs {spec_b.get(key)}): "
                                 "combine tickets of the same network on the same data")
    data_spec = spec_a.get("data", {})
    data = load_dataset(data_spec["name"], data_dir, val_size=data_spec.get("val_size"), seed=0,
                        path=data_spec.get("path"), normalization=data_spec.get("normalization", "standard")).to(device)
    training = spec_a.get("training", {})
    tspec = TrainSpec(optimizer=training.get("optimizer", "adam"), lr=training.get("lr", 1.2e-3),
                      batch_size=training.get("batch_size", 60), momentum=training.get("momentum", 0.9),
                      weight_decay=training.get("weight_decay", 0.0), iterations=max(finetune, 1),
                      eval_every=max(finetune, 1))

    def model_with(weights):
        model = build_model(spec_a["model"]["name"], data.input_shape, data.num_classes, seed=0)
        model.load_state_dict(weights)
        return model.to(device)

    def finetuned(weights, mask):
        model = model_with(weights)
        train(model, data, tspec, seed=seed, constraints=WeightConstraints(model, mask))
        return model

    masks = [ta.mask(), tb.mask()]
    weights = [ta.final(), tb.final()]
    x, y = data.test.x, data.test.y
    rows = []
    for which, t, m, w in zip("ab", (ta, tb), masks, weights):
        with unit(f"parent_{which}", seed=seed):
            rows.append(_noted(CombineRow(f"parent {t.label}", m.density, _accuracy([model_with(w)], x, y), None)))
    for name, rule in (("union", union), ("intersection", intersection)):
        mask = rule(*masks)
        merged = merge_weights(masks[0], weights[0], masks[1], weights[1], mask)
        with unit(name, seed=seed):  # trackers: the fine-tuning, then the row
            tuned = _accuracy([finetuned(merged, mask)], x, y) if finetune else None
            rows.append(_noted(CombineRow(name, mask.density, _accuracy([model_with(merged)], x, y), tuned)))
        single = _nearest_level(store, ta, mask.density)
        if single is not None:
            with unit(f"{name}_nearest_imp", seed=seed):
                rows.append(_noted(CombineRow(f"  nearest IMP level {single.label}", single.density,
                                              _accuracy([model_with(single.final())], x, y), None)))
    members = [model_with(w) for w in weights]
    with unit("ensemble", seed=seed):  # trackers: each member's fine-tuning (levels 0, 1), then the row
        tuned = _accuracy([finetuned(w, m) for w, m in zip(weights, masks)], x, y) if finetune else None
        # the ensemble holds both tickets' weights: its size is |A| + |B| against one network's weights
        rows.append(_noted(CombineRow("ensemble (mean softmax)", (masks[0].kept + masks[1].kept) / masks[0].total,
                                      _accuracy(members, x, y), tuned)))
    return rows


def _noted(row: CombineRow) -> CombineRow:
    """`row`, its numbers added to the current tracked unit's summary (`track.session`)."""
    values = {"density": row.density, "test_acc": row.test_acc}
    note(**values if row.finetuned_acc is None else values | {"finetuned_test_acc": row.finetuned_acc})
    return row


def _nearest_level(store: ResultsStore, ticket: Ticket, density: float) -> Ticket | None:
    """The IMP level of `ticket`'s run and seed whose density is nearest `density` (log scale)."""
    rows = [r for r in store.levels(ticket.run_id) if r.branch == "imp" and r.seed == ticket.seed]
    if not rows or density <= 0:
        return None
    row = min(rows, key=lambda r: abs(math.log(r.density / density)))
    return Ticket(row.run_id, row.seed, "imp", row.level, row.density,
                  store.level_dir(row.run_id, row.seed, "imp", row.level), ticket.spec)


def combine_table(rows: list[CombineRow], finetune: int) -> str:
    tuned = f"fine-tuned {finetune} it" if finetune else ""
    lines = [f"{'':<36}{'density':>9}{'test acc':>10}{tuned:>22}"]
    for r in rows:
        extra = "" if r.finetuned_acc is None else f"{r.finetuned_acc:.2%}"
        lines.append(f"{r.name:<36}{r.density:>9.2%}{r.test_acc:>10.2%}{extra:>22}")
    return "\n".join(lines)
