"""`prismrec run --date` on tiny synthetic data (one local training process): steps, reruns, the gate."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_config
from prismrec import schema as S
from prismrec.cli import EXIT_BUSY, EXIT_CONFIG, EXIT_INPUT, EXIT_REFUSED, main
from prismrec.stages import run as run_stage
from prismrec.config import REDACTED, ModelSection
from prismrec.layout import Layout
from prismrec.nightly import STEPS, date_lock, prune_models, read_promoted, run_night

pytestmark = pytest.mark.smoke
NIGHT, NEXT_NIGHT = "2026-01-14", "2026-01-15"  # the logs' last day, and a night with no new events
ENCODER = ModelSection().encoder  # nightly model ids end with the configured (here: default) encoder
SECRET = "s3cr3t-value"


@pytest.fixture(scope="module")
def night(spark, tmp_path_factory):
    """Tiny logs and one complete night: (cfg, manifest)."""
    cfg = tiny_config(tmp_path_factory.mktemp("nightly"))
    run_stage("generate", cfg)
    return cfg, run_night(cfg, NIGHT, spark=spark)


def model_run(cfg, model_id: str):
    """The one MLflow run (local store) that trained ``model_id``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(Layout.of(cfg).root / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("prismrec")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`prismrec.model_id` = '{model_id}'")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def cli_args(cfg, *extra: str) -> list[str]:
    return ["run", "--conf", str(Path(__file__).parents[2] / "conf" / "test.yaml"),
            "--set", f"paths.data={cfg.paths.data}", "--set", f"paths.output={cfg.paths.output}", *extra]


def recommendations(cfg, dt: str = NIGHT) -> pd.DataFrame:
    frame = pd.read_parquet(Layout.of(cfg).output_table("recommendations", dt))
    return frame.sort_values([S.USER_ID, S.RANK]).reset_index(drop=True)


def test_a_night_runs_every_step_in_order_and_writes_the_promoted_pointer_last(spark, night):
    cfg, manifest = night
    # Every Spark job ran in a group named after its stage ("<stage>" inside the stage, "nightly-<stage>" around it).
    tracker = spark.sparkContext.statusTracker()
    for stage in ("preprocess", "evaluate", "score"):
        assert tracker.getJobIdsForGroup(stage) or tracker.getJobIdsForGroup(f"nightly-{stage}"), stage
    steps = manifest["steps"]
    assert manifest["status"] == "done" and [steps[s]["status"] for s in STEPS] == ["done"] * len(STEPS)
    starts = [steps[s]["started"] for s in STEPS]
    assert starts == sorted(starts)
    root = Layout.of(cfg).root
    promoted = read_promoted(Layout.of(cfg))
    assert promoted["model_id"] == steps["train"]["counts"]["model_id"] == f"test-{NIGHT}-{ENCODER}"
    pointer_written = (root / "models" / "PROMOTED.json").stat().st_mtime
    for table in ("recommendations", "user_interests"):
        assert max(p.stat().st_mtime for p in (root / table).rglob("*")) <= pointer_written
    # The night's report aggregates per-step timings and counts.
    assert set(manifest["seconds"]) == set(STEPS) == set(manifest["counts"])
    counts = manifest["counts"]
    assert counts["preprocess"]["users"] == counts["score"]["users"] == recommendations(cfg)[S.USER_ID].nunique()
    assert counts["score"]["recommendations"] == len(recommendations(cfg))
    assert counts["quality_gate"]["reason"] == "no promoted model yet"
    assert counts["evaluate"]["split"] == "valid" and 0.0 <= counts["evaluate"]["ndcg@50"] <= 1.0
    report = json.loads((root / "reports" / f"test-{NIGHT}.json").read_text())
    assert report["stages"]["nightly"]["ran"] == list(STEPS)
    # Tonight's model's MLflow run holds its validation figures, the gate's decision and the publish.
    tracked = model_run(cfg, promoted["model_id"])
    assert tracked.data.metrics["gate.tonight_ndcg_at_50"] == pytest.approx(counts["evaluate"]["ndcg@50"])
    assert tracked.data.metrics["valid.model.ndcg_at_50"] == pytest.approx(counts["evaluate"]["ndcg@50"])
    assert tracked.data.tags["gate.decision"] == "passed" and tracked.data.tags["published.dt"] == NIGHT
    assert tracked.data.tags["published.recommendations"] == promoted["recommendations"]


def test_rerun_skips_every_step_and_force_step_reruns_from_there_with_the_same_output(spark, night):
    cfg, _ = night
    before = recommendations(cfg)
    manifest = run_night(cfg, NIGHT, spark=spark)
    assert (manifest["attempts"][-1]["ran"], manifest["attempts"][-1]["skipped"]) == ([], list(STEPS))
    manifest = run_night(cfg, NIGHT, force_step="score", spark=spark)
    assert manifest["attempts"][-1]["ran"] == ["score", "promote"]
    pd.testing.assert_frame_equal(recommendations(cfg), before)  # same rows, not a second copy
    root = Layout.of(cfg).root
    assert [p.name for p in (root / "recommendations").iterdir()] == [f"dt={NIGHT}"]
    assert [p.name for p in (root / "models").iterdir() if p.is_dir()] == [f"test-{NIGHT}-{ENCODER}"]
    assert not list(root.rglob("*.retired"))


def test_logged_and_saved_configs_redact_secrets(night, capsys):
    cfg, _ = night
    # spark.* does not invalidate completed steps: this rerun skips them all, but still logs its config.
    assert main(cli_args(cfg, "--date", NIGHT, "--set", f"spark.conf={{fs.s3a.secret.key: {SECRET}}}")) == 0
    logged = capsys.readouterr().err
    assert REDACTED in logged and SECRET not in logged
    saved = (Layout.of(cfg).root / "runs" / NIGHT / "config.yaml").read_text()
    assert REDACTED in saved and SECRET not in saved


def test_quality_gate_refuses_to_promote_a_worse_model_and_names_the_step(night, capsys):
    cfg, _ = night
    layout = Layout.of(cfg)
    pointer = layout.root / "models" / "PROMOTED.json"
    promoted = read_promoted(layout)
    champion = {**promoted, "model_id": "champion", "ndcg@50": 0.99}
    pointer.write_text(json.dumps(champion))
    before = recommendations(cfg)
    assert main(cli_args(cfg, "--date", NIGHT, "--force-step", "quality_gate")) == EXIT_REFUSED
    error = capsys.readouterr().err
    assert f"nightly {NIGHT}: step quality_gate failed" in error and "refusing to promote" in error
    manifest = json.loads((layout.root / "runs" / NIGHT / "manifest.json").read_text())
    assert (manifest["status"], manifest["failed_step"]) == ("failed", "quality_gate")
    assert json.loads(pointer.read_text()) == champion  # the promoted model is unchanged
    tracked = model_run(cfg, f"test-{NIGHT}-{ENCODER}").data
    assert tracked.tags["gate.decision"] == "refused" and tracked.tags["gate.promoted_model_id"] == "champion"
    assert tracked.metrics["gate.promoted_ndcg_at_50"] == 0.99
    assert tracked.metrics["gate.tonight_ndcg_at_50"] < tracked.metrics["gate.floor"] == pytest.approx(0.99 * 0.95)
    pd.testing.assert_frame_equal(recommendations(cfg), before)
    # Once the champion is gone, the rerun resumes at the gate: nothing before it runs again.
    pointer.write_text(json.dumps(promoted))
    assert main(cli_args(cfg, "--date", NIGHT)) == 0
    manifest = json.loads((layout.root / "runs" / NIGHT / "manifest.json").read_text())
    assert manifest["attempts"][-1]["ran"] == ["quality_gate", "score", "promote"]
    assert read_promoted(layout)["model_id"] == f"test-{NIGHT}-{ENCODER}"


def test_warm_night_starts_from_the_promoted_weights(spark, night):
    cfg, _ = night
    manifest = run_night(cfg.with_values({"nightly.train_mode": "warm"}), NEXT_NIGHT, spark=spark)
    promoted_before = f"test-{NIGHT}-{ENCODER}"
    train = manifest["steps"]["train"]["counts"]
    assert train["warm_start"] == str(Layout.of(cfg).model_dir(promoted_before))
    assert read_promoted(Layout.of(cfg))["model_id"] == f"test-{NEXT_NIGHT}-{ENCODER}"
    assert manifest["steps"]["promote"]["counts"]["pruned_models"] == []  # two nights, seven kept


def test_warm_start_carries_item_rows_by_item_id(night, tmp_path):
    """Rows move with their item_id; a new item keeps its fresh initialisation; the rest is copied."""
    import tensorflow as tf

    from prismrec.models import build_model
    from prismrec.training import artifact
    from prismrec.training.warm import load_initial_weights

    cfg, _ = night
    model_dir = Layout.of(cfg).model_dir(f"test-{NIGHT}-{ENCODER}")
    old = artifact.load(model_dir)
    old_items = old.items[[S.ITEM_IDX, S.ITEM_ID]]
    # Tonight: the vocabulary in reverse order, plus one item never seen before (the last index).
    new_ids = [*old_items[S.ITEM_ID].iloc[::-1], "brand-new-item"]
    new_items = pd.DataFrame({S.ITEM_IDX: np.arange(1, len(new_ids) + 1, dtype=np.int32), S.ITEM_ID: new_ids})
    new_items.to_parquet(tmp_path / "items.parquet")
    model = build_model(cfg.model, len(new_ids) + 1, cfg.preprocess.max_hist_len, np.zeros(len(new_ids) + 1),
                        np.ones(len(new_ids) + 1))
    length = cfg.preprocess.max_hist_len
    model({"hist_items": tf.zeros([1, length], tf.int32), "target_item": tf.ones([1], tf.int32)})  # builds it
    fresh_row = model.item_table().numpy()[-1].copy()
    counts = load_initial_weights(model, str(model_dir), str(tmp_path / "items.parquet"))
    table = model.item_table().numpy()
    assert counts["items_carried"] == len(old_items) and counts["items_new"] == 1
    # item at old index i (1..n) sits at new index n + 1 - i.
    n = len(old_items)
    np.testing.assert_array_equal(table[n + 1 - old_items[S.ITEM_IDX].to_numpy()],
                                  old.item_embeddings[old_items[S.ITEM_IDX].to_numpy()])
    np.testing.assert_array_equal(table[-1], fresh_row)
    saved = tf.saved_model.load(str(model_dir / "encoder")).encoder_variables
    others = [(v, w) for v, w in zip(model.variables, saved) if v is not model.item_embedding.embeddings]
    assert len(others) == len(model.variables) - 1
    for variable, source in others:
        np.testing.assert_array_equal(variable.numpy(), source.numpy(), err_msg=variable.name)


def test_a_failed_step_exits_non_zero_and_is_named_in_the_error_and_the_manifest(tmp_path, capsys):
    cfg = tiny_config(tmp_path)  # no logs were generated
    assert main(cli_args(cfg, "--date", NIGHT)) == EXIT_INPUT
    assert f"nightly {NIGHT}: step preprocess failed" in capsys.readouterr().err
    manifest = json.loads((Layout.of(cfg).root / "runs" / NIGHT / "manifest.json").read_text())
    assert (manifest["failed_step"], manifest["steps"]["preprocess"]["status"]) == ("preprocess", "failed")
    assert "does not exist" in manifest["steps"]["preprocess"]["error"]


HOLD_LOCK = """
import sys, time
from pathlib import Path
from prismrec.nightly import date_lock
with date_lock(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_run_of_a_date_is_refused_while_another_holds_it_and_a_dead_holder_is_replaced(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    lock = Layout.of(cfg).root / "runs" / NIGHT / "LOCK"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), NIGHT], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(cli_args(cfg, "--date", NIGHT)) == EXIT_BUSY
        error = capsys.readouterr().err
        assert f"another run holds {lock}" in error and f"pid {holder.pid}" in error
        assert not (lock.parent / "manifest.json").exists()  # nothing ran
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without removing its lock
        holder.wait()
    assert json.loads(lock.read_text())["pid"] == holder.pid
    with pytest.raises(RuntimeError, match="inside"):
        with date_lock(lock, NIGHT):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
            raise RuntimeError("inside")
    assert not lock.exists()


def test_old_nightly_models_are_pruned_but_the_newest_nights_and_protected_ones_stay(tmp_path):
    models = tmp_path / "models"
    names = [f"test-2026-01-0{day}-{encoder}" for day in range(1, 6) for encoder in ("self_attentive", "mean_pool")]
    others = ["other-2026-01-01-self_attentive", "test-handmade"]
    for name in [*names, *others]:
        (models / name).mkdir(parents=True)
        (models / name / "manifest.json").write_text("{}")
    (models / "LATEST").write_text("test-2026-01-02-mean_pool\n")
    removed = prune_models(models, "test", keep=2, protected={"test-2026-01-02-mean_pool"})
    assert removed == sorted(f"test-2026-01-0{day}-{encoder}" for day in (1, 2, 3)
                             for encoder in ("self_attentive", "mean_pool") if (day, encoder) != (2, "mean_pool"))
    assert sorted(path.name for path in models.iterdir()) == sorted(
        [*(f"test-2026-01-0{day}-{encoder}" for day in (4, 5) for encoder in ("self_attentive", "mean_pool")),
         "test-2026-01-02-mean_pool", *others, "LATEST"])
    assert prune_models(models, "test", keep=0, protected=set()) == []


def test_a_negative_keep_models_is_a_config_error_before_any_stage(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    assert main(cli_args(cfg, "--date", NIGHT, "--set", "nightly.keep_models=-1")) == EXIT_CONFIG
    assert "config key 'nightly.keep_models' has value -1" in capsys.readouterr().err
    assert not (Layout.of(cfg).root / "runs" / NIGHT / "manifest.json").exists()
    assert not (Layout.of(cfg).root / "runs" / NIGHT / "LOCK").exists()
