"""Exports of the build for other tools: RDF in every registered format, CSV tables, GraphML.

Everything is read from the build's dump through the query layer, so an export is exactly what the
endpoint serves. RDF formats that hold one graph (Turtle, N-Triples, RDF/XML, JSON-LD) get the union of
the asserted graphs; TriG and N-Quads keep the named graphs, so each fact keeps its source.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from xml.sax.saxutils import escape, quoteattr

import pyoxigraph as ox
from rdflib import Graph

from .formats import FILE_FORMATS, RDF_FORMATS, RESULT_FORMATS, UTF8_BOM, Format
from .namespaces import INFERRED_GRAPH, PREFIXES, bind_prefixes
from .query import PREFIX_MAP, internal_query, select

__all__ = ["DATASET_FORMATS", "TABLES", "EXPORT_FORMATS", "export", "export_rdf", "export_table", "export_graphml", "JSONLD_CONTEXT"]

# The JSON-LD context of the project's prefixes: embedded in JSON-LD exports (so no parser needs to fetch
# it) and published by the server at /context.jsonld.
JSONLD_CONTEXT = {"@context": {prefix: str(namespace) for prefix, namespace in sorted(PREFIXES.items())}}


# The formats that keep named graphs (so each fact keeps its source); the others get the merged triples.
DATASET_FORMATS = ("trig", "nquads")


def _quads(store: ox.Store, inferred: bool) -> list[ox.Quad]:
    """The named graphs' quads (not the merged default graph), without the inferred graph unless asked."""
    return [q for q in store if isinstance(q.graph_name, ox.NamedNode)
            and (inferred or q.graph_name.value != str(INFERRED_GRAPH))]


def export_rdf(store: ox.Store, format_name: str, inferred: bool = False) -> bytes:
    """The build in an RDF format, asserted triples only unless ``inferred``.

    :param store: the build loaded by :func:`cmc_kg.query.open_store`.
    :param format_name: a name in :data:`cmc_kg.formats.RDF_FORMATS`.
    """
    fmt = RDF_FORMATS[format_name]
    quads = sorted(_quads(store, inferred), key=str)
    if format_name in DATASET_FORMATS:
        return ox.serialize(quads, format=fmt.rdf_format,  # type: ignore[return-value]  # no output: bytes
                            prefixes=PREFIX_MAP if format_name == "trig" else None)
    triples = sorted({q.triple for q in quads}, key=str)
    if format_name == "jsonld":
        graph = bind_prefixes(Graph())
        graph.parse(data=ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES), format="nt")
        return graph.serialize(format="json-ld", context=JSONLD_CONTEXT["@context"], auto_compact=True,
                               indent=1).encode("utf-8")
    return ox.serialize(triples, format=fmt.rdf_format,  # type: ignore[return-value]  # no output: bytes
                        prefixes=PREFIX_MAP if format_name == "turtle" else None)


@dataclass(frozen=True)
class Table:
    """A CSV table: what a row is; its query is cmc_kg/sparql/table-<name>.rq, whose variables are the columns."""

    name: str
    description: str

    @property
    def query(self) -> str:
        return internal_query(f"table-{self.name}")


TABLES = {t.name: t for t in (
    Table("treaty-status", "one row per state and treaty: each dated action and the status on the depositary's "
                           "as-at date"),
    Table("organizations", "one row per organization, with its kinds, countries (ISO codes and names) and sources"),
    Table("memberships", "one row per membership: member, organization, role, dates and sources"),
)}


def export_table(store: ox.Store, name: str, fmt: Format = RESULT_FORMATS["csv"]) -> bytes:
    """A CSV table (UTF-8, header row, one column per variable of the table's query), in ``fmt``: csv, or
    csv-excel for spreadsheets (with a byte-order mark)."""
    rows = select(store, TABLES[name].query)
    out = io.StringIO()
    if fmt.byte_order_mark:
        out.write(UTF8_BOM)
    writer = csv.DictWriter(out, fieldnames=rows.variables, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows.rows)
    return out.getvalue().encode("utf-8")


def export_graphml(store: ox.Store) -> bytes:
    """Organizations, coalitions, states, treaties and people with their relations, as GraphML.

    Node ids are the entities' IRIs; nodes carry ``label`` and ``kind``, edges ``relation``.
    """
    nodes = {row["node"]: row for row in select(store, internal_query("graphml-nodes")).rows}
    edges = sorted({(r["source"], r["target"], r["relation"])
                    for r in select(store, internal_query("graphml-edges")).rows
                    if r["source"] in nodes and r["target"] in nodes})
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
             '  <key id="label" for="node" attr.name="label" attr.type="string"/>',
             '  <key id="kind" for="node" attr.name="kind" attr.type="string"/>',
             '  <key id="relation" for="edge" attr.name="relation" attr.type="string"/>',
             '  <graph id="cmc-kg" edgedefault="directed">']
    for iri in sorted(nodes):
        row = nodes[iri]
        lines.append(f'    <node id={quoteattr(iri)}><data key="label">{escape(row["label"])}</data>'
                     f'<data key="kind">{escape(row["kind"])}</data></node>')
    for number, (source, target, relation) in enumerate(edges):
        lines.append(f'    <edge id="e{number}" source={quoteattr(source)} target={quoteattr(target)}>'
                     f'<data key="relation">{escape(relation)}</data></edge>')
    lines += ["  </graph>", "</graphml>", ""]
    return "\n".join(lines).encode("utf-8")


@dataclass(frozen=True)
class ExportFormat:
    """An export: its serialisation in the registry (cmc_kg/formats.py), how to write it from the store, and whether
    it can hold inferences."""

    format: Format
    write: Callable[[ox.Store, bool], bytes]
    takes_inferred: bool = True


def _rdf_writer(format_name: str) -> Callable[[ox.Store, bool], bytes]:
    return lambda store, inferred: export_rdf(store, format_name, inferred)


def _table_writer(name: str, fmt: Format) -> Callable[[ox.Store, bool], bytes]:
    return lambda store, inferred: export_table(store, name, fmt)


EXPORT_FORMATS: dict[str, ExportFormat] = {
    **{name: ExportFormat(fmt, _rdf_writer(name)) for name, fmt in RDF_FORMATS.items()},
    **{f"{csv_format.name}-{name}": ExportFormat(csv_format, _table_writer(name, csv_format), False)
       for csv_format in (RESULT_FORMATS["csv"], RESULT_FORMATS["csv-excel"]) for name in TABLES},
    "graphml": ExportFormat(FILE_FORMATS["graphml"], lambda store, inferred: export_graphml(store), False),
}


def export(store: ox.Store, format_name: str, inferred: bool = False, output: Path | None = None) -> bytes:
    """Write one export to ``output`` (when given) and return its bytes; ValueError for ``inferred`` with a table or
    GraphML, which are views of the graph and do not change with inferences."""
    if inferred and not EXPORT_FORMATS[format_name].takes_inferred:
        raise ValueError(f"--inferred applies to the RDF formats only; {format_name} is a fixed view of the graph "
                         "(its rows do not change with inferences)")
    data = EXPORT_FORMATS[format_name].write(store, inferred)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(data)
    return data
