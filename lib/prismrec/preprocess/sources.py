"""Raw log sources → one parsed shape, before validation.

Every reader returns a DataFrame with ``PARSED_COLUMNS``: the raw record text, its
source file, a ``pre_reason`` for records the reader itself could not split, and
the mapped fields (``event_type`` already canonical, or null when unknown; ``ts``
null when unparseable). ``logs.validate`` decides what is kept.

Formats: ``taobao`` (UserBehavior CSV, no header), ``movielens`` (ml-100k, ml-1m or
ml-latest folder, detected by file names), and ``csv`` / ``jsonl`` / ``parquet``
through the ``source.mapping`` columns. Paths may be a file, a folder (searched
recursively, so ``dt=YYYY-MM-DD`` sub-folders work), or a glob; ``.gz`` is read as is.
"""
from __future__ import annotations

import csv
import glob
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from prismrec import schema as S
from prismrec.config import ConfigError
from prismrec.errors import InputError
from prismrec.preprocess import catalogue

logger = logging.getLogger(__name__)
PRE_REASON = "pre_reason"
TS_RAW = "ts_raw"
PARSED_COLUMNS = (S.RAW, S.SOURCE_FILE, PRE_REASON, S.USER_ID, S.ITEM_ID, S.CATEGORY_ID,
                  S.EVENT_TYPE, S.WEIGHT, TS_RAW, S.TS)
TAOBAO_EVENT_TYPES = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}
TAOBAO_FIELDS = ("user", "item", "category", "behavior", "timestamp")


def _lit_map(mapping: dict) -> Column:
    return F.create_map(*[F.lit(x) for pair in mapping.items() for x in pair])


def no_records(path: str) -> InputError:
    return InputError(f"no records found under '{path}'; check source.path and source.format")


def _reader(spark: SparkSession, path: str):
    return spark.read.option("recursiveFileLookup", "true") if Path(path).is_dir() else spark.read


def input_files(spark: SparkSession, path: str) -> list[str]:
    """The data files under ``path`` as Spark lists them (hidden ``.x`` and ``_x`` files skipped), sorted.

    Listing only: no file is opened. An existing folder without data files gives [].
    """
    return sorted(_reader(spark, path).text(path).inputFiles())


def _text(spark: SparkSession, path: str) -> DataFrame:
    """Lines of every file under ``path`` with their file name; nothing is parsed yet."""
    return _reader(spark, path).text(path).select(F.col("value").alias(S.RAW), F.input_file_name().alias(S.SOURCE_FILE))


def unix_seconds(text: Column) -> Column:
    """Timestamp from an integer Unix-seconds string; null unless it is all digits."""
    return F.when(text.rlike(r"^-?[0-9]{1,12}$"), F.timestamp_seconds(text.cast("long")))


def parse_timestamp(text: Column, fmt: str) -> Column:
    """``unix_s`` | ``unix_ms`` | a Spark datetime pattern; null when it does not parse."""
    if fmt == "unix_s":
        return unix_seconds(text)
    if fmt == "unix_ms":
        return F.when(text.rlike(r"^-?[0-9]{1,15}$"), F.timestamp_millis(text.cast("long")))
    return F.call_function("try_to_timestamp", text, F.lit(fmt))


def check_timestamp_format(spark: SparkSession, fmt: str) -> None:
    """Raise ConfigError (exit 2) naming ``source.mapping.timestamp_format`` when Spark rejects ``fmt``
    as a datetime pattern. Spark compiles a pattern only when a query runs, and then fails the whole
    job with a Java stack (e.g. "All week-based patterns are unsupported since Spark 3.0"), so one row
    is parsed on the driver first."""
    if fmt in ("unix_s", "unix_ms"):
        return
    try:
        spark.range(1).select(parse_timestamp(F.lit("1970-01-01"), fmt)).collect()
    except Exception as error:  # IllegalArgumentException or SparkUpgradeException, by Spark version
        raise ConfigError(
            f"source.mapping.timestamp_format={fmt!r} is not a datetime pattern Spark accepts "
            f"({java_problem(error)}); use unix_s, unix_ms or a pattern such as 'yyyy-MM-dd HH:mm:ss' "
            f"(https://spark.apache.org/docs/3.5.7/sql-ref-datetime-pattern.html)") from None


