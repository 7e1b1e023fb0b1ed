"""The training data as Petastorm-readable Parquet: the layout, the example cutter, and the sharded reader.

Layout: ``num_files`` Parquet files of training sequences (``schema.SEQUENCE_COLUMNS``: one row
per training user, see :func:`prismrec.preprocess.sequences.training_sequences`) whose row
groups hold about ``row_group_rows`` examples each. Training hands whole files to ranks so
that their example counts (read from the footers) are as equal as the files allow
(:func:`rank_files`), so the dataset needs at least as many files as ranks, and several per
rank for the shares to even out. The reader cuts each row group's sequences into examples
(:func:`examples`, run by Petastorm's reader worker as a ``TransformSpec``).
"""
from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from prismrec import schema as S

logger = logging.getLogger(__name__)

def write_sequences(sequences, path: str, row_group_rows: int, max_hist_len: int, targets_per_row: int) -> None:
    """Write ``sequences`` (``schema.SEQUENCE_COLUMNS`` plus ``_order``) with the documented layout.

    One file per partition of ``sequences`` (``sequences.training_sequences`` makes ``num_files``),
    its rows in ``_order``. ``row_group_rows``: examples per row group, roughly: ``parquet.block.size``
    is in bytes of the writer's buffered data, about 4 · (L + 2C) / C bytes per example for rows of
    up to C consecutive targets and their L events of history (int32 values; rows of
    ``random`` targets span more events, so their row groups hold fewer examples).
    """
    example_bytes = 4 * (max_hist_len + 2 * targets_per_row) / targets_per_row
    (sequences.sortWithinPartitions("_order")
     .drop("_order")
     .write.mode("overwrite")
     .option("parquet.block.size", str(int(row_group_rows * example_bytes)))
     # parquet-mr checks a row group's size only every 100 rows at first: check after every
     # row, so a row group holds about row_group_rows examples and a shuffle buffer of a few
     # row groups mixes many of them.
     .option("parquet.page.size.row.check.min", "1")
     .parquet(path))


def examples(sequences: pd.DataFrame, max_hist_len: int, seed: int | None = None) -> pd.DataFrame:
    """Cut training sequences into examples: ``user_idx, hist_items [n, L], hist_len, target_item``.

    ``sequences``: ``user_idx, seq, target_pos`` rows (arrays of item_idx and 0-based
    positions). The example of target position p of a row is ``target_item = seq[p]`` and
    ``hist_items`` = ``seq[max(0, p − L):p]`` left-padded with the padding index to L
    (``hist_len`` = min(p, L)): the sliding window over the user's sequence. With ``seed``,
    the examples come in a seeded random order (seeded by ``seed`` and the first row's
    ``user_idx``), so consecutive examples are not one user's; without, row by row.
    ``hist_items`` is a column of int32 arrays of length L.
    """
    seqs, targets = sequences[S.SEQ].to_numpy(), sequences[S.TARGET_POS].to_numpy()
    seq_lens = np.fromiter(map(len, seqs), np.int64, len(seqs))
    target_counts = np.fromiter(map(len, targets), np.int64, len(targets))
    flat = np.concatenate([*seqs, np.zeros(1, np.int32)]).astype(np.int32)
    positions = (np.concatenate([*targets, np.zeros(0, np.int64)]).astype(np.int64))
    row = np.repeat(np.arange(len(seqs)), target_counts)
    at = (np.cumsum(seq_lens) - seq_lens)[row] + positions  # each target's index into ``flat``
    back = np.arange(-max_hist_len, 0)
    inside = positions[:, None] + back >= 0
    hist = np.where(inside, flat[np.where(inside, at[:, None] + back, 0)], S.PADDING_IDX).astype(np.int32)
    order = np.arange(len(at))
    if seed is not None and len(at):
        order = np.random.default_rng([seed, int(sequences[S.USER_IDX].iloc[0]) & 0x7FFFFFFF]).permutation(len(at))
    return pd.DataFrame({
        S.USER_IDX: sequences[S.USER_IDX].to_numpy()[row][order].astype(np.int32),
        S.HIST_ITEMS: list(hist[order]),
        S.HIST_LEN: np.minimum(positions, max_hist_len)[order].astype(np.int32),
        S.TARGET_ITEM: flat[at][order],
    })


def example_transform(max_hist_len: int, seed: int | None = None):
    """The Petastorm ``TransformSpec`` that turns read sequences into :func:`examples`.

    Petastorm's batch reader requires list columns of one length per row group
    (``convert_arrow_table_to_numpy_dict`` stacks them), and training sequences are
    ragged: the transform runs on the row group's pandas frame before that step.
    """
    from petastorm.transform import TransformSpec

    return TransformSpec(functools.partial(examples, max_hist_len=max_hist_len, seed=seed),
                         edit_fields=[(S.HIST_ITEMS, np.int32, (max_hist_len,), False),
                                      (S.HIST_LEN, np.int32, (), False),
                                      (S.TARGET_ITEM, np.int32, (), False)],
                         removed_fields=[S.SEQ, S.TARGET_POS])


def footer_examples(meta) -> int:
    """The training examples of one Parquet file, from its footer (``pyarrow.parquet.FileMetaData``).

    They are the values of its ``target_pos`` column: one per target position, and every
    training row has at least one (an empty list would count as one value).
    """
    column = next(j for j in range(meta.num_columns) if meta.schema.column(j).path.split(".")[0] == S.TARGET_POS)
    return sum(meta.row_group(g).column(column).num_values for g in range(meta.num_row_groups))


