"""Explore pages: treaty status over time and the coalition network, drawn from the graph.

* ``/explore``: the index, one card per picture.
* ``/explore/treaty/<slug>`` (``ccm``, ``mbt``, ``ccw``): a step chart of signatories and states parties from
  the first act to the depositary's as-at date, with the treaty's own events marked; and, for a date picked
  with ``?date=YYYY-MM-DD`` (default: the as-at date), every state's status on that date as a sortable table.
* ``/explore/compare?a=ccm&b=mbt&date=...``: the parties of one treaty that are not parties of the other,
  both ways.
* ``/explore/network``: the CMC, the ICBL and the ICBL-CMC they merged into, with their members by role,
  governance bodies, and the countries the members are based in.
* ``/explore/members``: member organizations per country (with their kinds) and per UN M49 region.
* ``/explore/monitor?status=Contaminated``: states by reports, the cluster-munition status each report gives.

Every picture is drawn on the server as SVG from the answer of one SPARQL query kept in
``queries/explore/*.rq`` (read at each request, so the file is the one place the query lives); the page
shows that query, with the page's treaty and date filled in, and links it to the query page. The pages load
nothing from elsewhere; ``static/explore.js`` only sorts the status table. No project IRI is spelled here:
treaties and entity links are built from :mod:`cmc_kg.namespaces`.
"""

from __future__ import annotations

import math
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, NamedTuple, Sequence

from flask import Blueprint, abort, render_template, request

from cmc_kg.contract import EngineBusy, QueryTimeout
from cmc_kg.namespaces import CMC, FOAF, ID, ONTOLOGY, ORG
from cmc_kg.query import set_values
from cmc_kg.terms import curie

from .pages import release_changes
from .state import State

__all__ = ["bp", "treaty_chart", "network_layout", "regions_table", "members_by_country",
           "status_grid"]

bp = Blueprint("explore", __name__)

# The treaties the pages draw, by the slug of their IRI (ID + "treaty/" + slug).
TREATY_SLUGS = ("ccm", "mbt", "ccw")
STATUSES = ("none", "signed", "party", "in force", "withdrawn")

# A project IRI <BASE + rest> is served at /rest (as server.pages does).
_BASE = str(ONTOLOGY).rsplit("/", 1)[0] + "/"


def entity_path(iri: str) -> str | None:
    """The server path of an entity IRI (``<base>/id/x`` -> ``/id/x``); None for IRIs the graph does not mint."""
    return "/" + iri[len(_BASE):] if iri.startswith(str(ID)) else None


def treaty_iri(slug: str) -> str:
    return str(ID[f"treaty/{slug}"])


def date_literal(day: date) -> str:
    return f'"{day.isoformat()}"^^xsd:date'


# --------------------------------------------------------------------------------------------------
# The queries behind the pictures
# --------------------------------------------------------------------------------------------------

@dataclass
class Sparql:
    """One query as run for a picture: its title, text and answer."""

    name: str
    title: str
    text: str
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def link(self) -> str:
        return "/query?" + urllib.parse.urlencode({"query": self.text})


class Unavailable(Exception):
    """The engine could not answer in time."""


def _query_file(name: str) -> str:
    path = State.current().paths.queries_dir / "explore" / f"{name}.rq"
    return path.read_text(encoding="utf-8")


def run(name: str, values: Sequence[tuple[tuple[str, ...], list[tuple[str, ...]]]] = ()) -> Sparql:
    """Read ``queries/explore/<name>.rq``, fill in its VALUES, run it; rows as plain strings."""
    text = _query_file(name)
    title = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.lower().startswith("# title:")), name)
    for variables, data in values:
        text = set_values(text, variables, data)
    try:
        bindings = State.current().select(text)
    except (QueryTimeout, EngineBusy) as stopped:
        raise Unavailable(str(stopped)) from None
    rows = [{key: term["value"] for key, term in binding.items()} for binding in bindings]
    return Sparql(name, title, text, rows)


@bp.errorhandler(Unavailable)
def _unavailable(error):
    return render_template("explore_error.html", title="Busy", message=str(error)), 503


# --------------------------------------------------------------------------------------------------
# Treaties
# --------------------------------------------------------------------------------------------------

@dataclass
class Treaty:
    slug: str
    iri: str
    name: str
    as_at: date

    @property
    def path(self) -> str | None:
        return entity_path(self.iri)


def treaties() -> tuple[dict[str, Treaty], Sparql]:
    answer = run("treaties")
    by_iri = {row["treaty"]: row for row in answer.rows}
    found = {}
    for slug in TREATY_SLUGS:
        row = by_iri.get(treaty_iri(slug))
        if row and row.get("asAt"):
            found[slug] = Treaty(slug, row["treaty"], row["name"], date.fromisoformat(row["asAt"]))
    return found, answer


