"""The report page: one HTML file that needs nothing else (it opens from file:// offline).

Styles and the table sorter are inline, figures are inline SVG, each table's CSV is a data:
link. Nothing refers to the network: the only URLs in the file are SVG's XML namespaces.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path

from ticketlab.errors import TicketlabError
from ticketlab.report.sections import Comparison, RunSection, Table

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#1d2430;background:#fff}
h1{font-size:1.6em;margin:.3em 0}h2{border-bottom:2px solid #d0d7e2;padding-bottom:.2em;margin-top:2em}
h3{margin:1.4em 0 .4em}
.meta{color:#566}.finding{background:#eef5ff;border-left:4px solid #3a78d8;padding:.5em .8em;margin:.5em 0}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:13px}
th,td{border:1px solid #d0d7e2;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f1f4f9;cursor:pointer;user-select:none}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
td:first-child,th:first-child{text-align:left}
tbody tr:nth-child(even){background:#fafbfd}
.scroll{overflow-x:auto}
figure{margin:1em 0}figure svg{max-width:100%;height:auto;display:block}
figcaption{color:#566;font-size:13px}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:12px}
nav a{margin-right:1em}dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em;font-size:13px}
dt{color:#566}dd{margin:0;font-family:monospace}
"""

SORTER = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var up = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(up ? "asc" : "desc");
      function key(row) {
        var text = row.cells[column].textContent.trim(), number = parseFloat(text.replace("%", ""));
        return isNaN(number) ? text : number;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return up ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def table_html(table: Table) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in table.rows)
    link = ""
    if table.csv:
        data = base64.b64encode(table.csv.encode()).decode()
        link = f' <a download="{esc(table.id)}.csv" href="data:text/csv;base64,{data}">CSV</a>'
    return (f'<h3>{esc(table.caption)}{link}</h3><div class="scroll"><table class="sortable" id="{esc(table.id)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def figure_html(caption: str, svg: str) -> str:
    return f'<figure class="figure">{svg}<figcaption>{esc(caption)}</figcaption></figure>'


def run_html(section: RunSection) -> str:
    parts = [f'<section id="run-{esc(section.run_id)}"><h2>Run {esc(section.run_id)}</h2>',
             f'<p class="meta">{esc(section.title)}</p>']
    parts += [f'<p class="finding">{esc(line)}</p>' for line in section.findings]
    parts += [figure_html(caption, svg) for caption, svg in section.figures]
    parts += [table_html(table) for table in section.tables]
    parts.append("<h3>Provenance</h3><dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>"
                                                     for k, v in section.provenance.items()) + "</dl>")
    parts.append(f"<details><summary>Resolved spec (spec.toml)</summary><pre>{esc(section.spec_text)}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def comparison_html(comparison: Comparison) -> str:
    parts = [f'<section id="comparison"><h2>{esc(comparison.title)}</h2>']
    parts += [figure_html(caption, svg) for caption, svg in comparison.figures]
    parts += [table_html(table) for table in comparison.tables]
    parts.append("</section>")
    return "\n".join(parts)


def render(sections: list[RunSection], comparison: Comparison | None, made_by: dict[str, str]) -> str:
    nav = "".join(f'<a href="#run-{esc(s.run_id)}">{esc(s.run_id[:8])}</a>' for s in sections)
    if comparison is not None:
        nav = '<a href="#comparison">comparison</a>' + nav
    title = f"ticketlab report: {', '.join(s.run_id[:8] for s in sections)}"
    made = ", ".join(f"{k} {v}" for k, v in made_by.items())
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="meta">Made {esc(time.strftime("%Y-%m-%d %H:%M"))} by {esc(made)}. Tables sort by a click '
            "on their headers; every number is read from the results store.</p>",
            f"<nav>{nav}</nav>"]
    if comparison is not None:
        body.append(comparison_html(comparison))
    body += [run_html(section) for section in sections]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + f"\n<script>{SORTER}</script></body></html>\n")


def write_report(runs_dir: str | Path, names: list[str], out: str | Path) -> Path:
    """Write the report of the runs (or sweep) `names` of the store at `runs_dir` to `out`."""
    from ticketlab.report.sections import comparison, resolve_targets, run_section
    from ticketlab.store import ResultsStore, atomic_write_bytes
    from ticketlab.track.provenance import provenance

    out = Path(out)
    if out.is_dir():
        raise TicketlabError(f"--out {out} is a folder; give a file name, e.g. --out {out / 'report.html'}")
    if not out.parent.is_dir():
        raise TicketlabError(f"--out {out}: the folder {out.parent} does not exist; create it or give another path")
    store = ResultsStore(runs_dir, readonly=True)
    run_ids, sweep = resolve_targets(store, names)
    sections = [run_section(store, run_id) for run_id in run_ids]
    compared = comparison(store, run_ids, sweep) if len(run_ids) > 1 else None
    made_by = {k: v for k, v in provenance().items() if k in ("ticketlab_version", "git_commit", "host")}
    text = render(sections, compared, made_by)
    try:
        atomic_write_bytes(out, text.encode("utf-8"))
    except OSError as error:
        raise TicketlabError(f"cannot write {out}: {error.strerror or error}; choose a writable place with --out") from None
    return out
