"""`cmc-kg link wikidata`: find Wikidata candidates for the graph's entities, score them, report contradictions.

States are looked up by their ISO 3166-1 codes (alpha-3 P298, alpha-2 P297), organizations, people, treaties
and cities by their English labels (rdfs:label or skos:altLabel) and scored by label similarity and type
(see :func:`score_label_candidate`). Every candidate goes to a review file (TSV); nothing becomes a link
until a curator copies its row into the curation file with decision ``accept`` (see curation.py).
QIDs already linked in the graph are checked against the endpoint: a state whose ISO code now points to
another item, an item that became a redirect, or an entity whose linked item no longer fits its label and
type are reported as contradictions.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Callable, Iterable, Sequence

from rdflib import Literal, URIRef

from ..namespaces import WD, WDT
from ..query import internal_query, select, set_values
from .client import WikidataClient
from ..terms import entity_name
from .curation import Candidate

__all__ = ["LocalEntity", "ReviewRow", "Contradiction", "LinkReport", "local_entities", "find_candidates",
           "write_review", "score_label_candidate", "label_similarity", "TYPE_KEYWORDS", "REVIEW_COLUMNS"]

Progress = Callable[[str], None]

# The English labels of the classes (P31, "instance of") that count as a type match for each kind of entity.
# Labels, not QIDs: the project records no QID it has not verified in a source.
TYPE_KEYWORDS = {
    "organization": ("organization", "organisation", "campaign", "coalition", "association", "foundation",
                     "charity", "movement", "network", "non-governmental"),
    "person": ("human",),
    "treaty": ("treaty", "convention", "protocol", "international agreement"),
    "city": ("city", "capital", "municipality", "town", "commune", "metropolis"),
}
LABEL_WEIGHT, TYPE_WEIGHT = 0.6, 0.4
STRONG = 0.8  # a candidate at or above this score is a strong one

REVIEW_COLUMNS = ("entity", "label", "qid", "decision", "method", "score", "source", "decided", "note",
                  "status", "linked_qid", "candidate_label", "candidate_description", "types", "label_score",
                  "type_score")


@dataclass(frozen=True)
class LocalEntity:
    """An entity of the graph to link: its prefixed name, kind, English labels, ISO codes and current link."""

    name: str
    kind: str
    labels: tuple[str, ...]
    iso3: str = ""
    iso2: str = ""
    linked: str = ""


@dataclass
class ReviewRow:
    entity: LocalEntity
    qid: str
    method: str
    score: float
    candidate_label: str = ""
    candidate_description: str = ""
    types: tuple[str, ...] = ()
    label_score: float | None = None
    type_score: float | None = None
    status: str = ""
    note: str = ""


@dataclass(frozen=True)
class Contradiction:
    entity: LocalEntity
    reason: str

    def __str__(self) -> str:
        return f"{self.entity.name} ({self.entity.labels[0]}): {self.reason}"


@dataclass
class LinkReport:
    rows: list[ReviewRow] = field(default_factory=list)
    contradictions: list[Contradiction] = field(default_factory=list)
    unconfirmed: list[LocalEntity] = field(default_factory=list)
    entities: int = 0
    requests: int = 0


def local_entities(store) -> list[LocalEntity]:
    """The graph's states (with ISO codes) and its organizations, people, treaties and cities (with labels)."""
    linked = {row["e"]: row["item"][len(str(WD)):] for row in select(store, internal_query("wikidata-links")).rows}
    entities = []
    for row in select(store, internal_query("linkable-countries")).rows:
        entities.append(LocalEntity(entity_name(row["e"]), "country", (row["label"],), row["iso3"], row["iso2"],
                                    linked.get(row["e"], "")))
    labels: dict[tuple[str, str], set[str]] = {}
    for row in select(store, internal_query("linkable-entities")).rows:
        labels.setdefault((row["e"], row["kind"]), set()).add(row["label"])
    for (iri, kind), names in sorted(labels.items()):
        entities.append(LocalEntity(entity_name(iri), kind, tuple(sorted(names)), linked=linked.get(iri, "")))
    return entities


def _normal(text: str) -> str:
    """Lower case, no accents, no punctuation, no parenthesised part, '&' as 'and', single spaces."""
    text = re.sub(r"\([^()]*\)", " ", text).replace("&", " and ")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold()).split())


def label_similarity(a: str, b: str) -> float:
    """1.0 for the same label up to case, accents and punctuation; else difflib's ratio of the normal forms."""
    a, b = _normal(a), _normal(b)
    if not a or not b:
        return 0.0
    return 1.0 if a == b else round(SequenceMatcher(None, a, b).ratio(), 3)


