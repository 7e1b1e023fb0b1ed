"""Item catalogues: RFC 4180 CSV, JSON lines, MovieLens movie files, and how they join the vocabulary."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from prismrec import schema as S
from prismrec.config import ConfigError, load_config
from prismrec.preprocess import catalogue, sequences

pytestmark = pytest.mark.spark
CASES = Path(__file__).resolve().parents[2] / "tests" / "cases"  # the shared real-input cases, copied in
QUOTED_TITLES = CASES / "movielens-quoted-title"
GENRES = {"Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Drama", "Fantasy", "Film-Noir",
          "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"}


def rows(frame) -> dict[str, tuple]:
    return {r[S.ITEM_ID]: (r[S.CATEGORY_ID], r[S.ITEM_NAME]) for r in frame.collect()}


def test_movielens_titles_with_rfc4180_quotes_parse_whole(spark):
    movies = rows(catalogue.movielens_movies(spark, QUOTED_TITLES))
    with open(QUOTED_TITLES / "movies.csv", newline="") as handle:  # Python's csv module follows RFC 4180
        expected = {row["movieId"]: row["title"] for row in csv.DictReader(handle)}
    assert {item: name for item, (_, name) in movies.items()} == expected
    assert movies["6"] == ("Musical", '"Quoted" Revue, The (1998)')
    assert movies["8"] == ("Horror", 'Night, "Special" Edition (1977)')
    assert {category for category, _ in movies.values()} <= GENRES  # no title fragment is a category


def test_movielens_events_take_whole_genres(spark):
    from prismrec.preprocess.stage import read_source

    cfg = load_config(None, ["source.format=movielens", f"source.path={QUOTED_TITLES}"])
    categories = {r[S.CATEGORY_ID] for r in read_source(spark, cfg).select(S.CATEGORY_ID).distinct().collect()}
    assert categories <= GENRES and "Musical" in categories


def test_latin1_movie_files_of_ml100k_and_ml1m(spark, tmp_path):
    ml100k, ml1m = tmp_path / "ml-100k", tmp_path / "ml-1m"
    ml100k.mkdir()
    ml1m.mkdir()
    (ml100k / "u.data").write_text("1\t1\t4\t881250949\n")
    flags = "|".join(["0"] * 8 + ["1"] + ["0"] * 10)  # flag 8 of 19: Drama
    (ml100k / "u.item").write_bytes(f"1|Café \"Noir\" (1995)|01-Jan-1995||http://x|{flags}\n".encode("latin-1"))
    (ml1m / "ratings.dat").write_text("1::2::5::978300760\n")
    (ml1m / "movies.dat").write_bytes("2::Amélie, \"Le\" (2001)::Comedy|Romance\n".encode("latin-1"))
    assert rows(catalogue.movielens_movies(spark, ml100k)) == {"1": ("Drama", 'Café "Noir" (1995)')}
    assert rows(catalogue.movielens_movies(spark, ml1m)) == {"2": ("Comedy", 'Amélie, "Le" (2001)')}


def items_config(path: Path, *extra: str):
    return load_config(None, [f"source.items.path={path}", *extra]).source.items


def vocabulary(spark):
    # Items a (3 events in "x"), b (2 in "y"), c (1 in "z").
    pairs = [("a", "x")] * 3 + [("b", "y")] * 2 + [("c", "z")]
    return sequences.item_vocabulary(spark.createDataFrame(pairs, [S.ITEM_ID, S.CATEGORY_ID]))


def test_a_jsonl_catalogue_wins_and_the_missing_item_is_counted(spark, tmp_path):
    path = tmp_path / "items.jsonl"
    lines = [{"sku": "a", "dept": "shoes", "title": "Red Shoe"},
             {"sku": 2, "dept": "toys", "title": "Ball"},        # a number id, read as the string "2"
             {"sku": "b", "dept": " ", "title": "Blue Hat"},      # blank category: b keeps its events' "y"
             {"sku": "b", "dept": "hats", "title": "Blue Hat"}]   # a second row for b: (category, name) min wins
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    cfg = items_config(path, "source.items.mapping={item: sku, category: dept, name: title}")
    listed = catalogue.read_catalogue(spark, cfg)
    assert rows(listed)["2"] == ("toys", "Ball")
    items = catalogue.with_catalogue(vocabulary(spark), listed)
    by_id = {r[S.ITEM_ID]: (r[S.ITEM_IDX], r[S.CATEGORY_ID], r[S.ITEM_NAME]) for r in items.collect()}
    # b's rows: ("hats", "Blue Hat") and (null, "Blue Hat"); nulls sort last, so "hats" is kept.
    assert by_id == {"a": (1, "shoes", "Red Shoe"), "b": (2, "hats", "Blue Hat"), "c": (3, "z", None)}
    assert catalogue.coverage(items) == {"items_missing_from_catalogue": 1, "items_with_duplicate_catalogue_rows": 1}


def test_a_csv_catalogue_folder_follows_rfc4180(spark, tmp_path):
    folder = tmp_path / "catalogue"
    folder.mkdir()
    # A doubled quote, a quoted comma and a quoted line break, in two files of one folder.
    (folder / "part-0.csv").write_text('item_id,name,category\na,"The ""Best"" Shoe, red",shoes\n')
    (folder / "part-1.csv").write_text('item_id,name,category\nb,"Hat\nwith a line break",hats\n')
    items = catalogue.with_catalogue(vocabulary(spark), catalogue.read_catalogue(spark, items_config(folder)))
    by_id = {r[S.ITEM_ID]: (r[S.CATEGORY_ID], r[S.ITEM_NAME]) for r in items.collect()}
    assert by_id == {"a": ("shoes", 'The "Best" Shoe, red'), "b": ("hats", "Hat\nwith a line break"), "c": ("z", None)}


def test_without_a_catalogue_names_are_null(spark):
    items = catalogue.with_catalogue(vocabulary(spark), None)
    assert [r[S.ITEM_NAME] for r in items.collect()] == [None, None, None]


def test_catalogue_mistakes_name_the_key(spark, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,title\na,Red Shoe\n")
    with pytest.raises(ConfigError, match=r"source.items.mapping.category='category'.*columns: item_id, title"):
        catalogue.read_catalogue(spark, items_config(path, "source.items.mapping.name=title"))
    (tmp_path / "items.txt").write_text("a")
    with pytest.raises(ConfigError, match="set source.items.format"):
        catalogue.read_catalogue(spark, items_config(tmp_path / "items.txt"))
    with pytest.raises(FileNotFoundError, match="source.items.path"):
        catalogue.read_catalogue(spark, items_config(tmp_path / "nope.csv"))
    assert catalogue.catalogue_format(str(tmp_path / "x.csv.gz")) == "csv"
