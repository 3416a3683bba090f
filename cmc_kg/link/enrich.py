"""`cmc-kg enrich wikidata`: a snapshot of declared Wikidata facts about the linked items, in a graph of its own.

The facts pulled are declared once, in :data:`FACTS`. They are written as Wikidata writes them (truthy
``wdt:`` values; for a fact with qualifiers, the full statement ``p:``/``ps:``/``pq:`` as well), so that a
query over the snapshot reads like the same query sent to the Wikidata Query Service with SERVICE. The
file states when and from which endpoint it was retrieved. Once committed, the offline default uses it as it is;
`cmc-kg enrich wikidata` replaces it, and without it the build works just as well (none is committed yet:
graph/wikidata-enrichment/README.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from rdflib import Literal, URIRef

from ..namespaces import DCTERMS, GRAPH, P, PQ, PROV, PS, RDFS, WD, WDT, XSD
from ..query import internal_query, set_values
from ..terms import TurtleWriter
from .client import WikidataClient

__all__ = ["Fact", "FACTS", "ENRICHMENT_FOLDER", "fetch_facts", "render_facts", "snapshot_info"]

ENRICHMENT_FOLDER = "wikidata-enrichment"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Fact:
    """A Wikidata property to pull: its ID, what it is, the qualifiers to keep, whether to fetch value labels."""

    pid: str
    what: str
    qualifiers: tuple[str, ...] = ()
    label_values: bool = False


# The declared set of facts: nothing else is pulled from Wikidata.
FACTS = (
    Fact("P297", "ISO 3166-1 alpha-2 code"),
    Fact("P298", "ISO 3166-1 alpha-3 code"),
    Fact("P1082", "population", qualifiers=("P585",)),  # with its point in time
    Fact("P36", "capital", label_values=True),
    Fact("P625", "coordinate location"),
    Fact("P571", "inception"),
    Fact("P856", "official website"),
    Fact("P154", "logo image"),
)


def _batches(items: list, size: int):
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + max(1, size)]


def _iri(term) -> str:
    return URIRef(term).n3()


def fetch_facts(client: WikidataClient, qids: list[str], progress: Progress = lambda _: None) -> TurtleWriter:
    """The declared facts of the items, with English labels of the items and of the values that are items."""
    turtle = TurtleWriter()
    simple = [f for f in FACTS if not f.qualifiers]
    qualified = [f for f in FACTS if f.qualifiers]
    value_items: set[str] = set()
    label_props = {str(WDT[f.pid]) for f in FACTS if f.label_values}
    done = 0
    for batch in _batches(sorted(set(qids)), client.config.wikidata_batch_size):
        items = " ".join(_iri(WD[q]) for q in batch)
        parts = [f"""{{
    VALUES ?property {{ {' '.join(_iri(WDT[f.pid]) for f in simple)} }}
    ?item ?property ?value .
  }}"""]
        for fact in qualified:
            qualifiers = " ".join(_iri(PQ[q]) for q in fact.qualifiers)
            parts.append(f"""{{
    BIND ({_iri(WDT[fact.pid])} AS ?property)
    ?item {_iri(WDT[fact.pid])} ?value ; {_iri(P[fact.pid])} ?statement .
    ?statement {_iri(PS[fact.pid])} ?value .
    OPTIONAL {{ VALUES ?qualifier {{ {qualifiers} }} ?statement ?qualifier ?qualifierValue }}
  }}""")
        rows = client.select(f"""SELECT ?item ?property ?value ?statement ?qualifier ?qualifierValue WHERE {{
  VALUES ?item {{ {items} }}
  {' UNION '.join(parts)}
}}""")
        for row in rows:
            item, prop, value = row["item"], row["property"], row["value"]
            turtle.add(item, prop, value)
            if str(prop) in label_props and str(value).startswith(str(WD)):
                value_items.add(str(value)[len(str(WD)):])
            if "statement" in row:
                pid = str(prop)[len(str(WDT)):]
                turtle.add(item, P[pid], row["statement"])
                turtle.add(row["statement"], PS[pid], value)
                if "qualifier" in row and "qualifierValue" in row:
                    turtle.add(row["statement"], row["qualifier"], row["qualifierValue"])
        done += len(batch)
        progress(f"  facts: {done}/{len(set(qids))} items")
    labelled = sorted(set(qids) | value_items)
    for batch in _batches(labelled, client.config.wikidata_batch_size):
        for row in client.select(set_values(internal_query("wikidata/item-labels"), ("item",),
                                            [(_iri(WD[q]),) for q in batch])):
            turtle.add(row["item"], RDFS.label, row["label"])
    progress(f"  labels: {len(labelled)} items")
    return turtle


def render_facts(turtle: TurtleWriter, endpoint: str, retrieved: datetime | None = None) -> str:
    """The snapshot file: the facts, and when and where they were retrieved."""
    retrieved = (retrieved or datetime.now(timezone.utc)).replace(microsecond=0)
    stamp = retrieved.isoformat().replace("+00:00", "Z")
    graph = GRAPH[ENRICHMENT_FOLDER]
    turtle.add(graph, PROV.generatedAtTime, Literal(stamp, datatype=XSD.dateTime, normalize=False))
    turtle.add(graph, DCTERMS.source, URIRef(endpoint))
    declared = ", ".join(f"{f.pid} {f.what}" + (f" (with {', '.join(f.qualifiers)})" if f.qualifiers else "")
                         for f in FACTS)
    header = (f"# GENERATED by `cmc-kg enrich wikidata` from {endpoint} at {stamp}.\n"
              f"# Wikidata's values, for the items linked in graph/wikidata-links, of: {declared}.\n"
              f"# Regenerate with `cmc-kg enrich wikidata`; do not edit.\n")
    return turtle.render(header)


def snapshot_info(path: Path) -> str:
    """One line about the committed snapshot, for the offline mode."""
    if not path.exists():
        return f"no snapshot at {path}: nothing from Wikidata is in the graph (run `cmc-kg enrich wikidata` online)"
    text = path.read_text(encoding="utf-8")
    stamp = re.search(r'generatedAtTime "([^"]+)"', text)
    return (f"using the committed snapshot {path} (retrieved {stamp.group(1) if stamp else 'at an unknown time'}, "
            f"{sum(1 for line in text.splitlines() if line.startswith('wd:'))} items)")
