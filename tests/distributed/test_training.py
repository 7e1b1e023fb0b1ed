"""Real Horovod processes: ``horovodrun -np 2`` and ``horovod.spark.run`` with 2 processes,
each started by ``prismrec train`` in a subprocess, whose console is checked too."""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prismrec.layout import Layout
from prismrec.training import artifact
from prismrec.training.relay import DriverRelay, RelayHandler

pytestmark = pytest.mark.distributed
TEST_CONF = Path(__file__).resolve().parents[2] / "conf" / "test.yaml"
# Rank 0's lines from training/loop.py: "epoch 1 step 11/45 loss 5.61, 219 examples/s, eta 20s"
# and the epoch summary "epoch 1/1 loss 5.53 valid ndcg@50 ..., 839 examples/s, eta 0s".
STEP_LINE = re.compile(r"prismrec\.training\.loop: epoch 1 step (\d+)/\d+ loss [\d.]+, \d+ examples/s, eta \d+s")
EPOCH_LINE = re.compile(r"prismrec\.training\.loop: epoch 1/1 loss [\d.]+ valid ndcg@50 .*examples/s, eta \d+s")


def train_through_cli(preprocessed, launcher: str, tmp_path: Path) -> tuple[str, dict, str]:
    """``prismrec train`` on a copy of the preprocessed data: (console, train stage report, model id)."""
    cfg, _ = preprocessed
    output = tmp_path / "output"
    shutil.copytree(Layout.of(cfg).preprocessed, output / "preprocessed")
    done = subprocess.run(
        [sys.executable, "-m", "prismrec.cli", "train", "--conf", str(TEST_CONF),
         "--set", f"paths.data={cfg.paths.data}", "--set", f"paths.output={output}",
         "--set", f"train.launcher={launcher}", "--set", "train.num_proc=2"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert done.returncode == 0, done.stdout
    layout = Layout(output.resolve())
    run_id = layout.read_meta()["run_id"]
    report = json.loads((layout.reports / f"{run_id}.json").read_text())["stages"]["train"]
    return done.stdout, report, layout.latest_model.read_text().strip()


def assert_progress_from_rank_0_only(console: str):
    """Rank 0's progress reached the console once, and py4j's resent-command traceback did not."""
    steps = [int(m.group(1)) for m in STEP_LINE.finditer(console)]
    assert steps and len(steps) == len(set(steps)), console  # not repeated by another rank
    assert len(EPOCH_LINE.findall(console)) == 1, console
    assert "ConnectionResetError" not in console and "Exception while sending command" not in console, console


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


@pytest.mark.parametrize("launcher", ["horovodrun", "spark"])
def test_two_processes_train_in_sync_and_rank_0_reports_progress(preprocessed, launcher, tmp_path):
    console, report, model_id = train_through_cli(preprocessed, launcher, tmp_path)
    assert report["launcher"] == launcher
    assert_synchronised(report, model_id)
    assert_progress_from_rank_0_only(console)


def test_local_launcher_reports_progress(preprocessed, tmp_path):
    console, report, _ = train_through_cli(preprocessed, "local", tmp_path)
    assert report["launcher"] == "local" and report["ranks"] == 1
    assert_progress_from_rank_0_only(console)


def test_relay_hands_every_record_to_the_driver_even_from_a_short_lived_rank(caplog):
    # The rank connects, logs and leaves before the relay thread may have accepted it.
    with caplog.at_level(logging.INFO), DriverRelay("127.0.0.1", "127.0.0.1") as relay:
        handler = RelayHandler(relay.address)
        handler.emit(logging.LogRecord("prismrec.training.loop", logging.INFO, __file__, 1,
                                       "epoch %d/%d loss %.4f, 100%% done", (1, 2, 0.5), None))
        handler.close()
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == \
        [("prismrec.training.loop", logging.INFO, "epoch 1/2 loss 0.5000, 100% done")]
