"""The SPARQL the code runs lives in cmc_kg/sparql/, one file per query, each used and each valid: the queries
over the build at the top, those sent to Wikidata in wikidata/."""

from __future__ import annotations

import ast
import re

import pytest

from cmc_kg.query import _INTERNAL_QUERIES, internal_query, run_query
from cmc_kg.settings import REPO_ROOT

CODE = [p for folder in ("cmc_kg", "server") for p in (REPO_ROOT / folder).rglob("*.py")]
TEXT = "\n".join(path.read_text("utf-8") for path in CODE)
FILES = sorted(p.stem for p in _INTERNAL_QUERIES.glob("*.rq"))
WIKIDATA = sorted(f"wikidata/{p.stem}" for p in (_INTERNAL_QUERIES / "wikidata").glob("*.rq"))


def test_every_query_the_code_names_has_a_file_and_every_file_is_used():
    # internal_query("x"), or pages.about("x", …) for a query about one IRI
    named = {n for n in re.findall(r'(?:internal_query|about)\(f?"([^"]+)"', TEXT) if "{" not in n}
    assert named - set(FILES + WIKIDATA) == set()
    tables = {f"table-{name}" for name in __import__("cmc_kg.export", fromlist=["TABLES"]).TABLES}
    quoted = set(re.findall(r'"([\w/-]+)"', TEXT))  # a name passed on, e.g. to pages.about("entity-facts", ...)
    assert [name for name in FILES + WIKIDATA if name not in quoted | tables] == []


# Queries of what `cmc-kg push` adds to an engine, which the build does not hold (tests/test_remote.py runs them).
PUSHED = {"push-marker", "default-graph-is-union"}


@pytest.mark.parametrize("name", FILES)
def test_each_internal_query_runs_on_the_build(store, name):
    """Each file runs as it is, its VALUES defaults included, and answers something on the real build."""
    answer = list(run_query(store, internal_query(name)))
    assert answer or name in PUSHED, f"{name}.rq gives no rows on the real build"


@pytest.mark.parametrize("name", WIKIDATA)
def test_each_wikidata_query_runs_on_wikidata_shaped_data_and_is_sent_as_a_query(name):
    """Each file runs with the prefixes the client sends, on the test data shaped like Wikidata that
    tests/test_wikidata.py serves in its place; and SPARQLWrapper, which sends it, takes it for a SELECT (its
    guess of the form reads words of the comments: one read as an update would be sent as one)."""
    import pyoxigraph as ox
    from SPARQLWrapper import SPARQLWrapper

    from cmc_kg.link.client import PREFIX_HEADER

    text = PREFIX_HEADER + internal_query(name)
    fake = ox.Store()
    fake.load(path=str(REPO_ROOT / "tests" / "data" / "wikidata" / "fake-wikidata.ttl"), format=ox.RdfFormat.TURTLE)
    assert list(fake.query(text)), f"{name}.rq gives no rows on the Wikidata-shaped test data"
    client = SPARQLWrapper("http://127.0.0.1/sparql")
    client.setQuery(text)
    assert client.queryType == "SELECT"


# Python strings that are SPARQL, and why they stay in Python.
INLINE = {
    ("cmc_kg/query.py", "INSERT"): "an update (not a query) that fills a store's default graph, as the build runs it",
    ("cmc_kg/link/enrich.py", "SELECT"): "generated from FACTS, the one declaration of the facts pulled from Wikidata",
}
_SPARQL = re.compile(r"\b(SELECT|CONSTRUCT|ASK|DESCRIBE|INSERT|DELETE)\b[^{}]*\{(?!\})", re.S)


def test_no_python_string_is_a_query():
    """Docstrings aside, no string (or f-string) of cmc_kg/, server/ or tasks.py holds a query, but those INLINE
    names."""
    found = set()
    for path in CODE + [REPO_ROOT / "tasks.py"]:
        tree = ast.parse(path.read_text("utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
            else:
                continue
            if match := _SPARQL.search(text):
                found.add((path.relative_to(REPO_ROOT).as_posix(), match.group(1)))
    assert found == set(INLINE)
