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
    assert artifact.verified_file(exported, "index/ivf2.faiss") == exported / "index" / "ivf2.faiss"
    (exported / "index" / "ivf2.faiss").write_bytes(b"index bytez")
    # The model itself still loads (exact scoring needs no index); the index is refused when opened.
    artifact.load(exported)
    with pytest.raises(artifact.ArtifactError, match=r"ivf2.faiss was altered .*Fix: delete it"):
        artifact.verified_file(exported, "index/ivf2.faiss")
    (exported / "index" / "ivf2.faiss").unlink()
    artifact.load(exported)  # a derived file that is gone is not an error
    with pytest.raises(artifact.ArtifactError, match=r"has no index/ivf2.faiss; it is built by `prismrec score`"):
        artifact.verified_file(exported, "index/ivf2.faiss")


def test_two_writers_adding_indexes_keep_both_entries(exported):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    both_ready = context.Barrier(2)  # both start add_file together, so their writes overlap
    writers = [context.Process(target=add_slowly, args=(str(exported), f"index/ivf{n}.faiss", both_ready))
               for n in (3, 4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [writer.exitcode for writer in writers] == [0, 0]
    files = artifact.load(exported).manifest["files"]
    for n in (3, 4):
        assert files[f"index/ivf{n}.faiss"] == artifact.sha256_file(exported / "index" / f"ivf{n}.faiss")


def add_slowly(root: str, name: str, both_ready) -> None:
    """Adds ``name`` taking a second to write it, once the other writer is ready too."""
    import time
    from pathlib import Path

    def write(path):
        time.sleep(1.0)
        Path(path).write_bytes(name.encode())

    both_ready.wait(30)
    artifact.add_file(Path(root), name, write)


def test_a_failed_write_leaves_nothing_behind(exported):
    def fail(path):
        path.write_bytes(b"half")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        artifact.add_file(exported, "index/ivf5.faiss", fail)
    assert not list(exported.parent.glob(".*partial*")) and not (exported / "index" / "ivf5.faiss").exists()
    assert "index/ivf5.faiss" not in artifact.load(exported).manifest["files"]


def test_a_file_under_index_that_the_manifest_does_not_list_is_refused_with_the_fix(exported):
    (exported / "index").mkdir()
    (exported / "index" / "ivf9.faiss").write_bytes(b"copied in by hand")
    artifact.load(exported)
    with pytest.raises(artifact.ArtifactError, match=r"holds index/ivf9.faiss, which its manifest does not list; "
                                                     r"delete it"):
        artifact.verified_bytes(exported, "index/ivf9.faiss")