def _treaty_or_404(slug: str) -> tuple[Treaty, dict[str, Treaty]]:
    known, _ = treaties()
    if slug not in known:
        abort(404)
    return known[slug], known


def _after_the_data(on: date, as_at: date) -> str | None:
    """Say so when a date lies past the data: acts after the depositary's as-at date are not in the graph."""
    if on <= as_at:
        return None
    return (f"The data stops at {as_at.isoformat()}, the date the depositary's tables were taken; "
            f"acts between then and {on.isoformat()} are not in the graph.")


def _date_arg(name: str, default: date) -> tuple[date, str | None]:
    """The ``?date=`` argument, or the default with a message when it is not a date."""
    given = request.args.get(name, "").strip()
    if not given:
        return default, None
    try:
        day = date.fromisoformat(given)
    except ValueError:
        return default, f"“{given}” is not a date of the form YYYY-MM-DD; showing {default.isoformat()}."
    if not 1900 <= day.year <= 2100:
        return default, f"{given} is outside the years 1900–2100; showing {default.isoformat()}."
    return day, None


def series_query(treaty: Treaty) -> Sparql:
    return run("signatories-and-parties-over-time",
               [(("treaty", "until"), [(curie(treaty.iri), date_literal(treaty.as_at))])])


def events_query(treaty: Treaty) -> Sparql:
    return run("treaty-events", [(("treaty",), [(curie(treaty.iri),)])])


def status_query(treaty: Treaty, on: date) -> Sparql:
    return run("status-on-a-date", [(("treaty", "onDate"), [(curie(treaty.iri), date_literal(on))])])


def _ordinal(day: date) -> int:
    return day.toordinal()


def _text_width(text: str, size: float, bold: bool = False) -> float:
    """A generous estimate of a label's width in DejaVu Sans-like fonts (no font metrics on the server)."""
    wide = sum(1 for c in text if c in "MWmw@%") * 0.3
    narrow = sum(1 for c in text if c in "iljtf.,;:'!|() ") * 0.25
    return (len(text) + wide - narrow) * size * (0.64 if bold else 0.6)


def _nice_step(top: int) -> int:
    for step in (5, 10, 20, 25, 50, 100, 200, 250, 500):
        if top / step <= 8:
            return step
    return 1000


# The chart's words for a treaty's own events, by their class.
EVENT_NAMES = {str(CMC.Adoption): "adopted", str(CMC.OpeningForSignature): "opened for signature",
               str(CMC.ThresholdReached): "threshold reached", str(CMC.EntryIntoForce): "entry into force"}
WITHDRAWAL_DATES = (str(CMC.WithdrawalEffective), str(CMC.scheduledEffectiveDate))


def _label_row(labels: dict[int, list[tuple[float, float]]], markers: list[dict], x0: float, x1: float,
               mx: float) -> int:
    """The row of a chart label spanning x0..x1 whose marker line is at mx, the labels right of it placed.

    A marker's line runs from its label down through the rows below. A label takes the lowest row (of 10)
    where it overlaps no label, covers no line of a higher label, and its own line crosses no lower label;
    failing that, the lowest row where it overlaps no label.
    """
    def fits(row: int) -> bool:
        return all(b < x0 - 6 or a > x1 + 6 for a, b in labels.get(row, ()))

    def clear(row: int) -> bool:
        return (fits(row) and not any(m["row"] > row and x0 - 4 <= m["x"] <= x1 + 4 for m in markers)
                and not any(a - 4 <= mx <= b + 4 for r in range(row) for a, b in labels.get(r, ())))

    row = next((r for r in range(10) if clear(r)), None)
    return row if row is not None else next(r for r in range(len(labels) + 1) if fits(r))


