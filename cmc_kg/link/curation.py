"""The link set: curated accept/reject decisions (a TSV) and the Turtle generated from them.

``graph/wikidata-links/curation.tsv`` is the record: one row per decision, with the method, the source keys
and the date. Only ``accept`` rows become links, written by :func:`render_links` to
``graph/wikidata-links/links.ttl`` (committed, regenerated, never hand-edited: a test checks it). Rows come
from two places: :func:`reference_decisions` turns the sourced tables in ``reference/`` into decisions
(states by ISO code from OWID-CR; organizations, people and cities whose QID a source shows), and a curator
copies rows of the review file written by ``cmc-kg link wikidata`` and sets their decision.
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass, fields
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Sequence

from rdflib import Graph, Literal, URIRef

from ..build import source_slug
from ..namespaces import CMC, DCTERMS, FOAF, ID, ORG, PREFIXES, PROV, RDF, RDFS, SDO, SKOS, WD, XSD
from ..tables import numbered_rows
from ..terms import TurtleWriter, entity_name

__all__ = ["CurationError", "Decision", "Candidate", "METHODS", "read_curation", "write_curation", "render_links",
           "write_links", "reference_decisions", "read_candidates", "write_candidates", "registered_sources",
           "expand", "LINKS_FOLDER", "merge_decisions", "link_record", "ENTITY_CLASSES"]

LINKS_FOLDER = "wikidata-links"
METHODS = {"iso-code-match": CMC.IsoCodeMatch, "curated": CMC.CuratedDecision,
           "reconciliation": CMC.ReconciliationScore}
DECISIONS = ("accept", "reject")
QID = re.compile(r"^Q[1-9][0-9]*$")
LINK = PREFIXES["link"]

# The kinds of entity reference/entities_wikidata.csv names, and the classes the graph gives them.
ENTITY_CLASSES = {
    "organization": {CMC.Coalition, CMC.Campaign, CMC.CivilSocietyOrganization, ORG.Organization, ORG.FormalOrganization},
    "initiative": {CMC.Coalition, CMC.Campaign, CMC.CivilSocietyOrganization, ORG.Organization},
    "person": {FOAF.Person, CMC.Survivor},
    "treaty": {CMC.Treaty, CMC.Protocol},
    "city": {CMC.City},
}


class CurationError(Exception):
    """A curation or reference row cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Decision:
    """One curated decision: link ``entity`` (a prefixed name such as country:FRA) to Wikidata item ``qid`` or not."""

    entity: str
    label: str
    qid: str
    decision: str
    method: str
    score: str
    source: str
    decided: str
    note: str = ""

    @property
    def accepted(self) -> bool:
        return self.decision == "accept"

    @property
    def source_keys(self) -> list[str]:
        return self.source.split()


@dataclass(frozen=True)
class Candidate:
    """A pairing seen in a source that could not be verified: kept for review, never linked."""

    entity: str
    label: str
    qid: str
    status: str
    note: str = ""


COLUMNS = tuple(f.name for f in fields(Decision))
CANDIDATE_COLUMNS = tuple(f.name for f in fields(Candidate))


def expand(name: str) -> URIRef:
    """country:FRA -> the entity's IRI; only the entity namespaces of the graph are accepted."""
    prefix, _, local = name.partition(":")
    namespace = PREFIXES.get(prefix)
    if not local or namespace is None or not str(namespace).startswith(str(ID)) or namespace == ID:
        raise ValueError(f"{name!r} is not a prefixed name of a cmc-kg entity (country:FRA, kgorg:icbl, place:oslo …)")
    return URIRef(str(namespace) + local)


def read_curation(path: Path) -> list[Decision]:
    """Read and check the curation file (extra columns, such as those of a pasted review row, are ignored)."""
    decisions: list[Decision] = []
    seen: dict = {}
    for line, row in numbered_rows(path, "\t", comments=True):
        where = f"{path}:{line}"
        missing = [c for c in COLUMNS if c != "note" and row.get(c) is None]
        if missing:
            raise CurationError(f"{where}: missing column(s) {', '.join(missing)}")
        decision = Decision(**{c: (row.get(c) or "").strip() for c in COLUMNS})
        try:
            expand(decision.entity)
        except ValueError as bad:
            raise CurationError(f"{where}: {bad}") from None
        if not QID.match(decision.qid):
            raise CurationError(f"{where}: {decision.qid!r} is not a Wikidata item ID (Q followed by digits)")
        if decision.decision not in DECISIONS:
            raise CurationError(f"{where}: decision {decision.decision!r} is not one of {', '.join(DECISIONS)}")
        if decision.method not in METHODS:
            raise CurationError(f"{where}: method {decision.method!r} is not one of {', '.join(METHODS)}")
        if decision.score:
            try:
                score = Decimal(decision.score)
            except InvalidOperation:
                score = Decimal(-1)
            if not 0 <= score <= 1:
                raise CurationError(f"{where}: score {decision.score!r} is not a number from 0 to 1")
        elif decision.method == "reconciliation" and decision.accepted:
            raise CurationError(f"{where}: an accepted reconciliation needs its score")
        if not decision.source_keys:
            raise CurationError(f"{where}: no source key")
        try:
            date.fromisoformat(decision.decided)
        except ValueError:
            raise CurationError(f"{where}: decided {decision.decided!r} is not a date (YYYY-MM-DD)") from None
        if decision.accepted:
            if decision.entity in seen:
                raise CurationError(f"{where}: {decision.entity} is already accepted as {seen[decision.entity]} "
                                    f"(one Wikidata item per entity)")
            seen[decision.entity] = decision.qid
        decisions.append(decision)
    return decisions


