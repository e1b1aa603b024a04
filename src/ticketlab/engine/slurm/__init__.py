"""The Slurm executor (`--executor slurm`): tasks as Slurm array jobs, submitted with sbatch.

`settings` reads the [executor] table, `commands` runs Slurm's commands, `records` keeps
which job holds which task beside each run, `executor` schedules and watches, `job` is what
each array element runs, and `status` says what `ticketlab runs` / `show` print about them.
No Python package is needed: only Slurm's commands on PATH (docs/slurm.md).
"""

from ticketlab.engine.slurm import executor  # noqa: F401  registers "slurm"
