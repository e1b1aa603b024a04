"""`ticketlab report` of a sweep: one self-contained HTML file, rendered by headless Chromium
(skipped where there is none): the screenshot is not blank, every figure has a size, the
per-seed level table of each run has the rows `ticketlab show --csv` writes."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import pytest
from tracktools import run_cli

from ticketlab.store import ResultsStore

MEASURE = """<script>
window.addEventListener("load", function () {
  var sizes = Array.prototype.map.call(document.querySelectorAll("figure svg"), function (svg) {
    var box = svg.getBoundingClientRect(); return [Math.round(box.width), Math.round(box.height)]; });
  var rows = {};
  document.querySelectorAll("table").forEach(function (t) { rows[t.id] = t.tBodies[0].rows.length; });
  document.body.setAttribute("data-measured", JSON.stringify({figures: sizes, rows: rows}));
});
</script></body>"""


def chromium() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
                None)


def browser(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=5000", *args], capture_output=True, text=True, timeout=120)


def test_the_report_of_a_sweep_renders_in_chromium(tracked_sweep, tmp_path):
    runs_dir, run_ids, _ = tracked_sweep
    (sweep_id, _, _), = ResultsStore(runs_dir, readonly=True).sweeps()
    out = tmp_path / "report.html"
    code, printed, err = run_cli("report", sweep_id[:8], "--runs-dir", str(runs_dir), "--out", str(out))
    assert code == 0, err
    page = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(\s*["']?https?:|<link\b""", page)  # nothing fetched
    assert page.count("<svg") >= 1 + 2 * len(run_ids)  # the comparison, and per run its two figures
    if chromium() is None:
        pytest.skip("no Chromium here (apt-get install chromium) to render the report")

    shot = tmp_path / "report.png"
    assert browser("--window-size=1280,1600", f"--screenshot={shot}", out.as_uri()).returncode == 0
    from PIL import Image

    pixels = Image.open(shot).convert("L")
    histogram = pixels.histogram()
    not_white = sum(histogram[:240]) / sum(histogram)
    assert not_white > 0.02, f"the screenshot is nearly blank ({not_white:.1%} of pixels not white)"

    measured_page = tmp_path / "measured.html"
    measured_page.write_text(page.replace("</body>", MEASURE, 1))
    dom = browser("--dump-dom", measured_page.as_uri()).stdout
    found = re.search(r'data-measured="([^"]*)"', dom)
    assert found, "the page's scripts did not run"
    measured = json.loads(found.group(1).replace("&quot;", '"'))
    assert measured["figures"] and all(w > 100 and h > 100 for w, h in measured["figures"]), measured["figures"]
    for run_id in run_ids:
        listing = tmp_path / f"{run_id}.csv"
        code, _, err = run_cli("show", run_id, "--runs-dir", str(runs_dir), "--csv", str(listing))
        assert code == 0, err
        with open(listing) as f:
            expected = len(list(csv.DictReader(f)))
        assert measured["rows"][f"levels-{run_id}"] == expected > 0
    assert measured["rows"]["compare-sparsest"] >= len(run_ids)
