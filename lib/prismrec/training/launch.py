"""The train stage's driver side: build the per-rank spec, launch ranks, check results.

Launchers (``train.launcher``): ``spark`` runs ranks as Spark tasks with
``horovod.spark.run``; ``horovodrun`` starts ``horovodrun -np N --gloo``; ``local``
runs a single rank in this process.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from prismrec import schema as S
from prismrec import tracking
from prismrec.config import Config, ConfigError
from prismrec.errors import EXIT_REFUSED, InputError, PrismrecError
from prismrec.layout import Layout, record_stage
from prismrec.preprocess.petastorm_io import file_examples, rank_files
from prismrec.reports import TrainReport
from prismrec.training.artifact import MANIFEST, VERSIONED
from prismrec.training.loop import train_rank

logger = logging.getLogger(__name__)


class TrainingError(PrismrecError, RuntimeError):
    """Ranks failed or disagreed (exit code 4: no model is exported)."""

    exit_code = EXIT_REFUSED


def item_statistics(layout: Layout, num_items: int) -> dict[str, list]:
    """Per item_idx: event count, category_idx, and log q of the negative sampler (q ∝ count^0.75)."""
    import pandas as pd

    from prismrec.models.losses import log_q_from_counts

    items = pd.read_parquet(layout.table("items"), columns=[S.ITEM_IDX, S.CATEGORY_ID, S.COUNT])
    categories = pd.read_parquet(layout.table("categories"), columns=[S.CATEGORY_ID, S.CATEGORY_IDX])
    items = items.merge(categories, on=S.CATEGORY_ID)
    counts = np.zeros(num_items, dtype=np.float64)
    category_idx = np.zeros(num_items, dtype=np.int64)
    counts[items[S.ITEM_IDX].to_numpy()] = items[S.COUNT].to_numpy()
    category_idx[items[S.ITEM_IDX].to_numpy()] = items[S.CATEGORY_IDX].to_numpy()
    return {"item_counts": counts.tolist(), "item_category_idx": category_idx.tolist(),
            "log_q": log_q_from_counts(counts).tolist()}


def num_ranks(cfg: Config) -> int:
    return 1 if cfg.train.launcher == "local" else cfg.train.num_proc


def build_spec(cfg: Config, model_id: str | None = None, resume: bool = False) -> dict:
    """What every rank needs (config, data and model paths, item statistics, steps per epoch).

    Each rank reads whole training files (``rank_files``), handed out so that the ranks' example
    counts (``rank_examples``) are as equal as the files allow (``petastorm_io.rank_files``).

    Raises ConfigError when the data was preprocessed with another ``preprocess.max_hist_len``,
    InputError (exit 3) when fewer files than ranks hold examples or the data cannot give every
    rank a step, FileNotFoundError for ``--resume`` without a checkpoint."""
    layout = Layout.of(cfg)
    meta = layout.read_meta()
    if meta["max_hist_len"] != cfg.preprocess.max_hist_len:
        # The network's input width is the config's L; the data's windows are the preprocessed L.
        raise ConfigError(f"preprocess.max_hist_len is {cfg.preprocess.max_hist_len} but the data under "
                          f"{layout.preprocessed} was preprocessed with {meta['max_hist_len']}; set "
                          f"--set preprocess.max_hist_len={meta['max_hist_len']}, or preprocess again")
    if "train_sequences" not in meta:
        raise InputError(f"the data under {layout.preprocessed} was preprocessed by an earlier prismrec, which "
                         f"wrote training windows instead of training sequences; run `prismrec preprocess` again")
    data_path = layout.table("train_sequences")
    ranks = num_ranks(cfg)
    counts = file_examples(data_path)
    shares = rank_files(counts, ranks, data_path)
    examples = sum(counts.values())
    steps = examples // (cfg.train.batch_size * ranks)
    if steps < 1:
        raise InputError(f"train.batch_size={cfg.train.batch_size} × {ranks} ranks exceeds the "
                         f"{examples} training examples; lower train.batch_size")
    model_id = model_id or f"{meta['run_id']}-{cfg.model.encoder}"
    checkpoint_dir = layout.root / "checkpoints" / model_id
    if not resume:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    elif not (checkpoint_dir / "last").exists():
        raise FileNotFoundError(f"--resume: no checkpoint under {checkpoint_dir}; train without --resume")
    return {
        "config": cfg.to_dict(), "config_hash": cfg.config_hash(),
        "data_path": data_path, "rank_files": [[str(Path(data_path) / name) for name in share] for share in shares],
        "rank_examples": [sum(counts[name] for name in share) for share in shares],
        "items_path": layout.table("items"),
        "valid_path": str(Path(layout.table("eval_users")) / f"{S.SPLIT}=valid"),
        "num_items": meta["num_items"], **item_statistics(layout, meta["num_items"]),
        "steps_per_epoch": steps, "model_dir": str(layout.model_dir(model_id)),
        "checkpoint_dir": str(checkpoint_dir), "resume": resume, "run_id": meta["run_id"],
        # Ranks in their own interpreter log at the driver's level (rank 0 only, see rank_main).
        "log_level": logging.getLogger("prismrec").getEffectiveLevel(),
    }


def rank_environment() -> dict[str, str]:
    """The driver's environment for the ranks, minus Petastorm's FutureWarnings.

    Petastorm 0.13.1 calls pyarrow's legacy ParquetDataset API, which pyarrow 14
    still supports but warns about once per row group and rank.
    """
    return {**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _rank_reports(folder: Path, ranks: int) -> list[dict]:
    return [json.loads(p.read_text()) for r in range(ranks) if (p := folder / f"rank-{r}.json").exists()]


def _run_horovodrun(spec: dict, ranks: int, timeout_s: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="prismrec-hvd-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        horovodrun = str(Path(sys.executable).with_name("horovodrun"))
        command = [horovodrun, "-np", str(ranks), "-H", f"localhost:{ranks}", "--gloo",
                   sys.executable, "-m", "prismrec.training.rank_main", str(spec_path), tmp]
        logger.info("launching: %s", " ".join(command))
        # Its own session, so a timeout can end horovodrun and every rank it started.
        process = subprocess.Popen(command, env=rank_environment(), start_new_session=True)
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            raise TrainingError(f"training did not finish within train.rank_timeout_s={timeout_s}s; "
                                f"every rank was stopped. Resume with --resume") from None
        reports = _rank_reports(Path(tmp), ranks)
        if code != 0:
            failures = "; ".join(f"rank {r['rank']}: {r['error']}" for r in reports if "error" in r)
            raise TrainingError(f"horovodrun exited with code {code} ({failures or 'a rank died'}); "
                                f"nothing was published. Fix the cause, then rerun with --resume")
        return reports


class _RetriedPy4JSend(logging.Filter):
    """Drops py4j's INFO traceback for a command it is about to resend on a new connection.

    horovod.spark.run checks Gloo with ``gloo_built`` (horovod/runner/launch.py,
    ``run_controller``), which forks the driver once per process (horovod/common/util.py,
    ``_check_extension_lambda``). The child drops the other threads' thread-locals, so py4j's
    ``ThreadLocalConnectionFinalizer`` (py4j/clientserver.py) closes the connection of py4j's
    garbage-collection thread (``FinalizerWorker``); its ``socket.shutdown`` acts on the socket
    the parent shares. That thread's next ``m d o…`` (delete object) command then fails with
    ConnectionResetError; ``GatewayClient.send_command`` (py4j/java_gateway.py) resends it on a
    new connection and logs the first failure with ``logging.info`` on the root logger, out of
    reach of the ``py4j`` logger's level. A command that fails for good is logged at ERROR and
    still shown.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (record.levelno == logging.INFO and record.msg == "Exception while sending command."
                    and isinstance(getattr(error, "cause", None), ConnectionError))


