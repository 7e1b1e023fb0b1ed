"""The evaluation report under both protocols: JSON, Markdown and every figure, written and non-trivial."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from prismrec.stages import run as run_stage

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def reports(spark, scored_tiny, time_protocol):
    """The time-protocol evaluation, then the users-protocol one that joins it: (time result, users result)."""
    time_cfg = time_protocol[0]
    time_result = run_stage("evaluate", time_cfg, spark)
    users_cfg = tiny_config(Path(scored_tiny[0].paths.output).parent,
                            f"evaluate.other_outputs=[{time_cfg.paths.output}]")
    return time_result, run_stage("evaluate", users_cfg, spark)


def test_every_system_is_evaluated_where_it_applies(reports):
    time_result, users_result = reports
    assert set(time_result.metrics) == {"model", "popularity", "als", "itemknn"}
    assert set(users_result.metrics) == {"model", "popularity"}
    assert set(users_result.record["not_applicable"]) == {"als", "itemknn"}
    assert len(time_result.record["als"]["grid"]) == 1
    for values in time_result.metrics.values():
        assert 0.0 < values["coverage@50"] <= 1.0 and values["novelty@50"] > 0.0
    quality = users_result.interest_quality["model"]
    assert 0.0 <= quality["recovery_share"] <= 1.0 and -1.0 <= quality["distinctness"] <= 1.0


def test_report_files_are_written_and_hold_both_protocols(reports):
    _, result = reports
    written = json.loads(Path(result.files["json"]).read_text())
    assert written["other_protocols"]["time"]["metrics"]["als"]["recall@50"] > 0.0
    markdown = Path(result.files["markdown"]).read_text()
    for row in ("| model | users |", "| model | time |", "| als | time |", "| itemknn | time |"):
        assert row in markdown
    assert "| als | users | – | n/a |" in markdown and "n/a for `als` under `users`" in markdown
    examples = result.record["examples"]
    assert len(examples) == 3 and all("recommendations:" in e["explanation"] for e in examples)
    assert all(e["planted_topics"] for e in examples)


def test_every_figure_is_a_non_blank_png(reports):
    import matplotlib.image

    _, result = reports
    assert set(result.record["plots"]) == {"curves", "heatmap", "projection", "distinctness"}
    for name, path in result.record["plots"].items():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({Path(path).name})" in Path(result.files["markdown"]).read_text()
        pixels = matplotlib.image.imread(path)
        assert min(pixels.shape[:2]) >= 300 and float(np.std(pixels[..., :3])) > 0.05, name