def treaty_chart(series: list[tuple[date, int, int]], events: list[dict], as_at: date,
                 width: int = 980, height: int = 300, compact: bool = False) -> dict:
    """The geometry of the step chart, for explore_chart macros.

    :param series: (date, signatories, parties) on each date a count may change, in date order.
    :param events: dicts with ``date`` (a date), ``label``, ``kind`` ('event' or 'withdrawal'), ``title``.
    :returns: paths, axes, markers with label rows, end labels, the SVG's size.
    """
    first = min([d for d, _, _ in series] + [e["date"] for e in events] + [as_at])
    start = date(first.year, 1, 1)
    end = as_at
    font = 12
    left, right = (8, 8) if compact else (48, 150)
    top_rows: list = []
    markers: list[dict] = []
    plot_w = width - left - right

    def x(day: date) -> float:
        span = max(1, _ordinal(end) - _ordinal(start))
        return round(left + (_ordinal(day) - _ordinal(start)) / span * plot_w, 1)

    if not compact:
        # Labels sit in rows above the plot (row 0 nearest it), placed right to left (_label_row).
        labels: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for event in sorted(events, key=lambda e: e["date"], reverse=True):
            if not start <= event["date"] <= end:
                continue
            mx = x(event["date"])
            w = _text_width(event["label"], font) + 4
            anchor = "start" if mx + 4 + w <= width - 4 else "end"
            x0, x1 = (mx, mx + 4 + w) if anchor == "start" else (mx - 4 - w, mx)
            row = _label_row(labels, markers, x0, x1, mx)
            labels[row].append((x0, x1))
            markers.append({**event, "x": mx, "row": row, "anchor": anchor,
                            "tx": mx + 4 if anchor == "start" else mx - 4})
        markers.sort(key=lambda m: m["date"])
        top_rows = [labels.get(r, []) for r in range(max(labels) + 1)] if labels else []
    band = 0 if compact else 14 + len(top_rows) * 16
    plot_top = band + 6
    plot_bottom = plot_top + height
    total_h = plot_bottom + (4 if compact else 34)

    last_sig = series[-1][1] if series else 0
    last_par = series[-1][2] if series else 0
    peak = max([1] + [max(s, p) for _, s, p in series])
    step = _nice_step(peak)
    y_max = math.ceil(peak / step) * step

    def y(value: int) -> float:
        return round(plot_bottom - value / y_max * height, 1)

    def step_path(counts: list[tuple[date, int]]) -> str:
        parts = [f"M{x(start)},{y(0)}"]
        for day, count in counts:
            if day > end:
                break
            parts.append(f"H{x(day)}V{y(count)}")
        parts.append(f"H{x(end)}")
        return "".join(parts)

    years = range(start.year, end.year + 1)
    span_years = end.year - start.year + 1
    every = 1 if span_years <= 12 else 2 if span_years <= 24 else 5
    ticks = [{"x": x(date(yr, 1, 1)), "label": str(yr) if yr % every == 0 else ""} for yr in years]
    grid = [{"y": y(v), "label": str(v)} for v in range(0, y_max + 1, step)]
    for marker in markers:
        marker["ty"] = plot_top - 8 - marker["row"] * 16
    end_labels: list[dict[str, Any]] = [
        {"y": y(last_par), "text": f"{last_par} parties", "kind": "parties"},
        {"y": y(last_sig), "text": f"{last_sig} have signed", "kind": "signatories"}]
    if abs(end_labels[0]["y"] - end_labels[1]["y"]) < 15:
        upper, lower = sorted(end_labels, key=lambda item: item["y"])
        middle = (upper["y"] + lower["y"]) / 2
        upper["y"], lower["y"] = middle - 8, middle + 8
    return {"width": width, "height": total_h, "left": left, "right": width - right, "top": plot_top,
            "bottom": plot_bottom, "signatories_path": step_path([(d, s) for d, s, _ in series]),
            "parties_path": step_path([(d, p) for d, _, p in series]),
            "ticks": ticks, "grid": grid, "markers": markers, "end_x": x(end), "end_labels": end_labels,
            "last_signatories": last_sig, "last_parties": last_par, "start": start, "end": end,
            "compact": compact, "x": x}


def _series(answer: Sparql) -> list[tuple[date, int, int]]:
    return [(date.fromisoformat(r["date"]), int(r["signatories"]), int(r["parties"])) for r in answer.rows]


def _chart_events(answer: Sparql, as_at: date) -> tuple[list[dict], list[dict]]:
    """The chart's markers (same-day withdrawals merged) and the withdrawals still pending at the as-at date."""
    markers, withdrawals, notified = [], defaultdict(list), {}
    for row in answer.rows:
        kind, day = row["kind"], date.fromisoformat(row["date"])
        if kind in EVENT_NAMES:
            markers.append({"date": day, "kind": "event", "label": EVENT_NAMES[kind],
                            "title": f"{day.isoformat()}: {EVENT_NAMES[kind]}"})
        elif kind == str(CMC.WithdrawalEffective):
            withdrawals[day].append(row["stateName"])
        elif kind == str(CMC.WithdrawalNotification):
            notified[row["state"]] = (day, row["stateName"])
    effective = {}
    for row in answer.rows:
        if row["kind"] in WITHDRAWAL_DATES:
            effective[row["state"]] = date.fromisoformat(row["date"])
    for day, names in sorted(withdrawals.items()):
        if day <= as_at:
            names = sorted(names)
            text = (", ".join(names[:-1]) + " and " + names[-1]) if len(names) > 1 else names[0]
            label = f"{text} withdraw{'s' if len(names) == 1 else ''} ({day.isoformat()})"
            markers.append({"date": day, "kind": "withdrawal", "label": label,
                            "title": f"{day.isoformat()}: withdrawal of {text} takes effect"})
    pending = [{"name": name, "notified": day, "effective": effective.get(state)}
               for state, (day, name) in notified.items()
               if day <= as_at and (effective.get(state) is None or effective[state] > as_at)]
    return markers, sorted(pending, key=lambda p: (p["notified"], p["name"]))


