"""The artifact loader refuses missing, extra or altered files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prismrec.config import Config
from prismrec.models import build_model
from prismrec.training import artifact

pytestmark = pytest.mark.unit


@pytest.fixture()
def exported(tmp_path):
    items = pd.DataFrame({"item_idx": np.arange(1, 10, dtype=np.int32), "item_id": [f"i{i}" for i in range(1, 10)],
                          "category_id": ["c"] * 9, "count": np.arange(9, 0, -1)})
    items.to_parquet(tmp_path / "items.parquet")
    cfg = Config()
    model = build_model(cfg.model, 10, 5, np.ones(10, dtype=int), np.ones(10))
    model.encode(np.zeros((1, 5), dtype=np.int32))
    spec = {"model_dir": str(tmp_path / "models" / "m1"), "items_path": str(tmp_path / "items.parquet"),
            "config": cfg.to_dict(), "config_hash": cfg.config_hash()}
    return artifact.export(model, spec, metrics={"ok": True})


def test_round_trip(exported):
    loaded = artifact.load(exported)
    assert loaded.item_embeddings.shape == (10, Config().model.embedding_dim)
    assert loaded.manifest["model_id"] == "m1" and loaded.manifest["versions"]["tensorflow-cpu"].startswith("2.15")
    assert loaded.encode(np.array([[0, 0, 1, 2, 3]], dtype=np.int32))["interest_vectors"].shape[1] == 4


def test_one_changed_byte_in_the_item_table_is_refused(exported):
    path = exported / "item_embeddings.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(artifact.ArtifactError, match="item_embeddings.npy was altered"):
        artifact.load(exported)


def test_missing_and_extra_files_are_refused(exported):
    (exported / "metrics.json").unlink()
    with pytest.raises(artifact.ArtifactError, match="missing metrics.json"):
        artifact.load(exported)


def test_unlisted_file_is_refused(exported):
    (exported / "notes.txt").write_text("x")
    with pytest.raises(artifact.ArtifactError, match="notes.txt, which its manifest does not list"):
        artifact.load(exported)


def test_an_added_index_is_covered_by_the_manifest_and_may_be_built_again(exported):
    artifact.add_file(exported, "index/ivf2.faiss", lambda path: path.write_bytes(b"index bytes"))
    manifest = artifact.load(exported).manifest
    assert manifest["files"]["index/ivf2.faiss"] == artifact.sha256_file(exported / "index" / "ivf2.faiss")
    assert not list(exported.parent.glob(".*partial*"))  # nothing left beside the artifact
    (exported / "index" / "ivf2.faiss").write_bytes(b"index bytez")
    with pytest.raises(artifact.ArtifactError, match=r"ivf2.faiss was altered .*Fix: delete it"):
        artifact.load(exported)
    (exported / "index" / "ivf2.faiss").unlink()
    artifact.load(exported)  # a derived file that is gone is not an error
    with pytest.raises(artifact.ArtifactError, match=r"has no index/ivf2.faiss; it is built by `prismrec score`"):
        artifact.verified_file(exported, "index/ivf2.faiss")