def _kind_order(entity: str) -> tuple:
    prefix, _, local = entity.partition(":")
    return (prefix != "country", prefix, local)


def write_curation(path: Path, decisions: list[Decision]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for decision in sorted(decisions, key=lambda d: (_kind_order(d.entity), d.qid, d.decision)):
            writer.writerow(asdict(decision))


def read_candidates(path: Path) -> list[Candidate]:
    if not path.exists():
        return []
    return [Candidate(**{c: (row.get(c) or "").strip() for c in CANDIDATE_COLUMNS})
            for _, row in numbered_rows(path, "\t", comments=True)]


def write_candidates(path: Path, candidates: list[Candidate], header: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(header)
        writer = csv.DictWriter(handle, CANDIDATE_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for candidate in sorted(candidates, key=lambda c: (_kind_order(c.entity), c.qid)):
            writer.writerow(asdict(candidate))


def link_record(entity: URIRef) -> URIRef:
    """The IRI of an entity's link record: id/link/<the entity's path under id/>/wikidata."""
    return LINK[str(entity)[len(str(ID)):] + "/wikidata"]


def render_links(decisions: list[Decision], curation_name: str) -> str:
    """The Turtle of the accepted decisions: the skos:exactMatch links and one cmc:WikidataLink record each."""
    turtle = TurtleWriter()
    for decision in decisions:
        if not decision.accepted:
            continue
        entity, item = expand(decision.entity), WD[decision.qid]
        turtle.add(entity, SKOS.exactMatch, item)
        record = link_record(entity)
        turtle.add(record, RDF.type, CMC.WikidataLink)
        turtle.add(record, RDFS.label, Literal(f"{decision.label}: link to Wikidata {decision.qid}", lang="en"))
        turtle.add(record, CMC.linkedEntity, entity)
        turtle.add(record, CMC.wikidataItem, item)
        turtle.add(record, CMC.linkMethod, METHODS[decision.method])
        if decision.score:
            turtle.add(record, CMC.matchScore, Literal(Decimal(decision.score), datatype=XSD.decimal))
        for key in decision.source_keys:
            turtle.add(record, PROV.wasDerivedFrom, PREFIXES["source"][source_slug(key)])
        turtle.add(record, DCTERMS.date, Literal(decision.decided, datatype=XSD.date))
        if decision.note:
            turtle.add(record, RDFS.comment, Literal(decision.note, lang="en"))
    header = (f"# GENERATED by `cmc-kg link wikidata` from {curation_name} (accepted decisions only).\n"
              f"# Edit the curation file, not this file. The links are skos:exactMatch (no OWL equality);\n"
              f"# each has a cmc:WikidataLink record: method, source, date of the decision.\n")
    return turtle.render(header)


@dataclass(frozen=True)
class Source:
    """A registered source, as far as matching evidence needs it."""

    key: str
    repository: str | None
    commits: frozenset[str]
    paths: frozenset[str]
    urls: frozenset[str]


def registered_sources(sources_file: Path) -> dict[str, Source]:
    """The sources of graph/sources.ttl by key."""
    graph = Graph().parse(sources_file, format="turtle")
    found = {}
    for source, key in graph.subject_objects(CMC.sourceKey):
        repository = graph.value(source, CMC.repository)
        found[str(key)] = Source(str(key), str(repository) if repository else None,
                                 frozenset(str(c) for c in graph.objects(source, CMC.commit)),
                                 frozenset(str(p) for p in graph.objects(source, CMC.path)),
                                 frozenset(str(u) for u in graph.objects(source, SDO.url)))
    return found


_EVIDENCE_FILE = re.compile(r"^(?P<repo>[^@\s]+/[^@\s]+)@(?P<commit>[0-9a-f]{40}):(?P<path>.+)$")


def _source_keys(evidence: str, sources: dict[str, Source], where: str) -> list[str]:
    """The registered sources an evidence_source cell names (repo@commit:path or URLs, separated by ' ; ')."""
    keys = []
    for part in filter(None, (p.strip() for p in evidence.split(" ; "))):
        file = _EVIDENCE_FILE.match(part)
        if file:
            match = [s.key for s in sources.values() if s.repository == file["repo"]
                     and file["commit"] in s.commits and file["path"] in s.paths]
        else:
            match = [s.key for s in sources.values() if part in s.urls]
        if not match:
            raise CurationError(f"{where}: the evidence {part!r} is no registered source: add it to graph/sources.ttl")
        keys.extend(sorted(match)[:1])
    return keys


def _graph_entities(graph_dir: Path) -> dict[str, dict[str, set[URIRef]]]:
    """kind -> lower-case English label -> the graph's entities of that kind with that label."""
    graph = Graph()
    for path in sorted(graph_dir.glob("*/*.ttl")):
        graph.parse(path, format="turtle")
    found: dict[str, dict[str, set[URIRef]]] = {kind: {} for kind in ENTITY_CLASSES}
    for kind, classes in ENTITY_CLASSES.items():
        for cls in classes:
            for entity in graph.subjects(RDF.type, cls):
                if not str(entity).startswith(str(ID)):
                    continue
                for label in graph.objects(entity, RDFS.label):
                    if getattr(label, "language", None) == "en":
                        found[kind].setdefault(str(label).casefold(), set()).add(entity)  # type: ignore[arg-type]
    return found


def _label_variants(label: str) -> list[str]:
    """'Ottawa Treaty (Mine Ban Treaty)' -> itself, 'Ottawa Treaty' and 'Mine Ban Treaty'."""
    variants = [label]
    inner = re.search(r"\(([^()]*)\)\s*$", label)
    if inner:
        variants += [label[:inner.start()].strip(), inner.group(1).strip()]
    return variants


def reference_decisions(reference_dir: Path, graph_dir: Path, today: str,
                        existing: Sequence[Decision] = ()) -> tuple[list[Decision], list[Candidate], list[str]]:
    """Decisions the sourced reference tables support, candidates they do not, and what was skipped and why.

    States: every ISO 3166-1 row of countries_iso_wikidata_owid.csv, the QID OWID-CR gives (method
    iso-code-match). Others: rows of entities_wikidata.csv with evidence_status verified_in_source whose entity
    the graph has (method curated), with the registered sources of their evidence. Rows seen only in
    unresolved sources become candidates, never decisions. A decision already in ``existing`` for the same
    entity and item keeps its date; an existing rejection of the same pairing stands.
    """
    sources = registered_sources(graph_dir / "sources.ttl")
    previous = {(d.entity, d.qid): d for d in existing}
    decisions, candidates, skipped = [], [], []

    def decide(entity: str, label: str, qid: str, method: str, keys: list[str], note: str) -> None:
        before = previous.get((entity, qid))
        if before is not None and not before.accepted:
            decisions.append(before)
            return
        decided = before.decided if before is not None else today
        decisions.append(Decision(entity, label, qid, "accept", method, "", " ".join(keys), decided, note))

    countries = reference_dir / "countries_iso_wikidata_owid.csv"
    for line, row in numbered_rows(countries):
        if row["row_kind"] != "iso3166_1":
            continue
        if not QID.match(row["wikidata_qid"]):
            raise CurationError(f"{countries}:{line}: no Wikidata QID for {row['iso_alpha3']}")
        name = row["iso_codes_4_15_name"]
        note = "" if row["wikidata_label"] == name else \
            f"OWID-CR gives this item the label \u201c{row['wikidata_label']}\u201d."
        decide(f"country:{row['iso_alpha3']}", name, row["wikidata_qid"], "iso-code-match", ["OWID-CR"], note)

    entities = reference_dir / "entities_wikidata.csv"
    in_graph = _graph_entities(graph_dir)
    for line, row in numbered_rows(entities):
        where = f"{entities}:{line}"
        status, label = row["evidence_status"], row["entity_label"]
        qid = row["wikidata_qid"] or row["candidate_qid_unresolved_source"]
        if not qid:
            continue
        labels = in_graph.get(row["entity_type"], {})
        matches = set().union(*(labels.get(v.casefold(), set()) for v in _label_variants(label)))
        if len(matches) != 1:
            skipped.append(f"{label} ({qid}): {'no' if not matches else 'more than one'} {row['entity_type']} "
                           f"with this English label in graph/")
            continue
        entity = entity_name(str(next(iter(matches))))
        if status == "verified_in_source":
            decide(entity, label, qid, "curated", _source_keys(row["evidence_source"], sources, where),
                   row["evidence_detail"])
        else:
            candidates.append(Candidate(entity, label, qid, status, row["note"]))
    return decisions, candidates, skipped


def write_links(curation: Path, links: Path, sources_file: Path | None = None,
                curation_name: str | None = None) -> list[Decision]:
    """Regenerate the links Turtle from the curation file; check the source keys are registered."""
    decisions = read_curation(curation)
    if sources_file is not None:
        known = registered_sources(sources_file)
        unknown = sorted({k for d in decisions if d.accepted for k in d.source_keys} - set(known))
        if unknown:
            raise CurationError(f"{curation}: source key(s) not in {sources_file}: {', '.join(unknown)}")
    links.parent.mkdir(parents=True, exist_ok=True)
    links.write_text(render_links(decisions, curation_name or f"graph/{LINKS_FOLDER}/{curation.name}"),
                     encoding="utf-8")
    return decisions


def merge_decisions(existing: list[Decision], reference: list[Decision]) -> list[Decision]:
    """The reference decisions, plus the existing ones about entities the reference says nothing about."""
    covered = {d.entity for d in reference}
    return list(reference) + [d for d in existing if d.entity not in covered]
