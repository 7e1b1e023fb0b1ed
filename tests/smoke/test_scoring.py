"""Full-population scoring: coverage, fallback, idempotent publishing, refusal on bad output, explain."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_config
from prismrec import schema as S
from prismrec.stages import run as run_stage
from prismrec.layout import Layout
from prismrec.scoring import publish, udf
from prismrec.ranking.recommend import Ranking
from prismrec.training import artifact

pytestmark = pytest.mark.smoke
COLD_USER = "9999999"


@pytest.fixture(scope="module")
def scored(spark, tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("scoring"))
    logs = run_stage("generate", cfg)
    with open(logs.files["csv"], "a") as handle:  # a user whose only items are too rare to keep
        handle.write(f"{COLD_USER},777001,5000,pv,1767225600\n{COLD_USER},777002,5000,pv,1767225700\n")
    meta = run_stage("preprocess", cfg, spark)
    run_stage("train", cfg, spark)
    return cfg, meta, run_stage("score", cfg, spark)


def table(path: str) -> pd.DataFrame:
    return pd.read_parquet(path).sort_values([S.USER_ID, S.RANK]).reset_index(drop=True)


def test_every_user_is_covered_and_the_cold_user_gets_the_fallback(scored):
    cfg, meta, score = scored
    recs = table(score.recommendations)
    histories = pd.read_parquet(Layout.of(cfg).table("histories"))
    assert set(recs[S.USER_ID]) == set(histories[S.USER_ID])
    cold = recs[recs[S.USER_ID] == COLD_USER]
    assert len(cold) == cfg.score.top_n and cold[S.FALLBACK].all() and (cold[S.INTEREST] == -1).all()
    assert cold[S.SCORE].is_monotonic_decreasing
    held_out = pd.read_parquet(Layout.of(cfg).table("eval_users"))[S.USER_ID]
    assert not recs[recs[S.USER_ID].isin(held_out)][S.FALLBACK].any()  # unseen in training, scored by the model


def test_rerun_of_the_same_dt_replaces_it_exactly(spark, scored):
    cfg, meta, first = scored
    before = table(first.recommendations)
    other = Path(first.recommendations).parent / "dt=2000-01-01"
    other.mkdir()
    (other / "part-keep.parquet").write_bytes(b"untouched")
    second = run_stage("score", cfg, spark)
    pd.testing.assert_frame_equal(table(second.recommendations), before)
    assert (other / "part-keep.parquet").read_bytes() == b"untouched"


def test_failed_validation_exits_non_zero_and_keeps_the_published_output(spark, scored, monkeypatch):
    cfg, meta, first = scored
    before = table(first.recommendations)
    original = udf.recommendations_fn

    def with_a_duplicate(*args, **kwargs):
        score = original(*args, **kwargs)

        def duplicated(frames):
            for frame in score(frames):
                yield pd.concat([frame, frame.head(1)]) if len(frame) else frame

        return duplicated

    monkeypatch.setattr(udf, "recommendations_fn", with_a_duplicate)
    with pytest.raises(publish.PublishError, match=r"duplicate_items: [1-9]"):
        run_stage("score", cfg, spark)
    pd.testing.assert_frame_equal(table(first.recommendations), before)


def test_problems_are_named(spark, scored):
    cfg, _, score = scored
    layout = Layout.of(cfg)
    recs = spark.read.parquet(score.recommendations)
    broken = recs.withColumn(S.RANK, recs[S.RANK] + 1)
    problems = publish.recommendation_problems(broken, spark.read.parquet(layout.table("histories")),
                                               spark.read.parquet(layout.table("items")), cfg.score.top_n)
    assert any(p.startswith("bad_ranks:") for p in problems)
    assert Ranking.of(cfg.score).score_order == "list"  # the default max merge
    reversed_scores = recs.withColumn(S.SCORE, -recs[S.SCORE])
    # A list ordered by score is ordered within each interest's part too (the share merge's check).
    for order in ("list", "interest"):
        clean = publish.recommendation_problems(recs, spark.read.parquet(layout.table("histories")),
                                                spark.read.parquet(layout.table("items")), cfg.score.top_n, order)
        assert clean == []
        problems = publish.recommendation_problems(reversed_scores, spark.read.parquet(layout.table("histories")),
                                                   spark.read.parquet(layout.table("items")), cfg.score.top_n, order)
        assert any(p.startswith("increasing_scores:") for p in problems)


def test_explain_names_interests_and_reasons(scored):
    from prismrec.scoring.explain import explain

    cfg, _, score = scored
    user = table(score.recommendations).query("not fallback")[S.USER_ID].iloc[0]
    text = explain(cfg, user)
    assert f"user {user}" in text and "interest 0: weight" in text and "← interest" in text
    assert "popular overall" in explain(cfg, COLD_USER)


def test_diversity_raises_category_diversity(spark, scored):
    cfg, _, _ = scored
    root = Path(cfg.paths.output).parent
    plain = run_stage("evaluate", tiny_config(root, "score.merge=max"), spark)
    diverse = run_stage("evaluate", tiny_config(root, "score.merge=max", "score.diversity=0.5"), spark)
    k = cfg.evaluate.ks[-1]
    assert diverse.metrics["model"][f"category_diversity@{k}"] > plain.metrics["model"][f"category_diversity@{k}"]


def copied_model(cfg, name: str) -> str:
    """A copy of the fixture's model as models/<name>, so a test may add to it or alter it."""
    import shutil

    layout = Layout.of(cfg)
    source = layout.model_dir(layout.latest_model.read_text().strip())
    shutil.rmtree(layout.model_dir(name), ignore_errors=True)
    shutil.copytree(source, layout.model_dir(name))
    return name


