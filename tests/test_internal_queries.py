"""The SPARQL the code runs lives in cmc_kg/sparql/, one file per query, each used and each valid."""

from __future__ import annotations

import re

import pytest

from cmc_kg.query import _INTERNAL_QUERIES, internal_query, select
from cmc_kg.settings import REPO_ROOT

CODE = [p for folder in ("cmc_kg", "server") for p in (REPO_ROOT / folder).rglob("*.py")]
NAMED = {name for path in CODE for name in re.findall(r'internal_query\(f?"([^"]+)"\)', path.read_text("utf-8"))}
FILES = sorted(p.stem for p in _INTERNAL_QUERIES.glob("*.rq"))


def test_every_query_the_code_names_has_a_file_and_every_file_is_used():
    tables = {f"table-{name}" for name in __import__("cmc_kg.export", fromlist=["TABLES"]).TABLES}
    assert {n for n in NAMED if "{" not in n} | tables == set(FILES)


@pytest.mark.parametrize("name", FILES)
def test_each_internal_query_runs_on_the_build(store, name):
    assert select(store, internal_query(name)).rows, f"{name}.rq gives no rows on the real build"


def test_the_graph_sizes_query_is_written_once():
    text = "GROUP BY ?g ORDER BY ?g"
    assert [p.name for p in CODE if text in p.read_text("utf-8")] == []
