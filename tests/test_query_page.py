"""The query page, driven in headless Chromium (Debian's /usr/bin/chromium) through Playwright.

Every test checks, on its way out, that the page asked nothing of any host but the local server and that
the browser reported no console error or uncaught exception.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import pytest
from conftest import watched_page

from cmc_kg.query import example_queries
from cmc_kg.settings import REPO_ROOT, Paths

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
TWO_CODES = 'SELECT ?code WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code IN ("FRA","NOR")) } ORDER BY ?code'




@dataclass
class Session:
    """A browser page with everything it requested and every error it reported."""

    page: object
    base: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expected_errors: list[str] = field(default_factory=list)

    def open(self, path: str = "/query") -> None:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")

    def wait(self) -> None:
        """Until the latest run has its answer (#results is aria-busy while a query runs)."""
        self.page.wait_for_selector("#results:not([aria-busy])", state="attached")

    def run(self, query: str, keyboard: bool = False) -> None:
        self.page.fill("#query", query)
        if keyboard:
            self.page.focus("#query")
            self.page.keyboard.press("Control+Enter")
        else:
            self.page.click("#run")
        self.wait()


@pytest.fixture
def session(browser, server):
    context, page, requests, errors = watched_page(browser)
    s = Session(page, server.url, requests, errors)
    yield s
    context.close()
    assert s.requests, "the page made no request at all"
    outside = [url for url in s.requests
               if not url.startswith("data:") and urllib.parse.urlsplit(url).hostname != "127.0.0.1"]
    assert not outside, f"requests off the local server: {outside}"
    unexpected = [e for e in s.errors if not any(expected in e for expected in s.expected_errors)]
    assert not unexpected, f"the browser reported errors: {unexpected}"


def _cells(page) -> list[list[str]]:
    """The result table's cells, row by row, without the row-number column."""
    return page.eval_on_selector_all(
        "#results tbody tr", "rows => rows.map(r => [...r.querySelectorAll('td:not(.rownum)')].map(c => c.innerText))")


def test_page_opens_with_the_first_example(session):
    from playwright.sync_api import expect

    session.open("/query")
    first = example_queries(Paths())[0]
    value = session.page.input_value("#query")
    assert value.strip() and value.strip() in first.text
    expect(session.page.locator("#examples button")).to_have_count(len(example_queries(Paths())))
    expect(session.page.locator("#examples")).to_contain_text(first.title)
    expect(session.page.locator("#error")).to_be_hidden()
    # The stylesheet and the script came from this server.
    assert any(url.endswith("/static/query.js") for url in session.requests)
    assert any(url.endswith("/static/style.css") for url in session.requests)


def test_typed_query_shows_rows(session):
    from playwright.sync_api import expect

    session.open("/query")
    session.run(TWO_CODES)
    expect(session.page.locator("#results tbody tr")).to_have_count(2)
    assert _cells(session.page) == [["FRA"], ["NOR"]]
    assert session.page.inner_text("#results thead") .strip().endswith("?code")
    expect(session.page.locator("#status")).to_contain_text("2 rows")
    expect(session.page.locator("#error")).to_be_hidden()

    # The downloads are of the query that ran, in CSV and JSON.
    csv_href = session.page.get_attribute("#download-csv", "href")
    json_href = session.page.get_attribute("#download-json", "href")
    assert "format=csv" in csv_href and "format=json" in json_href
    with urllib.request.urlopen(urllib.parse.urljoin(session.base, csv_href), timeout=10) as response:
        assert response.read().decode("utf-8").split() == ["code", "FRA", "NOR"]
    with urllib.request.urlopen(urllib.parse.urljoin(session.base, json_href), timeout=10) as response:
        assert b'"FRA"' in response.read()

    # Ctrl+Enter in the editor runs the query too.
    session.run('SELECT ?code WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code = "NOR") }', keyboard=True)
    expect(session.page.locator("#results tbody tr")).to_have_count(1)
    assert _cells(session.page) == [["NOR"]]


def test_example_query_loads_and_runs(session):
    from playwright.sync_api import expect

    session.open("/query")
    examples = example_queries(Paths())
    index = next(i for i, q in enumerate(examples) if "isoAlpha3" in q.text or "rdfs:label" in q.text)
    button = session.page.locator("#examples button").nth(index)
    expect(button).to_contain_text(examples[index].title)
    button.click()
    session.wait()
    value = session.page.input_value("#query")
    assert value.strip() and value.strip() in examples[index].text
    expect(session.page.locator("#error")).to_be_hidden()
    assert session.page.locator("#results tbody tr").count() > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    session.page.screenshot(path=str(ARTIFACTS / "query-page.png"), full_page=False)


def test_malformed_query_shows_the_parser_message(session):
    from playwright.sync_api import expect

    session.open("/query")
    # Chromium logs the 400 answer itself as a console error; that one is expected.
    session.expected_errors.append("status of 400")
    session.run("SELECT ?x WHERE { ?x cmc:isoAlpha3 ")
    error = session.page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("400")
    expect(error).to_contain_text("malformed query")
    assert session.page.get_attribute("#error", "role") == "alert"
    assert session.page.locator("#results table").count() == 0

    # The next good query clears the error.
    session.run(TWO_CODES)
    expect(error).to_be_hidden()
    expect(session.page.locator("#results tbody tr")).to_have_count(2)


def test_entity_iris_link_to_entity_pages(session):
    from playwright.sync_api import expect

    session.open("/query")
    session.run('SELECT ?c WHERE { ?c cmc:isoAlpha3 "FRA" }')
    link = session.page.locator("#results tbody td a")
    expect(link).to_have_count(1)
    href = link.get_attribute("href")
    assert href.endswith("/id/country/FRA") and href.startswith("/")
    assert link.inner_text() == "country:FRA"
    assert link.get_attribute("title").endswith("/id/country/FRA")


def test_ask_and_construct(session):
    from playwright.sync_api import expect

    session.open("/query")
    session.run('ASK { ?c cmc:isoAlpha3 "FRA" }')
    expect(session.page.locator("#results .boolean")).to_have_text("true")
    session.run('CONSTRUCT { ?c cmc:isoAlpha3 ?code } WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code = "FRA") }')
    expect(session.page.locator("#results pre")).to_contain_text('"FRA"')
    expect(session.page.locator("#download-turtle")).to_be_visible()
    expect(session.page.locator("#download-csv")).to_be_hidden()


def test_permalink_reopens_the_query(session):
    from playwright.sync_api import expect

    session.open("/query")
    session.run(TWO_CODES)
    href = session.page.get_attribute("#permalink", "href")
    assert "query=" in href
    session.open("/")  # somewhere else first
    session.page.goto(urllib.parse.urljoin(session.base, href))
    assert session.page.input_value("#query") == TWO_CODES
    # A permalink runs its query at once.
    expect(session.page.locator("#results tbody tr")).to_have_count(2)
    assert _cells(session.page) == [["FRA"], ["NOR"]]


def test_sparql_without_a_query_is_the_page_in_a_browser(session):
    from playwright.sync_api import expect

    session.open("/sparql")
    expect(session.page.locator("#query")).to_be_visible()
    session.run(TWO_CODES)
    expect(session.page.locator("#results tbody tr")).to_have_count(2)


def test_cells_show_plain_values_and_datatypes_on_request(session):
    from playwright.sync_api import expect

    session.open("/query")
    session.run('SELECT ?n ?name WHERE { country:NOR rdfs:label ?name BIND (1 + 1 AS ?n) } LIMIT 1')
    assert _cells(session.page) == [["2", "Norway"]]
    number, name = session.page.locator("#results tbody .literal").all()
    assert number.get_attribute("title") == "datatype: xsd:integer"
    assert name.get_attribute("title").startswith("language tag: en")
    session.page.check("#show-types")
    expect(session.page.locator("#results .datatype")).to_be_visible()
    assert _cells(session.page)[0][0].replace("\n", "").replace(" ", "") == "2^^xsd:integer"


def test_iri_help_names_each_entity_prefix_with_a_working_example(session):
    from cmc_kg.namespaces import ID, PREFIXES

    session.open("/query")
    session.page.click("#iris-help summary")
    rows = session.page.eval_on_selector_all("#iris-help tbody tr", """rs => rs.map(r => ({
        prefix: r.dataset.prefix, example: r.querySelector('td code')?.textContent || '',
        href: r.querySelector('td a')?.getAttribute('href') || ''}))""")
    entity_prefixes = {p for p, ns in PREFIXES.items() if str(ns).startswith(str(ID)) and str(ns) != str(ID)}
    assert {r["prefix"] for r in rows} == entity_prefixes
    by_prefix = {r["prefix"]: r for r in rows}
    assert by_prefix["kgorg"]["example"] == "kgorg:cmc"
    assert "kgorg:cmc" in session.page.inner_text("#iris-help") and "not org:cmc" in session.page.inner_text("#iris-help")
    for row in rows:
        if row["example"]:
            assert row["example"].startswith(row["prefix"] + ":")
            with urllib.request.urlopen(urllib.parse.urljoin(session.base, row["href"]), timeout=30) as page:
                assert page.status == 200
            # the example as written in a query names an entity of the graph
            session.run(f"ASK {{ {row['example']} ?p ?o }}")
            assert session.page.inner_text("#results .boolean") == "true", row


def test_the_most_specific_type_filter_in_the_help_gives_one_type(session, store):
    from cmc_kg.query import select

    session.open("/query")
    snippet = session.page.text_content("#most-specific-type")
    rows = select(store, f"SELECT ?x ?type WHERE {{ VALUES ?x {{ action:ccm\\/NOR\\/ratification kgorg:cmc }} "
                         f"?x a ?type {snippet} }}").rows
    assert sorted(r["type"].rsplit("#", 1)[-1] for r in rows) == ["Coalition", "Ratification"]
