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

from .formats import RDF_FORMATS
from .namespaces import INFERRED_GRAPH, PREFIXES, bind_prefixes
from .query import PREFIX_MAP, select

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
    """A CSV table: the SPARQL that fills it (its variables are the columns) and what a row is."""

    name: str
    description: str
    query: str


TABLES = {t.name: t for t in (
    Table("treaty-status", "one row per state and treaty: each dated action and the status on the depositary's as-at date", """
SELECT ?iso3 ?state ?treatyName ?signed ?consentKind ?consented ?entryIntoForce ?withdrawalNotified
       ?withdrawalEffective ?provisionalApplication ?status ?treaty ?country WHERE {
  { SELECT DISTINCT ?country ?treaty WHERE { GRAPH graph:untc-2026-02-03 { ?a cmc:actor ?country ; cmc:treaty ?treaty } } }
  OPTIONAL { GRAPH graph:untc-2026-02-03 { ?s a cmc:Signature ; cmc:actor ?country ; cmc:treaty ?treaty ; cmc:date ?signed } }
  OPTIONAL { GRAPH graph:untc-2026-02-03 { ?c a ?kind ; cmc:actor ?country ; cmc:treaty ?treaty ; cmc:date ?consented }
             ?kind rdfs:subClassOf* cmc:ConsentToBeBound ; rdfs:label ?consentKind . }
  OPTIONAL { GRAPH graph:untc-2026-02-03-art17 { ?e a cmc:EntryIntoForceForState ; cmc:actor ?country ;
                                                 cmc:treaty ?treaty ; cmc:date ?entryIntoForce } }
  OPTIONAL { GRAPH graph:untc-2026-02-03 { ?n a cmc:WithdrawalNotification ; cmc:actor ?country ; cmc:treaty ?treaty ;
                                           cmc:date ?withdrawalNotified } }
  OPTIONAL { GRAPH graph:untc-2026-02-03 { ?w a cmc:WithdrawalEffective ; cmc:actor ?country ; cmc:treaty ?treaty ;
                                           cmc:date ?withdrawalEffective } }
  OPTIONAL { GRAPH graph:untc-2026-02-03 { ?p a cmc:ProvisionalApplication ; cmc:actor ?country ; cmc:treaty ?treaty ;
                                           cmc:date ?provisionalApplication } }
  ?country cmc:isoAlpha3 ?iso3 ; rdfs:label ?state .
  ?treaty rdfs:label ?treatyName .
  graph:untc-2026-02-03 prov:wasDerivedFrom/cmc:asOf ?asAt .
  BIND (IF(BOUND(?withdrawalEffective) && ?withdrawalEffective <= ?asAt, "withdrawn",
        IF(BOUND(?consented), IF(BOUND(?withdrawalNotified), "party, withdrawal pending", "party"),
        IF(BOUND(?signed), "signatory", "none"))) AS ?status)
}
ORDER BY ?iso3 ?treatyName"""),
    Table("organizations", "one row per organization, with its kinds, countries and sources", """
SELECT ?organization ?name (GROUP_CONCAT(DISTINCT ?typeLabel; separator="; ") AS ?types)
       (GROUP_CONCAT(DISTINCT ?kindLabel; separator="; ") AS ?kinds)
       (GROUP_CONCAT(DISTINCT ?iso3; separator="; ") AS ?countries)
       (GROUP_CONCAT(DISTINCT ?key; separator="; ") AS ?sources) WHERE {
  GRAPH ?g { ?organization a ?type . }
  ?type rdfs:subClassOf* org:Organization .
  FILTER (STRSTARTS(STR(?organization), STR(id:)))
  ?g prov:wasDerivedFrom/cmc:sourceKey ?key .
  ?organization rdfs:label ?name .
  OPTIONAL { ?type rdfs:label ?typeLabel FILTER (STRSTARTS(STR(?type), STR(cmc:))) }
  OPTIONAL { ?organization org:classification/skos:prefLabel ?kindLabel . }
  OPTIONAL { ?organization cmc:country/cmc:isoAlpha3 ?iso3 . }
}
GROUP BY ?organization ?name
ORDER BY ?name"""),
    Table("memberships", "one row per membership: member, organization, role, dates and sources", """
SELECT ?membership ?member ?memberName ?organization ?organizationName ?role ?from ?until
       (GROUP_CONCAT(DISTINCT ?key; separator="; ") AS ?sources) WHERE {
  GRAPH ?g { ?membership a org:Membership ; org:member ?member ; org:organization ?organization ; org:role ?r . }
  ?g prov:wasDerivedFrom/cmc:sourceKey ?key .
  ?r rdfs:label ?role .
  ?member rdfs:label ?memberName .
  ?organization rdfs:label ?organizationName .
  OPTIONAL { ?membership org:memberDuring/time:hasBeginning ?b .
             ?b time:inXSDDate|time:inXSDgYearMonth|time:inXSDgYear ?from . }
  OPTIONAL { ?membership org:memberDuring/time:hasEnd ?e .
             ?e time:inXSDDate|time:inXSDgYearMonth|time:inXSDgYear ?until . }
}
GROUP BY ?membership ?member ?memberName ?organization ?organizationName ?role ?from ?until
ORDER BY ?organizationName ?memberName ?role"""),
)}


