"""A stage refuses inputs that another config made, naming the key, before it starts any work."""
from __future__ import annotations

import pytest

from prismrec.config import ConfigError
from prismrec.errors import EXIT_CONFIG, exit_code
from prismrec.stages import run as run_stage

pytestmark = pytest.mark.smoke


def test_training_refuses_data_preprocessed_with_another_history_length(spark, preprocessed):
    cfg, meta = preprocessed
    other = cfg.with_values({"preprocess.max_hist_len": cfg.preprocess.max_hist_len - 1})
    with pytest.raises(ConfigError) as caught:
        run_stage("train", other, spark)
    assert exit_code(caught.value) == EXIT_CONFIG
    message = str(caught.value)
    assert "preprocess.max_hist_len" in message and str(meta.record["max_hist_len"]) in message
