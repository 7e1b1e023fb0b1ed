"""Labels in ``prismrec explain``: one line per item, whatever the catalogue's names hold."""
from __future__ import annotations

import pytest

from prismrec.scoring.explain import interest_label, item_label

pytestmark = pytest.mark.unit


def test_a_name_with_quoted_line_breaks_prints_on_one_line():
    assert item_label("7", "Night,\r\n  \"Special\"\nEdition") == 'Night, "Special" Edition (item 7)'
    assert item_label("7", " \n ", "item {}") == "item 7"  # only whitespace: no name
    assert item_label("7", None, "item {}") == "item 7"


def test_an_interest_is_named_by_its_first_three_names():
    assert interest_label(["A\nB", None, "C", "D", "E"]) == "A B, C, D, …"
    assert interest_label([None, float("nan")]) is None
