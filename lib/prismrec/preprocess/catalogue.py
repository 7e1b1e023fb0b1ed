"""Item catalogues: item id → category and display name, kept apart from the behaviour logs.

A catalogue is ``source.items``: a CSV (with a header, RFC 4180 quoting), JSON-lines
or Parquet file or folder, read through ``source.items.mapping``; or, for
``source.format=movielens``, the folder's movies file (titles and first genres).
Every reader returns :data:`CATALOGUE_COLUMNS`, one row per item id; joined onto the
item vocabulary, its categories win over the events' own.
"""
from __future__ import annotations

from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.config import CatalogueSection, ConfigError, SourceSection

CATALOGUE_ROWS = "catalogue_rows"
CATALOGUE_COLUMNS = (S.ITEM_ID, S.CATEGORY_ID, S.ITEM_NAME, CATALOGUE_ROWS)
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
# RFC 4180: fields quoted with ", a quote inside one doubled (not \-escaped, Spark's default).
RFC4180 = {"header": True, "multiLine": True, "quote": '"', "escape": '"', "inferSchema": False}
LATIN_1 = "ISO-8859-1"  # ml-100k u.item and ml-1m movies.dat
MOVIELENS_FILES = {"ml-100k": ("u.data", "u.item"), "ml-1m": ("ratings.dat", "movies.dat"),
                   "ml-latest": ("ratings.csv", "movies.csv")}
# ml-100k's u.item carries 19 genre flags after 5 fields, in this order (its u.genre file).
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")
NO_GENRE = "(no genres listed)"


def movielens_layout(folder: Path) -> str:
    """``ml-100k`` | ``ml-1m`` | ``ml-latest``, from the file names; FileNotFoundError if none fits."""
    for layout, files in MOVIELENS_FILES.items():
        if all((folder / name).is_file() for name in files):
            return layout
    raise FileNotFoundError(
        f"source.path={str(folder)!r} is not a MovieLens folder: expected u.data + u.item (ml-100k), "
        f"ratings.dat + movies.dat (ml-1m) or ratings.csv + movies.csv (ml-latest)")


def first_genre(genres: Column) -> Column:
    """The first of ``a|b|c`` genres; ``unknown`` for MovieLens's "(no genres listed)"."""
    first = F.split(genres, r"\|").getItem(0)
    return F.when(first == NO_GENRE, F.lit(S.UNKNOWN_CATEGORY)).otherwise(first)


def _strings(frame: DataFrame, count: int) -> DataFrame:
    """Positional columns ``_c0 … _c<count-1>`` as strings (files without a header)."""
    return frame.select(*[F.col(f"_c{i}").cast("string") for i in range(count)])


def movielens_movies(spark: SparkSession, folder: str | Path) -> DataFrame:
    """:data:`CATALOGUE_COLUMNS` from a MovieLens folder's movies file: title → name, first genre → category.

    ml-100k ``u.item`` (``|``-separated, Latin-1, genre flags), ml-1m ``movies.dat``
    (``::``-separated, Latin-1) or ml-latest ``movies.csv`` (UTF-8, RFC 4180 quoting, so a
    title written ``"Night, ""Special"" Edition (1977)"`` is one field). FileNotFoundError when
    the folder is none of these.
    """
    folder = Path(folder)
    layout = movielens_layout(folder)
    movies = str(folder / MOVIELENS_FILES[layout][1])
    # The .dat and .item files quote nothing: a '"' in a title is part of it.
    unquoted = {"header": False, "quote": "", "encoding": LATIN_1, "inferSchema": False}
    if layout == "ml-100k":
        rows = _strings(spark.read.options(sep="|", **unquoted).csv(movies), 5 + len(ML100K_GENRES))
        flagged = F.array(*[F.when(F.col(f"_c{5 + i}") == "1", F.lit(genre)) for i, genre in enumerate(ML100K_GENRES)])
        item, name = F.col("_c0"), F.col("_c1")
        category = F.filter(flagged, lambda genre: genre.isNotNull()).getItem(0)
    elif layout == "ml-1m":
        rows = _strings(spark.read.options(sep="::", **unquoted).csv(movies), 3)
        item, name, category = F.col("_c0"), F.col("_c1"), first_genre(F.col("_c2"))
    else:
        rows = spark.read.options(**RFC4180).csv(movies)
        item, name, category = F.col("movieId"), F.col("title"), first_genre(F.col("genres"))
    return one_per_item(rows.select(item.alias(S.ITEM_ID), category.alias(S.CATEGORY_ID), name.alias(S.ITEM_NAME)))


def catalogue_format(path: str, fmt: str = "") -> str:
    """``fmt`` if set, else the format the extension of ``path`` (or of the files in the folder) names.

    ``.gz`` is looked through (``items.csv.gz`` is csv). Raises ConfigError naming
    ``source.items.format`` when the extensions name no single format.
    """
    if fmt:
        return fmt
    root = Path(path)
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(("_", "."))] if root.is_dir() \
        else [root]
    found = {EXTENSIONS.get(Path(p.name.removesuffix(".gz")).suffix.lower()) for p in files}
    if len(found) != 1 or None in found:
        raise ConfigError(f"source.items.path={path!r}: cannot tell the catalogue's format from its file "
                          f"extension(s) ({', '.join(sorted({p.name for p in files})[:5]) or 'no files'}); "
                          f"set source.items.format to csv, jsonl or parquet")
    return found.pop()