def _parsed(frame: DataFrame, pre_reason: Column, user: Column, item: Column, category: Column,
            event_type: Column, weight: Column, ts_raw: Column, ts: Column) -> DataFrame:
    category = F.when(category.isNull() | (F.trim(category) == ""), F.lit(S.UNKNOWN_CATEGORY)).otherwise(category)
    return frame.select(S.RAW, S.SOURCE_FILE, pre_reason.alias(PRE_REASON), user.alias(S.USER_ID),
                        item.alias(S.ITEM_ID), category.alias(S.CATEGORY_ID), event_type.alias(S.EVENT_TYPE),
                        weight.cast("float").alias(S.WEIGHT), ts_raw.alias(TS_RAW), ts.alias(S.TS))


def read_taobao(spark: SparkSession, path: str, event_weights: dict[str, float]) -> DataFrame:
    """Taobao UserBehavior CSV: ``user,item,category,behavior,timestamp``, no header.

    Read as text so a malformed line keeps its raw form for the quarantine instead
    of being padded or truncated by the CSV parser.
    """
    lines = _text(spark, path)
    parts = F.split(F.col(S.RAW), ",", -1)
    field = {name: F.trim(parts.getItem(i)) for i, name in enumerate(TAOBAO_FIELDS)}
    event_type = _lit_map(TAOBAO_EVENT_TYPES)[field["behavior"]]
    return _parsed(lines, F.when(F.size(parts) != len(TAOBAO_FIELDS), F.lit("wrong_field_count")),
                   field["user"], field["item"], field["category"], event_type,
                   _lit_map(event_weights)[event_type], field["timestamp"], unix_seconds(field["timestamp"]))


def _split_ratings(lines: DataFrame, separator: str, skip_header: bool = False) -> tuple[DataFrame, list[Column], Column]:
    if skip_header:
        lines = lines.where(~F.col(S.RAW).startswith("userId,"))
    parts = F.split(F.col(S.RAW), separator, -1)
    return lines, [F.trim(parts.getItem(i)) for i in range(4)], F.size(parts) != 4


def read_movielens(spark: SparkSession, path: str) -> DataFrame:
    """MovieLens ratings as ``rate`` events weighted by the rating; a movie's first genre is its category.

    The movies file is read by :func:`catalogue.movielens_movies` (encodings, RFC 4180
    quoting), which is also the run's item catalogue.
    """
    folder = Path(path)
    layout = catalogue.movielens_layout(folder)
    if layout == "ml-100k":
        lines, fields, malformed = _split_ratings(_text(spark, str(folder / "u.data")), "\t")
    elif layout == "ml-1m":
        lines, fields, malformed = _split_ratings(_text(spark, str(folder / "ratings.dat")), "::")
    else:
        lines, fields, malformed = _split_ratings(_text(spark, str(folder / "ratings.csv")), ",", skip_header=True)
    movies = catalogue.movielens_movies(spark, folder).select(F.col(S.ITEM_ID).alias("_movie"),
                                                              F.col(S.CATEGORY_ID).alias("genre"))
    user, item, rating, timestamp = fields
    rated = lines.withColumn("_movie", item).join(F.broadcast(movies), "_movie", "left")
    pre_reason = (F.when(malformed, F.lit("wrong_field_count"))
                  .when(rating.cast("float").isNull() | F.isnan(rating.cast("float")), F.lit("unparseable_number")))
    return _parsed(rated, pre_reason, user, item, F.col("genre"), F.lit("rate"), rating.cast("float"),
                   timestamp, unix_seconds(timestamp))


CORRUPT = "_corrupt_record"
HEADER_THREADS = 16


