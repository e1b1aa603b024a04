"""A tiny finished IMP run on the bundled digits data, shared by the export tests."""

import pytest

from ticketlab.experiments import prepare, run_experiment, spec_from_dict

SPEC = {"training": {"iterations": 60, "eval_every": 20},
        "pruning": {"levels": 2, "rates": {"fc": 0.8, "output": 0.5}}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    experiment, dataset = prepare(spec_from_dict(SPEC), runs_dir)
    run_experiment(experiment, dataset=dataset, report=lambda row: None)  # not the per-process data cache, which
    # other tests fill with tiny data under the same key
    return runs_dir, experiment.run_id, dataset
