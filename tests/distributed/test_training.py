"""Real Horovod processes: ``horovodrun -np 2`` and ``horovod.spark.run`` with 2 processes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prismrec.config import from_dict
from prismrec.training import artifact
from prismrec.training.launch import run

pytestmark = pytest.mark.distributed


def with_launcher(cfg, launcher: str):
    data = cfg.to_dict()
    data["train"].update(launcher=launcher, num_proc=2)
    return from_dict(data)


def assert_synchronised(report: dict, model_id: str):
    ranks = report["rank_results"]
    assert [r["rank"] for r in ranks] == [0, 1] and {r["size"] for r in ranks} == {2}
    assert ranks[0]["steps"] == ranks[1]["steps"] > 0
    assert ranks[0]["weights_digest"] == ranks[1]["weights_digest"]
    assert [r["wrote_artifact"] for r in ranks] == [True, False]
    model_dir = Path(report["model_dir"])
    assert model_dir.name == model_id
    siblings = [p.name for p in model_dir.parent.iterdir() if p.name.startswith(model_id) or p.name.startswith(".")]
    assert siblings == [model_id], siblings  # written once, no staging left behind
    manifest = artifact.verify(model_dir)
    assert manifest["model_id"] == model_id
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["ranks"] == 2 and np.isfinite([e["loss"] for e in metrics["epochs"]]).all()
    assert [e["epoch"] for e in report["epochs"]] == list(range(1, len(report["epochs"]) + 1))
    assert report["epochs"] == ranks[0]["epochs"] == ranks[1]["epochs"]  # metrics averaged across ranks


def test_horovodrun_two_processes(spark, preprocessed):
    cfg, _ = preprocessed
    report = run(spark, with_launcher(cfg, "horovodrun"), model_id="hvdrun")
    assert report["launcher"] == "horovodrun"
    assert_synchronised(report, "hvdrun")


def test_horovod_spark_run_two_processes(spark, preprocessed):
    cfg, _ = preprocessed
    report = run(spark, with_launcher(cfg, "spark"), model_id="hvdspark")
    assert report["launcher"] == "spark"
    assert_synchronised(report, "hvdspark")