def export_table(store: ox.Store, name: str) -> bytes:
    """A CSV table (UTF-8, header row, one column per variable of the table's query)."""
    rows = select(store, TABLES[name].query)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=rows.variables, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows.rows)
    return out.getvalue().encode("utf-8")


_GRAPHML_NODES = """
SELECT DISTINCT ?node ?label ?kind WHERE {
  {
    ?node a ?type . ?type rdfs:subClassOf* org:Organization .
    FILTER (STRSTARTS(STR(?node), STR(id:)))
    BIND (IF(EXISTS { ?node a cmc:Coalition }, "coalition", IF(EXISTS { ?node a cmc:Campaign }, "campaign",
          IF(EXISTS { ?node a cmc:GovernanceBody }, "governance body",
          IF(EXISTS { ?node org:classification cmc:NationalCampaign }, "national campaign", "organization")))) AS ?kind)
  } UNION {
    { ?x cmc:country ?node } UNION { ?node a cmc:Country . ?a cmc:actor ?node ; a cmc:ConsentToBeBound . }
    BIND ("state" AS ?kind)
  } UNION {
    ?node a cmc:Treaty . BIND ("treaty" AS ?kind)
  } UNION {
    ?m a org:Membership ; org:member ?node . ?node a foaf:Person . BIND ("person" AS ?kind)
  }
  ?node rdfs:label ?label .
}"""

_GRAPHML_EDGES = """
SELECT DISTINCT ?source ?target ?relation WHERE {
  {
    ?m a org:Membership ; org:member ?source ; org:organization ?target ; org:role/rdfs:label ?relation .
  } UNION {
    ?source org:unitOf ?target . BIND ("unit of" AS ?relation)
  } UNION {
    ?source org:subOrganizationOf ?target . BIND ("part of" AS ?relation)
  } UNION {
    ?source cmc:country ?target . BIND ("based in" AS ?relation)
  } UNION {
    ?merger a cmc:Merger ; cmc:mergedOrganization ?source ; cmc:resultingOrganization ?target .
    BIND ("merged into" AS ?relation)
  } UNION {
    ?source cmc:monitors ?target . BIND ("monitors" AS ?relation)
  } UNION {
    ?a a cmc:ConsentToBeBound ; cmc:actor ?source ; cmc:treaty ?target .
    FILTER NOT EXISTS { ?w a cmc:WithdrawalEffective ; cmc:actor ?source ; cmc:treaty ?target . }
    BIND ("party to" AS ?relation)
  }
}"""


def export_graphml(store: ox.Store) -> bytes:
    """Organizations, coalitions, states, treaties and people with their relations, as GraphML.

    Node ids are the entities' IRIs; nodes carry ``label`` and ``kind``, edges ``relation``.
    """
    nodes = {row["node"]: row for row in select(store, _GRAPHML_NODES).rows}
    edges = sorted({(r["source"], r["target"], r["relation"]) for r in select(store, _GRAPHML_EDGES).rows
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
    """An export: the file extension, how to write it from the store, and whether it can hold inferences."""

    extension: str
    write: Callable[[ox.Store, bool], bytes]
    takes_inferred: bool = True


EXPORT_FORMATS: dict[str, ExportFormat] = {
    **{name: ExportFormat(fmt.extension, lambda store, inferred, name=name: export_rdf(store, name, inferred))  # type: ignore[misc]
       for name, fmt in RDF_FORMATS.items()},
    **{f"csv-{name}": ExportFormat(".csv", lambda store, inferred, name=name: export_table(store, name), False)  # type: ignore[misc]
       for name in TABLES},
    "graphml": ExportFormat(".graphml", lambda store, inferred: export_graphml(store), False),
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
