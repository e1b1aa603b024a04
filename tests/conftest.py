"""Shared fixtures.

Tests train tiny models, for which one torch thread is fastest and immune to the other
core being busy.
"""

import pytest
import torch

from tinydata import make_tiny_dataset

torch.set_num_threads(1)


@pytest.fixture
def tiny_dataset():
    return make_tiny_dataset()


# The tests that take longest (pytest --durations=20 on 2 cores: each 5-35 s, mostly whole
# `ticketlab` processes, worker pools and a Ray cluster starting). pytest-xdist hands tests out
# in collection order, so these go first: started last, one of them would keep a worker busy
# while the other has nothing left to do.
SLOWEST_FIRST = (
    "tests/engine/test_slurm.py::test_a_study_survives",  # mostly waiting on Slurm's queue: others run meanwhile
    "tests/engine/test_ray.py::test_a_sweep_on_a_local_ray_cluster",
    "tests/training/test_compile.py::test_compiled_training_equals_eager",
    "tests/training/test_stacked.py::test_a_stacked_study_stores",
    "tests/analysis/test_stability_engine.py::test_a_study_killed_between_copies",
    "tests/experiments/test_resume.py::test_kill_9",
    "tests/analysis/test_stability_engine.py::test_two_jobs_write_the_same_csv_and_copies_as_one",
    "tests/models/test_own_model.py::test_imp_with_an_own_model_in_worker_processes",
    "tests/engine/test_orphans.py::test_workers_die_with_a_driver_killed_at_any_moment",
    "tests/supermasks/test_reproduce.py::test_parallel_cells_give_the_serial_results",
    "tests/test_cli.py::test_parallel_replicates_equal_sequential_one_thread_ones",
    "tests/store/test_db.py::test_concurrent_writers_of_one_seed_lose_no_rows_and_no_sidecars",
    "tests/test_cli_adversarial.py::test_sigterm_is_an_interruption_that_keeps_results",
    "tests/experiments/test_resume.py::test_several_processes_writing_one_store_lose_no_rows",
    "tests/store/test_damage.py::test_a_read_only_runs_dir",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        return next((i for i, prefix in enumerate(SLOWEST_FIRST) if item.nodeid.startswith(prefix)), len(SLOWEST_FIRST))

    items.sort(key=rank)  # stable: every other test keeps its place