def first_line(spark: SparkSession, file: str) -> str | None:
    """The first line of ``file`` (any Hadoop file system, decompressed by its suffix); None when empty.

    Read on the driver through Hadoop's own FileSystem and codecs, so it works wherever Spark
    reads. Raises InputError naming the file when it cannot be opened or decompressed.
    """
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(file)
    try:
        stream = path.getFileSystem(conf).open(path)
        codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(path)
        if codec is not None:
            stream = codec.createInputStream(stream)
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        try:
            return reader.readLine()
        finally:
            reader.close()
    except Exception as error:  # a Py4JJavaError: the Java IOException says what is wrong
        raise InputError(f"cannot read input file {file}: {java_problem(error)}") from error


def csv_header(spark: SparkSession, file: str, delimiter: str) -> list[str] | None:
    """The column names in ``file``'s header line (RFC 4180 quoting, a UTF-8 BOM dropped); None when empty."""
    line = first_line(spark, file)
    if line is None:
        return None
    return [name.strip() for name in next(csv.reader([line.lstrip("\ufeff")], delimiter=delimiter))]


def read_csv(spark: SparkSession, path: str, delimiter: str, wanted: list[str]) -> DataFrame:
    """Every record of the CSV files under ``path``, each file mapped by its own header line.

    Files are grouped by header and each group read by Spark's CSV reader under
    ``catalogue.RFC4180``, so columns match by name even where files list them in different
    orders. Output: the ``wanted`` columns as strings, ``_corrupt_record`` (the raw text
    of a record that does not split into the header's fields, else null) and ``raw``.
    Raises InputError when there are no records, or a file lacks a ``wanted`` column.
    """
    files = input_files(spark, path)
    # One small read per file on the driver; threads overlap the round trips to object stores.
    with ThreadPoolExecutor(max_workers=HEADER_THREADS) as pool:
        headers = list(pool.map(lambda file: csv_header(spark, file, delimiter), files))
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for file, header in zip(files, headers):
        if header:  # an empty file holds no records
            groups[tuple(header)].append(file)
    if not groups:
        raise no_records(path)
    frames = []
    for header, files in groups.items():
        missing = [c for c in wanted if c not in header]
        if missing:
            raise InputError(f"input file {files[0]} has no column {missing} named in source.mapping (its header: "
                             f"{list(header)}); fix source.mapping or the file")
        # Every column a string: nothing is inferred; parsing happens later, visibly.
        schema = T.StructType([T.StructField(c, T.StringType()) for c in header] +
                              [T.StructField(CORRUPT, T.StringType())])
        # RFC 4180 (https://www.rfc-editor.org/rfc/rfc4180): doubled quotes, quoted line breaks
        # (multiLine: Spark then reads each file in one task instead of splitting it).
        frame = (spark.read.options(sep=delimiter, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT,
                                    **catalogue.RFC4180).schema(schema).csv(files))
        raw = F.coalesce(F.col(CORRUPT), F.concat_ws(delimiter, *[F.coalesce(F.col(c), F.lit("")) for c in header]))
        frames.append(frame.select(*wanted, CORRUPT, raw.alias(S.RAW)))
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def read_mapped(spark: SparkSession, path: str, fmt: str, mapping, event_weights: dict[str, float],
                delimiter: str = ",") -> DataFrame:
    """CSV (a header per file), JSON lines or Parquet through the column mapping in ``source.mapping``.

    Raises InputError when there are no records under ``path`` or a mapped column is missing, and
    ConfigError for a timestamp format Spark rejects.
    """
    check_timestamp_format(spark, mapping.timestamp_format)
    wanted = list(dict.fromkeys(c for c in (mapping.user, mapping.item, mapping.category, mapping.event_type,
                                            mapping.timestamp) if c))
    if fmt == "csv":
        frame = read_csv(spark, path, delimiter, wanted)
    elif not input_files(spark, path):
        raise no_records(path)
    elif fmt == "parquet":
        frame = _reader(spark, path).parquet(path)
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise InputError(f"source.mapping names column(s) {missing} not in {path} (columns: {frame.columns})")
        frame = frame.select(*[F.col(c).cast("string").alias(c) for c in wanted],
                             F.lit(None).cast("string").alias(CORRUPT)).withColumn(S.RAW, F.to_json(F.struct(*wanted)))
    else:
        schema = T.StructType([T.StructField(c, T.StringType()) for c in wanted] + [T.StructField(CORRUPT, T.StringType())])
        frame = _reader(spark, path).options(mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT).schema(schema).json(path)
        frame = frame.withColumn(S.RAW, F.coalesce(F.col(CORRUPT), F.to_json(F.struct(*wanted))))
    frame = frame.withColumn(S.SOURCE_FILE, F.input_file_name())
    column = lambda name: F.trim(F.col(name)) if name else F.lit(None).cast("string")  # noqa: E731
    if mapping.event_type:
        event_type = _lit_map(mapping.event_types)[column(mapping.event_type)]
    else:
        event_type = F.lit(mapping.default_event_type)
    return _parsed(frame, F.when(F.col(CORRUPT).isNotNull(), F.lit("wrong_field_count")),
                   column(mapping.user), column(mapping.item), column(mapping.category), event_type,
                   _lit_map(event_weights)[event_type], column(mapping.timestamp),
                   parse_timestamp(column(mapping.timestamp), mapping.timestamp_format))


