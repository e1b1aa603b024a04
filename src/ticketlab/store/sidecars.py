"""Sidecar files that make the run folders self-describing.

The database is an index: everything it holds is also written, atomically and before its
row, into small files beside the results, so a deleted or damaged `results.sqlite` can be
rebuilt from the folders (`ticketlab store repair`). Each sidecar has one writer: a level's
`level.json` is written by the process that trained the level, an artifact's `<file>.sha256`
by the process that wrote the file, so concurrent processes never rewrite a shared file.

  <runs_dir>/<run_id>/run.json                              the run's stored spec
  <runs_dir>/<run_id>/seed_<s>/<branch>/level_<n>/level.json  row, metrics, artifact checksums
  <runs_dir>/<path>.sha256                                  checksum of one artifact (sha256sum format)
  <runs_dir>/studies/<study>/<cell_id>.cell.json            one cell of a paper table
  <runs_dir>/sweeps/<sweep_id>.sweep.json                   a sweep and its runs
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

from ticketlab.store.files import atomic_write_bytes

RUN_FILE = "run.json"
LEVEL_FILE = "level.json"
CHECKSUM_SUFFIX = ".sha256"
CELL_SUFFIX = ".cell.json"
SWEEP_SUFFIX = ".sweep.json"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _name(text: str) -> str:
    """`text` as one file name (ids with '/' or odd characters stay one level deep)."""
    return quote(text, safe="") or "%00"


def run_file(runs_dir: Path, run_id: str) -> Path:
    return Path(runs_dir) / run_id / RUN_FILE


def level_file(runs_dir: Path, run_id: str, seed: int, branch: str, level: int) -> Path:
    return Path(runs_dir) / run_id / f"seed_{seed}" / branch / f"level_{level}" / LEVEL_FILE


def checksum_file(runs_dir: Path, artifact: str) -> Path:
    return Path(runs_dir) / (artifact + CHECKSUM_SUFFIX)


def cell_file(runs_dir: Path, study: str, cell_id: str) -> Path:
    return Path(runs_dir) / "studies" / _name(study) / (_name(cell_id) + CELL_SUFFIX)


def sweep_file(runs_dir: Path, sweep_id: str) -> Path:
    return Path(runs_dir) / "sweeps" / (_name(sweep_id) + SWEEP_SUFFIX)


def write_json(path: Path, value) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=1).encode())


def write_checksum(runs_dir: Path, artifact: str, sha: str) -> None:
    """`<artifact>.sha256` in the format `sha256sum -c` reads."""
    atomic_write_bytes(checksum_file(runs_dir, artifact), f"{sha}  {Path(artifact).name}\n".encode())


def read_checksum(path: Path) -> str | None:
    """The SHA-256 in a `.sha256` sidecar, or None when it is unreadable."""
    try:
        sha = path.read_text().split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    return sha if _HEX64.match(sha) else None


def run_files(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob(f"*/{RUN_FILE}"))


def level_files(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob(f"*/seed_*/*/level_*/{LEVEL_FILE}"))


def checksum_files(runs_dir: Path) -> list[Path]:
    return sorted(p for p in Path(runs_dir).rglob(f"*{CHECKSUM_SUFFIX}") if p.is_file())


def cell_files(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob(f"studies/*/*{CELL_SUFFIX}"))


def sweep_files(runs_dir: Path) -> list[Path]:
    return sorted(Path(runs_dir).glob(f"sweeps/*{SWEEP_SUFFIX}"))


def level_key(runs_dir: Path, path: Path) -> tuple[str, int, str, int] | None:
    """(run id, seed, branch, level) of a level folder or of its `level.json`, from the path."""
    parts = Path(path).relative_to(runs_dir).parts
    parts = parts[:-1] if parts and parts[-1] == LEVEL_FILE else parts
    if len(parts) != 4 or not parts[1].startswith("seed_") or not parts[3].startswith("level_"):
        return None
    seed, level = parts[1][5:], parts[3][6:]
    if not seed.lstrip("-").isdigit() or not level.isdigit():
        return None
    return parts[0], int(seed), parts[2], int(level)


def run_level_files(runs_dir: Path, run_id: str) -> dict[tuple[str, int, str, int], Path]:
    """{(run id, seed, branch, level): its level.json} of one run."""
    found = ((level_key(runs_dir, path), path) for path in Path(runs_dir).glob(f"{run_id}/seed_*/*/level_*/{LEVEL_FILE}"))
    return {key: path for key, path in found if key is not None}


def read_level(path: Path) -> dict | None:
    """A `level.json`'s record ({row, metrics, artifacts}), or None when it is missing or
    not a level record."""
    from ticketlab.store.db import LevelRow

    try:
        value = json.loads(path.read_text())
        LevelRow(**value["row"])
        {name: (info["sha256"], info["bytes"]) for name, info in value.get("artifacts", {}).items()}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return value


def any_sidecar(runs_dir: Path) -> bool:
    """Whether the folder holds anything a rebuild could restore (cheap: stops at the first)."""
    runs_dir = Path(runs_dir)
    patterns = (f"*/{RUN_FILE}", f"*/seed_*/*/level_*/{LEVEL_FILE}", f"studies/*/*{CELL_SUFFIX}",
                f"sweeps/*{SWEEP_SUFFIX}")
    return any(next(runs_dir.glob(pattern), None) is not None for pattern in patterns)
