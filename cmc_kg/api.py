"""The Python API: the built graph as an rdflib Dataset, and SPARQL answers as rows::

    from cmc_kg import load_dataset, query
    query("SELECT ?name WHERE { country:NOR rdfs:label ?name }")   # [{'name': 'Norway'}]
"""

from __future__ import annotations

import functools

import pyoxigraph as ox
from rdflib import Dataset

from .namespaces import INFERRED_GRAPH, bind_prefixes
from .query import load_store, select
from .settings import Paths

__all__ = ["load_dataset", "query"]


def load_dataset(paths: Paths | None = None, inferred: bool = True) -> Dataset:
    """The latest build as an rdflib Dataset: one named graph per source, plus the ontology and inferences.

    :param paths: which checkout and build folder (default: this checkout's build/).
    :param inferred: include the graph of OWL 2 RL inferences.
    :returns: a Dataset whose named graphs are the build's; its default graph is empty.
    :raises FileNotFoundError: when there is no build yet (run ``cmc-kg build``).
    """
    paths = paths or Paths()
    if not paths.dump_file.exists():
        raise FileNotFoundError(f"{paths.dump_file} does not exist: run `cmc-kg build` first")
    dataset = bind_prefixes(Dataset())
    dataset.parse(paths.dump_file, format="nquads")
    if not inferred:
        dataset.remove_graph(dataset.graph(INFERRED_GRAPH))
    return dataset


@functools.lru_cache(maxsize=4)
def _store(dump_file: str, modified: float) -> ox.Store:
    return load_store(dump_file)


def query(text: str, paths: Paths | None = None, asserted_only: bool = False) -> list[dict[str, str]]:
    """Run a SPARQL SELECT over the latest build and return its rows as dicts of plain strings.

    The project's prefixes are predefined; unbound variables are left out of a row. For pandas:
    ``pandas.DataFrame(query(text))``.

    :param text: a SELECT query.
    :param paths: which build to query (default: this checkout's).
    :param asserted_only: leave the inferred triples out of the default graph.
    :raises cmc_kg.query.QueryError: with the parser's message when the query is malformed.
    """
    paths = paths or Paths()
    if not paths.dump_file.exists():
        raise FileNotFoundError(f"{paths.dump_file} does not exist: run `cmc-kg build` first")
    store = _store(str(paths.dump_file), paths.dump_file.stat().st_mtime)
    return select(store, text, asserted_only).rows
