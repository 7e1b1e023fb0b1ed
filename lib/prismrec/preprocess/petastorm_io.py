"""Training examples as Petastorm-readable Parquet: the layout and the sharded reader.

Layout: ``num_files`` Parquet files whose row groups hold about ``row_group_rows``
examples each. Petastorm shards by row group (rank r reads groups r, r+N, ...),
so the dataset needs at least as many row groups as ranks, and several per rank
for the shuffle to mix.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prismrec import schema as S

logger = logging.getLogger(__name__)


def write_examples(examples, path: str, max_hist_len: int, row_group_rows: int) -> None:
    """Write ``examples`` (``schema.TRAIN_COLUMNS`` plus ``_order``) with the documented layout.

    One file per partition of ``examples`` (``sequences.training_windows`` makes ``num_files``),
    its rows in ``_order``.
    """
    # parquet.block.size is in bytes of (roughly uncompressed) data: int32 per slot.
    row_bytes = 4 * (max_hist_len + 3)
    (examples.sortWithinPartitions("_order")
     .drop("_order")
     .write.mode("overwrite")
     .option("parquet.block.size", str(row_group_rows * row_bytes))
     .parquet(path))


def parquet_layout(path: str) -> dict:
    """Count files, row groups and rows of a Parquet folder from its footers (no data read)."""
    import pyarrow.parquet as pq

    files = sorted(p for p in Path(path).glob("*.parquet"))
    groups = rows = 0
    for file in files:
        meta = pq.ParquetFile(file).metadata
        groups += meta.num_row_groups
        rows += meta.num_rows
    return {"files": len(files), "row_groups": groups, "rows": rows}


def check_shardable(layout: dict, path: str, num_ranks: int) -> None:
    if layout["row_groups"] < num_ranks:
        raise ValueError(
            f"training data at {path} has {layout['row_groups']} row group(s) but training uses "
            f"{num_ranks} ranks, so some ranks would get no data; lower preprocess.row_group_rows "
            f"or raise preprocess.num_files and preprocess again, or use fewer train.num_proc"
        )


def dataset_url(path: str) -> str:
    return Path(path).resolve().as_uri()


@contextmanager
def sharded_batches(path: str, rank: int, num_ranks: int, batch_size: int, seed: int,
                    shuffle_buffer: int = 8192) -> Iterator:
    """Yield an endless ``tf.data.Dataset`` of dict batches for one rank's shard.

    The reader repeats forever (``num_epochs=None``): the caller takes exactly
    ``steps_per_epoch`` batches, the same on every rank, so uneven shards cannot
    make one rank wait for another at an allreduce.
    """
    import tensorflow as tf
    from petastorm import make_batch_reader
    from petastorm.tf_utils import make_petastorm_dataset

    with make_batch_reader(dataset_url(path), schema_fields=list(S.TRAIN_COLUMNS),
                           cur_shard=rank, shard_count=num_ranks, num_epochs=None,
                           shuffle_row_groups=True, seed=seed + rank,
                           # One reader thread keeps the row-group order a function of the seed.
                           workers_count=1) as reader:
        rows = make_petastorm_dataset(reader).unbatch()
        batches = (rows.shuffle(shuffle_buffer, seed=seed + rank)
                   .batch(batch_size, drop_remainder=True)
                   .map(lambda row: {name: getattr(row, name) for name in S.TRAIN_COLUMNS})
                   .prefetch(tf.data.AUTOTUNE))
        yield batches


@contextmanager
def one_pass(path: str, rank: int = 0, num_ranks: int = 1) -> Iterator:
    """A single, complete pass over one shard: yields Petastorm row-group batches.

    Uses the synchronous ``dummy`` pool. Petastorm 0.13.1's thread pool can end a
    finite read early: ``ThreadPool.get_results`` checks ``all_workers_done()`` and
    then ``ventilator.completed()`` without a lock, so a row group ventilated between
    the two checks is dropped (seen here as 4,746 of 5,722 rows). Endless training
    readers (``num_epochs=None``) never complete and are not affected.
    """
    from petastorm import make_batch_reader

    with make_batch_reader(dataset_url(path), schema_fields=list(S.TRAIN_COLUMNS), cur_shard=rank,
                           shard_count=num_ranks, num_epochs=1, shuffle_row_groups=False,
                           reader_pool_type="dummy") as reader:
        yield reader
