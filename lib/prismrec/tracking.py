"""Experiment tracking with MLflow: one run per training, with evaluation and the nightly gate added to it.

Where runs go, the first that applies: ``tracking.uri``; the ``MLFLOW_TRACKING_URI``
environment variable; on Databricks (``DATABRICKS_RUNTIME_VERSION`` set) the workspace's
tracking server, which is MLflow's own default there; else a local file store at
``<paths.output>/mlruns`` (``mlflow ui --backend-store-uri <that folder>`` shows it).
``tracking.enabled: false`` turns it off, and MLflow is then not imported.

Tracking never fails a run. The first error of a run's tracking (an unreachable server, a
store that cannot be written) is logged once as a warning, and that run's tracking stops; a
store that could not be opened is not tried again by this process. Requests to a tracking
server are retried twice (the second retry 2 s after the first) with a 10 s timeout, unless
``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` or
``MLFLOW_HTTP_REQUEST_TIMEOUT`` say otherwise (MLflow's defaults wait minutes).

MLflow names allow no ``@``: NDCG@20 is logged as ``ndcg_at_20`` (:func:`metric_name`).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from pathlib import Path

from prismrec._versions import installed_version
from prismrec.config import Config, redact

logger = logging.getLogger(__name__)
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
MODEL_TAG = "prismrec.model_id"
_BATCH = 100  # MLflow accepts at most 100 params or tags per request
_warned: set[str] = set()  # the stores already warned about in this process
_unopened: set[str] = set()  # the stores that could not be opened: not tried again


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def tracking_uri(cfg: Config) -> str:
    """The store's URI: ``tracking.uri``, ``$MLFLOW_TRACKING_URI``, ``databricks`` (the workspace's
    server) on Databricks, else ``<paths.output>/mlruns`` as a file URI."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if on_databricks():
        return "databricks"
    return (Path(cfg.paths.output).resolve() / "mlruns").as_uri()


def experiment_name(cfg: Config) -> str:
    name = cfg.tracking.experiment
    return f"/Shared/{name}" if on_databricks() and not name.startswith("/") else name


def metric_name(name: str) -> str:
    """An MLflow-legal key: ``@`` becomes ``_at_``; any other character MLflow refuses becomes ``_``."""
    return re.sub(r"[^\w.\- /]", "_", name.replace("@", "_at_"))


def config_params(cfg: Config) -> dict[str, str]:
    """The resolved config flattened to ``section.key`` → text, secrets redacted."""
    flat: dict[str, str] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[metric_name(f"{prefix}{key}")] = (json.dumps(value) if isinstance(value, (list, dict))
                                                       else str(value))

    walk(redact(cfg.to_dict()), "")
    return flat


def library_tags(names: tuple[str, ...]) -> dict[str, str]:
    return {f"version.{name}": installed_version(name) or "not installed" for name in names}


class Tracker:
    """One MLflow run, or nothing: every method does nothing when tracking is off, and after the
    run's first tracking error, which it logs once as a warning. ``run_id`` is None then."""

    def __init__(self, client=None, run_id: str | None = None, where: str = "", owned: bool = False):
        self._client, self.run_id, self._where, self._owned = client, run_id, where, owned

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def _safely(self, what: str, method: str, *args, **kwargs):
        """``MlflowClient.<method>(*args, **kwargs)``, or None when inactive or when it fails."""
        if not self.active:
            return None
        try:
            return getattr(self._client, method)(*args, **kwargs)
        except Exception as error:  # tracking must never fail a run
            _warn(self._where, what, error)
            self.run_id = None
            return None

    def log_params(self, params: dict[str, str]) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        items = [Param(key, value[:6000]) for key, value in params.items()]
        for start in range(0, len(items), _BATCH):
            self._safely("log params", "log_batch", self.run_id, params=items[start:start + _BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Each finite or NaN number of ``metrics`` (names made legal by :func:`metric_name`) at ``step``."""
        if not self.active:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(metric_name(key), float(value), stamp, step) for key, value in metrics.items()
                 if isinstance(value, (int, float)) and not isinstance(value, bool)
                 and (math.isfinite(value) or math.isnan(value))]
        for start in range(0, len(items), 1000):
            self._safely("log metrics", "log_batch", self.run_id, metrics=items[start:start + 1000])

    def set_tags(self, tags: dict[str, str]) -> None:
        if not self.active:
            return
        from mlflow.entities import RunTag

        items = [RunTag(key, str(value)) for key, value in tags.items()]
        for start in range(0, len(items), _BATCH):
            self._safely("set tags", "log_batch", self.run_id, tags=items[start:start + _BATCH])

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        """Copy the file at ``path`` (small files only: manifests, reports, figures) into the run."""
        self._safely(f"log {Path(path).name}", "log_artifact", self.run_id, str(path), folder)

    def end(self, status: str = "FINISHED") -> None:
        """Mark a run this tracker started FINISHED or FAILED (``status``); a found run keeps its status."""
        if self._owned:
            self._safely("end the run", "set_terminated", self.run_id, status)


def _warn(where: str, what: str, error: BaseException) -> None:
    if where not in _warned:
        _warned.add(where)
        logger.warning("MLflow tracking at %s failed (%s: %s); the run goes on untracked. Check tracking.uri "
                       "or MLFLOW_TRACKING_URI, or set tracking.enabled=false", redact(where), what,
                       redact(" ".join(str(error).split())[:300]))


def _client(cfg: Config):
    """(MlflowClient, experiment id, where) or None when tracking is off or the store cannot be reached."""
    if not cfg.tracking.enabled:
        return None
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    where = uri = tracking_uri(cfg)
    if where in _unopened:
        return None
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        name = experiment_name(cfg)
        experiment = client.get_experiment_by_name(name)
        return client, (experiment.experiment_id if experiment else client.create_experiment(name)), where
    except Exception as error:  # tracking must never fail a run
        _warn(where, "open the experiment", error)
        _unopened.add(where)
        return None


def start_run(cfg: Config, name: str, tags: dict[str, str], parent_run_id: str | None = None) -> Tracker:
    """A new run named ``name`` in ``tracking.experiment``, a child of ``parent_run_id`` when given."""
    opened = _client(cfg)
    if opened is None:
        return Tracker()
    client, experiment_id, where = opened
    tags = {"mlflow.runName": name, **tags, **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})}
    tracker = Tracker(client, "", where, owned=True)
    run = tracker._safely("start a run", "create_run", experiment_id, tags=tags)
    tracker.run_id = run.info.run_id if run is not None else None
    return tracker


def model_run(cfg: Config, model_id: str) -> Tracker:
    """The latest run that trained ``model_id`` (tag ``prismrec.model_id``), to add results to; a new
    run with that tag when none is found (e.g. the model was trained with tracking off)."""
    opened = _client(cfg)
    if opened is None:
        return Tracker()
    client, experiment_id, where = opened
    finder = Tracker(client, "", where)
    found = finder._safely("find the model's run", "search_runs", [experiment_id],
                           filter_string=f"tags.`{MODEL_TAG}` = '{model_id}'", order_by=["attribute.start_time DESC"],
                           max_results=1)
    if finder.run_id is None:
        return finder
    if found:
        return Tracker(client, found[0].info.run_id, where)
    return start_run(cfg, model_id, {MODEL_TAG: model_id})