def status_counts(rows: list[dict]) -> dict[str, int]:
    """States per status, with "parties" (party or in force) as example 12 and every page count them."""
    counts = {status: sum(1 for r in rows if r["status"] == status) for status in STATUSES}
    return {**counts, "parties": counts["party"] + counts["in force"]}


def _status_rows(answer: Sparql, on: date) -> list[dict]:
    rows = []
    for row in answer.rows:
        cells = {}
        for key in ("signed", "consented", "inForce", "withdrawalNotified", "withdrawn"):
            value = row.get(key)
            cells[key] = {"value": value or "", "later": (value or "") > on.isoformat()}
        rows.append({"state": row["state"], "name": row["name"], "path": entity_path(row["state"]),
                     "status": row["status"], "rank": STATUSES.index(row["status"]), **cells})
    return rows


def regions_table(status_rows: list[dict], region_rows: list[dict[str, str]]) -> list[dict]:
    """Per UN M49 region, how many states have each status on the page's date (states without a region last)."""
    region_of = {r["state"]: r["regionName"] for r in region_rows}
    table: dict[str, dict[str, int]] = {}
    for row in status_rows:
        counts = table.setdefault(region_of.get(row["state"], "no M49 region"), dict.fromkeys(STATUSES, 0))
        counts[row["status"]] += 1
    return [{"region": name, "counts": counts, "parties": counts["party"] + counts["in force"]}
            for name, counts in sorted(table.items(), key=lambda item: (item[0] == "no M49 region", item[0]))]


@bp.get("/explore")
def index():
    known, treaties_sparql = treaties()
    cards = []
    for treaty in known.values():
        series = _series(series_query(treaty))
        cards.append({"treaty": treaty, "chart": treaty_chart(series, [], treaty.as_at, width=300, height=70,
                                                              compact=True),
                      "counts": status_counts(_status_rows(status_query(treaty, treaty.as_at), treaty.as_at))})
    return render_template("explore_index.html", title="Explore", cards=cards, treaties=known,
                           as_at=max((t.as_at for t in known.values()), default=None))


@bp.get("/explore/treaty/<slug>")
def treaty_page(slug: str):
    treaty, known = _treaty_or_404(slug)
    on, problem = _date_arg("date", treaty.as_at)
    caveat = _after_the_data(on, treaty.as_at)
    series_sparql, events_sparql = series_query(treaty), events_query(treaty)
    markers, pending = _chart_events(events_sparql, treaty.as_at)
    chart = treaty_chart(_series(series_sparql), markers, treaty.as_at)
    status_sparql = status_query(treaty, on)
    rows = _status_rows(status_sparql, on)
    counts = status_counts(rows)
    has_entry_into_force = any(r["inForce"]["value"] for r in rows)
    regions_sparql = run("regions-of-states")
    by_region = regions_table(rows, regions_sparql.rows)
    others = [t for t in known.values() if t.slug != slug]
    return render_template("explore_treaty.html", title=treaty.name, treaty=treaty, treaties=known, on=on,
                           problem=problem, chart=chart, pending=pending, series=_series(series_sparql),
                           rows=rows, counts=counts, statuses=STATUSES, others=others, caveat=caveat,
                           has_entry_into_force=has_entry_into_force, chart_sparql=series_sparql,
                           **release_changes(State.current().paths.dump_file, treaty.iri),
                           events_sparql=events_sparql, status_sparql=status_sparql, by_region=by_region,
                           regions_sparql=regions_sparql)


