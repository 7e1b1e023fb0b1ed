"""Each interest's best items over the catalogue: exact (blocked top-k) or approximate (a FAISS index).

Both searches answer the same question, ``search(queries [Q, d], count) → (scores [Q, C],
items [Q, C])``, best first, over item_idx 1..M-1 of an item table [M, d] whose row 0 is
padding (never returned). :func:`candidates` asks a search for enough items per interest that
each user's seen items can be removed and N are still left.

- :class:`ExactSearch` scores every item (one matmul per chunk of items) and finds the top
  C without sorting all M scores: the items are cut into blocks of ``block`` rows, each
  block's best score is taken, and only the C blocks with the best maxima can hold the top C
  items (an item in the top C is beaten by fewer than C items, so fewer than C blocks have a
  larger maximum than its own block). The top C is then taken over those C·block scores.
- :class:`AnnSearch` asks an inverted-file index (FAISS ``IndexIVFFlat``, inner product;
  Jégou et al., "Product quantization for nearest neighbor search", TPAMI 2011, §IV) the
  ``probes`` lists nearest to each query; the scores it returns are exact inner products of
  the items it visits. With ``probes`` equal to the number of lists it is exhaustive.

The index is stored in FAISS's own binary format (``faiss.write_index``), not pickle.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

NEG_INF = np.float32(-np.inf)
EXACT, ANN, AUTO = "exact", "ann", "auto"
BLOCK_ROWS = 16
# Scores held at once by the exact search: [queries, chunk] float32, about 128 MiB, for at most
# QUERY_GROUP queries at a time (128 users of K = 4: 65,536 items a chunk).
SCORE_BUFFER = 1 << 25
QUERY_GROUP = 512
INDEX_READS: Counter = Counter()  # reads of each index file by this process (a worker reads each once)


def faiss_module(threads: int | None = None):
    """``faiss``, imported with its loader's probing kept off the console, using ``threads``
    OpenMP threads when given. Raises ConfigError (exit 2) when FAISS cannot be imported.

    FAISS's loader tries per-instruction-set modules (``swigfaiss_avx512_spr``, ``_avx512``,
    ``_avx2``) and logs each one missing at INFO; the faiss-cpu wheels pinned here ship one
    module that picks the instruction set at run time (``faiss.get_compile_options()`` says
    ``DD``), so those lines are noise, not a slower build (faiss-wheels issue #39, faiss issue
    #2872).
    """
    import logging

    from prismrec.config import ConfigError

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        import faiss
    except ImportError as error:
        raise ConfigError(f"score.retrieval=ann needs FAISS, which this Python cannot import ({error}): install "
                          f"faiss-cpu (the version in conf/constraints.txt), or set score.retrieval=exact") from error

    if threads:
        faiss.omp_set_num_threads(threads)
    return faiss


class ExactSearch:
    """Exact per-query top-C over an item table [M, d] (row 0 padding), blocked top-k.

    ``table``: float32 [M, d] (an array or a read-only memory map; it is copied once into
    TensorFlow constants). ``block``: rows per block (blocks of 16 and 32 rows were within 15 % of
    each other, 64 slower, on one core at M = 100k, d = 64; ``docs/benchmarks.md``).
    """

    def __init__(self, table, block: int = BLOCK_ROWS):
        import tensorflow as tf

        table = np.asarray(table, dtype=np.float32)
        self.num_items, self.block = table.shape[0], block
        real = self.num_items - 1
        whole = real // block * block
        self._main = tf.constant(table[1:1 + whole])
        self._tail = tf.constant(table[1 + whole:]) if whole < real else None
        self._tail_ids = np.arange(1 + whole, self.num_items, dtype=np.int64)

    def search(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [Q, C], items int64 [Q, C]), best first, C = min(count, M - 1)."""
        import tensorflow as tf

        count = min(count, self.num_items - 1)
        num_queries = queries.shape[0]
        if count <= 0 or num_queries == 0:
            return np.zeros((num_queries, 0), np.float32), np.zeros((num_queries, 0), np.int64)
        if num_queries > QUERY_GROUP:  # bounded memory: [QUERY_GROUP, chunk] scores at a time
            parts = [self.search(queries[start:start + QUERY_GROUP], count)
                     for start in range(0, num_queries, QUERY_GROUP)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        queries = tf.constant(queries, dtype=tf.float32)
        chunk = max(self.block, SCORE_BUFFER // max(num_queries, 1) // self.block * self.block)
        best = None  # the running top ``count`` over the chunks so far: [Q, C] values and items
        for start in range(0, self._main.shape[0], chunk):
            part = self._main[start:start + chunk]
            values, positions = self._chunk_top(tf.matmul(queries, part, transpose_b=True), count)
            best = _keep_best(best, values, tf.cast(positions, tf.int64) + (start + 1), count)
        if self._tail is not None:
            best = _keep_best(best, tf.matmul(queries, self._tail, transpose_b=True),
                              tf.broadcast_to(tf.constant(self._tail_ids), (num_queries, len(self._tail_ids))), count)
        return best[0].numpy(), best[1].numpy()

    def _chunk_top(self, scores, count: int):
        """The top ``count`` of one chunk's scores [Q, n] (n a multiple of ``block``): (values, positions)."""
        import tensorflow as tf

        num_queries, size = scores.shape
        blocks = size // self.block
        if count >= blocks:  # every block would be kept: take the top-k over the chunk directly
            best = tf.math.top_k(scores, min(count, size))
            return best.values, best.indices
        grouped = tf.reshape(scores, (num_queries, blocks, self.block))
        kept = tf.math.top_k(tf.reduce_max(grouped, axis=-1), count).indices                  # [Q, C] blocks
        candidates = tf.reshape(tf.gather(grouped, kept, batch_dims=1), (num_queries, count * self.block))
        positions = tf.reshape(kept[:, :, None] * self.block + tf.range(self.block), (num_queries, -1))
        best = tf.math.top_k(candidates, count)
        return best.values, tf.gather(positions, best.indices, batch_dims=1)


def _keep_best(best, values, items, count: int):
    """The top ``count`` of the running best (values, items) [Q, C] and a chunk's [Q, n], best first."""
    import tensorflow as tf

    if best is not None:
        values, items = tf.concat([best[0], values], axis=1), tf.concat([best[1], items], axis=1)
    top = tf.math.top_k(values, min(count, values.shape[1]))
    return top.values, tf.gather(items, top.indices, batch_dims=1)


class AnnSearch:
    """Approximate per-query top-C from a FAISS inverted-file index over item_idx 1..M-1.

    ``index``: a ``faiss.IndexIVF`` whose ids are item_idx; ``probes``: lists visited per query
    (``nprobe``). Items the visited lists cannot supply come back with score -inf and item 0.
    """

    def __init__(self, index, probes: int, num_items: int):
        self.index, self.probes, self.num_items = index, probes, num_items
        self._params = faiss_module().SearchParametersIVF(nprobe=min(probes, index.nlist))

    def with_probes(self, probes: int) -> "AnnSearch":
        """The same index searched with ``probes`` lists (the index is shared, not copied)."""
        return self if probes == self.probes else AnnSearch(self.index, probes, self.num_items)

    def search(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [Q, C], items int64 [Q, C]), best first, C = min(count, M - 1)."""
        count = min(count, self.num_items - 1)
        if count <= 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, items = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), count,
                                          params=self._params)
        missing = items < 0
        return np.where(missing, NEG_INF, scores).astype(np.float32), np.where(missing, 0, items)


def candidates(search, interest_vectors: np.ndarray, seen_items: list[np.ndarray],
               top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each interest's top-N items that the user has not seen.

    ``search``: an :class:`ExactSearch` or :class:`AnnSearch`; ``interest_vectors`` [B, K, d];
    ``seen_items``: B arrays of item_idx. Each interest asks for N + (the batch's longest seen
    list) items, so removing a user's seen items still leaves N of them when the search is exact.
    Returns (scores [B, K, N'], items [B, K, N']) with N' = min(N, M - 1), best first; -inf (item 0)
    marks slots nothing was left for.
    """
    batch, num_interests, dim = interest_vectors.shape
    longest = max((len(s) for s in seen_items), default=0)
    scores, items = search.search(interest_vectors.reshape(batch * num_interests, dim), top_n + longest)
    scores = scores.reshape(batch, num_interests, -1)
    items = items.reshape(batch, num_interests, -1)
    if longest:
        rows = np.repeat(np.arange(batch, dtype=np.int64), [len(s) for s in seen_items])
        all_seen = np.concatenate(seen_items).astype(np.int64)
        stride = max(search.num_items, int(all_seen.max()) + 1)  # one key per (user, item)
        seen_keys = rows * stride + all_seen
        keys = np.arange(batch, dtype=np.int64)[:, None, None] * stride + items
        scores = np.where(np.isin(keys, seen_keys), NEG_INF, scores)
    # Move the items still recommendable to the front of each interest's list, keeping their order.
    order = np.argsort(~np.isfinite(scores), axis=-1, kind="stable")[:, :, :top_n]
    scores = np.take_along_axis(scores, order, axis=-1)
    items = np.take_along_axis(items, order, axis=-1)
    return scores, np.where(np.isfinite(scores), items, 0)


@dataclass(frozen=True)
class Retrieval:
    """How scoring finds each interest's candidates (the ``score`` keys ``retrieval``, ``ann_*``).

    ``mode``: ``exact`` or ``ann`` (``auto`` is resolved by :meth:`of` from the catalogue
    size); ``lists``: the index's inverted lists (0 = 4·√M); ``probes``: lists visited per query.
    """

    mode: str = EXACT
    lists: int = 0
    probes: int = 32

    @classmethod
    def of(cls, score_cfg, num_items: int) -> "Retrieval":
        """From the ``score`` config section for a catalogue of ``num_items`` items (auto resolved)."""
        mode = score_cfg.retrieval
        if mode == AUTO:
            mode = ANN if num_items >= score_cfg.ann_min_items else EXACT
        lists = score_cfg.ann_lists or default_lists(num_items)
        return cls(mode, lists, min(score_cfg.ann_probes, lists))  # more probes than lists is every list

    @property
    def index_name(self) -> str | None:
        """The index's path inside the model artifact, or None for exact retrieval."""
        return f"index/ivf{self.lists}.faiss" if self.mode == ANN else None


def default_lists(num_items: int) -> int:
    """4·√M inverted lists (FAISS's guideline for IVF indexes of up to about a million vectors)."""
    return max(1, int(round(4 * np.sqrt(max(num_items, 1)))))


def build_index(table: np.ndarray, lists: int, seed: int = 0, threads: int | None = None):
    """An ``IndexIVFFlat`` (inner product) over rows 1..M-1 of ``table`` [M, d], ids = item_idx.

    The coarse quantizer is k-means on a sample of at most 64 items per list (FAISS samples up to
    256 per list by default; with 64, 4,000 lists over 10⁶ items took 49 s on two cores in
    ``bench/score.py``).
    Raises ConfigError (a ValueError, exit 2) when the catalogue has fewer items than ``lists``.
    """
    from prismrec.config import ConfigError

    faiss = faiss_module(threads or os.cpu_count())  # all cores, whatever an earlier search set
    items = np.ascontiguousarray(np.asarray(table, dtype=np.float32)[1:])
    if len(items) < lists:
        raise ConfigError(f"score.ann_lists: an index of {lists} lists needs at least as many items; the "
                          f"catalogue has {len(items)}: set score.ann_lists lower (0 = 4·√items) or "
                          f"score.retrieval=exact")
    dim = items.shape[1]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(seed)
    sample = items if len(items) <= 64 * lists else items[np.sort(rng.choice(len(items), 64 * lists, replace=False))]
    index.cp.seed = seed
    index.cp.min_points_per_centroid = 1
    index.train(sample)
    index.add_with_ids(items, np.arange(1, len(items) + 1, dtype=np.int64))
    return index


def write_index(index, path) -> None:
    """FAISS's binary format (not pickle)."""
    faiss_module().write_index(index, str(path))


def read_index(path, data: bytes | None = None):
    """An index written by :func:`write_index` to ``path``, from ``data`` (its bytes, already read
    and checked) when given; counted in ``INDEX_READS``."""
    INDEX_READS[str(path)] += 1
    if data is None:
        return faiss_module().read_index(str(path))
    return faiss_module().deserialize_index(np.frombuffer(data, dtype=np.uint8))
