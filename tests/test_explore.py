"""The explore pages (treaty status over time, status on a date, comparison, coalition network), in headless
Chromium (Debian's /usr/bin/chromium) through Playwright, against a live `cmc-kg serve`.

Numbers are checked against the reference tables (reference/*_participants_untc.csv, computed here as
tests/test_queries.py does) and against the example queries; every page must load with no console error, no
uncaught exception and no request to any host but the local server. Each test leaves a screenshot in
tests/artifacts/explore-<name>.png for a reviewer.
"""

from __future__ import annotations

import csv
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import pytest
from conftest import watched_page

from cmc_kg.namespaces import ID
from cmc_kg.query import example_queries, select, set_values
from cmc_kg.settings import REPO_ROOT, Paths

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
SETTINGS = Paths()
AS_AT = "2026-02-03"
EXAMPLES = {q.path.stem: q for q in example_queries(SETTINGS)}


def _table(name: str) -> list[dict[str, str]]:
    with open(SETTINGS.reference_dir / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


REFERENCE = {"ccm": _table("ccm_participants_untc.csv"), "mbt": _table("mbt_participants_untc.csv"),
             "ccw": _table("ccw_participants_untc.csv")}


def _on(value: str | None, day: str) -> bool:
    return bool(value) and value <= day


def _parties(table, day: str) -> set[str]:
    return {r["iso3"] for r in table if _on(r["consent_date"], day)
            and not _on(r.get("withdrawal_effective_date"), day)}


def _signatories(table, day: str) -> set[str]:
    return {r["iso3"] for r in table if _on(r["signature_date"], day)}


def _status(row: dict[str, str], day: str) -> str:
    if _on(row.get("withdrawal_effective_date"), day):
        return "withdrawn"
    if _on(row.get("eif_for_state_derived_art17"), day):
        return "in force"
    if _on(row["consent_date"], day):
        return "party"
    if _on(row["signature_date"], day):
        return "signed"
    return "none"


def _path(iri: str) -> str:
    """The entity page of an IRI the graph mints (ID + rest is served at /id/rest)."""
    assert iri.startswith(str(ID))
    return "/id/" + iri[len(str(ID)):]


def _iso(href: str) -> str:
    return href.rsplit("/", 1)[1]


# --------------------------------------------------------------------------------------------------
# The browser
# --------------------------------------------------------------------------------------------------

@dataclass
class Session:
    """A browser page with everything it requested and every error it reported."""

    page: object
    base: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")
        assert response.status == 200, (path, response.status)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"explore-{name}.png"), full_page=True)

    def rows(self, selector: str = "#status-table tbody tr") -> list[dict[str, str]]:
        """The status table as the page shows it: iso3 (from the entity link), status, and each date cell."""
        return self.page.eval_on_selector_all(selector, """rows => rows.map(r => ({
            href: r.cells[0].querySelector('a').getAttribute('href'), name: r.cells[0].textContent.trim(),
            status: r.cells[1].textContent.trim(), signed: r.cells[2].textContent.trim(),
            consented: r.cells[3].textContent.trim(), inForce: r.cells[4].textContent.trim(),
            withdrawn: r.cells[5].childNodes[0] ? (r.cells[5].childNodes[0].nodeValue || '').trim() : ''}))""")


@pytest.fixture
def session(browser, server):
    context, page, requests, errors = watched_page(browser)
    s = Session(page, server.url, requests, errors)
    yield s
    context.close()
    assert not s.errors, s.errors
    foreign = [url for url in s.requests if not url.startswith(server.url + "/") and not url.startswith("data:")]
    assert not foreign, f"requests to other hosts: {foreign}"