def _run_spark(spec: dict, ranks: int) -> list[dict]:
    import horovod.spark
    from pyspark import SparkContext

    from prismrec.training.rank_main import spark_rank
    from prismrec.training.relay import DriverRelay

    root = logging.getLogger()
    if not any(isinstance(f, _RetriedPy4JSend) for f in root.filters):
        root.addFilter(_RetriedPy4JSend())  # for good: the resend can come after training
    # Ranks are started on the executors with this interpreter (horovod/spark/runner.py,
    # _launch_job: `executable or sys.executable`, the driver's). Under spark-submit --archives
    # the executors' Python is PYSPARK_PYTHON (e.g. ./environment/bin/python), not the driver's path.
    executable = os.environ.get("PYSPARK_PYTHON") or sys.executable
    conf = SparkContext.getOrCreate().getConf()
    driver_host = conf.get("spark.driver.host")
    # Executors reach the driver where Spark's own RPC does; rank 0's progress comes back that way.
    with DriverRelay(conf.get("spark.driver.bindAddress", driver_host), driver_host) as relay:
        # With stdout/stderr given, horovod/spark/driver/rsh.py has each task service stream its
        # rank's output here (warnings, errors); without, it stays in the executor's stderr log.
        return horovod.spark.run(spark_rank, args=(spec, relay.address), num_proc=ranks, use_gloo=True,
                                 executable=executable, env=rank_environment(), verbose=1,
                                 stdout=sys.stdout, stderr=sys.stderr)


def launch(spec: dict, launcher: str, ranks: int, timeout_s: int) -> list[dict]:
    if launcher == "spark":
        return _run_spark(spec, ranks)
    if launcher == "horovodrun":
        return _run_horovodrun(spec, ranks, timeout_s)
    return [train_rank(spec)]