def file_examples(path: str) -> dict[str, int]:
    """``{file name: training examples}`` of each Parquet file of ``path``, in name order, from the footers."""
    import pyarrow.parquet as pq

    return {file.name: footer_examples(pq.ParquetFile(file).metadata) for file in sorted(Path(path).glob("*.parquet"))}


def parquet_layout(path: str) -> dict:
    """Files, row groups, rows (training rows), bytes on disk and examples of a Parquet folder, from its footers."""
    import pyarrow.parquet as pq

    layout = {"files": 0, "row_groups": 0, "rows": 0, "bytes": 0, "examples": 0}
    for file in sorted(Path(path).glob("*.parquet")):
        meta = pq.ParquetFile(file).metadata
        layout["files"] += 1
        layout["row_groups"] += meta.num_row_groups
        layout["rows"] += meta.num_rows
        layout["bytes"] += file.stat().st_size
        layout["examples"] += footer_examples(meta)
    return layout


def rank_files(counts: dict[str, int], num_ranks: int, path: str) -> list[list[str]]:
    """Hand whole files to ranks so their example counts are as equal as the files allow.

    ``counts``: ``{file name: examples}`` (:func:`file_examples`); files without examples
    are left out. Longest-processing-time order: the file with the most examples goes to
    the rank with the fewest so far (ties to the lower rank, files by name), so no rank's
    share exceeds the mean by more than one file's examples. Returns each rank's file
    names, sorted.

    Petastorm's own sharding (``cur_shard``) hands row groups round-robin, so shares follow
    the row groups' sizes (with one row per user, on MovieLens-100K 67,837 against 12,028
    examples) and the smaller rank goes over its data several times an epoch.

    Raises InputError (exit 3) when fewer files than ranks hold examples (some rank would
    get no data and wait for a batch forever).
    """
    from prismrec.errors import InputError

    filled = {name: count for name, count in counts.items() if count > 0}
    if len(filled) < max(num_ranks, 1):
        raise InputError(
            f"training data at {path} has {len(filled)} file(s) with training examples but training uses "
            f"{num_ranks} rank(s), so some rank would get no data; use fewer train.num_proc, or preprocess "
            f"again with a larger preprocess.num_files (a file holds the rows of some training users, so "
            f"that helps only when there are more rows than files: {len(filled)} of {len(counts)} files "
            f"have rows)")
    shares: list[list[str]] = [[] for _ in range(num_ranks)]
    totals = [0] * num_ranks
    for name in sorted(filled, key=lambda name: (-filled[name], name)):
        rank = min(range(num_ranks), key=lambda r: (totals[r], r))
        shares[rank].append(name)
        totals[rank] += filled[name]
    return [sorted(share) for share in shares]


def dataset_url(path: str) -> str:
    return Path(path).resolve().as_uri()


@contextmanager
def sharded_batches(files: list[str], batch_size: int, seed: int, max_hist_len: int,
                    shuffle_buffer: int = 8192) -> Iterator:
    """Yield an endless ``tf.data.Dataset`` of dict batches (``schema.TRAIN_COLUMNS``) from one rank's files.

    ``files``: the rank's Parquet files (paths; :func:`rank_files`). The reader repeats forever
    (``num_epochs=None``): the caller takes exactly ``steps_per_epoch`` batches, the same on
    every rank, so unequal shares cannot make one rank wait for another at an allreduce.
    Batches: ``hist_items [batch, L]``, ``hist_len, target_item, user_idx [batch]``.
    ``shuffle_buffer`` is in examples (8,192 of L = 50 take about 1.7 MiB); the rows of a row
    group are many users' (``sequences.training_sequences``), so the buffer mixes users.
    """
    import tensorflow as tf
    from petastorm import make_batch_reader
    from petastorm.tf_utils import make_petastorm_dataset

    with make_batch_reader([dataset_url(file) for file in files], schema_fields=list(S.SEQUENCE_COLUMNS),
                           transform_spec=example_transform(max_hist_len, seed), num_epochs=None,
                           shuffle_row_groups=True, seed=seed,
                           # One reader thread keeps the row-group order a function of the seed.
                           workers_count=1) as reader:
        rows = make_petastorm_dataset(reader).unbatch()
        batches = (rows.shuffle(shuffle_buffer, seed=seed)
                   .batch(batch_size, drop_remainder=True)
                   .map(lambda row: {name: getattr(row, name) for name in S.TRAIN_COLUMNS})
                   .prefetch(tf.data.AUTOTUNE))
        yield batches


@contextmanager
def one_pass(files: list[str], max_hist_len: int) -> Iterator:
    """A single, complete pass over ``files`` (paths): yields Petastorm batches of examples, row group by row group.

    Uses the synchronous ``dummy`` pool. Petastorm 0.13.1's thread pool can end a
    finite read early: ``ThreadPool.get_results`` checks ``all_workers_done()`` and
    then ``ventilator.completed()`` without a lock, so a row group ventilated between
    the two checks is dropped (seen here as 4,746 of 5,722 rows). Endless training
    readers (``num_epochs=None``) never complete and are not affected.
    """
    from petastorm import make_batch_reader

    with make_batch_reader([dataset_url(file) for file in files], schema_fields=list(S.SEQUENCE_COLUMNS),
                           transform_spec=example_transform(max_hist_len), num_epochs=1,
                           shuffle_row_groups=False, reader_pool_type="dummy") as reader:
        yield reader
