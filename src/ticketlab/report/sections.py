"""What a report shows, read from the store: per run its tables, findings, figures, spec and
provenance; across runs a comparison labelled by what differs between them."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.store.db import LevelRow


@dataclass
class Table:
    """A table as the page shows it (sortable) and as its CSV link downloads it."""

    id: str
    caption: str
    header: list[str]
    rows: list[list[str]]
    csv: str = ""  # the raw values, for the download link (empty: no link)


@dataclass
class RunSection:
    run_id: str
    title: str
    findings: list[str]
    tables: list[Table]
    figures: list[tuple[str, str]]  # (caption, svg)
    spec_text: str
    provenance: dict[str, str]


@dataclass
class Comparison:
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)


def resolve_targets(store, names: list[str]) -> tuple[list[str], str | None]:
    """Run ids for RUN arguments (a unique prefix of a run or of a sweep id, whose runs it
    stands for); the sweep id when a single sweep was named."""
    from ticketlab.store.report import resolve_run

    runs: list[str] = []
    sweep = None
    sweeps = {sweep_id: sweep_id for sweep_id, _, _ in store.sweeps()}
    for name in names:
        if store.find_run(name):
            runs.append(resolve_run(store, name))
            continue
        matches = [s for s in sweeps if s.startswith(name)]
        if len(matches) == 1:
            sweep = matches[0]
            runs.extend(store.sweep_runs(sweep))
            continue
        resolve_run(store, name)  # raises the store's one-line error (unknown or ambiguous)
    runs = list(dict.fromkeys(runs))
    if not runs:
        raise TicketlabError("no runs to report")
    return runs, (sweep if len(names) == 1 else None)


def level_rows_csv(rows: list[LevelRow]) -> tuple[list[str], list[list[str]], str]:
    """Every level row, one per seed: the columns and values `ticketlab show --csv` writes."""
    names = list(LevelRow.__dataclass_fields__)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(names)
    values = [[getattr(row, n) for n in names] for row in rows]
    writer.writerows(values)
    return names, [[_cell(v) for v in row] for row in values], buffer.getvalue()


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def summary_table(run_id: str, summaries) -> Table:
    from ticketlab.store.report import _spread

    header = ["branch", "level", "remaining", "seeds", "test acc at early stop", "early-stop iteration", "final test acc"]
    rows = [[s.branch, str(s.level), f"{s.density:.2%}", str(s.seeds), _spread(s.early_stop_acc, s.seeds, ".2%"),
             _spread(s.early_stop_iteration, s.seeds, ".0f"), _spread(s.final_acc, s.seeds, ".2%")] for s in summaries]
    return Table(f"summary-{run_id}", "Levels: mean ± standard deviation over seeds", header, rows)


def run_title(spec: dict, run_id: str) -> str:
    method = spec.get("method", {}).get("name", "imp")
    pruning = spec.get("pruning", {})
    what = (f"{pruning.get('levels', '?')} levels of {pruning.get('criterion', '?')} pruning" if method == "imp"
            else f"method {method}")
    seeds = ", ".join(map(str, spec.get("seeds", [])))
    baselines = ", ".join(spec.get("baselines", [])) or "none"
    return (f"{spec.get('model', {}).get('name', '?')} on {spec.get('data', {}).get('name', '?')}: {what}; "
            f"seeds {seeds}; baselines {baselines}")


def run_section(store, run_id: str) -> RunSection:
    from ticketlab.analysis.stability_report import stability_rows
    from ticketlab.report import figures
    from ticketlab.store.report import headline, summarise

    spec = store.run_spec(run_id) or {}
    rows = store.levels(run_id)
    summaries = summarise(rows)
    run_dir = Path(store.runs_dir) / run_id
    findings = []
    sentence = headline(summaries) if rows else None
    if sentence:
        findings.append(sentence)
    choice = run_dir / "stability_choice.json"
    if choice.is_file():
        from ticketlab.analysis.stability_choice import describe

        findings.append(describe(json.loads(choice.read_text())))
    if not rows:
        findings.append("No level has finished yet.")
    tables = [summary_table(run_id, summaries)] if rows else []
    names, values, text = level_rows_csv(rows)
    tables.append(Table(f"levels-{run_id}", "Every level of every seed (the rows of `ticketlab show --csv`)",
                        names, values, text))
    stability = stability_rows(run_dir)
    if stability:
        header = list(stability[0])
        tables.append(Table(f"stability-{run_id}", "Instability: error barriers between copies (stability.csv)", header,
                            [[_cell(_number(row[h])) for h in header] for row in stability],
                            (run_dir / "stability.csv").read_text()))
    shown: list[tuple[str, str]] = []
    if rows:
        shown += [("Test accuracy at early stop and early-stop iteration against weights remaining", svg)
                  for svg in figures.lth_figure(store, [run_id])]
        seed = min(r.seed for r in rows)
        branch = "imp" if any(r.branch == "imp" for r in rows) else rows[0].branch
        shown += [(f"Learning curves per level ({branch}, seed {seed})", svg)
                  for svg in figures.curves_figure(store, run_id, seed, branch)]
    if stability:
        shown += [("Instability (Frankle et al. 2020)", svg) for svg in figures.stability_figures(run_dir)]
    spec_file = run_dir / "spec.toml"
    spec_text = spec_file.read_text() if spec_file.is_file() else json.dumps(spec, indent=1, sort_keys=True)
    return RunSection(run_id, run_title(spec, run_id), findings, tables, shown, spec_text, run_provenance(store, run_id))


def _number(text: str):
    try:
        return float(text) if "." in text or "e" in text else int(text)
    except ValueError:
        return text


def run_provenance(store, run_id: str) -> dict[str, str]:
    """What the store says of the run (created, code version), what its trackers recorded (git
    commit, machine) when it was tracked, and the level-training time it holds."""
    import time

    out: dict[str, str] = {}
    run_file = Path(store.runs_dir) / run_id / "run.json"
    if run_file.is_file():
        data = json.loads(run_file.read_text())
        out["created"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data.get("created", 0)))
        out["code version"] = str(data.get("code_version", "?"))
    tracked = Path(store.runs_dir) / "track" / "csv" / run_id / "run.json"
    if tracked.is_file():
        out |= {f"{k} (when tracked)": v for k, v in json.loads(tracked.read_text()).get("provenance", {}).items()}
    rows = store.levels(run_id)
    out["level trainings"] = str(len(rows))
    out["training time (sum of levels)"] = f"{sum(r.seconds for r in rows):.1f} s"
    return out


def labels_for(store, run_ids: list[str], sweep: str | None) -> dict[str, str]:
    """A short label per run: its sweep grid point, else the identity fields that differ
    between the runs (e.g. "pruning.criterion = large_final"), else its id."""
    if sweep is not None:
        points = store.sweep_runs(sweep)
        return {run_id: ", ".join(f"{k} = {json.dumps(v)}" for k, v in points.get(run_id, {}).items()) or run_id[:8]
                for run_id in run_ids}
    from ticketlab.track.base import flatten

    flat = {run_id: flatten((store.run_spec(run_id) or {}).get("identity", {})) for run_id in run_ids}
    keys = sorted({k for values in flat.values() for k in values})
    differing = [k for k in keys if len({flat[r].get(k, "(default)") for r in run_ids}) > 1]
    labels = {}
    for run_id in run_ids:
        text = ", ".join(f"{k} = {flat[run_id].get(k, '(default)')}" for k in differing)
        labels[run_id] = f"{text} [{run_id[:6]}]" if text else run_id[:8]
    return labels


def comparison(store, run_ids: list[str], sweep: str | None) -> Comparison:
    """Several runs side by side: per run and branch its sparsest finished level, the tickets'
    accuracy at chosen densities (the deconstruct / sweep table), one figure for all."""
    from ticketlab.experiments.deconstruct import DEFAULT_DENSITIES, study_table
    from ticketlab.report import figures
    from ticketlab.store.report import summarise

    labels = labels_for(store, run_ids, sweep)
    title = f"Sweep {sweep}: {len(run_ids)} runs" if sweep else f"{len(run_ids)} runs compared"
    result = Comparison(title)
    rows = []
    for run_id in run_ids:
        summaries = summarise(store.levels(run_id))
        for branch in dict.fromkeys(s.branch for s in summaries):
            last = max((s for s in summaries if s.branch == branch), key=lambda s: s.level)
            rows.append([labels[run_id], run_id[:12], branch, str(last.level), f"{last.density:.2%}", str(last.seeds),
                         f"{last.early_stop_acc[0]:.2%}", f"{last.final_acc[0]:.2%}"])
    result.tables.append(Table("compare-sparsest", "Each run's sparsest finished level, per branch (means over seeds)",
                               ["run", "id", "branch", "level", "remaining", "seeds", "test acc at early stop",
                                "final test acc"], rows))
    by_label = {labels[run_id]: run_id for run_id in run_ids}
    table = study_table(store, "run", by_label, DEFAULT_DENSITIES)
    if table.columns:
        header = ["run"] + [f"{density:.1%} (level {level})" for level, density in table.columns]
        cells = [[name] + ["–" if s is None else f"{s.early_stop_acc[0]:.2%}" for s in summaries]
                 for name, summaries in table.rows.items()]
        result.tables.append(Table("compare-densities", "Tickets' test accuracy at early stop near these densities "
                                   "(mean over seeds)", header, cells))
        result.figures += [("Tickets of every run against weights remaining", svg)
                           for svg in figures.study_figure(store, title, by_label)]
    else:
        result.figures += [("Every run against weights remaining", svg) for svg in figures.lth_figure(store, run_ids)]
    return result
