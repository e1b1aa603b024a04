"""Experiments: specs, the IMP runner with rewinding and baselines, resumable runs."""

from ticketlab.experiments.imp import Replicate
from ticketlab.experiments.runner import (
    Experiment, prepare, print_level, run_experiment, run_experiments, spec_with_overrides,
)
from ticketlab.experiments.spec import ExperimentSpec, load_spec, spec_from_dict

__all__ = [
    "Experiment", "ExperimentSpec", "Replicate", "load_spec", "prepare", "print_level",
    "run_experiment", "run_experiments", "spec_from_dict", "spec_with_overrides",
]
