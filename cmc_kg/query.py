"""Query the built graph with SPARQL, natively in Oxigraph.

The dataset a query sees: the default graph is the union of every named graph (ontology,
sources, each source's facts and the inferred triples); `GRAPH ?g` tells them apart.
With ``asserted_only`` the default graph is the merge of every graph but the inferred one.
Every query may use the project's prefixes without declaring them; ``id:`` is the base of the
graph's entity IRIs, so ``STRSTARTS(STR(?x), STR(id:))`` picks out the entities the graph mints.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pyoxigraph as ox

from .formats import RDF_FORMATS, RESULT_FORMATS, write_boolean, write_solutions, write_triples
from .namespaces import INFERRED_GRAPH, PREFIXES
from . import safety
from .safety import QueryError
from .settings import Paths

__all__ = ["PREFIX_MAP", "prologue", "QueryError", "internal_query", "set_values", "iri_ref", "writable_iri", "dataset_options", "load_store", "asserted_view", "merge_default_graph", "default_graph_size", "Rows", "open_store", "run_query", "select", "format_rows", "example_queries",
           "ExampleQuery"]

PREFIX_MAP = {prefix: str(ns) for prefix, ns in PREFIXES.items()}
_INTERNAL_QUERIES = Path(__file__).parent / "sparql"


@functools.cache
def internal_query(name: str) -> str:
    """The SPARQL of cmc_kg/sparql/<name>.rq: the queries the code runs live there, each in one file, not in
    Python strings (the examples users see are in queries/ at the top of the repository). A query about given
    terms holds runnable defaults in a VALUES block, which the caller replaces with :func:`set_values`."""
    return (_INTERNAL_QUERIES / f"{name}.rq").read_text(encoding="utf-8")


_VALUES = re.compile(r"VALUES\s*(\((?:\s*\?\w+)+\s*\)|\?\w+)\s*\{(.*?)\}", re.S)


def set_values(text: str, variables: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """The query with the data of its ``VALUES`` block over exactly ``variables`` replaced by ``rows``.

    Query files hold runnable defaults (``VALUES (?treaty ?onDate) { (treaty:ccm "…"^^xsd:date) }``); the code
    swaps in its own terms, each already written as SPARQL (:func:`iri_ref`, an rdflib term's ``n3()``), so a
    page that shows its query shows the text it ran, and no input is formatted into the query's syntax.
    :raises ValueError: when the query has no such block (the file and the code disagree).
    """
    for match in _VALUES.finditer(text):
        names = tuple(re.findall(r"\?(\w+)", match.group(1)))
        if names != variables:
            continue
        if len(names) == 1:
            data = "{ " + " ".join(row[0] for row in rows) + " }"
        elif len(rows) == 1:
            data = "{ (" + " ".join(rows[0]) + ") }"
        else:
            line_start = text.rfind("\n", 0, match.start()) + 1
            indent = " " * (match.start() - line_start)
            data = "{\n" + "".join(f"{indent}  (" + " ".join(row) + ")\n" for row in rows) + indent + "}"
        return text[:match.start()] + f"VALUES {match.group(1)} {data}" + text[match.end():]
    raise ValueError(f"the query has no VALUES block over {' '.join('?' + v for v in variables)}")


_UNWRITABLE_IN_IRI = re.compile(r'[<>"{}|^`\\\x00-\x20]')


def writable_iri(iri: str) -> bool:
    """Whether an IRI can be written between < and > in SPARQL (no spaces, quotes, braces or the like)."""
    return _UNWRITABLE_IN_IRI.search(iri) is None


def iri_ref(iri: str) -> str:
    """An IRI as SPARQL writes it, ``<iri>``; raises ValueError for one that :func:`writable_iri` refuses."""
    if not writable_iri(iri):
        raise ValueError(f"not an IRI SPARQL can write: {iri!r}")
    return f"<{iri}>"


@dataclass
class Rows:
    """A SELECT answer as plain Python values, for tables and tests."""

    variables: list[str]
    rows: list[dict[str, str]]

    def column(self, name: str) -> list[str | None]:
        return [row.get(name) for row in self.rows]


def load_store(dump_file) -> ox.Store:
    """Load an N-Quads dump into an in-memory Oxigraph store whose default graph is the merge of all graphs.

    Oxigraph's own union default graph repeats a triple once per graph that holds it; a fact stated by
    three sources would be counted three times. The merge is a set, as RDF's merge of graphs is.
    """
    store = ox.Store()
    store.bulk_load(path=str(dump_file), format=ox.RdfFormat.N_QUADS)
    return merge_default_graph(store)


def asserted_view(store: ox.Store) -> ox.Store:
    """A copy of the store without the inferred graph, its default graph the merge of what is left.

    A list of graphs as Oxigraph's default graph repeats a triple once per graph that holds it, so the
    asserted default graph is merged as load_store merges the full one (about 0.2 s for this graph).
    """
    view = ox.Store()
    view.extend(quad for quad in store.quads_for_pattern(None, None, None, None)
                if isinstance(quad.graph_name, ox.NamedNode) and quad.graph_name.value != str(INFERRED_GRAPH))
    return merge_default_graph(view)


def merge_default_graph(store: ox.Store) -> ox.Store:
    """Fill the default graph with the set of all triples of all named graphs."""
    store.update("INSERT { ?s ?p ?o } WHERE { GRAPH ?g { ?s ?p ?o } }")
    return store


def open_store(paths: Paths = Paths()) -> ox.Store:
    """The latest build, loaded by :func:`load_store`."""
    if not paths.dump_file.exists():
        raise FileNotFoundError(f"{paths.dump_file} does not exist: run `cmc-kg build` first")
    return load_store(paths.dump_file)


def default_graph_size(store: ox.Store) -> int:
    """Triples in the merged default graph."""
    return int(next(iter(store.query(internal_query("triples"))))["n"].value)  # type: ignore[arg-type]


def dataset_options(default_graphs: tuple[str, ...] | None = None,
                    named_graphs: tuple[str, ...] | None = None) -> dict:
    """The dataset a query sees, as Oxigraph options.

    Explicit graphs (the protocol's default-graph-uri and named-graph-uri) win over the query's FROM and
    FROM NAMED; with neither, the default graph is the merge of all graphs made by :func:`load_store`.
    """
    options: dict = {}
    if default_graphs is not None:
        options["default_graph"] = [ox.NamedNode(g) for g in default_graphs]
    if named_graphs is not None:
        options["named_graphs"] = [ox.NamedNode(g) for g in named_graphs]
    return options


def prologue(prefixes: Mapping[str, str] = PREFIX_MAP) -> str:
    """PREFIX lines to put before a query sent to an engine that does not predefine these prefixes."""
    return "".join(f"PREFIX {prefix}: <{namespace}>\n" for prefix, namespace in prefixes.items())


_PREFIX_NAMES = [(prefix + ":", prefix, namespace) for prefix, namespace in PREFIX_MAP.items()]


def _prefixes_named(text: str) -> dict[str, str]:
    """The predefined prefixes the query may use (``name:`` appears in it): Oxigraph takes half as long to
    parse a short query given these as given all 40. Kept for the last few hundred short queries."""
    return _kept_prefixes_named(text) if len(text) <= 4096 else _find_prefixes_named(text)


def _find_prefixes_named(text: str) -> dict[str, str]:
    return {prefix: namespace for name, prefix, namespace in _PREFIX_NAMES if name in text}


_kept_prefixes_named = functools.lru_cache(maxsize=256)(_find_prefixes_named)


def run_query(store: ox.Store, text: str, asserted_only: bool = False, declares_dataset: bool | None = None,
              **graphs):
    """Evaluate a query; raise QueryError with the parser's message if it is malformed.

    ``asserted_only``: over :func:`asserted_view`, unless the query or the caller names its dataset.
    ``declares_dataset``: whether the query has FROM or FROM NAMED, when the caller already knows.
    """
    if asserted_only and graphs.get("default_graphs") is None and not (
            safety.declares_dataset(text) if declares_dataset is None else declares_dataset):
        store = asserted_view(store)
    try:
        return store.query(text, prefixes=_prefixes_named(text), **dataset_options(**graphs))
    except SyntaxError as error:
        raise QueryError(str(error)) from None


def _plain(term) -> str | None:
    return None if term is None else term.value


def select(store: ox.Store, text: str, asserted_only: bool = False) -> Rows:
    """Run a SELECT and return its rows as strings (IRIs and literal values)."""
    solutions = run_query(store, text, asserted_only)
    if not isinstance(solutions, ox.QuerySolutions):
        raise QueryError("not a SELECT query")
    names = [v.value for v in solutions.variables]
    return Rows(names, [{n: _plain(s[n]) for n in names if s[n] is not None} for s in solutions])  # type: ignore[misc]


def format_rows(result, fmt: str) -> str:
    """Serialise a query result for the terminal: a text table, or one of the SPARQL results formats."""
    if isinstance(result, ox.QueryTriples):
        return write_triples(list(result), RDF_FORMATS["turtle"], PREFIX_MAP).decode("utf-8")
    if isinstance(result, ox.QueryBoolean):
        return write_boolean(bool(result), RESULT_FORMATS.get(fmt, RESULT_FORMATS["tsv"])).decode("utf-8")
    names = [v.value for v in result.variables]
    if fmt in RESULT_FORMATS:
        return write_solutions(names, list(result), RESULT_FORMATS[fmt]).decode("utf-8")
    table = [[_plain(s[n]) or "" for n in names] for s in result]
    widths = [max([len(n)] + [len(r[i]) for r in table]) for i, n in enumerate(names)]

    def line(cells):
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(names), "-+-".join("-" * w for w in widths)] + [line(r) for r in table]
    return "\n".join(out) + f"\n({len(table)} row{'s' if len(table) != 1 else ''})\n"


@dataclass(frozen=True)
class ExampleQuery:
    """One of the repository's example queries, with the title and description from its header."""

    path: Path
    title: str
    description: str
    text: str


def example_queries(paths: Paths = Paths()) -> list[ExampleQuery]:
    """Read queries/*.rq; each starts with `# title: …` and `# description: …` lines."""
    queries = []
    for path in sorted(paths.queries_dir.glob("*.rq")):
        text = path.read_text(encoding="utf-8")
        header = {}
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            key, _, value = line[1:].partition(":")
            header[key.strip().lower()] = value.strip()
        queries.append(ExampleQuery(path, header.get("title", path.stem), header.get("description", ""), text))
    return queries