def java_causes(error: BaseException) -> list:
    """The Java exception behind a PySpark error and its causes, outermost first ([] if none)."""
    java = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
    chain = []
    while java is not None and len(chain) < 32:
        chain.append(java)
        java = java.getCause()
    return chain


def java_problem(error: BaseException) -> str:
    """The root cause of ``error`` in one line: ``Class: message``."""
    chain = java_causes(error)
    return java_problem_of(chain) if chain else " ".join(str(error).split())[:300]


# Failures that mean a file could not be read, besides any java.io.IOException (a truncated
# or corrupt compressed file, a missing or unreadable file): Parquet's own.
_READ_FAILURE_TEXT = ("is not a Parquet file", "Parquet column cannot be converted", "Could not read footer")


def _is_read_failure(spark: SparkSession, chain: list) -> bool:
    io_error = spark.sparkContext._jvm.java.lang.Class.forName("java.io.IOException")
    return any(io_error.isInstance(java) or any(text in str(java.getMessage() or "") for text in _READ_FAILURE_TEXT)
               for java in chain)


def _failing_file(spark: SparkSession, chain: list, files: list[str], fmt: str) -> tuple[str, str] | None:
    """(file, problem) of the first of ``files`` that cannot be read: named by Spark, else found by reading each."""
    messages = " ".join(str(java.getMessage() or "") for java in chain)
    for file in files:
        if urlparse(file).path in messages:
            return file, java_problem_of(chain)
    # Spark 3.5 does not name the file for most codec and I/O errors (FileScanRDD wraps only
    # Parquet conversion and missing-file errors), so each file is read alone, every value
    # hashed: the cost of the failure path only.
    for file in files:
        try:
            frame = spark.read.format("parquet" if fmt == "parquet" else "text").load(file)
            frame.agg(F.sum(F.hash(*frame.columns))).collect()
        except Exception as error:  # the first file that fails is the one to name
            return file, java_problem(error)
    return None


def java_problem_of(chain: list) -> str:
    """The root (last) of a :func:`java_causes` chain in one line: ``Class: message``."""
    root = chain[-1]
    return f"{root.getClass().getSimpleName()}: {' '.join(str(root.getMessage() or '').split())[:300]}"


@contextmanager
def read_failures(spark: SparkSession, path: str, fmt: str) -> Iterator[None]:
    """Turn a failure to read an input file into an InputError that names the file (exit code 3).

    Covers truncated or corrupt compressed files, files that vanish or cannot be opened,
    corrupt Parquet, and Parquet files whose column types conflict. The full trace goes to
    the log at DEBUG level; any other failure passes through unchanged.
    """
    try:
        yield
    except InputError:
        raise
    except Exception as error:
        chain = java_causes(error)
        if not chain or not _is_read_failure(spark, chain):
            raise
        logger.debug("reading source.path=%s failed", path, exc_info=error)
        found = _failing_file(spark, chain, input_files(spark, path), fmt)
        if found is None:
            raise
        file, problem = found
        raise InputError(f"cannot read input file {file}: {problem}; fix or remove the file "
                         f"(source.path={path})") from None


def input_exists(path: str) -> bool:
    return "://" in path or bool(glob.glob(path))
