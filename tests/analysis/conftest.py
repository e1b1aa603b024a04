"""Fixtures of the analysis tests."""

import pytest


@pytest.fixture(scope="module")
def make_stored_run(tmp_path_factory):
    """A function making a finished tiny digits run (LeNet, 20 iterations) from spec sections;
    returns (runs dir, experiment, dataset)."""
    from ticketlab.experiments import prepare, run_experiment, spec_from_dict

    def make(**sections):
        runs = tmp_path_factory.mktemp("runs")
        spec = spec_from_dict({"training": {"iterations": 20, "eval_every": 10, "batch_size": 32}} | sections)
        experiment, dataset = prepare(spec, runs)
        run_experiment(experiment, dataset=dataset, report=lambda row: None)
        return runs, experiment, dataset

    return make
