"""MLflow: one parent run per ticketlab run, one child run per (seed, branch, level).

The parent holds the resolved spec as parameters (and spec.toml), seeds and baselines and the
provenance as tags, the figures as artifacts. A child holds its level's evaluations (step =
iteration) and its summary as `level.<metric>` (remaining weights overall and per layer as
`level.density.<layer>`,
early-stop iteration and accuracy, seconds), tagged with run id, seed, branch and level: the
MLflow UI's table of the children is the level table. Runs are found again by
those tags, so a resumed run reuses its parent; a child left unfinished by a kill is deleted
and logged again whole.

The tracking URI: `track.mlflow_uri`, else $MLFLOW_TRACKING_URI, else a SQLite store in the
trackers' folder (`mlflow ui --backend-store-uri sqlite:///<dir>/mlflow.db`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ticketlab.track.base import LevelKey, Summary, Point, RunInfo, Tracker, writable_dir

TAG = "ticketlab."
PARAM_LIMIT = 6000  # MLflow refuses longer parameter values
SEND_SECONDS = 5.0  # evaluations reach MLflow at most this long after they are made
BATCH = 1000  # MLflow's limit of metrics per log_batch


@dataclass
class MlflowTracker(Tracker):
    name = "mlflow"
    package = "mlflow"
    _client: object = field(default=None, repr=False)
    _experiment: str | None = field(default=None, repr=False)
    _parents: dict = field(default_factory=dict, repr=False)
    _children: dict = field(default_factory=dict, repr=False)
    _pending: dict = field(default_factory=dict, repr=False)  # level -> metrics not sent yet
    _sent: dict = field(default_factory=dict, repr=False)  # level -> when its points were last sent

    @property
    def uri(self) -> str:
        return self.spec.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def destination(self) -> str:
        return f"mlflow:{self.uri}#{self.spec.mlflow_experiment}"

    def check(self) -> None:
        uri = self.uri
        if uri.startswith(("http://", "https://")):
            reachable(uri)  # first: a dead server is refused in milliseconds, before MLflow's import (seconds)
        elif uri.startswith("sqlite:///"):
            writable_dir(Path(uri.removeprefix("sqlite:///")).parent)
        super().check()
        self.experiment_id()

    def client(self):
        if self._client is None:
            import logging

            from mlflow.tracking import MlflowClient

            for name in ("mlflow", "alembic"):  # their INFO lines (creating tables ...) are not ours to print
                logging.getLogger(name).setLevel(logging.WARNING)

            self._client = MlflowClient(self.uri)
        return self._client

    def experiment_id(self) -> str:
        if self._experiment is None:
            client = self.client()
            found = client.get_experiment_by_name(self.spec.mlflow_experiment)
            if found is None:
                artifacts = None
                if not self.uri.startswith(("http://", "https://", "databricks")):
                    artifacts = (self.root / "mlflow-artifacts").resolve().as_uri()
                try:
                    self._experiment = client.create_experiment(self.spec.mlflow_experiment, artifact_location=artifacts)
                except Exception:  # another process created it meanwhile
                    self._experiment = client.get_experiment_by_name(self.spec.mlflow_experiment).experiment_id
            else:
                self._experiment = found.experiment_id
        return self._experiment

    def _find(self, **tags) -> list:
        query = " and ".join(f"tags.`{TAG}{k}` = '{v}'" for k, v in tags.items())
        return self.client().search_runs([self.experiment_id()], query, max_results=1000)

    def parent(self, run_id: str, run: RunInfo | None = None) -> str:
        """The parent run of ticketlab run `run_id`, created when missing."""
        if run_id not in self._parents:
            found = self._find(run_id=run_id, kind="run")
            if found:
                self._parents[run_id] = found[0].info.run_id
            else:
                created = self.client().create_run(self.experiment_id(), run_name=f"ticketlab {run_id}",
                                                   tags={f"{TAG}run_id": run_id, f"{TAG}kind": "run"})
                self._parents[run_id] = created.info.run_id
                if run is not None:
                    self._describe(created.info.run_id, run)
        return self._parents[run_id]

    def _describe(self, parent: str, run: RunInfo) -> None:
        from mlflow.entities import Param, RunTag

        client = self.client()
        have = client.get_run(parent).data.params
        params = [Param(k, v[:PARAM_LIMIT]) for k, v in sorted(run.params.items()) if k not in have]
        for start in range(0, len(params), 100):
            client.log_batch(parent, params=params[start:start + 100])
        tags = {f"{TAG}{k}": v for k, v in (run.tags | run.provenance).items()}
        client.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
        client.log_text(parent, run.spec_toml, "spec.toml")

    def start_run(self, run: RunInfo) -> None:
        parent = self.parent(run.run_id, run)
        self._describe(parent, run)  # a resumed run: new seeds or baselines, this command's provenance
        self.client().update_run(parent, status="RUNNING")

    def discard_level(self, key: LevelKey) -> None:
        self._pending.pop(key, None)
        for found in self._find(run_id=key.run_id, seed=key.seed, branch=key.branch, level=key.level, kind="level"):
            self.client().delete_run(found.info.run_id)

    def start_level(self, key: LevelKey, run: RunInfo | None) -> None:
        parent = self.parent(key.run_id, run)
        tags = {f"{TAG}run_id": key.run_id, f"{TAG}seed": str(key.seed), f"{TAG}branch": key.branch,
                f"{TAG}level": str(key.level), f"{TAG}kind": "level", "mlflow.parentRunId": parent}
        child = self.client().create_run(self.experiment_id(), run_name=f"{key.run_id[:8]} {key.label}", tags=tags)
        self._children[key] = child.info.run_id

    def point(self, key: LevelKey, point: Point) -> None:
        """Points are sent in batches, at most every SEND_SECONDS and at the level's end: one
        request (or SQLite transaction, some 25 ms of CPU) per evaluation would cost a long
        level seconds of its cores."""
        from mlflow.entities import Metric

        now = time.time()
        self._pending.setdefault(key, []).extend(
            Metric(name, value, int(now * 1000), point.iteration) for name, value in point.metrics().items())
        if now - self._sent.setdefault(key, now) >= SEND_SECONDS:
            self._send(key)

    def _send(self, key: LevelKey) -> None:
        metrics = self._pending.pop(key, [])
        self._sent[key] = time.time()
        for start in range(0, len(metrics), BATCH):
            self.client().log_batch(self._children[key], metrics=metrics[start:start + BATCH])

    def end_level(self, key: LevelKey, summary: Summary) -> None:
        from mlflow.entities import Metric

        self._send(key)
        self._sent.pop(key, None)
        now = int(time.time() * 1000)
        child = self._children.pop(key)
        values = summary.metrics()
        # "density/<layer>" as "density.<layer>": a file store makes a "/" a folder beside the file "density"
        self.client().log_batch(child, metrics=[Metric(f"level.{k.replace('/', '.')}", v, now, 0)
                                                for k, v in values.items()])
        self.client().set_terminated(child, "FINISHED")

    def end_run(self, run: RunInfo, figures: list[Path]) -> None:
        parent = self.parent(run.run_id, run)
        for path in figures:
            self.client().log_artifact(parent, str(path), "figures")
        self.client().set_terminated(parent, "FINISHED")


def reachable(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when nothing answers at `uri`."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=5).close()
    except OSError as error:
        raise ConnectionError(f"cannot reach the MLflow server at {uri} ({error.strerror or error})") from None