def test_an_exhaustive_index_publishes_the_exact_lists_and_is_kept_in_the_artifact(spark, scored):
    cfg, _, exact = scored
    before = table(exact.recommendations)
    model_id = copied_model(cfg, "with-index")
    root = Path(cfg.paths.output).parent
    ann_cfg = tiny_config(root, f"score.model_id={model_id}", "score.retrieval=ann", "score.ann_lists=8",
                          "score.ann_probes=8")
    ann = run_stage("score", ann_cfg, spark)
    after = table(ann.recommendations)
    assert ann.record["retrieval"] == "ann" and ann.record["ann_recall"] == 1.0
    assert ann.record["ann_reranked_share"] == 0.0 and (ann.record["ann_lists"], ann.record["ann_probes"]) == (8, 8)
    # Users with a model list among the first ann_recall_users (the cold user gets the fallback).
    assert 0 < ann.record["ann_recall_users"] <= min(cfg.score.ann_recall_users, ann.users)
    pd.testing.assert_frame_equal(after.drop(columns=[S.SCORE]), before.drop(columns=[S.SCORE]))
    assert (after[S.SCORE] - before[S.SCORE]).abs().max() < 1e-4
    model_dir = Layout.of(cfg).model_dir(model_id)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert "index/ivf8.faiss" in manifest["files"]
    # Auto below ann_min_items stays exact.
    auto = run_stage("score", tiny_config(root, f"score.model_id={model_id}"), spark)
    assert auto.record["retrieval"] == "exact" and "ann_recall" not in auto.record


def test_an_altered_index_is_refused(spark, scored):
    cfg, _, _ = scored
    model_id = copied_model(cfg, "altered-index")
    root = Path(cfg.paths.output).parent
    ann_cfg = tiny_config(root, f"score.model_id={model_id}", "score.retrieval=ann", "score.ann_lists=4")
    run_stage("score", ann_cfg, spark)
    index = Layout.of(cfg).model_dir(model_id) / "index" / "ivf4.faiss"
    data = bytearray(index.read_bytes())
    data[-1] ^= 0x01
    index.write_bytes(bytes(data))
    udf._LOADED.clear()  # a fresh driver process
    with pytest.raises(artifact.ArtifactError, match=r"ivf4.faiss was altered .*Fix: delete it"):
        run_stage("score", ann_cfg, spark)
    # As the message says: without the file, the next score builds the index again.
    index.unlink()
    udf._LOADED.clear()
    again = run_stage("score", ann_cfg, spark)
    assert again.record["retrieval"] == "ann" and index.is_file()
    assert artifact.verify(index.parent.parent)["files"]["index/ivf4.faiss"] == artifact.sha256_file(index)


def test_every_python_worker_reads_the_index_once(spark, scored):
    cfg, _, _ = scored
    model_id = copied_model(cfg, "read-once")
    root = Path(cfg.paths.output).parent
    ann_cfg = tiny_config(root, f"score.model_id={model_id}", "score.retrieval=ann", "score.ann_lists=4")
    directory = str(Layout.of(cfg).model_dir(model_id))
    retrieval = udf.prepare(directory, ann_cfg.score)
    score = udf.recommendations_fn(directory, ann_cfg.score.top_n, 16, 1, Ranking(), retrieval)
    index = str(Path(directory) / retrieval.index_name)

    def with_reads(frames):
        import os

        from prismrec.ranking import retrieval as searches

        for frame in score(frames):
            yield pd.DataFrame({"pid": [os.getpid()], "reads": [searches.INDEX_READS[index]],
                                "rows": [len(frame)]})

    histories = spark.read.parquet(Layout.of(cfg).table("histories")).repartition(8)
    seen = histories.mapInPandas(with_reads, "pid long, reads long, rows long").toPandas()
    per_worker = seen.groupby("pid")["reads"].agg(["min", "max", "count"])
    assert seen["rows"].sum() > 0
    assert (per_worker["max"] == 1).all() and (per_worker["min"] == 1).all()
    assert per_worker["count"].max() >= 2  # some worker ranked several batches with the one index


def test_evaluate_ranks_with_the_retrieval_scoring_uses_and_says_so(spark, scored):
    cfg, _, _ = scored
    model_id = copied_model(cfg, "evaluated-with-index")
    root = Path(cfg.paths.output).parent
    exact = run_stage("evaluate", tiny_config(root, f"score.model_id={model_id}"), spark)
    ann = run_stage("evaluate", tiny_config(root, f"score.model_id={model_id}", "score.retrieval=ann",
                                            "score.ann_lists=4", "score.ann_probes=4"), spark)
    assert ann.metrics["model"] == pytest.approx(exact.metrics["model"])  # every list probed: the exact lists
    written = json.loads(Path(ann.files["json"]).read_text())
    assert written["retrieval"]["model"] == {"mode": "ann", "lists": 4, "probes": 4}
    assert "model: 4 probes of 4 lists." in Path(ann.files["markdown"]).read_text()
    assert exact.record["retrieval"]["model"] == {"mode": "exact"}