def read_catalogue(spark: SparkSession, items: CatalogueSection) -> DataFrame:
    """:data:`CATALOGUE_COLUMNS` from ``source.items`` through its mapping; every column read as a string.

    FileNotFoundError when the path does not exist; ConfigError when the format cannot
    be told or a mapped column is not in the file (the message lists the columns found).
    Blank categories and names become null: such an item keeps its events' category.
    """
    path = items.path
    if not Path(path).exists():
        raise FileNotFoundError(f"source.items.path={path!r} does not exist; point it at the item catalogue "
                                f"(a file or folder) or set it to \"\" for none")
    fmt = catalogue_format(path, items.format)
    reader = spark.read.option("recursiveFileLookup", "true") if Path(path).is_dir() else spark.read
    mapping = items.mapping
    wanted = {key: column for key, column in (("item", mapping.item), ("category", mapping.category),
                                                ("name", mapping.name)) if column}
    if fmt == "csv":
        frame = reader.options(sep=items.csv_delimiter, **RFC4180).csv(path)
    elif fmt == "jsonl":
        # Inferred (one pass over the catalogue) so that a mapped key no record has is an error.
        frame = reader.options(primitivesAsString=True).json(path)
    else:
        frame = reader.parquet(path)
    missing = {key: column for key, column in wanted.items() if column not in frame.columns}
    if "item" not in wanted or missing:
        named = ", ".join(f"source.items.mapping.{key}={column!r}" for key, column in missing.items()) \
            or "source.items.mapping.item=''"
        raise ConfigError(f"{named}: no such column in the {fmt} catalogue {path!r} (columns: "
                          f"{', '.join(frame.columns)}); map each key to one of them, or category / name to \"\"")

    def column(key: str) -> Column:
        if key not in wanted:
            return F.lit(None).cast("string")
        text = F.trim(F.col(wanted[key]).cast("string"))
        return F.when(text != "", text)

    return one_per_item(frame.select(column("item").alias(S.ITEM_ID), column("category").alias(S.CATEGORY_ID),
                                     column("name").alias(S.ITEM_NAME)))


def one_per_item(rows: DataFrame) -> DataFrame:
    """One row per non-null ``item_id``; ``catalogue_rows`` counts its rows in the catalogue.

    When an id has several rows, the one with the smallest (category, name) is kept
    (nulls last), so the choice does not depend on file order; the report counts these ids.
    """
    keep = F.min(F.struct(F.col(S.CATEGORY_ID).isNull(), S.CATEGORY_ID, F.col(S.ITEM_NAME).isNull(), S.ITEM_NAME))
    return (rows.where(F.col(S.ITEM_ID).isNotNull()).groupBy(S.ITEM_ID)
            .agg(keep.alias("_kept"), F.count(F.lit(1)).alias(CATALOGUE_ROWS))
            .select(S.ITEM_ID, F.col("_kept").getField(S.CATEGORY_ID).alias(S.CATEGORY_ID),
                    F.col("_kept").getField(S.ITEM_NAME).alias(S.ITEM_NAME), CATALOGUE_ROWS))


def for_source(spark: SparkSession, source: SourceSection, path: str) -> DataFrame | None:
    """The catalogue of a run: ``source.items`` if set, else a MovieLens folder's movies file, else None."""
    if source.items.path:
        return read_catalogue(spark, source.items)
    if source.format == "movielens":
        return movielens_movies(spark, path)
    return None


def with_catalogue(items: DataFrame, catalogue: DataFrame | None) -> DataFrame:
    """The item vocabulary with ``item_name`` (null when unknown) and ``catalogue_rows``.

    ``items``: ``item_idx, item_id, category_id, count`` as from ``sequences.item_vocabulary``;
    ``catalogue``: :data:`CATALOGUE_COLUMNS`, or None (every name null). An item's
    catalogue category, where it has one, replaces its events' category.
    ``catalogue_rows`` is null for the items missing from the catalogue.
    """
    if catalogue is None:
        return items.select("*", F.lit(None).cast("string").alias(S.ITEM_NAME),
                            F.lit(None).cast("long").alias(CATALOGUE_ROWS))
    listed = catalogue.select(S.ITEM_ID, F.col(S.CATEGORY_ID).alias("_listed_category"), S.ITEM_NAME, CATALOGUE_ROWS)
    return items.join(listed, S.ITEM_ID, "left").select(
        S.ITEM_IDX, S.ITEM_ID, F.coalesce("_listed_category", S.CATEGORY_ID).alias(S.CATEGORY_ID), S.COUNT,
        S.ITEM_NAME, CATALOGUE_ROWS)


def coverage(items: DataFrame) -> dict:
    """``{items_missing_from_catalogue, items_with_duplicate_catalogue_rows}`` of :func:`with_catalogue`'s output (one action)."""
    row = items.agg(F.sum(F.col(CATALOGUE_ROWS).isNull().cast("long")).alias("missing"),
                    F.sum((F.col(CATALOGUE_ROWS) > 1).cast("long")).alias("duplicated")).first()
    return {"items_missing_from_catalogue": int(row["missing"] or 0),
            "items_with_duplicate_catalogue_rows": int(row["duplicated"] or 0)}
