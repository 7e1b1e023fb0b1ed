"""`prismrec tune` on tiny data: Optuna trials that are real trainings, a study that resumes, a layer
that loads, and the median pruner stopping a training inside its rank."""
from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import yaml

from prismrec.cli import parser
from prismrec.config import ConfigError, load_config
from prismrec.layout import Layout
from prismrec.training.pruning import epoch_pruner
from prismrec.tuning import Study, run_tune

pytestmark = pytest.mark.smoke
TEST_CONF = Path(__file__).resolve().parents[2] / "conf" / "test.yaml"
SPACE = {"model.num_interests": {"type": "int", "low": 1, "high": 3},
         "train.learning_rate": {"type": "float", "low": 0.0005, "high": 0.005, "log": True},
         "train.epochs": {"type": "int", "low": 1, "high": 2},
         "score.merge": {"type": "categorical", "choices": ["max", "share"]}}


def tune_config(preprocessed, tmp_path: Path, trials: int):
    cfg, _ = preprocessed
    output = tmp_path / "output"
    if not (output / "preprocessed").exists():
        shutil.copytree(Layout.of(cfg).preprocessed, output / "preprocessed")
    return cfg.with_values({"paths.output": str(output), "tune.trials": trials, "tune.space": SPACE,
                            "tune.startup_trials": 5}, "test")


def test_three_trials_then_a_resumed_study_and_a_layer_that_loads(spark, preprocessed, tmp_path):
    first = run_tune(tune_config(preprocessed, tmp_path, trials=2), spark)
    assert first["ran"] == 2 and first["finished_trials"] == 2

    again = run_tune(tune_config(preprocessed, tmp_path, trials=3), spark)
    assert again["ran"] == 1 and again["finished_trials"] == 3  # resumed: one more, not three
    study = optuna.load_study(study_name="test", storage=f"sqlite:///{tmp_path / 'output/tune/test/study.db'}")
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # The first trial is the config as it was (test.yaml: K = 2, learning rate 0.001, 1 epoch, max merge).
    assert trials[0].params == {"model.num_interests": 2, "train.learning_rate": 0.001, "train.epochs": 1,
                                "score.merge": "max"}
    assert trials[2].params != trials[1].params  # the resumed study drew new values
    best = max(trials, key=lambda t: t.value)
    assert again["best_trial"] == best.number and again["best_valid_ndcg_at_20"] == best.value
    assert 0 < best.value <= 1
    # Each invocation is an MLflow run in the data's store, and each trial a child run of it.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "output" / "mlruns").resolve().as_uri())
    runs = client.search_runs([client.get_experiment_by_name("prismrec").experiment_id])
    parents = {r.info.run_id for r in runs if r.data.tags.get("prismrec.tune_study") == "test"}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and len(children) == 3 and len(runs) == 5
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == parents
    assert sorted(r.data.tags["prismrec.model_id"] for r in children) == ["trial-0", "trial-1", "trial-2"]
    # Trials wrote their training under the study's folder and left no model behind.
    assert (tmp_path / "output/tune/test/L20/preprocessed").is_symlink()
    assert not list((tmp_path / "output/tune/test/L20/models").glob("trial-*"))
    assert not (tmp_path / "output/models").exists()  # the data's own output was not touched

    tuned = Path(again["tuned"])
    layer = yaml.safe_load(tuned.read_text())
    assert layer["model"]["num_interests"] == best.params["model.num_interests"]
    args = parser().parse_args(["train", "--conf", str(TEST_CONF), "--conf", str(tuned)])
    loaded = load_config(args.conf, args.overrides)
    assert loaded.model.num_interests == best.params["model.num_interests"]
    assert loaded.train.learning_rate == best.params["train.learning_rate"]
    assert loaded.score.merge == best.params["score.merge"]
    assert loaded.synthetic.num_users == 300  # test.yaml's own keys are still there


def test_another_history_length_is_preprocessed_once_into_the_study(spark, preprocessed, tmp_path):
    cfg = tune_config(preprocessed, tmp_path, trials=1)
    study = Study(cfg, spark)
    root = study.data_root(10)
    assert Layout(root).read_meta()["max_hist_len"] == 10
    stamp = Layout(root).meta_path.stat().st_mtime_ns
    assert study.data_root(10) == root and Layout(root).meta_path.stat().st_mtime_ns == stamp
    # The data was preprocessed again (here: its report touched): the copy follows it.
    main_meta = Layout.of(cfg).meta_path
    main_meta.write_text(main_meta.read_text() + "\n")
    assert study.data_root(10) == root and Layout(root).meta_path.stat().st_mtime_ns != stamp


@pytest.mark.parametrize("entry, message", [
    ({"train.epochs": {"type": "float", "low": 1, "high": 3}}, "train.epochs is an integer; use type: int"),
    ({"score.merge": {"type": "categorical", "choices": ["max", "bogus"]}}, "score.merge.*tune.space.score.merge"),
    ({"model": {"type": "categorical", "choices": [1, 2]}}, "'model', a whole section"),
    ({"train.epoch": {"type": "int", "low": 1, "high": 3}}, "'train.epoch', which is not a config key"),
])
def test_a_space_the_config_refuses_stops_before_any_trial(preprocessed, tmp_path, entry, message):
    cfg = tune_config(preprocessed, tmp_path, trials=1).with_values({"tune.space": entry}, "test")
    with pytest.raises(ConfigError, match=message):
        Study(cfg)
    assert not (tmp_path / "output" / "tune" / "test" / "study.db").exists()


def test_a_diverging_trial_fails_alone_and_the_study_goes_on(spark, preprocessed, tmp_path):
    cfg = tune_config(preprocessed, tmp_path, trials=2).with_values({"train.inject_nan_step": 0}, "test")
    result = run_tune(cfg, spark)
    study = optuna.load_study(study_name="test", storage=f"sqlite:///{tmp_path / 'output/tune/test/study.db'}")
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.FAIL] * 2
    assert result["ran"] == 2 and result["finished_trials"] == 0 and result["tuned"] is None


def test_median_pruner_decides_from_the_finished_trials():
    # One finished trial with NDCG@20 0.30 after epoch 1 and 0.50 after epoch 2: the median of one value is it.
    settings = {"startup_trials": 1, "warmup_epochs": 0,
                "trials": [{"state": "COMPLETE", "value": 0.5, "intermediate": {"1": 0.3, "2": 0.5}}]}
    assert epoch_pruner(settings)(1, 0.2) is True
    prune = epoch_pruner(settings)
    assert prune(1, 0.4) is False and prune(2, 0.45) is True
    assert epoch_pruner({**settings, "warmup_epochs": 2})(1, 0.2) is False  # within the warm-up
    assert epoch_pruner({**settings, "startup_trials": 2})(1, 0.2) is False  # too few finished trials