@bp.get("/explore/compare")
def compare():
    known, _ = treaties()
    slugs = list(known)
    a = request.args.get("a", "ccm" if "ccm" in known else slugs[0])
    b = request.args.get("b", "mbt" if "mbt" in known else slugs[-1])
    if a not in known or b not in known:
        abort(404)
    first, second = known[a], known[b]
    on, problem = _date_arg("date", min(first.as_at, second.as_at))
    caveat = _after_the_data(on, min(first.as_at, second.as_at))
    if a == b:
        problem = (problem + " " if problem else "") + "Pick two different treaties."
    answer = run("parties-of-one-not-the-other", [(("partyTo", "notPartyTo", "onDate"), [
        (curie(first.iri), curie(second.iri), date_literal(on)),
        (curie(second.iri), curie(first.iri), date_literal(on))])])
    sides = []
    for one, other in ((first, second), (second, first)):
        states = [{"name": r["name"], "path": entity_path(r["state"])} for r in answer.rows
                  if r["partyTo"] == one.iri and r["notPartyTo"] == other.iri]
        parties = sum(1 for r in _status_rows(status_query(one, on), on) if r["status"] in ("party", "in force"))
        sides.append({"one": one, "other": other, "states": states, "parties": parties})
    both = sides[0]["parties"] - len(sides[0]["states"]) if a != b else sides[0]["parties"]
    return render_template("explore_compare.html", title="Compare treaties", treaties=known, a=first, b=second,
                           on=on, problem=problem, caveat=caveat, sides=sides, both=both, sparql=answer)


# --------------------------------------------------------------------------------------------------
# The coalition network
# --------------------------------------------------------------------------------------------------
# network_layout draws the network query's rows in four steps, each a function below: collect the nodes and
# edges (_network), put each node in a column (_assign_columns, _hub_order), size and place the boxes
# (_size_boxes, _place_columns, _stack_members, _place_by_neighbours), and route the edges (_route_edges).

# Node kinds, in the order the legend lists them: (key, legend label).
NODE_KINDS = (("coalition", "international coalition or campaign"), ("organization", "organization"),
              ("national-campaign", "national campaign"), ("person", "person"),
              ("governance", "governance body"), ("research", "research and monitoring programme"),
              ("country", "country"))

# A node's kind: the first whose classes it has among its types and org:classification values; else "organization".
KIND_CLASSES = (("country", {CMC.Country}), ("person", {FOAF.Person, CMC.Survivor}),
                ("governance", {CMC.GovernanceBody}), ("national-campaign", {CMC.NationalCampaign}),
                ("research", {CMC.ResearchAndMonitoringProgramme}), ("coalition", {CMC.Coalition, CMC.Campaign}))

# Edge styles by relation (a member's role, or the property or class that relates two nodes):
# (key, legend label, rank used to order members).
RELATIONS = {str(relation): style for relation, style in (
    (CMC.SteeringCommitteeMemberRole, ("steering", "steering committee member", 0)),
    (CMC.FoundingMemberRole, ("founding", "founding member", 0)),
    (CMC.FoundingOrganizationRole, ("founding-org", "founding organization", 1)),
    (CMC.CoordinatorRole, ("coordinator", "coordinator", 1)),
    (CMC.MemberRole, ("member", "member", 2)),
    (CMC.AmbassadorRole, ("ambassador", "ambassador", 2)),
    (CMC.ParticipantRole, ("participant", "participant", 3)),
    (ORG.unitOf, ("unit", "governance body of", 4)),
    (ORG.subOrganizationOf, ("part", "part of", 4)),
    (CMC.Merger, ("merger", "merged into", 4)),
    (CMC.country, ("based", "based in", 5)),
)}


def _node_kind(classes: set[str]) -> str:
    return next((kind for kind, wanted in KIND_CLASSES if classes & {str(c) for c in wanted}), "organization")


def _wrap(text: str, limit: int) -> list[str]:
    """At most two lines of at most about ``limit`` characters, broken at spaces."""
    if len(text) <= limit:
        return [text]
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > limit and len(lines) == 0:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return lines


@dataclass
class Node:
    iri: str
    label: str
    kind: str
    layer: int = 1        # the column, 0 (countries) on the left
    lines: list[str] = field(default_factory=list)
    x: float = 0
    y: float = 0          # centre
    w: float = 0
    h: float = 0
    order: tuple = ()

    @property
    def path(self) -> str | None:
        return entity_path(self.iri)


@dataclass
class Edge:
    """A relation from one node to another, as the legend and the ordering of members know it."""

    source: str
    target: str
    style: str
    label: str
    rank: int
    d: str = ""           # the SVG path, once routed
    title: str = ""


class _End(NamedTuple):
    """One end of an edge on one side of a box: the edge's index, which end (0 source, 1 target), the node it
    touches, the side of the box, and the node at the other end."""

    edge: int
    which: int
    node: Node
    side: str
    other: Node


NODE_FONT = 13
LINE_HEIGHT = 16
TOP = 44.0   # room for the column headings
WRAP = {0: 22, 1: 30}    # characters per line of a box, by column (24 in the others)
GAPS = {0: 50, 1: 120, 2: 80, 3: 60}   # space after a column (60 after the others)
PLURALS = {"coalition": "coalitions", "organization": "organizations", "national-campaign": "national campaigns",
           "person": "people", "governance": "bodies", "research": "research", "country": "countries"}


