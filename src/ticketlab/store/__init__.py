"""Results database (SQLite) and artifact files (safetensors)."""

from ticketlab.store.db import LevelRow, ResultsStore, StoreDamagedError
from ticketlab.store.files import atomic_write_bytes, load_tensors, save_tensors, sha256_file

__all__ = ["LevelRow", "ResultsStore", "StoreDamagedError", "atomic_write_bytes", "load_tensors", "save_tensors", "sha256_file"]
