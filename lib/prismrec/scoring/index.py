"""The approximate-retrieval index of a model artifact: built once per model, on the driver,
stored in the artifact under its manifest's SHA-256, and read once per Python worker."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from prismrec.ranking.retrieval import (ANN, AnnSearch, Retrieval, build_index, faiss_module, read_index,
                                        write_index)
from prismrec.training import artifact

logger = logging.getLogger(__name__)


def catalogue_size(model) -> int:
    """Items a loaded model can recommend (its item table's rows less the padding row)."""
    return int(model.item_embeddings.shape[0]) - 1


def ensure(model_dir: str, model, retrieval: Retrieval, seed: int = 0) -> None:
    """Build ``retrieval``'s index into the artifact at ``model_dir`` unless it holds it already
    (nothing for exact retrieval; an index deleted since is built again), and check it against
    the manifest. ``model``: the loaded artifact. Raises ConfigError (exit 2) when
    the catalogue has fewer items than the index's lists, ArtifactError when the artifact or the
    index does not verify."""
    name = retrieval.index_name
    if name is None:
        return
    faiss_module()  # a missing FAISS is named here, on the driver, not in a failed Spark task
    if not (Path(model_dir) / name).is_file():
        started = time.perf_counter()
        logger.info("building an IVF index of %d lists over %d items into %s (once per model)",
                    retrieval.lists, catalogue_size(model), Path(model_dir) / name)
        index = build_index(model.item_embeddings, retrieval.lists, seed)
        artifact.add_file(Path(model_dir), name, lambda path: write_index(index, path))
        logger.info("index built in %.1f s", time.perf_counter() - started)
    artifact.verified_file(Path(model_dir), name)  # an altered index is refused here, on the driver


def open_search(model_dir: str, model, retrieval: Retrieval, threads: int) -> AnnSearch:
    """An :class:`AnnSearch` over the index ``retrieval`` names, checked against the manifest.
    Raises ArtifactError when the index is missing from the manifest or altered."""
    assert retrieval.mode == ANN
    faiss_module(threads)
    path = Path(model_dir) / retrieval.index_name
    index = read_index(path, artifact.verified_bytes(Path(model_dir), retrieval.index_name))
    return AnnSearch(index, retrieval.probes, int(model.item_embeddings.shape[0]))