def network_layout(rows: list[dict[str, str]]) -> dict:
    """Nodes in columns by kind and role, edges as curves, computed from the network query's rows.

    Columns, left to right: countries; members (organizations, national campaigns, people); the campaigns
    that merged; what they merged into and the bodies of the merged ones; the bodies and parts of the
    result. Each column is a stack of boxes wide enough for its labels, so no two labels overlap; a node's
    height in its column follows the mean height of its neighbours in the column before.
    """
    nodes, edges = _network(rows)
    hubs = _assign_columns(nodes, edges)
    layers = _size_boxes(nodes)
    width = _place_columns(layers)
    column_bottom = _stack_members(layers.get(1, []), edges, _hub_order(nodes, edges, hubs))
    _place_by_neighbours(layers, nodes, edges, column_bottom)
    height = max([column_bottom] + [n.y + n.h / 2 + 20 for n in nodes.values()])
    legend_nodes, legend_edges = _legend(nodes, edges)
    return {"nodes": sorted(nodes.values(), key=lambda n: (n.layer, n.y)), "edges": _route_edges(nodes, edges),
            "width": round(width), "height": round(height), "legend_nodes": legend_nodes,
            "legend_edges": legend_edges, "line_height": LINE_HEIGHT, "font": NODE_FONT,
            "headings": _headings(layers)}


def _network(rows: list[dict[str, str]]) -> tuple[dict[str, Node], list[Edge]]:
    """The nodes (each with its kind) and edges (each with its style) of the network query's rows."""
    nodes: dict[str, Node] = {}
    edges = []
    for row in rows:
        for end in ("from", "to"):
            iri = row[end]
            if iri not in nodes:
                nodes[iri] = Node(iri, row[f"{end}Label"], _node_kind(set(row.get(f"{end}Kinds", "").split())))
        relation = row["relation"]
        style, label, rank = RELATIONS.get(relation, ("member", row.get("relationLabel") or curie(relation), 3))
        edges.append(Edge(row["from"], row["to"], style, label, rank))
    return nodes, edges


def _assign_columns(nodes: dict[str, Node], edges: list[Edge]) -> set[str]:
    """Put each node in its column; return the hubs (the nodes others are members, bodies or parts of)."""
    merged_into = {e.source: e.target for e in edges if e.style == "merger"}
    results = set(merged_into.values())
    hubs = {e.target for e in edges if e.style != "based"}
    for node in nodes.values():
        node.layer = (0 if node.kind == "country" else 2 if node.iri in merged_into else
                      3 if node.iri in results else 2 if node.iri in hubs else 1)
    for e in edges:   # a body or part sits in the column after its organization
        if e.style in ("unit", "part"):
            nodes[e.source].layer = nodes[e.target].layer + 1
    return hubs


def _hub_order(nodes: dict[str, Node], edges: list[Edge], hubs: set[str]) -> dict[str, int]:
    """The hubs' places in order of the number of their members, the one that results from the merger last."""
    member_count: dict[str, int] = defaultdict(int)
    for e in edges:
        if nodes[e.source].layer == 1:
            member_count[e.target] += 1
    ordered = sorted((iri for iri in hubs if nodes[iri].layer >= 2),
                     key=lambda iri: (nodes[iri].layer, -member_count[iri], nodes[iri].label))
    return {iri: i for i, iri in enumerate(ordered)}


def _size_boxes(nodes: dict[str, Node]) -> dict[int, list[Node]]:
    """Wrap each label and size its box; every box of a column as wide as the widest. Returns the columns."""
    layers: dict[int, list[Node]] = defaultdict(list)
    for node in nodes.values():
        node.lines = _wrap(node.label, WRAP.get(node.layer, 24))
        node.w = max(_text_width(line, NODE_FONT, node.kind == "coalition") for line in node.lines) + 20
        node.h = len(node.lines) * LINE_HEIGHT + 10
        layers[node.layer].append(node)
    for layer_nodes in layers.values():
        width = max(n.w for n in layer_nodes)
        for n in layer_nodes:
            n.w = width
    return layers


def _place_columns(layers: dict[int, list[Node]]) -> float:
    """Set each column's x, left to right; return the picture's width."""
    x = 10.0
    for layer in sorted(layers):
        for n in layers[layer]:
            n.x = x
        x += layers[layer][0].w + GAPS.get(layer, 60)
    return x - GAPS.get(max(layers), 60) + 10