def _sparql(server, text: str) -> list[dict]:
    request = urllib.request.Request(f"{server.url}/sparql", data=urllib.parse.urlencode({"query": text}).encode(),
                                     headers={"Accept": "application/sparql-results+json",
                                              "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["results"]["bindings"]


def _check_sparql_blocks(session: Session, server) -> int:
    """Every picture's query: shown, linked to the query page with the same text, and answering as many rows
    as the page says when sent to /sparql."""
    blocks = session.page.eval_on_selector_all("details.sparql", """ds => ds.map(d => ({
        text: d.querySelector('pre').textContent, href: d.querySelector('a.open-query').getAttribute('href'),
        summary: d.querySelector('summary').textContent}))""")
    assert blocks
    for block in blocks:
        assert block["href"].startswith("/query?")
        assert urllib.parse.parse_qs(urllib.parse.urlparse(block["href"]).query)["query"] == [block["text"]]
        shown = int(re.search(r"\((\d+) rows", block["summary"]).group(1))
        assert len(_sparql(server, block["text"])) == shown, block["summary"]
    with urllib.request.urlopen(server.url + blocks[0]["href"], timeout=30) as response:
        assert response.status == 200
    return len(blocks)


# --------------------------------------------------------------------------------------------------
# The queries
# --------------------------------------------------------------------------------------------------

def test_explore_queries_are_runnable_files_with_titles():
    folder = SETTINGS.queries_dir / "explore"
    names = {p.stem for p in folder.glob("*.rq")}
    assert {"treaties", "signatories-and-parties-over-time", "treaty-events", "status-on-a-date",
            "parties-of-one-not-the-other", "coalition-network"} <= names
    for path in folder.glob("*.rq"):
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# title: ") and "\n# description: " in text, path
        assert "w3id.org" not in text, f"{path}: use the project's prefixes"


def test_set_values_rewrites_only_the_named_block():
    text = (SETTINGS.queries_dir / "explore" / "status-on-a-date.rq").read_text(encoding="utf-8")
    changed = set_values(text, ("treaty", "onDate"), [("treaty:mbt", '"2000-01-01"^^xsd:date')])
    assert 'VALUES (?treaty ?onDate) { (treaty:mbt "2000-01-01"^^xsd:date) }' in changed
    assert changed.replace("treaty:mbt", "treaty:ccm").replace("2000-01-01", AS_AT) == text
    two = set_values((SETTINGS.queries_dir / "explore" / "parties-of-one-not-the-other.rq").read_text(),
                     ("partyTo", "notPartyTo", "onDate"),
                     [("treaty:a", "treaty:b", "1"), ("treaty:b", "treaty:a", "1")])
    assert "(treaty:a treaty:b 1)\n" in two and "(treaty:b treaty:a 1)\n" in two
    with pytest.raises(ValueError):
        set_values(text, ("nothing",), [("1",)])


def test_network_layout_puts_each_kind_in_its_column_without_overlaps():
    """The layout reads kinds and relations as IRIs of the ontology and ORG/FOAF (not by their local names):
    countries left, members next, the campaigns that merged, then what they merged into, and a body one column
    right of its organization; no two boxes of a column overlap."""
    from cmc_kg.namespaces import CMC, FOAF, ORG
    from cmc_kg.server.explore import network_layout

    cmc, icbl, result, body = (str(ID[f"org/{s}"]) for s in ("cmc", "icbl", "icbl-cmc", "cmc-board"))
    ngo, person, country = str(ID["org/an-ngo"]), str(ID["person/someone"]), str(ID["country/NOR"])

    def row(source, label, relation, target, kinds="", target_kinds=f"{CMC.Coalition}"):
        return {"from": source, "fromLabel": label, "relation": str(relation), "to": target,
                "toLabel": {cmc: "CMC", icbl: "ICBL", result: "ICBL-CMC", country: "Norway"}[target],
                "fromKinds": kinds, "toKinds": target_kinds}

    rows = [row(ngo, "An NGO with a name long enough to wrap", CMC.MemberRole, cmc, f"{CMC.NGO} {ORG.Organization}"),
            row(ngo, "An NGO with a name long enough to wrap", CMC.SteeringCommitteeMemberRole, icbl, f"{CMC.NGO}"),
            row(person, "Someone", CMC.AmbassadorRole, cmc, f"{FOAF.Person}"),
            row(ngo, "An NGO with a name long enough to wrap", CMC.country, country, "", f"{CMC.Country}"),
            row(body, "The board", ORG.unitOf, cmc, f"{CMC.GovernanceBody}"),
            row(cmc, "CMC", CMC.Merger, result, f"{CMC.Coalition}"),
            row(icbl, "ICBL", CMC.Merger, result, f"{CMC.Campaign}"),
            {**row(person, "Someone", ID["role/unknown"], icbl, f"{FOAF.Person}"), "relationLabel": "friend of"}]
    layout = network_layout(rows)
    nodes = {n.iri: n for n in layout["nodes"]}
    assert {iri: (n.kind, n.layer) for iri, n in nodes.items()} == {
        country: ("country", 0), ngo: ("organization", 1), person: ("person", 1), cmc: ("coalition", 2),
        icbl: ("coalition", 2), result: ("coalition", 3), body: ("governance", 3)}
    assert nodes[ngo].lines == ["An NGO with a name long enough", "to wrap"]  # 30 characters a line
    assert sorted((e.style, e.label) for e in layout["edges"]) == sorted([
        ("member", "member"), ("steering", "steering committee member"), ("ambassador", "ambassador"),
        ("based", "based in"), ("unit", "governance body of"), ("merger", "merged into"), ("merger", "merged into"),
        ("member", "friend of")])
    assert all(e.d.startswith("M") for e in layout["edges"])
    for a in nodes.values():
        for b in nodes.values():
            if a is not b and a.layer == b.layer:
                assert a.y + a.h / 2 <= b.y - b.h / 2 or b.y + b.h / 2 <= a.y - a.h / 2, (a.label, b.label)
    assert 0 < max(n.x + n.w for n in nodes.values()) <= layout["width"]


# --------------------------------------------------------------------------------------------------
# The pages
# --------------------------------------------------------------------------------------------------

def test_index_links_every_picture(session, server, store):
    session.open("/explore")
    hrefs = session.page.eval_on_selector_all(".cards a", "as => as.map(a => a.getAttribute('href'))")
    assert {"/explore/treaty/ccm", "/explore/treaty/mbt", "/explore/treaty/ccw", "/explore/compare",
            "/explore/network", "/explore/members", "/explore/monitor"} <= set(hrefs)
    parties = {slug: int(session.page.get_attribute(f"#spark-{slug}", "data-last-parties"))
               for slug in ("ccm", "mbt", "ccw")}
    assert parties == {slug: len(_parties(REFERENCE[slug], AS_AT)) for slug in REFERENCE}
    assert parties == {"ccm": 112, "mbt": 162, "ccw": 128}
    # the card says what the treaty page and example 12 say, in the same words
    counts = {r["treaty"]: r for r in select(store, EXAMPLES["12-treaty-status-counts"].text).rows}
    for slug in ("ccm", "mbt", "ccw"):
        card = session.page.locator(f".card:has(#spark-{slug}) .numbers")
        example = counts[str(ID[f"treaty/{slug}"])]
        assert int(card.locator("[data-count='parties']").text_content()) == int(example["parties"])
        assert int(card.locator("[data-count='signed']").text_content()) == int(example["signatoriesNotParties"])
        assert "signatories not yet parties" in card.text_content()
    session.shot("index")


@pytest.mark.parametrize("slug", ["ccm", "mbt", "ccw"])
def test_treaty_chart_agrees_with_the_reference_table(session, server, slug):
    table = REFERENCE[slug]
    session.open(f"/explore/treaty/{slug}")
    chart = session.page.locator("svg#chart")
    assert chart.is_visible()
    assert chart.get_attribute("data-end") == AS_AT
    last_parties, last_signatories = int(chart.get_attribute("data-last-parties")), \
        int(chart.get_attribute("data-last-signatories"))
    assert last_parties == len(_parties(table, AS_AT))
    assert last_signatories == len(_signatories(table, AS_AT))
    assert session.page.locator("svg#chart .end-label.parties").text_content() == f"{last_parties} parties"
    # every step of both lines, as the table under the chart lists them
    steps = session.page.eval_on_selector_all(".numbers-table tbody tr",
                                              "rs => rs.map(r => [...r.cells].map(c => c.textContent.trim()))")
    assert steps and steps[-1][0] <= AS_AT
    for day, signatories, parties in steps:
        assert (int(signatories), int(parties)) == (len(_signatories(table, day)), len(_parties(table, day))), day
    changes = {r[k] for r in table for k in ("signature_date", "consent_date", "withdrawal_effective_date")
               if r.get(k) and r[k] <= AS_AT}
    assert {day for day, _, _ in steps} == changes
    # the treaty's own events, and each withdrawal that took effect
    markers = session.page.eval_on_selector_all("svg#chart .marker", """ms => ms.map(m => ({
        date: m.dataset.date, kind: m.getAttribute('class'), label: m.querySelector('text').textContent}))""")
    labels = " ".join(m["label"] for m in markers)
    for word in ("adopted", "opened for signature", "entry into force"):
        assert word in labels
    withdrawals = {r["withdrawal_effective_date"] for r in table
                   if r.get("withdrawal_effective_date") and r["withdrawal_effective_date"] <= AS_AT}
    assert {m["date"] for m in markers if "withdrawal" in m["kind"]} == withdrawals
    texts = session.page.eval_on_selector_all("svg#chart .marker text", "ts => ts.map(t => { const b = t.getBBox(); "
                                              "return [b.x, b.y, b.x + b.width, b.y + b.height]; })")
    for i, a in enumerate(texts):   # event labels never overlap one another
        for b in texts[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    assert _check_sparql_blocks(session, server) == 4   # lines, events, the status table, the regions
    session.shot(slug)


def test_mbt_shows_the_pending_withdrawal_of_poland(session):
    session.open("/explore/treaty/mbt")
    note = session.page.locator("p.note", has_text="pending").text_content()
    poland = next(r for r in REFERENCE["mbt"] if r["iso3"] == "POL")
    assert "Poland" in note and poland["withdrawal_effective_date"] in note
    assert poland["withdrawal_effective_date"] > AS_AT
    row = next(r for r in session.rows() if _iso(r["href"]) == "POL")
    # the depositary makes it conditional: not a withdrawal that took effect, so no date in the "withdrawn" column
    assert row["status"] == "in force" and row["withdrawn"] == ""


@pytest.mark.parametrize("slug,day", [("ccm", AS_AT), ("ccm", "2025-03-05"), ("ccm", "2025-03-06"),
                                      ("ccm", "2010-08-01"), ("ccm", "2008-12-03"), ("mbt", AS_AT),
                                      ("mbt", "2025-12-27"), ("mbt", "1999-03-01"), ("ccw", AS_AT),
                                      ("ccw", "1990-01-01")])
def test_status_table_agrees_with_the_reference_table(session, slug, day):
    table = REFERENCE[slug]
    session.open(f"/explore/treaty/{slug}?date={day}")
    rows = session.rows()
    assert {_iso(r["href"]): r["status"] for r in rows} == {r["iso3"]: _status(r, day) for r in table}
    by_iso = {_iso(r["href"]): r for r in rows}
    for ref in table:
        shown = by_iso[ref["iso3"]]
        assert (shown["signed"], shown["consented"]) == (ref["signature_date"], ref["consent_date"]), ref["iso3"]
        assert shown["inForce"] == ref.get("eif_for_state_derived_art17", "")
        # a withdrawal not in effect at the as-at date (Poland, conditional) is no withdrawal that took effect
        pending = ref.get("status_at_untc_date") == "state_party_withdrawal_pending"
        assert shown["withdrawn"] == ("" if pending else ref.get("withdrawal_effective_date", ""))
        assert shown["href"] == f"/id/country/{ref['iso3']}"
    parties = sum(1 for r in rows if r["status"] in ("party", "in force"))
    assert parties == len(_parties(table, day))
    assert int(session.page.locator("#summary [data-count='parties']").text_content()) == parties
    assert session.page.input_value("#date") == day


def test_status_table_agrees_with_the_example_queries(session, store):
    session.open("/explore/treaty/ccm")
    rows = session.rows()
    parties = {_iso(r["href"]) for r in rows if r["status"] in ("party", "in force")}
    assert len(parties) == 112
    assert parties == {_iso(r["state"]) for r in select(store, EXAMPLES["02-parties-on-a-date"].text).rows}
    counts = {r["treaty"]: r for r in select(store, EXAMPLES["12-treaty-status-counts"].text).rows}
    ccm = counts[str(ID["treaty/ccm"])]
    assert int(ccm["parties"]) == len(parties)
    assert int(ccm["signatoriesNotParties"]) == sum(1 for r in rows if r["status"] == "signed") == 12
    assert int(ccm["withdrawals"]) == sum(1 for r in rows if r["status"] == "withdrawn") == 1
    unratified = {_iso(r["state"]) for r in select(store, EXAMPLES["01-signed-not-ratified"].text).rows}
    assert unratified == {_iso(r["href"]) for r in rows if r["status"] == "signed"}


def test_lithuania_leaves_the_ccm_on_2025_03_06(session):
    for day, status in (("2025-03-05", "in force"), ("2025-03-06", "withdrawn")):
        session.open(f"/explore/treaty/ccm?date={day}")
        row = next(r for r in session.rows() if _iso(r["href"]) == "LTU")
        assert row["name"] == "Lithuania" and row["status"] == status, day


def test_date_picker_and_sorting(session):
    session.open("/explore/treaty/ccm")
    session.page.fill("#date", "2025-03-05")
    session.page.click(".date-picker button[type=submit]")
    session.page.wait_for_url(re.compile(r"date=2025-03-05"))
    assert next(r for r in session.rows() if _iso(r["href"]) == "LTU")["status"] == "in force"
    # sort by status: the ranks none < signed < party < in force < withdrawn, then back
    session.page.click("#status-table th:nth-child(2) button")
    order = ["none", "signed", "party", "in force", "withdrawn"]
    statuses = [r["status"] for r in session.rows()]
    assert statuses == sorted(statuses, key=order.index)
    assert session.page.get_attribute("#status-table th:nth-child(2)", "aria-sort") == "ascending"
    session.page.click("#status-table th:nth-child(2) button")
    statuses = [r["status"] for r in session.rows()]
    assert statuses == sorted(statuses, key=order.index, reverse=True)
    # sort by consent date: dates ascending, states that never consented last
    session.page.click("#status-table th:nth-child(4) button")
    consented = [r["consented"] for r in session.rows()]
    dated = [c for c in consented if c]
    assert dated == sorted(dated) and consented == dated + [""] * (len(consented) - len(dated))
    session.shot("ccm-sorted")


def test_a_date_after_the_data_says_where_the_data_stops(session):
    for path in ("/explore/treaty/ccm?date=2030-01-01", "/explore/compare?a=ccm&b=mbt&date=2030-01-01"):
        session.open(path)
        assert f"The data stops at {AS_AT}" in session.page.locator(".caveat").text_content()
    session.open(f"/explore/treaty/ccm?date={AS_AT}")
    assert session.page.locator(".caveat").count() == 0


def test_a_bad_date_is_explained_and_an_unknown_treaty_is_404(session, server):
    session.open("/explore/treaty/ccm?date=yesterday")
    assert "is not a date" in session.page.locator(".problem").text_content()
    assert session.page.input_value("#date") == AS_AT
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{server.url}/explore/treaty/nonsense", timeout=10)
    assert missing.value.code == 404


def test_compare_ccm_and_mbt(session, server, store):
    session.open("/explore/compare?a=ccm&b=mbt")
    only_ccm = session.page.eval_on_selector_all("#only-ccm ol.states a", "as => as.map(a => a.getAttribute('href'))")
    only_mbt = session.page.eval_on_selector_all("#only-mbt ol.states a", "as => as.map(a => a.getAttribute('href'))")
    assert {_iso(h) for h in only_ccm} == {"CUB", "LAO", "LBN"}
    assert {_iso(h) for h in only_ccm} == _parties(REFERENCE["ccm"], AS_AT) - _parties(REFERENCE["mbt"], AS_AT)
    assert {_iso(h) for h in only_mbt} == _parties(REFERENCE["mbt"], AS_AT) - _parties(REFERENCE["ccm"], AS_AT)
    assert {_iso(r["state"]) for r in select(store, EXAMPLES["05-parties-to-one-treaty-not-another"].text).rows} \
        == {_iso(h) for h in only_ccm}
    assert all(h.startswith("/id/country/") for h in only_ccm + only_mbt)
    assert session.page.get_attribute("#only-ccm", "data-count") == "3"
    both = len(_parties(REFERENCE["ccm"], AS_AT) & _parties(REFERENCE["mbt"], AS_AT))
    assert int(session.page.locator("[data-count='both']").text_content()) == both
    assert _check_sparql_blocks(session, server) == 1
    session.shot("compare")


def test_compare_on_another_date_and_other_treaties(session):
    day = "2015-01-01"
    session.open(f"/explore/compare?a=mbt&b=ccw&date={day}")
    only_mbt = {_iso(h) for h in session.page.eval_on_selector_all(
        "#only-mbt ol.states a", "as => as.map(a => a.getAttribute('href'))")}
    only_ccw = {_iso(h) for h in session.page.eval_on_selector_all(
        "#only-ccw ol.states a", "as => as.map(a => a.getAttribute('href'))")}
    assert only_mbt == _parties(REFERENCE["mbt"], day) - _parties(REFERENCE["ccw"], day)
    assert only_ccw == _parties(REFERENCE["ccw"], day) - _parties(REFERENCE["mbt"], day)


def test_network(session, server, store):
    session.open("/explore/network")
    nodes = session.page.eval_on_selector_all("svg#network a.node", """as => as.map(a => {
        const r = a.querySelector('rect').getBoundingClientRect(), t = a.querySelector('text').getBoundingClientRect();
        return {href: a.getAttribute('href'), kind: a.dataset.kind, label: a.dataset.label,
                rect: [r.left, r.top, r.right, r.bottom], text: [t.left, t.top, t.right, t.bottom],
                font: parseFloat(getComputedStyle(a.querySelector('text')).fontSize),
                scale: a.ownerSVGElement.getScreenCTM().a};
    })""")
    assert len(nodes) >= 30
    by_href = {n["href"]: n for n in nodes}
    assert all(n["href"].startswith("/id/") for n in nodes)
    assert len(by_href) == len(nodes), "one node per entity"
    # every steering committee member the example query names is a node linking to its entity page
    committee = select(store, EXAMPLES["03-cmc-steering-committee"].text).rows
    assert len({r["member"] for r in committee}) >= 10
    for row in committee:
        assert _path(row["member"]) in by_href, row["name"]
        assert by_href[_path(row["member"])]["label"] == row["name"]
        if row.get("country"):
            assert by_href[_path(row["country"])]["kind"] == "country"
    for slug in ("cmc", "icbl", "icbl-cmc"):
        assert by_href[_path(str(ID[f"org/{slug}"]))]["kind"] == "coalition"
    kinds = {n["kind"] for n in nodes}
    assert {"coalition", "organization", "national-campaign", "person", "governance", "country"} <= kinds
    # roles are told apart by the edges' styles, each in the legend
    styles = set(session.page.eval_on_selector_all("svg#network path.edge",
                                                   "ps => ps.map(p => p.getAttribute('class'))"))
    for style in ("edge-steering", "edge-member", "edge-founding", "edge-ambassador", "edge-merger", "edge-based",
                  "edge-unit"):
        assert f"edge {style}" in styles
        assert session.page.locator(f".network-legend line.{style}").count() == 1
    # legible: no two boxes overlap, every label inside its box, text at least 11 px on screen
    for i, a in enumerate(nodes):
        x0, y0, x1, y1 = a["rect"]
        t0, u0, t1, u1 = a["text"]
        assert x0 <= t0 and t1 <= x1 and y0 <= u0 and u1 <= y1, a["label"]
        assert a["font"] * a["scale"] >= 11, a["label"]
        for b in nodes[i + 1:]:
            bx0, by0, bx1, by1 = b["rect"]
            assert x1 <= bx0 or bx1 <= x0 or y1 <= by0 or by1 <= y0, (a["label"], b["label"])
    # each node opens its entity page
    for href in by_href:
        with urllib.request.urlopen(urllib.request.Request(server.url + href, headers={"Accept": "text/html"}),
                                    timeout=30) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/html"), href
    assert _check_sparql_blocks(session, server) == 1
    session.shot("network")


@pytest.mark.parametrize("path", ["/explore/members", "/explore/monitor", "/explore/monitor?status=Stockpiler"])
def test_field_pages_load_cleanly_with_their_sparql(session, server, path):
    """The members and Monitor pages (numbers: tests/test_explore_field.py) load without errors or foreign
    requests, and each query they show answers as many rows on /sparql as they say."""
    session.open(path)
    assert session.page.locator("table.data").first.is_visible()
    assert _check_sparql_blocks(session, server) == 1
    session.shot(path.strip("/").replace("/", "-").replace("?status=", "-"))
