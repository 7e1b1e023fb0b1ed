"""``prismrec tune``: an Optuna study over model and training settings, scored by validation NDCG@20.

Each trial is a training run (the train stage, with ``train.launcher`` as configured) on the
preprocessed data under ``paths.output``, with the values the TPE sampler suggests for the keys
of ``tune.space``. Its score is the validation NDCG@20 of the epoch the train stage exports (the
best by validation NDCG@50). Each epoch's NDCG@20 is reported to Optuna's median pruner, which
stops trials that fall behind (:mod:`prismrec.training.pruning`). The first trial of a study is
the config as it is, so the result is never worse than it on validation.

Everything lives in ``<paths.output>/tune/<study>/``: ``study.db`` (SQLite; a second invocation
resumes the study, until ``tune.trials`` trials have finished), the trials' training output
(``L<max_hist_len>/``, whose ``preprocessed`` is a link to the data, or the data preprocessed
again when the space varies ``preprocess.max_hist_len``) and ``tuned.yaml``: the best trial's
values as a config layer, for ``--conf your.yaml --conf tuned.yaml``. Each trial is an MLflow
child run of the invocation's run when tracking is on. Trials' models are removed once scored.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import time
from pathlib import Path

import yaml

from prismrec import stages, tracking
from prismrec.config import Config, ConfigError
from prismrec.layout import Layout
from prismrec.training.launch import TrainingError
from prismrec.training.pruning import median_pruner, pruning_settings

logger = logging.getLogger(__name__)
TUNED = "tuned.yaml"
HEARTBEAT_S, GRACE_S = 30, 120  # a trial whose process has not beaten for GRACE_S is failed, then retried once


def study_folder(cfg: Config) -> Path:
    return Layout.of(cfg).root / "tune" / (cfg.tune.study or cfg.run.name)


def config_value(cfg: Config, dotted: str):
    node = cfg.to_dict()
    for part in dotted.split("."):
        node = node[part]
    return node


def in_space(value, spec: dict) -> bool:
    if spec["type"] == "categorical":
        return value in spec["choices"]
    return isinstance(value, (int, float)) and spec["low"] <= value <= spec["high"]


def suggest(trial, key: str, spec: dict):
    """The trial's value for config ``key`` from its ``tune.space`` entry ``spec``."""
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    suggest_number = trial.suggest_int if spec["type"] == "int" else trial.suggest_float
    return suggest_number(key, spec["low"], spec["high"], log=spec.get("log", False))


def tuned_layer(params: dict) -> dict:
    """``{"a.b": v}`` → ``{"a": {"b": v}}``: a layer ``--conf`` reads."""
    layer: dict = {}
    for dotted, value in sorted(params.items()):
        *parents, name = dotted.split(".")
        node = layer
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value
    return layer


def check_space(cfg: Config) -> None:
    """Raise ConfigError (exit 2), before any trial, for a ``tune.space`` key that is not a config value
    or a value at the ends of its range (or among its choices) that the config refuses."""
    for key, spec in cfg.tune.space.items():
        try:
            current = config_value(cfg, key)
        except (KeyError, TypeError):
            raise ConfigError(f"tune.space names {key!r}, which is not a config key; use dotted keys of "
                              f"conf/base.yaml such as train.learning_rate") from None
        if isinstance(current, dict):
            raise ConfigError(f"tune.space names {key!r}, a whole section; name one of its keys")
        if spec["type"] == "float" and isinstance(current, int) and not isinstance(current, bool):
            raise ConfigError(f"tune.space.{key} has type: float, but {key} is an integer; use type: int")
        for value in spec["choices"] if spec["type"] == "categorical" else (spec["low"], spec["high"]):
            cfg.with_values({key: value}, f"tune.space.{key}")


