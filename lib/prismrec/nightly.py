"""The nightly run for one date, in steps: preprocess → train → evaluate → quality gate → score → promote.

The steps are the pipeline's stages (:mod:`prismrec.stages`) plus the quality gate and the
promotion. Scoring *publishes* tonight's ``dt`` partitions of the output tables; *promote*
then points ``models/PROMOTED.json`` at tonight's model, last, and the quality gate compares
tonight's validation NDCG@50 with the one recorded there.

Every step records itself in ``runs/<date>/manifest.json`` (status, timings, counts,
config hash, error). A rerun of the same date skips the steps that completed with
the same config hash and reruns the rest; once one step runs, every later step
runs too, because each reads what the one before wrote. After a failed train, the
rerun resumes from that model's checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from datetime import date as Date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from prismrec import errors
from prismrec import stages, tracking
from prismrec.config import Config, ConfigError, redact
from prismrec.errors import EXIT_BUSY, EXIT_REFUSED, PrismrecError
from prismrec.layout import Layout, record_stage, write_json

logger = logging.getLogger(__name__)
STEPS = ("preprocess", "train", "evaluate", "quality_gate", "score", "promote")
GATE_METRIC = "ndcg@50"


class StepFailed(PrismrecError, RuntimeError):
    """A nightly step failed; ``step`` names it and ``cause`` is the original error, whose exit code it has."""

    def __init__(self, step: str, dt: str, cause: BaseException):
        super().__init__(f"nightly {dt}: step {step} failed: {cause}")
        self.step, self.cause = step, cause

    @property
    def exit_code(self) -> int:
        return errors.exit_code(self.cause)


class QualityGateError(PrismrecError, RuntimeError):
    """Tonight's model is too far below the promoted one; it is not promoted and tonight's
    output is not published (exit code 4)."""

    exit_code = EXIT_REFUSED


class NightBusy(PrismrecError, RuntimeError):
    """Another process holds the date's lock; nothing was run (exit code 5)."""

    exit_code = EXIT_BUSY


