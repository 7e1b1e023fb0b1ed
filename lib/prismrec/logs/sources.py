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

import glob
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from prismrec import schema as S

PRE_REASON = "pre_reason"
TS_RAW = "ts_raw"
PARSED_COLUMNS = (S.RAW, S.SOURCE_FILE, PRE_REASON, S.USER_ID, S.ITEM_ID, S.CATEGORY_ID,
                  S.EVENT_TYPE, S.WEIGHT, TS_RAW, S.TS)
TAOBAO_EVENT_TYPES = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}
TAOBAO_FIELDS = ("user", "item", "category", "behavior", "timestamp")
# ml-100k's u.item carries 19 genre flags in this order (its u.genre file).
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")
NO_GENRE = "(no genres listed)"


def _lit_map(mapping: dict) -> Column:
    return F.create_map(*[F.lit(x) for pair in mapping.items() for x in pair])


def _text(spark: SparkSession, path: str) -> DataFrame:
    """Lines of every file under ``path`` with their file name; nothing is parsed yet."""
    reader = spark.read.option("recursiveFileLookup", "true") if Path(path).is_dir() else spark.read
    return reader.text(path).select(F.col("value").alias(S.RAW), F.input_file_name().alias(S.SOURCE_FILE))


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


def _movielens_layout(folder: Path) -> str:
    for layout, files in (("ml-100k", ("u.data", "u.item")), ("ml-1m", ("ratings.dat", "movies.dat")),
                          ("ml-latest", ("ratings.csv", "movies.csv"))):
        if all((folder / name).is_file() for name in files):
            return layout
    raise FileNotFoundError(
        f"source.path={str(folder)!r} is not a MovieLens folder: expected u.data + u.item (ml-100k), "
        f"ratings.dat + movies.dat (ml-1m) or ratings.csv + movies.csv (ml-latest)")


def _split_ratings(lines: DataFrame, separator: str, skip_header: bool = False) -> tuple[DataFrame, list[Column], Column]:
    if skip_header:
        lines = lines.where(~F.col(S.RAW).startswith("userId,"))
    parts = F.split(F.col(S.RAW), separator, -1)
    return lines, [F.trim(parts.getItem(i)) for i in range(4)], F.size(parts) != 4


def _first_genre(genres: Column) -> Column:
    first = F.split(genres, r"\|").getItem(0)
    return F.when(first == NO_GENRE, F.lit(S.UNKNOWN_CATEGORY)).otherwise(first)


def read_movielens(spark: SparkSession, path: str) -> DataFrame:
    """MovieLens ratings as ``rate`` events weighted by the rating; a movie's first genre is its category."""
    folder = Path(path)
    layout = _movielens_layout(folder)
    if layout == "ml-100k":
        lines, fields, malformed = _split_ratings(_text(spark, str(folder / "u.data")), "\t")
        flags = F.split(F.col("value"), r"\|")
        genre_of = F.array(*[F.when(flags.getItem(5 + i) == "1", F.lit(g)) for i, g in enumerate(ML100K_GENRES)])
        movies = spark.read.text(str(folder / "u.item")).select(
            flags.getItem(0).alias("movie"), F.filter(genre_of, lambda g: g.isNotNull()).getItem(0).alias("genre"))
    elif layout == "ml-1m":
        lines, fields, malformed = _split_ratings(_text(spark, str(folder / "ratings.dat")), "::")
        parts = F.split(F.col("value"), "::")
        movies = spark.read.text(str(folder / "movies.dat")).select(
            parts.getItem(0).alias("movie"), _first_genre(parts.getItem(2)).alias("genre"))
    else:
        lines, fields, malformed = _split_ratings(_text(spark, str(folder / "ratings.csv")), ",", skip_header=True)
        movie_schema = T.StructType([T.StructField(n, T.StringType()) for n in ("movieId", "title", "genres")])
        movies = spark.read.csv(str(folder / "movies.csv"), header=True, schema=movie_schema).select(
            F.col("movieId").alias("movie"), _first_genre(F.col("genres")).alias("genre"))
    user, item, rating, timestamp = fields
    rated = lines.withColumn("_movie", item).join(
        F.broadcast(movies.withColumnRenamed("movie", "_movie")), "_movie", "left")
    pre_reason = (F.when(malformed, F.lit("wrong_field_count"))
                  .when(rating.cast("float").isNull() | F.isnan(rating.cast("float")), F.lit("unparseable_number")))
    return _parsed(rated, pre_reason, user, item, F.col("genre"), F.lit("rate"), rating.cast("float"),
                   timestamp, unix_seconds(timestamp))


def read_mapped(spark: SparkSession, path: str, fmt: str, mapping, event_weights: dict[str, float],
                delimiter: str = ",") -> DataFrame:
    """CSV (with a header), JSON lines or Parquet through the column mapping in ``source.mapping``."""
    wanted = [c for c in (mapping.user, mapping.item, mapping.category, mapping.event_type, mapping.timestamp) if c]
    corrupt = "_corrupt_record"
    reader = spark.read.option("recursiveFileLookup", "true") if Path(path).is_dir() else spark.read
    if fmt == "parquet":
        frame = reader.parquet(path)
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ValueError(f"source.mapping names column(s) {missing} not in {path} (columns: {frame.columns})")
        frame = frame.select(*[F.col(c).cast("string").alias(c) for c in wanted], F.lit(None).cast("string").alias(corrupt))
        raw = F.to_json(F.struct(*wanted))
    else:
        if fmt == "csv":
            header = spark.read.text(path).first()[0].split(delimiter)
            columns = [h.strip().strip('"') for h in header]
        else:
            columns = wanted
        # Every column as a string: nothing is inferred; parsing happens below, visibly.
        schema = T.StructType([T.StructField(c, T.StringType()) for c in columns] + [T.StructField(corrupt, T.StringType())])
        options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": corrupt}
        if fmt == "csv":
            frame = reader.options(header=True, sep=delimiter, **options).schema(schema).csv(path)
            raw = F.coalesce(F.col(corrupt), F.concat_ws(delimiter, *[F.coalesce(F.col(c), F.lit("")) for c in columns]))
        else:
            frame = reader.options(**options).schema(schema).json(path)
            raw = F.coalesce(F.col(corrupt), F.to_json(F.struct(*wanted)))
    frame = frame.withColumn(S.RAW, raw).withColumn(S.SOURCE_FILE, F.input_file_name())
    column = lambda name: F.trim(F.col(name)) if name else F.lit(None).cast("string")  # noqa: E731
    if mapping.event_type:
        event_type = _lit_map(mapping.event_types)[column(mapping.event_type)]
    else:
        event_type = F.lit(mapping.default_event_type)
    return _parsed(frame, F.when(F.col(corrupt).isNotNull(), F.lit("wrong_field_count")),
                   column(mapping.user), column(mapping.item), column(mapping.category), event_type,
                   _lit_map(event_weights)[event_type], column(mapping.timestamp),
                   parse_timestamp(column(mapping.timestamp), mapping.timestamp_format))


def input_exists(path: str) -> bool:
    return "://" in path or bool(glob.glob(path))
