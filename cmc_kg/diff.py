"""What changed between two builds or releases (`cmc-kg diff OLD NEW`), as Markdown for a changelog and as RDF.

Changes are found by comparing what the two dumps assert (the inferred graph left out), keyed by entity IRI, which
stays the same across refreshes: treaty actions added, removed or re-dated, organizations, memberships, claims
and depositary notes added or removed, and sources whose as-at date moved. Each change is a cmc:Change (the
ontology and its shape say what it holds), so a diff can be loaded and queried.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import pyoxigraph as ox
from rdflib import Graph, Literal, URIRef

from .namespaces import CMC, DCTERMS, PREFIXES, RDF, RDFS, bind_prefixes
from .query import PREFIX_MAP, internal_query

__all__ = ["Change", "Snapshot", "load_snapshot", "diff", "to_markdown", "to_rdf", "RELEASE_FILE", "DUMP_NAME"]

RELEASE_FILE = "release.json"
DUMP_NAME = "cmc-kg.nq"
CHANGE = PREFIXES["change"]

# Kind of change -> (heading in the changelog, order).
KINDS = {
    CMC.BecameParty: "States that became parties",
    CMC.BecameSignatory: "States that became signatories",
    CMC.WithdrawalNotified: "Withdrawals notified",
    CMC.WithdrawalTookEffect: "Withdrawals taking effect",
    CMC.TreatyActionAdded: "Other treaty actions added",
    CMC.TreatyActionRemoved: "Treaty actions no longer recorded",
    CMC.DateChanged: "Dates that changed",
    CMC.OrganizationAdded: "Organizations added",
    CMC.OrganizationRemoved: "Organizations no longer recorded",
    CMC.MembershipAdded: "Memberships added",
    CMC.MembershipEnded: "Memberships ended",
    CMC.ClaimAdded: "Claims added",
    CMC.ClaimRemoved: "Claims no longer recorded",
    CMC.NoteAdded: "Depositary notes added",
    CMC.NoteChanged: "Depositary notes changed",
    CMC.SourceUpdated: "Sources updated",
}
CONSENT_KINDS = {CMC.Ratification, CMC.Acceptance, CMC.Approval, CMC.Accession, CMC.Succession, CMC.ConsentToBeBound}
ACTION_KIND_OF = {CMC.Signature: CMC.BecameSignatory, CMC.WithdrawalNotification: CMC.WithdrawalNotified,
                  CMC.WithdrawalEffective: CMC.WithdrawalTookEffect, **{k: CMC.BecameParty for k in CONSENT_KINDS}}

# What a snapshot is read into, by name: each query's rows.
QUERIES = {"actions": internal_query("diff-actions"), "organizations": internal_query("diff-organizations"),
           "memberships": internal_query("diff-memberships"), "claims": internal_query("diff-claims"),
           "notes": internal_query("diff-notes"), "sources": internal_query("diff-sources")}


@dataclass(frozen=True)
class Change:
    """One difference: its kind, the entity it is about, related entities (state, treaty, organization), the old
    and new value where a value changed, and a sentence for the changelog."""

    kind: URIRef
    subject: str
    text: str
    references: tuple[str, ...] = ()
    old: str = ""
    new: str = ""


@dataclass
class Snapshot:
    """A build or release read for comparison: its version label and the rows of each query."""

    version: str
    rows: dict[str, list[dict[str, str]]]
    labels: dict[str, str]


class _Action(TypedDict):
    """A treaty action of a snapshot: its rows merged (one per kind, and per date where it has several)."""

    kinds: set[URIRef]
    dates: set[str]
    scheduled: set[str]
    actor: str
    treaty: str


def _dump_of(path: Path) -> tuple[Path, str]:
    """The N-Quads dump of a build or release folder (or a dump file), and the version to call it by."""
    if path.is_dir():
        release = path / RELEASE_FILE
        version = json.loads(release.read_text(encoding="utf-8"))["version"] if release.exists() else str(path)
        for name in (DUMP_NAME, DUMP_NAME + ".gz"):
            if (path / name).exists():
                return path / name, version
        raise FileNotFoundError(f"{path} holds no {DUMP_NAME}: give a build folder, a release folder or a dump")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return path, str(path)


def load_snapshot(path: Path) -> Snapshot:
    dump, version = _dump_of(Path(path))
    store = ox.Store()
    if dump.suffix == ".gz":
        with tempfile.NamedTemporaryFile(suffix=".nq") as plain:
            plain.write(gzip.decompress(dump.read_bytes()))
            plain.flush()
            store.bulk_load(path=plain.name, format=ox.RdfFormat.N_QUADS)
    else:
        store.bulk_load(path=str(dump), format=ox.RdfFormat.N_QUADS)
    rows = {name: _select(store, text) for name, text in QUERIES.items()}
    labels = {row["x"]: row["label"] for row in _select(store, internal_query("diff-labels"))}
    return Snapshot(version, rows, labels)


def _select(store: ox.Store, text: str) -> list[dict[str, str]]:
    solutions = store.query(text, prefixes=PREFIX_MAP, use_default_graph_as_union=True)
    assert isinstance(solutions, ox.QuerySolutions), "only SELECT queries are read into rows"
    names = [v.value for v in solutions.variables]
    return [{name: solution[name].value for name in names if solution[name] is not None} for solution in solutions]


def diff(old: Snapshot, new: Snapshot) -> list[Change]:
    """Every change from old to new, in changelog order."""
    changes: list[Change] = []
    label = {**old.labels, **new.labels}.get

    def name(iri: str) -> str:
        return label(iri) or iri

    def actions(snapshot: Snapshot) -> dict[str, _Action]:
        found: dict[str, _Action] = {}
        for row in snapshot.rows["actions"]:
            entry = found.setdefault(row["x"], {"kinds": set(), "dates": set(), "scheduled": set(),
                                                "actor": row["actor"], "treaty": row["treaty"]})
            entry["kinds"].add(URIRef(row["kind"]))
            entry["dates"].add(row["date"])
            if "scheduled" in row:
                entry["scheduled"].add(row["scheduled"])
        return found

    before, after = actions(old), actions(new)
    for iri in sorted(after.keys() | before.keys()):
        a, b = before.get(iri), after.get(iri)
        entry = b or before[iri]  # whichever exists: a or b may be None, not both
        what = f"{name(entry['actor'])}, {name(entry['treaty'])}"
        refs = (entry["actor"], entry["treaty"])
        kinds = sorted(entry["kinds"])
        action_name = ", ".join(sorted(name(str(k)) for k in kinds if str(k) != str(CMC.TreatyAction)))
        if a is None:
            kind = next((ACTION_KIND_OF[k] for k in kinds if k in ACTION_KIND_OF), CMC.TreatyActionAdded)
            dates = " / ".join(sorted(entry["dates"]))
            extra = f" (to take effect {' / '.join(sorted(entry['scheduled']))})" if entry["scheduled"] else ""
            changes.append(Change(kind, iri, f"{what}: {action_name} {dates}{extra}", refs, new=dates))
        elif b is None:
            dates = " / ".join(sorted(entry["dates"]))
            changes.append(Change(CMC.TreatyActionRemoved, iri, f"{what}: {action_name} {dates}", refs, old=dates))
        else:
            for old_dates, new_dates, words in ((a["dates"], b["dates"], "date"),
                                                (a["scheduled"], b["scheduled"], "date it is to take effect")):
                if old_dates != new_dates:
                    old_text = " / ".join(sorted(old_dates)) or "none"
                    new_text = " / ".join(sorted(new_dates)) or "none"
                    changes.append(Change(CMC.DateChanged, iri,
                                          f"{what}: {action_name}, {words} {old_text} → {new_text}",
                                          refs, old=old_text, new=new_text))

    def keyed(snapshot: Snapshot, query: str) -> dict[str, dict[str, str]]:
        return {row["x"]: row for row in snapshot.rows[query]}

    for query, added, removed in (("organizations", CMC.OrganizationAdded, CMC.OrganizationRemoved),
                                  ("claims", CMC.ClaimAdded, CMC.ClaimRemoved)):
        was, now = keyed(old, query), keyed(new, query)
        changes += [Change(added, iri, name(iri)) for iri in sorted(now.keys() - was.keys())]
        changes += [Change(removed, iri, name(iri)) for iri in sorted(was.keys() - now.keys())]

    was, now = keyed(old, "memberships"), keyed(new, "memberships")
    for iri in sorted(now.keys() | was.keys()):
        old_row, new_row = was.get(iri), now.get(iri)
        row = new_row or was[iri]  # whichever exists
        refs = (row["member"], row["organization"])
        if old_row is None:
            changes.append(Change(CMC.MembershipAdded, iri, name(iri), refs))
        elif new_row is None:
            changes.append(Change(CMC.MembershipEnded, iri, f"{name(iri)}: no longer recorded", refs))
        elif new_row.get("end") and new_row.get("end") != old_row.get("end"):
            changes.append(Change(CMC.MembershipEnded, iri, f"{name(iri)}: ended {new_row['end']}", refs,
                                  old=old_row.get("end", ""), new=new_row["end"]))

    was, now = keyed(old, "notes"), keyed(new, "notes")
    for iri in sorted(now.keys() | was.keys(), key=lambda i: (i.rsplit("/", 1)[0], int(i.rsplit("/", 1)[1])
                                                               if i.rsplit("/", 1)[1].isdigit() else 0, i)):
        old_row, new_row = was.get(iri), now.get(iri)
        if new_row is None:  # a note no longer recorded is not reported
            continue
        if old_row is None:
            changes.append(Change(CMC.NoteAdded, iri, f"{name(iri)}: {new_row['text']}", (new_row["treaty"],),
                                  new=new_row["text"]))
        elif old_row["text"] != new_row["text"]:
            changes.append(Change(CMC.NoteChanged, iri, f"{name(iri)}: {new_row['text']}", (new_row["treaty"],),
                                  old=old_row["text"], new=new_row["text"]))

    was, now = keyed(old, "sources"), keyed(new, "sources")
    for iri in sorted(now.keys() & was.keys()):
        if was[iri].get("asof") != now[iri].get("asof"):
            changes.append(Change(CMC.SourceUpdated, iri, f"{now[iri]['key']}: as at {was[iri].get('asof', 'no date')} "
                                  f"→ {now[iri].get('asof', 'no date')}", old=was[iri].get("asof", ""),
                                  new=now[iri].get("asof", "")))
    order = list(KINDS)
    return sorted(changes, key=lambda c: order.index(c.kind))


def to_markdown(changes: list[Change], old: str, new: str) -> str:
    lines = [f"# Changes from {old} to {new}", ""]
    if not changes:
        return "\n".join(lines + ["No changes.", ""])
    for kind, heading in KINDS.items():
        group = [c for c in changes if c.kind == kind]
        if group:
            lines += [f"## {heading} ({len(group)})", ""] + [f"- {c.text}" for c in group] + [""]
    return "\n".join(lines)


def to_rdf(changes: list[Change], old: str, new: str) -> Graph:
    """The changes as cmc:Change resources, numbered within the pair of versions they compare."""
    graph = bind_prefixes(Graph())
    for number, change in enumerate(changes, start=1):
        node = CHANGE[f"{_slug(old)}..{_slug(new)}/{number}"]
        graph.add((node, RDF.type, CMC.Change))
        graph.add((node, CMC.changeKind, change.kind))
        graph.add((node, RDFS.label, Literal(change.text, lang="en")))
        graph.add((node, DCTERMS.subject, URIRef(change.subject)))
        graph.add((node, CMC.sinceVersion, Literal(old)))
        graph.add((node, CMC.inVersion, Literal(new)))
        for reference in change.references:
            graph.add((node, DCTERMS.references, URIRef(reference)))
        if change.old:
            graph.add((node, CMC.oldValue, Literal(change.old)))
        if change.new:
            graph.add((node, CMC.newValue, Literal(change.new)))
    return graph


def _slug(version: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-._" else "-" for ch in Path(version).name or version)