def score_label_candidate(entity: LocalEntity, candidate_label: str, via_alias: bool,
                          class_labels: Iterable[str]) -> tuple[float, float, float]:
    """(score, label score, type score) of a candidate found by label.

    Label score: the best similarity of the entity's labels to the item's English label; an item found
    through one of its aliases (skos:altLabel) scores at least 0.9. Type score: 1 when the English label of
    one of the item's classes (P31) contains a keyword of the entity's kind (TYPE_KEYWORDS), else 0.
    Score = 0.6 x label + 0.4 x type.
    """
    label_score = max((label_similarity(mine, candidate_label) for mine in entity.labels), default=0.0)
    if via_alias:
        label_score = max(label_score, 0.9)
    keywords = TYPE_KEYWORDS.get(entity.kind, ())
    type_score = 1.0 if any(k in c.casefold() for c in class_labels for k in keywords) else 0.0
    return round(LABEL_WEIGHT * label_score + TYPE_WEIGHT * type_score, 3), label_score, type_score


def _batches(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + max(1, size)]


def _qid(term) -> str:
    text = str(term)
    return text[len(str(WD)):] if text.startswith(str(WD)) else ""


def _code_candidates(client: WikidataClient, states: list[LocalEntity], progress: Progress) -> dict[str, dict]:
    """ISO code -> {qid: {codes matched, label, description}} for alpha-3 (P298) and alpha-2 (P297)."""
    found: dict[str, dict[str, dict]] = {}
    for prop, attribute, name in (("P298", "iso3", "alpha-3"), ("P297", "iso2", "alpha-2")):
        codes = sorted({getattr(s, attribute) for s in states if getattr(s, attribute)})
        done = 0
        by_property = set_values(internal_query("wikidata/items-by-code"), ("property",), [(WDT[prop].n3(),)])
        for batch in _batches(codes, client.config.wikidata_batch_size):
            rows = client.select(set_values(by_property, ("code",), [(Literal(code).n3(),) for code in batch]))
            for row in rows:
                qid = _qid(row.get("item", ""))
                if not qid:
                    continue
                entry = found.setdefault(str(row["code"]), {}).setdefault(qid, {"props": set(), "label": "",
                                                                                "description": ""})
                entry["props"].add(prop)
                entry["label"] = entry["label"] or str(row.get("label", ""))
                entry["description"] = entry["description"] or str(row.get("description", ""))
            done += len(batch)
            progress(f"  states by ISO 3166-1 {name} ({prop}): {done}/{len(codes)} codes")
    return found


def _label_candidates(client: WikidataClient, labels: list[str], progress: Progress) -> dict[str, dict]:
    """English label -> {qid: {label, description, classes, alias}} of the items with that label or alias."""
    found: dict[str, dict[str, dict]] = {}
    done = 0
    for batch in _batches(labels, client.config.wikidata_batch_size):
        rows = client.select(set_values(internal_query("wikidata/items-by-label"), ("query",),
                                        [(Literal(label, lang="en").n3(),) for label in batch]))
        for row in rows:
            qid = _qid(row.get("item", ""))
            if not qid:
                continue
            entry = found.setdefault(str(row["query"]), {}).setdefault(
                qid, {"label": "", "description": "", "classes": set(), "alias": True})
            entry["label"] = entry["label"] or str(row.get("label", ""))
            entry["description"] = entry["description"] or str(row.get("description", ""))
            if "classLabel" in row:
                entry["classes"].add(str(row["classLabel"]))
            if "alias" not in row:
                entry["alias"] = False
        done += len(batch)
        progress(f"  organizations, people, treaties, cities by English label: {done}/{len(labels)} labels")
    return found


def _item_details(client: WikidataClient, qids: list[str], progress: Progress) -> dict[str, dict]:
    """Linked QID -> {label, description, classes, redirect} as the endpoint has them now."""
    found: dict[str, dict] = {}
    done = 0
    for batch in _batches(qids, client.config.wikidata_batch_size):
        rows = client.select(set_values(internal_query("wikidata/linked-items"), ("item",),
                                        [(URIRef(WD[q]).n3(),) for q in batch]))
        for row in rows:
            qid = _qid(row.get("item", ""))
            entry = found.setdefault(qid, {"label": "", "description": "", "classes": set(), "redirect": ""})
            entry["label"] = entry["label"] or str(row.get("label", ""))
            entry["description"] = entry["description"] or str(row.get("description", ""))
            entry["redirect"] = entry["redirect"] or _qid(row.get("redirect", ""))
            if "classLabel" in row:
                entry["classes"].add(str(row["classLabel"]))
        done += len(batch)
        progress(f"  linked items checked: {done}/{len(qids)}")
    return found