class Study:
    """One invocation of ``prismrec tune`` on its study."""

    def __init__(self, cfg: Config, spark=None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress lines below say it instead
        self.cfg, self.spark, self.settings = cfg, spark, cfg.tune
        check_space(cfg)
        self.folder = study_folder(cfg)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.main = Layout.of(cfg)
        self.main_hist_len = self.main.read_meta()["max_hist_len"]
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{self.folder / 'study.db'}", heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1))
        self.study = optuna.create_study(
            study_name=self.folder.name, storage=storage, load_if_exists=True, direction="maximize",
            pruner=median_pruner(self.settings.startup_trials, self.settings.warmup_epochs))
        # Seeded by the trials so far: a resumed study must not draw the first invocation's values
        # again (TPE samples its first trials with a RandomSampler reseeded from this seed).
        self.study.sampler = optuna.samplers.TPESampler(seed=self.settings.seed + len(self.study.trials))
        self.parent = tracking.Tracker()
        self.started = time.time()
        self.ran = 0

    def finished(self) -> list:
        from optuna.trial import TrialState

        return [t for t in self.study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]

    def data_root(self, max_hist_len: int) -> Path:
        """A trial's output root: ``L<n>/``, whose ``preprocessed`` holds the data for ``max_hist_len``:
        a link to the data, or the data preprocessed again (again whenever the data's own
        ``_meta.json`` has changed since)."""
        root = self.folder / f"L{max_hist_len}"
        preprocessed = Layout(root).preprocessed
        source = hashlib.sha256(self.main.meta_path.read_bytes()).hexdigest()
        stamp = root / "source_meta.sha256"
        if not preprocessed.is_symlink() and stamp.is_file() and stamp.read_text() != source:
            logger.info("tune: the data under %s changed; preprocessing %s again", self.main.preprocessed, root)
            shutil.rmtree(preprocessed, ignore_errors=True)
        if max_hist_len == self.main_hist_len and not preprocessed.exists():
            root.mkdir(parents=True, exist_ok=True)
            try:
                preprocessed.symlink_to(self.main.preprocessed, target_is_directory=True)
            except OSError as error:  # a store without links (e.g. a FUSE mount): preprocess a copy below
                logger.info("tune: cannot link %s (%s); preprocessing a copy", self.main.preprocessed, error)
        if not Layout(root).meta_path.is_file():
            logger.info("tune: preprocessing the data again with preprocess.max_hist_len=%d into %s",
                        max_hist_len, root)
            stages.run("preprocess", self.cfg.with_values(
                {"paths.output": str(root), "preprocess.max_hist_len": max_hist_len}, "prismrec tune"), self.spark)
            stamp.write_text(source)
        return root

    def objective(self, trial) -> float:
        import optuna

        values = {key: suggest(trial, key, spec) for key, spec in self.settings.space.items()}
        hist_len = values.get("preprocess.max_hist_len", self.main_hist_len)
        root = self.data_root(hist_len)
        # The trial's run goes to the tune's own store, not to one under the trial's output root.
        store = {"tracking.uri": tracking.tracking_uri(self.cfg)}
        trial_cfg = self.cfg.with_values({**values, "paths.output": str(root), **store}, f"tune trial {trial.number}")
        logger.info("tune: trial #%d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in values.items()))
        model_id = f"trial-{trial.number}"
        pruning = pruning_settings(self.study, self.settings.startup_trials, self.settings.warmup_epochs)
        try:
            report = stages.run("train", trial_cfg, self.spark, model_id=model_id,
                                parent_run_id=self.parent.run_id, pruning=pruning)
        finally:
            for folder in (Layout(root).model_dir(model_id), root / "checkpoints" / model_id):
                shutil.rmtree(folder, ignore_errors=True)
        for epoch in report.epochs:
            if math.isfinite(epoch.valid_ndcg_at_20):
                trial.report(epoch.valid_ndcg_at_20, epoch.epoch)
        best = report.best_epoch
        trial.set_user_attr("epochs", len(report.epochs))
        trial.set_user_attr("exported_epoch", best.epoch if best else None)
        trial.set_user_attr("mlflow_run_id", report.tracking_run_id)
        if report.pruned_after is not None:
            trial.set_user_attr("pruned_after", report.pruned_after)
            raise optuna.TrialPruned(f"pruned after epoch {report.pruned_after}")
        if best is None or not math.isfinite(best.valid_ndcg_at_20):
            raise ValueError("the trial has no validation NDCG@20: there are no validation users; "
                             "tune needs them (preprocess.valid_fraction / valid_share)")
        return best.valid_ndcg_at_20

    def progress(self, study, trial) -> None:
        """After each trial: trial n/N, its result, the best so far, and the ETA."""
        self.ran += 1
        done, total = len(self.finished()), self.settings.trials
        elapsed = time.time() - self.started
        left = max(total - done, 0)
        eta = min(elapsed / self.ran * left, max(self.settings.timeout_s - elapsed, 0))
        value = trial.state.name.lower() + (f" at {trial.value:.4f}" if trial.value is not None else "")
        try:
            best = f"{study.best_value:.4f} (trial #{study.best_trial.number})"
        except ValueError:
            best = "none yet"
        logger.info("tune: trial %d/%d (#%d) %s after %s epoch(s); best so far %s; %.0fs, eta %.0fs", done, total,
                    trial.number, value, trial.user_attrs.get("epochs", "?"), best, elapsed, eta)

    def write_tuned(self) -> Path | None:
        """``tuned.yaml``: the best trial's values as a config layer (None before any trial completed)."""
        try:
            best = self.study.best_trial
        except ValueError:
            return None
        path = self.folder / TUNED
        header = (f"# prismrec tune: study {self.folder.name}, best of {len(self.finished())} finished trials: trial "
                  f"#{best.number}, validation NDCG@20 {best.value:.4f}\n"
                  f"# use it over your own config: prismrec <command> --conf your.yaml --conf {path}\n")
        if best.params.get("preprocess.max_hist_len", self.main_hist_len) != self.main_hist_len:
            header += "# it changes preprocess.max_hist_len: run `prismrec preprocess` with it first\n"
        path.write_text(header + yaml.safe_dump(tuned_layer(best.params), sort_keys=True))
        return path

    def run(self) -> dict:
        from optuna.trial import TrialState

        if not self.study.trials:
            defaults = {key: config_value(self.cfg, key) for key in self.settings.space}
            outside = sorted(k for k, v in defaults.items() if not in_space(v, self.settings.space[k]))
            if outside:
                logger.warning("tune: the config's %s lie outside tune.space, so the first trial samples them: "
                               "it is not the config as it is", ", ".join(f"{k}={defaults[k]}" for k in outside))
            self.study.enqueue_trial({k: v for k, v in defaults.items() if k not in outside})
        running = [t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if running:
            logger.warning("tune: trial(s) %s of the study are marked running. Unless another tune of this study "
                           "is running, they were interrupted: a trial that starts %ds after their last heartbeat "
                           "marks them failed and runs them again once", running, GRACE_S)
        to_run = self.settings.trials - len(self.finished())
        logger.info("tune: study %s (%s): %d trial(s) finished, running up to %d more within %ds", self.folder.name,
                    self.folder / "study.db", self.settings.trials - to_run, max(to_run, 0), self.settings.timeout_s)
        self.parent = tracking.start_run(self.cfg, f"tune-{self.folder.name}", {"prismrec.tune_study": self.folder.name})
        self.parent.log_params({f"tune.{k}": str(v) for k, v in self.settings.__dict__.items()})
        status = "FAILED"
        try:
            if to_run > 0:
                # A training that fails (e.g. a non-finite loss) fails its trial, not the study.
                self.study.optimize(self.objective, n_trials=to_run, timeout=self.settings.timeout_s,
                                    callbacks=[self.progress], catch=(TrainingError,))
            status = "FINISHED"
        finally:
            path = self.write_tuned()
            if path is not None:
                self.parent.log_metrics({"best_valid_ndcg@20": self.study.best_value})
                self.parent.log_artifact(path)
            self.parent.end(status)
        result = {"study": str(self.folder / "study.db"), "finished_trials": len(self.finished()),
                  "ran": self.ran, "tuned": str(path) if path else None}
        if path is not None:
            result.update(best_trial=self.study.best_trial.number, best_valid_ndcg_at_20=self.study.best_value,
                          best_params=self.study.best_trial.params)
            logger.info("tune: best trial #%d, validation NDCG@20 %.4f: %s; written to %s", result["best_trial"],
                        result["best_valid_ndcg_at_20"], result["best_params"], path)
        return result


def run_tune(cfg: Config, spark=None) -> dict:
    """Run (or resume) the study of ``cfg.tune``; returns {study, finished_trials, ran, tuned, best_*}.

    Reads the preprocessed data under ``paths.output`` (FileNotFoundError without it); writes
    ``<paths.output>/tune/<study>/``. A training that fails (e.g. a non-finite loss) fails its trial only;
    raises ConfigError (exit 2) before any trial for a ``tune.space`` the config refuses."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return Study(cfg, spark).run()
