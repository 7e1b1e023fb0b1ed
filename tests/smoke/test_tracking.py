"""MLflow tracking of real trainings and evaluations, in a local file store."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from prismrec import tracking
from prismrec.layout import Layout
from prismrec.stages import run as run_stage

pytestmark = pytest.mark.smoke


def own_output(preprocessed, tmp_path: Path, **values):
    """The tiny preprocessed data copied under ``tmp_path``, with the config pointing at it (and ``values``,
    keys written with ``__`` for the dots)."""
    cfg, _ = preprocessed
    output = tmp_path / "output"
    shutil.copytree(Layout.of(cfg).preprocessed, output / "preprocessed")
    return cfg.with_values({"paths.output": str(output), **{k.replace("__", "."): v for k, v in values.items()}},
                           "test")


def client_for(cfg):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(Path(cfg.paths.output).resolve() / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("prismrec")
    return client, client.search_runs([experiment.experiment_id])


def test_training_then_evaluation_write_one_mlflow_run(spark, preprocessed, tmp_path):
    cfg = own_output(preprocessed, tmp_path, train__epochs=2, train__patience=5,
                     evaluate__compare=["model", "popularity"],
                     spark__conf={"spark.hadoop.fs.s3a.secret.key": "hunter2"})
    report = run_stage("train", cfg, spark)
    client, runs = client_for(cfg)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == report.tracking_run_id and run.info.status == "FINISHED"

    params = run.data.params
    assert params["train.epochs"] == "2" and params["model.num_interests"] == "2"
    assert params["preprocess.max_hist_len"] == "20" and params["train.learning_rate"] == "0.001"
    assert params["spark.conf.spark.hadoop.fs.s3a.secret.key"] == "***redacted***"
    assert not any("hunter2" in value for value in params.values())
    assert len(params) == len(tracking.config_params(cfg))

    model_id = Path(report.model_dir).name
    tags = run.data.tags
    assert tags["prismrec.model_id"] == model_id and tags["mlflow.runName"] == model_id
    assert tags["prismrec.config_hash"] == cfg.config_hash()
    assert tags["version.tensorflow-cpu"].startswith("2.15.") and tags["version.horovod"] == "0.28.1"
    assert tags["prismrec.model_dir"] == Path(report.model_dir).resolve().as_uri()

    assert len(report.epochs) == 2
    for key, name in (("loss", "loss"), ("valid_ndcg", "valid_ndcg_at_50"), ("valid_recall", "valid_recall_at_50"),
                      ("valid_ndcg_at_20", "valid_ndcg_at_20"), ("examples_per_second", "examples_per_second")):
        history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2], name
        assert [m.value for m in history] == pytest.approx([getattr(e, key) for e in report.epochs]), name

    manifest = Path(client.download_artifacts(run.info.run_id, "manifest.json", str(tmp_path)))
    assert json.loads(manifest.read_text()) == json.loads((Path(report.model_dir) / "manifest.json").read_text())
    assert not any(a.path.endswith(".npy") for a in client.list_artifacts(run.info.run_id))  # no item table copied

    evaluation = run_stage("evaluate", cfg, spark)
    client, runs = client_for(cfg)
    assert len(runs) == 1  # evaluate added to the training's run
    metrics = runs[0].data.metrics
    for system in ("model", "popularity"):
        for metric in ("ndcg@20", "recall@50"):
            assert metrics[tracking.metric_name(f"test.{system}.{metric}")] == \
                pytest.approx(evaluation.metrics[system][metric])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/test")}
    assert {"evaluation/test/evaluation.json", "evaluation/test/recall_ndcg_vs_k.png"} <= logged


def test_an_unreachable_store_warns_once_and_training_goes_on(spark, preprocessed, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(tracking, "_warned", set())
    monkeypatch.setattr(tracking, "_unopened", set())
    cfg = own_output(preprocessed, tmp_path, tracking__uri="http://127.0.0.1:9")
    with caplog.at_level(logging.WARNING, logger="prismrec.tracking"):
        report = run_stage("train", cfg, spark)
        run_stage("train", cfg, spark, model_id="second")
    assert report.tracking_run_id is None and (Path(report.model_dir) / "manifest.json").is_file()
    warnings = [r.getMessage() for r in caplog.records if r.name == "prismrec.tracking"]
    assert len(warnings) == 1 and "http://127.0.0.1:9" in warnings[0], warnings
    assert tracking._unopened == {"http://127.0.0.1:9"}  # the second training did not try it again


def test_tracking_disabled_writes_no_store(spark, preprocessed, tmp_path):
    cfg = own_output(preprocessed, tmp_path, tracking__enabled=False)
    report = run_stage("train", cfg, spark)
    assert report.tracking_run_id is None and not (Path(cfg.paths.output) / "mlruns").exists()


def test_metric_names_are_legal_in_mlflow():
    assert tracking.metric_name("valid_ndcg@20") == "valid_ndcg_at_20"
    assert tracking.metric_name("test.model-1.recall@50") == "test.model-1.recall_at_50"
    assert tracking.metric_name("events per user (p50)!") == "events per user _p50__"