def find_candidates(client: WikidataClient, entities: list[LocalEntity], unverified: Sequence[Candidate] = (),
                    progress: Progress = lambda _: None) -> LinkReport:
    """Query the endpoint for every entity; return the review rows, the contradictions and the unconfirmed links."""
    report = LinkReport(entities=len(entities))
    states = [e for e in entities if e.kind == "country"]
    others = [e for e in entities if e.kind != "country"]
    unverified_qids = {(c.entity, c.qid) for c in unverified}

    progress(f"states: {len(states)} by ISO 3166-1 code")
    by_code = _code_candidates(client, states, progress)
    progress(f"organizations, people, treaties and cities: {len(others)} by label and type")
    by_label = _label_candidates(client, sorted({label for e in others for label in e.labels}), progress)
    linked_qids = sorted({e.linked for e in entities if e.linked})
    progress(f"linked items: {len(linked_qids)} checked for redirects, labels and types")
    details = _item_details(client, linked_qids, progress)

    for state in states:
        hits: dict[str, dict] = {}
        for code in (state.iso3, state.iso2):
            for qid, entry in by_code.get(code, {}).items():
                merged = hits.setdefault(qid, {"props": set(), "label": entry["label"],
                                               "description": entry["description"]})
                merged["props"] |= entry["props"]
        for qid, entry in hits.items():
            report.rows.append(ReviewRow(state, qid, "iso-code-match", 0.5 * len(entry["props"] & {"P298", "P297"}),
                                         entry["label"], entry["description"],
                                         note="found by " + " and ".join(sorted(entry["props"]))))
        _check_link(report, state, hits, details, code_based=True)

    for entity in others:
        hits = {}
        for label in entity.labels:
            for qid, entry in by_label.get(label, {}).items():
                merged = hits.setdefault(qid, {**entry, "classes": set(entry["classes"])})
                merged["alias"] = merged["alias"] and entry["alias"]
                merged["classes"] |= entry["classes"]
        if entity.linked and entity.linked not in hits and entity.linked in details:
            hits[entity.linked] = {**details[entity.linked], "alias": False}
        for qid, entry in hits.items():
            score, label_score, type_score = score_label_candidate(entity, entry["label"], entry["alias"],
                                                                   entry["classes"])
            note = "unverified candidate of reference/entities_wikidata.csv" \
                if (entity.name, qid) in unverified_qids else ""
            report.rows.append(ReviewRow(entity, qid, "reconciliation", score, entry["label"],
                                         entry["description"], tuple(sorted(entry["classes"])), label_score,
                                         type_score, note=note))
        _check_link(report, entity, hits, details, code_based=False)

    for row in report.rows:
        if not row.entity.linked:
            row.status = "new"
        elif row.qid == row.entity.linked:
            row.status = "linked"
        elif any(c.entity is row.entity for c in report.contradictions):
            row.status = "contradicts-link"
        else:
            row.status = "other-than-link"
    report.requests = client.requests
    return report


def _check_link(report: LinkReport, entity: LocalEntity, hits: dict, details: dict, code_based: bool) -> None:
    """Compare the entity's linked QID with what the endpoint says now."""
    if not entity.linked:
        return
    detail = details.get(entity.linked)
    if detail and detail["redirect"]:
        report.contradictions.append(Contradiction(entity, f"the graph links wd:{entity.linked}, which the endpoint "
                                                           f"redirects to wd:{detail['redirect']}"))
        return
    if code_based:
        if hits and entity.linked not in hits:
            others = ", ".join(f"wd:{q}" for q in sorted(hits))
            report.contradictions.append(Contradiction(
                entity, f"the graph links wd:{entity.linked}, but the endpoint gives ISO 3166-1 "
                        f"{entity.iso3}/{entity.iso2} to {others}"))
        elif not hits:
            report.unconfirmed.append(entity)
        return
    if not detail:
        report.unconfirmed.append(entity)
        return
    linked_score = score_label_candidate(entity, detail["label"], False, detail["classes"])[0]
    best = max(((score_label_candidate(entity, h["label"], h["alias"], h["classes"])[0], q)
                for q, h in hits.items() if q != entity.linked), default=(0.0, ""))
    if linked_score < 0.5 and best[0] >= STRONG:
        report.contradictions.append(Contradiction(
            entity, f"the graph links wd:{entity.linked} (\u201c{detail['label']}\u201d, score {linked_score}), but "
                    f"wd:{best[1]} fits its label and type (score {best[0]})"))


def write_review(path: Path, report: LinkReport, source_key: str = "WIKIDATA") -> None:
    """The review file: one row per candidate, in the curation file's columns first (decision left empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    order = sorted(report.rows, key=lambda r: (r.entity.kind != "country", r.entity.name, -r.score, r.qid))
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, REVIEW_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in order:
            writer.writerow({
                "entity": row.entity.name, "label": row.entity.labels[0], "qid": row.qid, "decision": "",
                "method": row.method, "score": f"{row.score:.3f}", "source": source_key, "decided": "",
                "note": row.note, "status": row.status, "linked_qid": row.entity.linked,
                "candidate_label": row.candidate_label, "candidate_description": row.candidate_description,
                "types": "; ".join(row.types),
                "label_score": "" if row.label_score is None else f"{row.label_score:.3f}",
                "type_score": "" if row.type_score is None else f"{row.type_score:.3f}",
            })
