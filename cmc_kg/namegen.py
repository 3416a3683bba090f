"""Generate cmc_kg/namespaces.py from ontology/cmc.ttl, so that the ontology stays the only place an IRI is spelled."""

from __future__ import annotations

import sys
from pathlib import Path

from rdflib import OWL, RDF, Graph, URIRef

ONTOLOGY_FILE = Path(__file__).resolve().parent.parent / "ontology" / "cmc.ttl"
TARGET = Path(__file__).resolve().parent / "namespaces.py"

TEMPLATE = '''"""Namespaces of cmc-kg. GENERATED from ontology/cmc.ttl by `python -m cmc_kg.namegen`: do not edit."""

from rdflib import Namespace, URIRef
from rdflib.namespace import DCTERMS, FOAF, ORG, OWL, PROV, RDF, RDFS, SDO, SKOS, TIME, VANN, XSD, DefinedNamespace

__all__ = ["CMC", "ONTOLOGY", "ONTOLOGY_VERSION", "ID", "GRAPH", "PREFIXES", "bind_prefixes",
           "ONTOLOGY_GRAPH", "SOURCES_GRAPH", "INFERRED_GRAPH", "PUSH_GRAPH", "MERGED_GRAPH",
           "DCTERMS", "FOAF", "ORG", "OWL", "PROV", "RDF", "RDFS", "SDO", "SKOS", "TIME", "VANN", "XSD",
           {extra_names}]

ONTOLOGY = URIRef({ontology!r})
ONTOLOGY_VERSION = URIRef({version!r})
ID = Namespace({entity_ns!r})
GRAPH = Namespace({graph_ns!r})
{extra_namespaces}

# The named graphs the build writes besides one per source folder.
ONTOLOGY_GRAPH = GRAPH.ontology
SOURCES_GRAPH = GRAPH.sources
INFERRED_GRAPH = GRAPH.inferred
# Graphs `cmc-kg push` writes into a remote engine besides the build's: which build it holds, and the merged
# default graph for engines whose own default graph is the union of all graphs (Virtuoso).
PUSH_GRAPH = GRAPH.push
MERGED_GRAPH = GRAPH.merged


class CMC(DefinedNamespace):
    """Every term the ontology declares."""

    _fail = True
    _NS = Namespace({cmc_ns!r})

{terms}


PREFIXES: dict[str, Namespace | type[DefinedNamespace]] = {{
    "cmc": CMC._NS, "owl": OWL, "rdf": RDF, "rdfs": RDFS, "xsd": XSD, "skos": SKOS,
    "dcterms": DCTERMS, "org": ORG, "prov": PROV, "schema": SDO, "foaf": FOAF, "time": TIME,
{id_prefixes}
{extra_prefixes}
}}


def bind_prefixes(graph):
    """Bind the project's prefixes so that serialisations are readable."""
    for prefix, namespace in PREFIXES.items():
        graph.bind(prefix, namespace, override=True, replace=True)
    return graph
'''

# The kinds of entity the graph mints IRIs for, id/<kind>/<slug>, with their prefixes
# (organizations take `kgorg:` because `org:` is W3C ORG).
ENTITY_KINDS = {"country": "country", "org": "kgorg", "person": "person", "place": "place", "treaty": "treaty",
                "event": "event", "action": "action", "membership": "membership", "claim": "claim",
                "goal": "goal", "office": "office", "note": "note", "source": "source", "link": "link",
                "m49": "m49", "document": "document", "participation": "participation", "status": "status",
                "change": "change"}


# Vocabularies rdflib does not ship, taken from the ontology's prefix lines.
EXTRA_VOCABULARIES = ("sd", "void", "wd", "wds", "wdt", "p", "ps", "pq")


def render(ontology_file: Path = ONTOLOGY_FILE) -> str:
    g = Graph().parse(ontology_file)
    cmc = g.namespace_manager.store.namespace("cmc")
    ontology = next(g.subjects(RDF.type, OWL.Ontology))
    version = g.value(ontology, OWL.versionIRI)
    entity_ns = str(g.value(ontology, URIRef(str(cmc) + "entityNamespace")))
    graph_ns = str(g.value(ontology, URIRef(str(cmc) + "graphNamespace")))
    names = sorted({str(s)[len(str(cmc)):] for s in g.subjects() if isinstance(s, URIRef) and str(s).startswith(str(cmc))})
    terms = "\n".join(f"    {name}: URIRef" for name in names)
    id_prefixes = "\n".join(f'    "{prefix}": Namespace(str(ID) + "{kind}/"),' for kind, prefix in ENTITY_KINDS.items())
    id_prefixes += '\n    "id": ID,\n    "graph": GRAPH,'
    extra = sorted((prefix, str(ns)) for prefix, ns in g.namespaces() if prefix in EXTRA_VOCABULARIES)
    return TEMPLATE.format(ontology=str(ontology), version=str(version), entity_ns=entity_ns,
                           graph_ns=graph_ns, cmc_ns=str(cmc), terms=terms, id_prefixes=id_prefixes,
                           extra_names=", ".join(f'"{p.upper()}"' for p, _ in extra),
                           extra_namespaces="".join(f"{p.upper()} = Namespace({ns!r})\n" for p, ns in extra),
                           extra_prefixes="".join(f'    "{p}": {p.upper()},\n' for p, _ in extra).rstrip("\n"))


def main() -> int:
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
