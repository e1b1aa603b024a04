"""Table 1 beside the paper's numbers: Markdown to read, CSV with one row per cell.

Every number is a test accuracy in percent; a difference is ours minus the paper's. The
caption says what was run and every way the budget or data differ from the paper's.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass

from ticketlab.schedules import PAPER_TRAINING
from ticketlab.supermasks.reproduce import STAND_IN, Reproduction
from ticketlab.supermasks.spec import LEARNERS, paper_spec
from ticketlab.supermasks.zhou2019 import COLUMNS, NETWORKS, PAPER_TABLE1, ROW_TITLES


@dataclass(frozen=True)
class Row:
    network: str
    data_set: str
    column: str
    ours: float | None  # None: not run yet
    paper: float | None  # None: not in the paper
    difference: float | None
    deterministic: float | None  # learned masks: the deterministic mask's accuracy
    density: float | None  # of the mask behind `ours` (best level, or the deterministic mask)
    best_level: int | None  # init masks: the prune level p of the best accuracy
    budget: str  # epochs or iterations the cell ran
    seconds: float | None


def rows(reproduction: Reproduction) -> list[Row]:
    out = []
    for cell in reproduction.cells:
        result = reproduction.results.get(cell.id)
        paper = PAPER_TABLE1[cell.network].get(cell.column)
        ours = None if result is None else round(100 * result["accuracy"], 2)
        deterministic = None if result is None or "deterministic_acc" not in result else \
            round(100 * result["deterministic_acc"], 2)
        out.append(Row(
            cell.network, cell.config["dataset"], cell.column, ours, paper,
            None if ours is None or paper is None else round(ours - paper, 2), deterministic,
            None if result is None else result.get("density", 1.0),
            None if result is None else result.get("best_level"), _budget(cell.config),
            None if result is None else round(result["seconds"], 1),
        ))
    return sorted(out, key=lambda row: (reproduction.plan.networks.index(row.network), list(COLUMNS).index(row.column)))


def _budget(config: dict) -> str:
    if config["kind"] == "trained":
        return f"{config['training']['iterations']} iterations"
    if config["kind"] == "init_mask":
        return f"best of {config['levels']} levels"
    return f"{config['supermask']['epochs']:g} epochs"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _cell_text(row: Row) -> str:
    if row.ours is None:
        return "—"
    if row.paper is None:
        return f"{row.ours:.1f}"
    return f"{row.ours:.1f} / {row.paper:.1f} ({row.difference:+.1f})"


def markdown(reproduction: Reproduction) -> str:
    table = rows(reproduction)
    by_cell = {(row.network, row.column): row for row in table}
    titles = [title for title, _ in COLUMNS.values()]
    lines = [caption(reproduction), "", "| Network | " + " | ".join(titles) + " |", "|---" * (len(titles) + 1) + "|"]
    for network in reproduction.plan.networks:
        cells = [_cell_text(by_cell[network, column]) for column in COLUMNS]
        lines.append(f"| {_row_title(reproduction, network)} | " + " | ".join(cells) + " |")
    lines += ["", "Per cell: the deterministic mask (score > 0, or the top-k) of learned masks, the density of "
              "the mask behind the number, the init masks' best prune level, the budget and the time.", "",
              "| Network | Column | Ours | Paper | Δ | Deterministic mask | Density | Best level | Budget | Seconds |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        lines.append(
            f"| {row.network} | {COLUMNS[row.column][0]} | {_pct(row.ours)} | {_pct(row.paper)} | "
            f"{'—' if row.difference is None else f'{row.difference:+.1f}'} | {_pct(row.deterministic)} | "
            f"{'—' if row.density is None else f'{row.density:.1%}'} | "
            f"{'—' if row.best_level is None else row.best_level} | {row.budget} | "
            f"{'—' if row.seconds is None else f'{row.seconds:.0f}'} |"
        )
    return "\n".join(lines) + "\n"


def _row_title(reproduction: Reproduction, network: str) -> str:
    data_set = reproduction.datasets[network]
    if reproduction.plan.dataset is not None:
        return f"{network} ({data_set})"
    return ROW_TITLES[network] + (" (JPEG stand-in)" if data_set == STAND_IN else "")


def caption(reproduction: Reproduction) -> str:
    plan = reproduction.plan
    parts = [
        f"**Table 1 of Zhou et al. (2019), reproduced.** Test accuracy (%), ours / paper (ours − paper); "
        f"seed {plan.seed}, one run per cell (the paper averages four or more).",
        f"Init-mask columns: the `{plan.criterion}` mask of the trained network on the untrained initial "
        f"weights (kept weights at their initial values, or at sign(w_i) times the layer's init std), best "
        f"test accuracy over {plan.levels} one-shot prune levels p (each layer keeps (1 - r)^p, r = 0.2 fc, "
        "0.1 output and conv, 0.15 Conv-6 conv).",
        "Learned masks: mask ~ Bernoulli(sigmoid(score)) with a straight-through gradient, scores from 0, "
        "SGD lr 100, momentum 0.9, batch 250; the number is the mean test accuracy over 10 sampled masks, as "
        "in the paper. DWR: signed constants rescaled per layer by weights / weights kept.",
        "Edge-popup (Ramanujan et al. 2020; not in Zhou et al.): top 50% |score| per layer on signed "
        "constants, SGD lr 0.1 with cosine decay, momentum 0.9, weight decay 1e-4, batch 128.",
    ]
    changed = _budget_changes(reproduction)
    parts.append("Budget, where it differs from the papers': " + "; ".join(changed) + "." if changed
                 else "Budget: the papers' full schedules.")
    if plan.dataset is not None:
        parts.append(f"Every row ran on `{plan.dataset}` instead of the paper's data set: a smoke test, "
                     "not comparable with the paper's numbers.")
    return " ".join(parts + reproduction.notes)


def _budget_changes(reproduction: Reproduction) -> list[str]:
    plan, changed = reproduction.plan, []
    if plan.epochs is not None:
        for name in LEARNERS.names():
            paper = paper_spec(name).epochs
            if plan.epochs < paper:
                changed.append(f"{name} mask learning {plan.epochs:g} epochs instead of {paper}")
    if plan.dense_iterations is not None:
        for network in plan.networks:
            paper = PAPER_TRAINING[NETWORKS[network][0]]["iterations"]
            if plan.dense_iterations != paper:
                changed.append(f"{network} trained for {plan.dense_iterations} iterations instead of {paper}")
    return changed


def csv_text(table: list[Row]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(Row.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(row) for row in table)
    return text.getvalue()