def _stack_members(members: list[Node], edges: list[Edge], hub_index: dict[str, int]) -> float:
    """Stack the members' column top down: grouped by the hubs they belong to, then by their strongest role,
    then by name. Returns the column's bottom."""
    for n in members:
        own = [e for e in edges if e.source == n.iri and e.target in hub_index]
        n.order = (tuple(sorted({hub_index[e.target] for e in own})) or (99,),
                   min((e.rank for e in own), default=9), n.label.lower())
    y = TOP
    for n in sorted(members, key=lambda n: n.order):
        n.y = y + n.h / 2
        y += n.h + 10
    return y


def _place_by_neighbours(layers: dict[int, list[Node]], nodes: dict[str, Node], edges: list[Edge],
                         column_bottom: float) -> None:
    """Place the other columns, each node near the mean height of its neighbours already placed: the columns
    right of the members in turn, then the countries."""
    neighbours: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        neighbours[e.source].add(e.target)
        neighbours[e.target].add(e.source)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else column_bottom / 2

    def stack(layer_nodes: list[Node], desired: dict[str, float]) -> None:
        """Stack the nodes near their desired centres, in that order, without overlaps."""
        cursor = TOP
        for n in sorted(layer_nodes, key=lambda n: (desired[n.iri], n.label)):
            n.y = max(desired[n.iri], cursor + n.h / 2)
            cursor = n.y + n.h / 2 + 18

    placed = {n.iri for n in layers.get(1, [])}
    for layer in sorted(k for k in layers if k >= 2):
        stack(layers[layer], {n.iri: mean([nodes[m].y for m in neighbours[n.iri]
                                           if m in placed and nodes[m].layer < layer]) for n in layers[layer]})
        placed |= {n.iri for n in layers[layer]}
    if 0 in layers:
        stack(layers[0], {n.iri: mean([nodes[m].y for m in neighbours[n.iri]]) for n in layers[0]})


def _route_edges(nodes: dict[str, Node], edges: list[Edge]) -> list[Edge]:
    """Each edge's curve, the weakest roles first so the strongest are drawn on top.

    From the right side of the left node to the left side of the right one; an edge within a column bends out
    to the right. Where several edges meet a side of a box, their ends are spread along it in the order of the
    nodes at their other ends, so they fan out instead of crossing.
    """
    groups: dict[tuple[str, str], list[_End]] = defaultdict(list)
    for i, e in enumerate(edges):
        a, b = nodes[e.source], nodes[e.target]
        if a.layer == b.layer:
            ends = [_End(i, 0, a, "right", b), _End(i, 1, b, "right", a)]
        else:
            left, right = (a, b) if a.x < b.x else (b, a)
            ends = [_End(i, 0, left, "right", right), _End(i, 1, right, "left", left)]
        for end in ends:
            groups[(end.node.iri, end.side)].append(end)
    at: dict[tuple[int, int], tuple[float, float]] = {}
    for (_, side), group in groups.items():
        group.sort(key=lambda end: (end.other.y, edges[end.edge].rank, end.edge))
        node = group[0].node
        usable = max(0.0, min(node.h - 10, 6.0 * (len(group) - 1)))
        for k, end in enumerate(group):
            y = node.y - usable / 2 + (usable * k / (len(group) - 1) if len(group) > 1 else usable / 2)
            at[(end.edge, end.which)] = (node.x + (node.w if side == "right" else 0), y)
    drawn = []
    for i, e in sorted(enumerate(edges), key=lambda item: -item[1].rank):
        a, b = nodes[e.source], nodes[e.target]
        (x1, y1), (x2, y2) = at[(i, 0)], at[(i, 1)]
        if a.layer == b.layer:
            bend = 45 + abs(y1 - y2) * 0.1
            d = f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 + bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        else:
            dx = (x2 - x1) / 2
            d = f"M{x1:.1f},{y1:.1f} C{x1 + dx:.1f},{y1:.1f} {x2 - dx:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        drawn.append(replace(e, d=d, title=f"{a.label} — {e.label} — {b.label}"))
    return drawn


def _headings(layers: dict[int, list[Node]]) -> list[dict]:
    """Each column's heading, on two lines when one does not fit over the column and its gap."""
    headings = []
    for layer in sorted(layers):
        kinds = {n.kind for n in layers[layer]}
        words = ["members"] if layer == 1 else [PLURALS[k] for k, _ in NODE_KINDS if k in kinds]
        text = ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]
        room = layers[layer][0].w + GAPS.get(layer, 60) - 12
        lines = [text] if _text_width(text.upper(), 12, True) <= room else words
        headings.append({"x": layers[layer][0].x, "lines": lines})
    return headings


