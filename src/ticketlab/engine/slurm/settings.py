"""How tasks are submitted to Slurm: the `[executor]` table of a slurm.toml or of a spec.

Every field maps to one sbatch option (or to how the driver watches its jobs); a field left
out is left to the cluster's own default, so an empty table submits with sbatch's defaults.
Unknown fields and values of the wrong type are refused on load, before anything is locked
or submitted.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ticketlab.errors import TicketlabError

TABLE = "executor"


@dataclass(frozen=True)
class SlurmSettings:
    """One task = one array element with these resources.

    `max_tries` bounds the submissions of one task in one command (a job cancelled, timed
    out or lost with its node is submitted again until then, after which the command stops
    and the next one continues); `poll` is how often, in seconds, the driver asks squeue.
    `setup` lines run in the job's shell before Python (module load, a venv's activate);
    `python` is the interpreter on the nodes (default: the driver's own, which works where
    the nodes share its file system)."""

    partition: str | None = None
    account: str | None = None
    time: str | None = None
    cpus_per_task: int = 1
    mem: str | None = None
    gpus_per_task: int = 0
    array_limit: int = 1000
    sbatch_flags: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    python: str | None = None
    max_tries: int = 3
    poll: float = 5.0

    def __post_init__(self):
        for name in ("cpus_per_task", "array_limit", "max_tries"):
            if getattr(self, name) < 1:
                raise TicketlabError(f"[{TABLE}] {name} must be at least 1, got {getattr(self, name)}")
        if self.gpus_per_task < 0:
            raise TicketlabError(f"[{TABLE}] gpus_per_task must be 0 or more, got {self.gpus_per_task}")
        if self.poll <= 0:
            raise TicketlabError(f"[{TABLE}] poll must be a positive number of seconds, got {self.poll}")

    def sbatch_options(self, gpus: int) -> list[str]:
        """The sbatch options of every job (`gpus` per task: this table's, or 1 for --device cuda)."""
        options = [f"--cpus-per-task={self.cpus_per_task}"]
        for flag, value in (("partition", self.partition), ("account", self.account), ("time", self.time),
                            ("mem", self.mem)):
            if value is not None:
                options.append(f"--{flag}={value}")
        if gpus:
            options.append(f"--gpus-per-task={gpus}")
        return options + list(self.sbatch_flags)


# The TOML type each field takes (lists for the tuples; a float field also takes an integer).
_TYPES = {"partition": str, "account": str, "time": str, "cpus_per_task": int, "mem": str, "gpus_per_task": int,
          "array_limit": int, "sbatch_flags": list, "setup": list, "python": str, "max_tries": int,
          "poll": (int, float)}


def settings_from_dict(table: dict, where: str) -> SlurmSettings:
    """Validated settings from a TOML table; `where` names it in errors."""
    names = [field.name for field in dataclasses.fields(SlurmSettings)]
    values = {}
    for key, value in table.items():
        if key not in names:
            raise TicketlabError(f"{where}: unknown field {key!r}; valid fields: {', '.join(names)}")
        wanted = _TYPES[key]
        if isinstance(value, bool) or not isinstance(value, wanted):
            kind = "a list of strings" if wanted is list else "a number" if key == "poll" else \
                f"{'an integer' if wanted is int else 'a string'}"
            raise TicketlabError(f"{where}: {key} must be {kind}, got {value!r}")
        if wanted is list:
            if not all(isinstance(item, str) for item in value):
                raise TicketlabError(f"{where}: {key} must be a list of strings, got {value!r}")
            value = tuple(value)
        values[key] = value
    return SlurmSettings(**values)


def load_settings(path: str | Path | None) -> SlurmSettings:
    """The `[executor]` table of the TOML file `path` (a slurm.toml, or a spec that carries
    one); a file without that table, or no file, means the cluster's defaults."""
    if path is None:
        return SlurmSettings()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TicketlabError(f"Slurm settings file {path} does not exist; give a TOML file with an "
                             f"[{TABLE}] table (docs/slurm.md)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TicketlabError(f"Slurm settings file {path} cannot be read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise TicketlabError(f"Slurm settings file {path} is not valid TOML: {error}") from None
    table = data.get(TABLE, {})
    if not isinstance(table, dict):
        raise TicketlabError(f"{path}: {TABLE} must be a table ([{TABLE}]), got {table!r}")
    return settings_from_dict(table, f"{path} [{TABLE}]")