def _lock_holder(path: Path) -> dict:
    """What a lock file says of its holder; empty when it is gone or half written."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _alive(pid) -> bool:
    """Whether process ``pid`` runs on this host; an unreadable pid counts as alive."""
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextmanager
def date_lock(path: Path, dt: str) -> Iterator[None]:
    """Hold ``path`` (``runs/<date>/LOCK``) while one run of the date works; remove it after.

    The lock is created atomically and names its holder (host, pid, start). A lock whose
    process died on this host is taken over; any other refuses the run with NightBusy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": datetime.now(timezone.utc).isoformat()}
    for attempt in (1, 2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            other = _lock_holder(path)
            if attempt == 1 and other.get("host") == holder["host"] and not _alive(other.get("pid")):
                logger.warning("nightly %s: taking over %s, left by pid %s that is no longer running", dt, path,
                               other["pid"])
                path.unlink(missing_ok=True)
                continue
            raise NightBusy(
                f"nightly {dt}: another run holds {path} (host {other.get('host', '?')}, pid {other.get('pid', '?')}, "
                f"since {other.get('started', '?')}); wait for it to finish, or, if no run of {dt} is active, "
                f"delete {path} and rerun") from None
    with os.fdopen(descriptor, "w") as lock:
        json.dump(holder, lock)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def parse_date(text: str, lag_days: int = 0) -> str:
    """``text`` (YYYY-MM-DD) minus ``lag_days``, as YYYY-MM-DD; ConfigError when it is not a date."""
    try:
        day = Date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--date {text!r} is not a date; use YYYY-MM-DD") from None
    if lag_days < 0:
        raise ConfigError(f"--lag-days {lag_days} is negative; use 0 or more days before --date")
    return str(day - timedelta(days=lag_days))


def prune_models(models: Path, run_name: str, keep: int, protected: set[str]) -> list[str]:
    """Remove the nightly model directories of ``run_name`` older than its ``keep`` newest dates.

    Nightly models are named ``<run_name>-<YYYY-MM-DD>-<encoder>``; other directories, and
    the names in ``protected``, stay. ``keep`` 0 keeps everything. Returns the removed names.
    """
    if keep == 0:
        return []
    pattern = re.compile(rf"{re.escape(run_name)}-(\d{{4}}-\d{{2}}-\d{{2}})-.+")
    dated = sorted(((match.group(1), path.name) for path in models.iterdir()
                    if path.is_dir() and (match := pattern.fullmatch(path.name))), reverse=True)
    kept_dates = sorted({day for day, _ in dated}, reverse=True)[:keep]
    removed = [name for day, name in dated if day not in kept_dates and name not in protected]
    for name in removed:
        shutil.rmtree(models / name)
    return sorted(removed)


def promoted_path(layout: Layout) -> Path:
    return layout.models / "PROMOTED.json"


def read_promoted(layout: Layout) -> dict | None:
    path = promoted_path(layout)
    return json.loads(path.read_text()) if path.is_file() else None


def nightly_config(cfg: Config, dt: str) -> Config:
    """``cfg`` for the night of ``dt``: that date's partition, the model and the popularity baseline
    evaluated on the validation split at 50 (the gate's figure; the full comparison with ALS and
    item-kNN is ``prismrec evaluate``)."""
    return cfg.with_values({"run.dt": dt, "evaluate.split": "valid", "evaluate.ks": sorted({*cfg.evaluate.ks, 50}),
                            "evaluate.compare": ["model", "popularity"]}, f"the nightly run of {dt}")


def steps_hash(cfg: Config) -> str:
    """What a completed step is valid for: the config less where outputs go and how Spark runs.

    The manifest lives under ``paths.output``, so moving the folder keeps its steps done.
    """
    data = cfg.to_dict()
    for section in ("spark", "tracking", "tune"):  # how it runs and is recorded, not what it computes
        data.pop(section)
    data["paths"].pop("output")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class Night:
    """One date's run: its config, manifest and the steps' work."""

    def __init__(self, cfg: Config, dt: str, spark=None):
        self.cfg, self.dt, self._spark = nightly_config(cfg, dt), dt, spark
        self.layout = Layout.of(self.cfg)
        self.run_id = f"{self.cfg.run.name}-{dt}"
        self.model_id = f"{self.run_id}-{self.cfg.model.encoder}"
        self.scoring_cfg = self.cfg.with_values({"score.model_id": self.model_id}, f"the nightly run of {dt}")
        self.config_hash = steps_hash(self.cfg)
        self.manifest_path = self.layout.night_dir(dt) / "manifest.json"
        self.manifest = (json.loads(self.manifest_path.read_text()) if self.manifest_path.is_file()
                         else {"dt": dt, "run_id": self.run_id, "steps": {}, "attempts": []})
        self._forced: set[str] = set()  # set by run(): the steps to rerun even when done
        self._previous: dict = {}  # set by run(): the step entries as the last attempt left them

    @property
    def spark(self):
        if self._spark is None:
            from prismrec.spark import get_session

            self._spark = get_session(self.cfg)
        return self._spark

    def save(self) -> None:
        write_json(self.manifest_path, self.manifest)

    # -- the steps: each returns the counts it records ----------------------------------
    def preprocess(self) -> dict:
        report = stages.run("preprocess", self.cfg, self.spark)
        counts = report.counts
        return {"input_records": counts.input, "kept_events": counts.kept, "quarantined": counts.total_quarantined,
                "duplicates": counts.duplicates, "filtered": counts.total_filtered, "users": report.users,
                "train_examples": report.training_examples, "items": report.items}

    def train(self) -> dict:
        # An attempt that failed or was killed ("running") with tonight's config resumes from its checkpoint.
        previous = self._previous.get("train", {})
        checkpoint = self.layout.root / "checkpoints" / self.model_id / "last"
        resume = (previous.get("status") in ("failed", "running") and previous.get("config_hash") == self.config_hash
                  and checkpoint.exists() and not self.forced("train"))
        promoted = read_promoted(self.layout)
        warm_from = ""
        if self.cfg.nightly.train_mode == "warm":
            if promoted and Path(promoted["model_dir"]).is_dir():
                warm_from = promoted["model_dir"]
            else:
                logger.info("nightly %s: train_mode warm but no promoted model yet; training from scratch", self.dt)
        train_cfg = self.cfg.with_values({"train.warm_start": warm_from}, f"the nightly run of {self.dt}")
        report = stages.run("train", train_cfg, self.spark, model_id=self.model_id, resume=resume)
        return {"model_id": self.model_id, "model_dir": report.model_dir, "resumed": resume,
                "warm_start": warm_from, "launcher": report.launcher, "ranks": report.ranks,
                "steps_per_rank": report.steps_per_rank, "epochs_run": len(report.epochs),
                "first_epoch": report.epochs[0].epoch if report.epochs else None,
                "final_loss": report.final_loss, "best_valid_ndcg@50": report.best_valid_ndcg}

    def evaluate(self) -> dict:
        report = stages.run("evaluate", self.scoring_cfg, self.spark)
        model = report.metrics["model"]
        baselines = {f"{system}_{GATE_METRIC}": values[GATE_METRIC]
                     for system, values in report.metrics.items() if system != "model"}
        return {"split": report.split, "users": report.users, GATE_METRIC: model[GATE_METRIC],
                "recall@50": model["recall@50"], **baselines, "report": report.files["json"]}

    def track(self, metrics: dict, tags: dict) -> None:
        """Add the gate's or the publish's figures and decision to tonight's model's MLflow run."""
        tracker = tracking.model_run(self.cfg, self.model_id)
        tracker.log_metrics(metrics)
        tracker.set_tags(tags)
        tracker.end()  # ends a run it had to start; a found run keeps its status

    def quality_gate(self) -> dict:
        new = self.manifest["steps"]["evaluate"]["counts"][GATE_METRIC]
        promoted = read_promoted(self.layout)
        if promoted is None:
            self.track({f"gate.tonight_{GATE_METRIC}": new}, {"gate.decision": "passed", "gate.dt": self.dt,
                                                                "gate.reason": "no promoted model yet"})
            return {"decision": "promote", "reason": "no promoted model yet", GATE_METRIC: new}
        floor = promoted[GATE_METRIC] * (1.0 - self.cfg.nightly.max_ndcg_drop)
        decision = {GATE_METRIC: new, "promoted_model_id": promoted["model_id"],
                    f"promoted_{GATE_METRIC}": promoted[GATE_METRIC], "floor": floor}
        self.track({f"gate.tonight_{GATE_METRIC}": new, f"gate.promoted_{GATE_METRIC}": promoted[GATE_METRIC],
                    "gate.floor": floor},
                   {"gate.decision": "refused" if new < floor else "passed", "gate.dt": self.dt,
                    "gate.promoted_model_id": promoted["model_id"]})
        if new < floor:
            raise QualityGateError(
                f"validation {GATE_METRIC} {new:.4f} of model {self.model_id} is below {floor:.4f}, "
                f"more than nightly.max_ndcg_drop={self.cfg.nightly.max_ndcg_drop} under the promoted model "
                f"{promoted['model_id']} ({promoted[GATE_METRIC]:.4f}); refusing to promote it or publish its "
                f"output. The promoted model and the published outputs are unchanged")
        return {"decision": "promote", **decision}

    def score(self) -> dict:
        import pyarrow.parquet as pq

        report = stages.run("score", self.scoring_cfg, self.spark)
        rows = sum(pq.ParquetFile(path).metadata.num_rows
                   for path in Path(report.recommendations).glob("*.parquet"))
        return {"users": report.users, "recommendations": rows, "table": report.recommendations}

    def promote(self) -> dict:
        gate = self.manifest["steps"]["evaluate"]["counts"]
        record = {"model_id": self.model_id, "model_dir": str(self.layout.model_dir(self.model_id)),
                  "dt": self.dt, "run_id": self.run_id, GATE_METRIC: gate[GATE_METRIC],
                  "config_hash": self.config_hash, "promoted_at": datetime.now(timezone.utc).isoformat(),
                  "recommendations": str(self.layout.output_table("recommendations", self.dt)),
                  "user_interests": str(self.layout.output_table("user_interests", self.dt))}
        write_json(promoted_path(self.layout), record)
        self.track({}, {"published.dt": self.dt, "published.recommendations": record["recommendations"],
                        "published.user_interests": record["user_interests"], "promoted": "true"})
        # The model is exported; its checkpoints served only a resume of this night's training.
        shutil.rmtree(self.layout.root / "checkpoints" / self.model_id, ignore_errors=True)
        latest = self.layout.latest_model
        protected = {self.model_id, *([latest.read_text().strip()] if latest.is_file() else [])}
        pruned = prune_models(self.layout.models, self.cfg.run.name, self.cfg.nightly.keep_models, protected)
        if pruned:
            logger.info("nightly %s: removed %d model(s) older than the %d newest nights: %s", self.dt, len(pruned),
                        self.cfg.nightly.keep_models, ", ".join(pruned))
        return {**record, "pruned_models": pruned}

    # -- bookkeeping ----------------------------------------------------------------------
    def forced(self, step: str) -> bool:
        return step in self._forced

    def still_done(self, step: str) -> bool:
        """Completed with tonight's config, and what it wrote is still there."""
        entry = self.manifest["steps"].get(step, {})
        if entry.get("status") != "done" or entry.get("config_hash") != self.config_hash:
            return False
        if step == "preprocess":  # the preprocessed tables are shared by every date
            meta = self.layout.meta_path
            return meta.is_file() and json.loads(meta.read_text()).get("dt") == self.dt
        if step == "train":
            return (self.layout.model_dir(self.model_id) / "manifest.json").is_file()
        if step == "score":
            return self.layout.output_table("recommendations", self.dt).is_dir()
        return True

    def eta(self, remaining: tuple[str, ...]) -> str:
        """The remaining steps' seconds on the last other night that ran them all."""
        others = sorted(p for p in self.layout.runs.glob("*/manifest.json") if p.parent.name != self.dt)
        for path in reversed(others):
            steps = json.loads(path.read_text()).get("steps", {})
            if all(steps.get(s, {}).get("status") == "done" for s in remaining):
                return f"~{sum(steps[s]['seconds'] for s in remaining):.0f}s (from {path.parent.name})"
        return "unknown (no earlier night)"

    def run(self, force: bool = False, force_step: str = "") -> dict:
        if force_step and force_step not in STEPS:
            raise ConfigError(f"--force-step {force_step!r} is not a step; steps: {', '.join(STEPS)}")
        first_forced = 0 if force else STEPS.index(force_step) if force_step else len(STEPS)
        self._forced = set(STEPS[first_forced:])
        self._previous = json.loads(json.dumps(self.manifest["steps"]))
        started = time.time()
        for earlier in self.manifest["attempts"]:
            earlier.setdefault("status", "interrupted")  # its process died before it could say
        attempt = {"started": datetime.now(timezone.utc).isoformat(), "ran": [], "skipped": []}
        self.manifest.update(config_hash=self.config_hash, status="running")
        self.manifest["attempts"].append(attempt)
        self.cfg.save(self.manifest_path.parent / "config.yaml")
        logger.info("nightly %s: run %s, config %s: %s", self.dt, self.run_id, self.config_hash,
                    json.dumps(redact(self.cfg.to_dict()), sort_keys=True))
        upstream_ran = False
        for number, step in enumerate(STEPS, 1):
            if not (upstream_ran or self.forced(step)) and self.still_done(step):
                attempt["skipped"].append(step)
                logger.info("nightly %s [%d/%d] %s: skipped, completed %s (--force-step %s reruns it)",
                            self.dt, number, len(STEPS), step, self.manifest["steps"][step]["finished"], step)
                continue
            upstream_ran = True
            logger.info("nightly %s [%d/%d] %s: starting; eta for the rest of the night %s", self.dt, number,
                        len(STEPS), step, self.eta(STEPS[number - 1:]))
            entry = {"status": "running", "config_hash": self.config_hash,
                     "started": datetime.now(timezone.utc).isoformat()}
            self.manifest["steps"][step] = entry
            self.save()
            step_started = time.time()
            try:
                entry["counts"] = self._in_job_group(step)
            except Exception as error:
                entry.update(status="failed", error=f"{type(error).__name__}: {error}",
                             seconds=round(time.time() - step_started, 2))
                self.manifest["status"], self.manifest["failed_step"] = "failed", step
                attempt.update(status="failed", failed=step, seconds=round(time.time() - started, 2))
                self.save()
                raise StepFailed(step, self.dt, error) from error
            entry.update(status="done", seconds=round(time.time() - step_started, 2),
                         finished=datetime.now(timezone.utc).isoformat())
            attempt["ran"].append(step)
            self.save()
            logger.info("nightly %s [%d/%d] %s: done in %.1fs %s", self.dt, number, len(STEPS), step,
                        entry["seconds"], json.dumps(entry["counts"], default=str))
        return self._finish(attempt, started)

    def _in_job_group(self, step: str) -> dict:
        if step in ("quality_gate", "promote"):  # no Spark work
            return getattr(self, step)()
        from prismrec.spark import job_group

        with job_group(self.spark, f"nightly-{step}", f"nightly {self.dt} {step}"):
            return getattr(self, step)()

    def _finish(self, attempt: dict, started: float) -> dict:
        attempt.update(status="done", seconds=round(time.time() - started, 2))
        steps = self.manifest["steps"]
        self.manifest.pop("failed_step", None)
        self.manifest.update(status="done", finished=datetime.now(timezone.utc).isoformat(),
                             seconds={step: steps[step]["seconds"] for step in STEPS},
                             counts={step: steps[step]["counts"] for step in STEPS})
        self.save()
        record_stage(self.layout, self.run_id, "nightly", {"manifest": str(self.manifest_path), **attempt})
        logger.info("nightly %s: done in %.1fs; ran %s, skipped %s; promoted model %s", self.dt,
                    attempt["seconds"], attempt["ran"] or "nothing", attempt["skipped"] or "nothing",
                    steps["promote"]["counts"]["model_id"])
        return self.manifest


def run_night(cfg: Config, dt: str, force: bool = False, force_step: str = "", spark=None) -> dict:
    """Run (or resume) the night of ``dt``; returns its manifest, raises :class:`StepFailed`.

    Raises :class:`NightBusy` when another run of ``dt`` is under way: two runs of one date
    would overwrite each other's tables and manifest.
    """
    lock = Layout.of(nightly_config(cfg, dt)).night_dir(dt) / "LOCK"
    with date_lock(lock, dt):
        return Night(cfg, dt, spark).run(force, force_step)