def _legend(nodes: dict[str, Node], edges: list[Edge]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The node kinds and edge styles the picture uses, in the legend's order."""
    used_kinds = {n.kind for n in nodes.values()}
    used_styles = {e.style for e in edges}
    legend_edges: list[tuple[str, str]] = []
    for style, label, _ in sorted(set(RELATIONS.values()), key=lambda item: (item[2], item[1])):
        if style in used_styles and style not in [s for s, _ in legend_edges]:
            legend_edges.append((style, label))
    return [(key, label) for key, label in NODE_KINDS if key in used_kinds], legend_edges


@bp.get("/explore/network")
def network():
    answer = run("coalition-network")
    layout = network_layout(answer.rows)
    counts = defaultdict(int)
    for node in layout["nodes"]:
        counts[node.kind] += 1
    return render_template("explore_network.html", title="The coalition network", layout=layout,
                           counts=counts, sparql=answer, treaties=treaties()[0])


# --------------------------------------------------------------------------------------------------
# Member organizations by country
# --------------------------------------------------------------------------------------------------

def members_by_country(rows: list[dict[str, str]]) -> dict:
    """The members query's rows grouped by country (most members first), organizations without one last."""
    countries: dict[str, dict] = {}
    for row in rows:
        key = row.get("country", "")
        group = countries.setdefault(key, {"name": row.get("countryName", ""), "region": row.get("regionName", ""),
                                           "path": entity_path(key) if key else None, "orgs": []})
        group["orgs"].append({"name": row["orgLabel"], "path": entity_path(row["org"]),
                              "kinds": row.get("kinds", ""), "member_of": row.get("memberOf", "")})
    without = countries.pop("", None)
    ordered = sorted(countries.values(), key=lambda g: (-len(g["orgs"]), g["name"]))
    regions: dict[str, int] = defaultdict(int)
    for group in ordered:
        regions[group["region"] or "no M49 region"] += len(group["orgs"])
    return {"countries": ordered, "without": without["orgs"] if without else [],
            "organizations": len({r["org"] for r in rows}), "regions": sorted(regions.items(), key=lambda r: -r[1]),
            "widest": max((len(g["orgs"]) for g in ordered), default=1)}


@bp.get("/explore/members")
def members():
    answer = run("members-by-country")
    return render_template("explore_members.html", title="Member organizations by country",
                           groups=members_by_country(answer.rows), sparql=answer, treaties=treaties()[0])


# --------------------------------------------------------------------------------------------------
# The Monitor's cluster-munition records over time
# --------------------------------------------------------------------------------------------------

def status_key(iri: str) -> str:
    """A status kind as the page's ``?status=`` names it: its name in the cmc namespace (``Contaminated``)."""
    return iri.removeprefix(str(CMC._NS))


def status_grid(rows: list[dict[str, str]], status: str = "") -> dict:
    """States (rows) by reports (columns, dated ones by date, undated pages last): the statuses each report gives,
    and per column the statuses whose whole list the graph holds from the report and those it holds only part of.

    :param status: the local name of one status kind to keep (``Contaminated``), or "" for all.
    """
    kinds = sorted({(status_key(r["status"]), r["statusLabel"]) for r in rows}, key=lambda k: k[1])
    kept = [r for r in rows if not status or status_key(r["status"]) == status]
    reports = sorted({(r.get("asOf", ""), r["source"]) for r in kept}, key=lambda k: (not k[0], k[0], k[1]))
    states: dict[str, dict] = {}
    for r in kept:
        state = states.setdefault(r["state"], {"name": r["stateName"], "path": entity_path(r["state"]),
                                               "region": r.get("regionName", ""), "cells": defaultdict(list)})
        cell = state["cells"][r["source"]]
        if r["statusLabel"] not in [c["label"] for c in cell]:
            cell.append({"label": r["statusLabel"], "quote": r["quote"]})
    lists: dict[str, dict[bool, set[str]]] = defaultdict(lambda: {True: set(), False: set()})
    for r in kept:
        lists[r["source"]][r.get("wholeList") == "true"].add(r["statusLabel"])
    columns = [{"source": s, "asOf": d, "whole": sorted(lists[s][True]), "partial": sorted(lists[s][False])}
               for d, s in reports]
    return {"kinds": kinds, "status": status, "columns": columns,
            "states": sorted(states.values(), key=lambda s: s["name"]),
            "per_column": {s: sum(1 for st in states.values() if st["cells"].get(s)) for _, s in reports}}


@bp.get("/explore/monitor")
def monitor():
    answer = run("cluster-munition-status-by-report")
    known_kinds = {status_key(r["status"]) for r in answer.rows}
    status = request.args.get("status", "")
    problem = None
    if status and status not in known_kinds:
        problem, status = f"“{status}” is not a status of any record; showing all.", ""
    return render_template("explore_monitor.html", title="Cluster-munition status over time",
                           grid=status_grid(answer.rows, status), problem=problem, sparql=answer,
                           treaties=treaties()[0])
