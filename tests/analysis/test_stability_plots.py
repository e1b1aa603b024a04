"""Instability figures: written beside the run's stability CSV, real images."""

from __future__ import annotations

import shutil

import matplotlib.image as mpimg
import numpy as np
import pytest

from ticketlab.plots.stability import BARRIERS_PNG, PATHS_PNG, plot_stability


@pytest.fixture(scope="module")
def small_run(make_stored_run):
    runs, experiment, _ = make_stored_run(pruning={"levels": 1}, rewind={"iteration": 5})
    return runs, experiment


def looks_like_a_figure(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    pixels = image[..., :3].reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 20  # lines, text and colours, not a blank canvas
    assert (pixels < 0.5).any() and (pixels > 0.9).any()


def test_the_command_writes_both_figures_next_to_its_csv(small_run, tmp_path, capsys):
    from ticketlab.cli import main

    runs, experiment = small_run
    runs = shutil.copytree(runs, tmp_path / "runs")
    assert main(["stability", experiment.run_id, "--levels", "0,1", "--branches", "imp,random_mask",
                 "--rewind-iterations", "0,5", "--points", "4", "--runs-dir", str(runs), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    run_dir = runs / experiment.run_id
    for name in (PATHS_PNG, BARRIERS_PNG):
        assert str(run_dir / name) in out
        looks_like_a_figure(run_dir / name)
    # one panel per network: three panels are wider than one
    wide = mpimg.imread(run_dir / PATHS_PNG).shape[1]
    (run_dir / "seed_0" / "stability" / "imp" / "level_1").rename(tmp_path / "moved_imp")
    (run_dir / "seed_0" / "stability" / "random_mask").rename(tmp_path / "moved_random")
    plot_stability(run_dir)
    assert mpimg.imread(run_dir / PATHS_PNG).shape[1] < wide


def test_no_study_no_figures(small_run):
    runs, experiment = small_run
    assert plot_stability(runs / experiment.run_id) == []
    assert not (runs / experiment.run_id / PATHS_PNG).exists()