def check_results(results: list[dict], ranks: int) -> None:
    """All ranks ran, ran the same steps, hold identical weights, and one artifact was written."""
    if len(results) != ranks:
        raise TrainingError(f"expected {ranks} rank results, got {len(results)}")
    if len({r["steps"] for r in results}) != 1:
        raise TrainingError(f"ranks ran unequal steps: {[r['steps'] for r in results]}")
    if len({r["weights_digest"] for r in results}) != 1:
        raise TrainingError("ranks finished with different weights; gradients were not synchronised")
    if sum(r["wrote_artifact"] for r in results) != 1:
        raise TrainingError(f"{sum(r['wrote_artifact'] for r in results)} ranks wrote the artifact, expected 1")


def track_training(cfg: Config, spec: dict, parent_run_id: str | None) -> tracking.Tracker:
    """The training's MLflow run: the resolved config as params; model id, config hash, data run id
    and library versions as tags."""
    model_id = Path(spec["model_dir"]).name
    tracker = tracking.start_run(cfg, model_id, {
        tracking.MODEL_TAG: model_id, "prismrec.config_hash": spec["config_hash"], "prismrec.run_id": spec["run_id"],
        "prismrec.launcher": cfg.train.launcher, **tracking.library_tags((*VERSIONED, "mlflow-skinny", "optuna"))},
        parent_run_id)
    tracker.log_params(tracking.config_params(cfg))
    return tracker


def track_results(tracker: tracking.Tracker, report: dict) -> None:
    """Per-epoch metrics at step = epoch (rank 0's, which are the ranks' averages), the summary, the
    manifest, and where the model is (tag ``prismrec.model_dir``; the model itself is not copied)."""
    for epoch in report["epochs"]:
        tracker.log_metrics({key: value for key, value in epoch.items() if key != "epoch"}, step=epoch["epoch"])
    tracker.log_metrics({"best_valid_ndcg@50": report["best_valid_ndcg@50"], "steps_per_rank": report["steps_per_rank"],
                         "seconds": report["seconds"]})
    model_dir = Path(report["model_dir"])
    tracker.set_tags({"prismrec.model_dir": model_dir.resolve().as_uri(), "prismrec.ranks": report["ranks"],
                      **({"prismrec.pruned_after": report["pruned_after"]} if report["pruned_after"] else {})})
    if (model_dir / MANIFEST).is_file():
        tracker.log_artifact(model_dir / MANIFEST)


def run(spark, cfg: Config, model_id: str | None = None, resume: bool = False, parent_run_id: str | None = None,
        pruning: dict | None = None) -> TrainReport:
    """Train with ``cfg.train.launcher`` on ``cfg.train.ranks`` ranks. Reads the preprocessed
    train_sequences and eval_users; writes the artifact to ``<paths.output>/models/<model_id>``
    (default: run name and encoder), checkpoints under ``checkpoints/<model_id>``, and
    ``models/LATEST``; tracks the training as one MLflow run (:mod:`prismrec.tracking`), a child of
    ``parent_run_id`` when given. ``pruning`` (from :func:`prismrec.training.pruning.pruning_settings`)
    lets a tuning trial stop early. Raises TrainingError (exit 4) when a rank fails or the ranks disagree."""
    started = time.time()
    spec = {**build_spec(cfg, model_id, resume), **({"pruning": pruning} if pruning else {})}
    ranks = num_ranks(cfg)
    logger.info("train: %s launcher, %d rank(s) reading %s examples, %d steps/epoch × %d epochs, model %s",
                cfg.train.launcher, ranks, " / ".join(f"{n:,}" for n in spec["rank_examples"]),
                spec["steps_per_epoch"], cfg.train.epochs, spec["model_dir"])
    tracker = track_training(cfg, spec, parent_run_id)
    try:
        try:
            results = sorted(launch(spec, cfg.train.launcher, ranks, cfg.train.rank_timeout_s),
                             key=lambda r: r["rank"])
        except TrainingError:
            raise
        except Exception as error:  # a rank's failure surfaces here under every launcher
            raise TrainingError(f"training failed: {error}; nothing was published") from error
        check_results(results, ranks)
    except BaseException:
        tracker.end("FAILED")
        raise
    report = {"model_dir": spec["model_dir"], "launcher": cfg.train.launcher, "ranks": ranks,
              "steps_per_rank": results[0]["steps"], "final_loss": results[0]["loss"],
              "epochs": results[0]["epochs"], "best_valid_ndcg@50": results[0]["best_valid_ndcg"],
              "pruned_after": results[0].get("pruned_after"),
              "rank_results": results, "rank_examples": spec["rank_examples"], "seconds": round(time.time() - started, 2)}
    track_results(tracker, report)
    tracker.end()
    report["tracking_run_id"] = tracker.run_id  # None when tracking stopped on an error
    record_stage(Layout.of(cfg), spec["run_id"], "train", report)
    Layout.of(cfg).latest_model.write_text(Path(spec["model_dir"]).name + "\n")
    trained = TrainReport.of(report)
    logger.info("train: done: %s", trained.summary())
    return trained
