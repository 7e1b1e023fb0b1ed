"""The Spark metrics equal the numpy reference on random rankings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prismrec import schema as S

pytestmark = pytest.mark.spark


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spark_metrics_match_numpy(spark, seed):
    from prismrec.evaluation import spark_metrics
    from prismrec.ranking.metrics import batch_metrics

    rng = np.random.default_rng(seed)
    ranked = [rng.choice(np.arange(1, 80), size=30, replace=False) for _ in range(40)]
    targets = [rng.choice(np.arange(1, 80), size=rng.integers(1, 12), replace=False) for _ in range(40)]
    frame = spark.createDataFrame(pd.DataFrame({S.USER_ID: [str(u) for u in range(40)],
                                                "ranked": [r.tolist() for r in ranked],
                                                S.TARGET_ITEMS: [t.tolist() for t in targets]}))
    got = spark_metrics.averages(frame, [5, 20])
    expected = {name: values.mean() for name, values in batch_metrics(np.stack(ranked), targets, [5, 20]).items()}
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-9), name
