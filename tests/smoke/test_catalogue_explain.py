"""Catalogue names end to end: preprocess → train (local, 1 epoch) → score → ``prismrec explain``."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_config
from prismrec import schema as S
from prismrec.stages import run as run_stage
from prismrec.layout import Layout

pytestmark = pytest.mark.smoke
CASES = Path(__file__).resolve().parents[2] / "tests" / "cases"  # the shared real-input cases, copied in
QUOTED_TITLES = CASES / "movielens-quoted-title"
NAMED_INTEREST = re.compile(r"^  interest \d+: (?P<label>.+) · weight ", re.MULTILINE)
GROUPS, ITEMS_PER_GROUP, USERS = 4, 8, 40
UNLISTED = ("g0-i7", "g3-i7")  # in the log, not in the catalogue


def pipeline(spark, cfg) -> dict:
    meta = run_stage("preprocess", cfg, spark)
    run_stage("train", cfg, spark)
    run_stage("score", cfg, spark)
    return meta


def explained_user(cfg) -> str:
    from prismrec.scoring.explain import explain

    recs = pd.read_parquet(Layout.of(cfg).output_table("recommendations", Layout.of(cfg).read_meta()["dt"]))
    return explain(cfg, recs[~recs[S.FALLBACK]][S.USER_ID].min())


@pytest.fixture(scope="module")
def movielens(spark, tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("movielens_titles"), "source.format=movielens",
                      f"source.path={QUOTED_TITLES}")
    return cfg, pipeline(spark, cfg)


def test_explain_shows_movielens_titles(movielens):
    cfg, meta = movielens
    with open(QUOTED_TITLES / "movies.csv", newline="") as handle:
        titles = {row["movieId"]: row["title"] for row in csv.DictReader(handle)}
    items = pd.read_parquet(Layout.of(cfg).table("items"))
    assert (items[S.ITEM_NAME] == items[S.ITEM_ID].map(titles)).all()
    assert meta.record["catalogue"]["items_missing_from_catalogue"] == 0
    text = explained_user(cfg)
    labels = NAMED_INTEREST.findall(text)
    assert labels and all(any(title in label for title in titles.values()) for label in labels)
    # Every recommendation is shown as "Title (item id)", the title parsed whole.
    shown = re.findall(r"^ +\d+\. (.+) \(item (\w+)\) \[category", text, re.MULTILINE)
    assert shown and all(titles[item] == title for title, item in shown)


def write_logs(folder: Path) -> tuple[Path, Path]:
    """A headered CSV log: each user views items of two of four groups; and a catalogue of the groups."""
    folder.mkdir()
    log, listed = folder / "events.csv", folder / "catalogue.csv"
    with open(log, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for user in range(USERS):
            liked = (user % GROUPS, (user // GROUPS + 1 + user) % GROUPS)
            for step in range(12):
                group = liked[step % 2]
                writer.writerow([f"u{user}", f"g{group}-i{(user + step) % ITEMS_PER_GROUP}", 1767225600 + 60 * step])
    with open(listed, "w", newline="") as handle:
        writer = csv.writer(handle)  # quotes names with commas and doubles the quotes in them (RFC 4180)
        writer.writerow(["item_id", "category", "name"])
        for group in range(GROUPS):
            for item in range(ITEMS_PER_GROUP):
                if f"g{group}-i{item}" not in UNLISTED:
                    writer.writerow([f"g{group}-i{item}", f"group {group}", f'Gadget {group}.{item}, "Pro"'])
    return log, listed


@pytest.fixture(scope="module")
def catalogued(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogued")
    log, listed = write_logs(root / "logs")
    cfg = tiny_config(root, "source.format=csv", f"source.path={log}", f"source.items.path={listed}",
                      "run.dt=2026-01-01")
    return cfg, pipeline(spark, cfg)


def test_a_csv_log_with_a_catalogue_gives_named_interests(catalogued):
    cfg, meta = catalogued
    assert meta.record["catalogue"] == {"items_missing_from_catalogue": len(UNLISTED),
                                 "items_with_duplicate_catalogue_rows": 0}
    items = pd.read_parquet(Layout.of(cfg).table("items")).set_index(S.ITEM_ID)
    assert items.at["g1-i2", S.ITEM_NAME] == 'Gadget 1.2, "Pro"' and items.at["g1-i2", S.CATEGORY_ID] == "group 1"
    assert items.at["g0-i7", S.CATEGORY_ID] == S.UNKNOWN_CATEGORY and items.at["g0-i7", S.ITEM_NAME] is None
    text = explained_user(cfg)
    labels = NAMED_INTEREST.findall(text)
    assert labels and all(label.startswith("Gadget ") for label in labels)
    assert re.search(r"← interest \d+ \(Gadget ", text)
