"""Read W&B offline run files (`run-<id>.wandb`) with W&B's own record protobuf.

wandb >= 0.19 writes them from its Go core and ships no Python reader; the framing is
LevelDB's log format (W&B's `datastore`): a 7-byte header (":W&B", magic 0xBEE1, version),
then 32 KiB blocks of records, each a 7-byte header (CRC32, length, type: 1 full, 2 first,
3 middle, 4 last) and its bytes. The records are `wandb_internal_pb2.Record` messages.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    offset, pending = HEADER, b""
    while offset + HEADER <= len(data):
        left = BLOCK - offset % BLOCK
        if left < HEADER:  # the block's tail is padding
            offset += left
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + HEADER])
        if length == 0 and kind == 0:
            offset += left
            continue
        chunk = data[offset + HEADER:offset + HEADER + length]
        offset += HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def history_and_summary(path: Path) -> tuple[list[dict], dict, dict]:
    """(history rows, the last summary, config) of one offline run file."""
    history, summary, config = [], {}, {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "run":
            for item in record.run.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return history, summary, config


def offline_runs(folder: Path) -> dict[str, Path]:
    """{W&B run id: its .wandb file} under a W&B folder."""
    return {path.stem.removeprefix("run-"): path for path in Path(folder).rglob("run-*.wandb")}
