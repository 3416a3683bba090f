"""Links to Wikidata, the linker, the enrichment and federated queries, end to end against real servers.

Wikidata's query service is never contacted: a local Oxigraph server loaded with
tests/data/wikidata/fake-wikidata.ttl (test data shaped like Wikidata, not facts) stands in for it, and
`cmc-kg link`, `cmc-kg enrich` and `cmc-kg serve` run as real processes against it.
"""

from __future__ import annotations

import csv
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from rdflib import Graph, Literal, URIRef
from SPARQLWrapper import JSON, POST, SPARQLWrapper

from cmc_kg import namegen
from cmc_kg.build import build
from cmc_kg.link.curation import (CurationError, read_candidates, read_curation, reference_decisions, render_links,
                                  write_links)
from cmc_kg.link.enrich import FACTS
from cmc_kg.link.wikidata import LocalEntity, label_similarity, score_label_candidate
from cmc_kg.namespaces import CMC, GRAPH, OWL, P, PQ, PREFIXES, PROV, PS, RDFS, SKOS, WD, WDT, XSD
from cmc_kg.query import example_queries, open_store, select
from cmc_kg.settings import REPO_ROOT, Paths, Settings
from conftest import free_port, start_oxigraph, start_server, stop_server
from test_sparql_protocol import Listener, call

SETTINGS = Paths()
LINKS = SETTINGS.graph_dir / "wikidata-links"
FIXTURE = REPO_ROOT / "tests" / "data" / "wikidata" / "fake-wikidata.ttl"
FEDERATED = sorted((SETTINGS.queries_dir / "federated").glob("*.rq"))
WDQS = Settings().wikidata_endpoint
USER_AGENT = "cmc-kg-tests/1.0 (tests@example.org)"
VERIFIED = {"kgorg:icbl": "Q325523", "kgorg:amnesty-international": "Q42970", "kgorg:human-rights-watch": "Q187052",
            "kgorg:ippnw": "Q245385", "person:jody-williams": "Q211239", "place:paris": "Q90",
            "place:ottawa": "Q1930", "place:oslo": "Q585"}
UNVERIFIED = {"place:geneva": "Q71", "place:lyon": "Q456", "place:dublin": "Q1761"}

pytestmark = pytest.mark.filterwarnings("ignore:Sending Accept header:RuntimeWarning")


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmc_kg.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader((line for line in handle if not line.startswith("#")), delimiter="\t"))


def _fixture() -> Graph:
    return Graph().parse(FIXTURE, format="turtle")


def _curation() -> dict[str, str]:
    return {d.entity: d.qid for d in read_curation(LINKS / "curation.tsv") if d.accepted}


class _Handler(http.server.BaseHTTPRequestHandler):
    """A tiny HTTP server for one test: its class attribute `answer` decides every reply."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, payload = self.server.answer(self, body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST

    def log_message(self, *args):
        pass


def _http_server(answer):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.answer = answer
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/sparql"


@pytest.fixture(scope="module")
def fake_wikidata(tmp_path_factory):
    """An Oxigraph server holding the Wikidata-shaped test data; yields its SPARQL query URL."""
    base, process = start_oxigraph(tmp_path_factory.mktemp("fake-wikidata"), FIXTURE)
    url = base + "/query"
    yield url
    process.terminate()
    process.wait(timeout=10)


# The committed link set.

def test_committed_links_are_what_the_curation_gives(tmp_path):
    written = write_links(LINKS / "curation.tsv", tmp_path / "links.ttl", SETTINGS.graph_dir / "sources.ttl",
                          "graph/wikidata-links/curation.tsv")
    assert (tmp_path / "links.ttl").read_bytes() == (LINKS / "links.ttl").read_bytes(), \
        "graph/wikidata-links/links.ttl is stale: run `cmc-kg link wikidata --offline`"
    assert render_links(written, "graph/wikidata-links/curation.tsv") == (LINKS / "links.ttl").read_text("utf-8")


def test_curation_is_what_the_reference_tables_support():
    decisions = read_curation(LINKS / "curation.tsv")
    expected, candidates, skipped = reference_decisions(SETTINGS.reference_dir, SETTINGS.graph_dir, "2000-01-01",
                                                        decisions)
    assert set(decisions) == set(expected) and skipped == []
    accepted = _curation()
    with open(SETTINGS.reference_dir / "countries_iso_wikidata_owid.csv", encoding="utf-8") as handle:
        owid = {r["iso_alpha3"]: r["wikidata_qid"] for r in csv.DictReader(handle) if r["row_kind"] == "iso3166_1"}
    assert len(owid) == 249
    assert {e[len("country:"):]: q for e, q in accepted.items() if e.startswith("country:")} == owid
    assert {e: q for e, q in accepted.items() if not e.startswith("country:")} == VERIFIED
    assert accepted["country:NLD"] == "Q29999"  # OWID's choice (Kingdom of the Netherlands), kept as the source gives it
    # The unverified pairings are kept apart, never accepted, never in the Turtle.
    assert {(c.entity, c.qid) for c in read_candidates(LINKS / "candidates.tsv")} == set(UNVERIFIED.items())
    assert {(c.entity, c.qid) for c in candidates} == set(UNVERIFIED.items())
    links = (LINKS / "links.ttl").read_text("utf-8")
    for entity, qid in UNVERIFIED.items():
        assert entity not in accepted and not re.search(rf"wd:{qid}\b", links)


def test_links_in_the_build(store):
    count = select(store, """SELECT (COUNT(*) AS ?links) (SUM(IF(STRSTARTS(STR(?e), STR(country:)), 1, 0)) AS ?states)
        WHERE { GRAPH graph:wikidata-links { ?e skos:exactMatch ?item } }""").rows[0]
    assert (count["links"], count["states"]) == ("257", "249")
    incomplete = select(store, """SELECT ?e WHERE { ?e skos:exactMatch ?item FILTER (STRSTARTS(STR(?item), STR(wd:)))
        FILTER NOT EXISTS { ?r a cmc:WikidataLink ; cmc:linkedEntity ?e ; cmc:wikidataItem ?item ;
            cmc:linkMethod ?m ; prov:wasDerivedFrom/cmc:sourceKey ?k ; dcterms:date ?d } }""").rows
    assert incomplete == []
    methods = select(store, """SELECT ?m (COUNT(*) AS ?n) WHERE { ?r a cmc:WikidataLink ; cmc:linkMethod ?m }
        GROUP BY ?m""").rows
    assert {r["m"].rsplit("#", 1)[1]: r["n"] for r in methods} == {"IsoCodeMatch": "249", "CuratedDecision": "8"}
    nld = select(store, """SELECT ?item ?comment ?key WHERE { link:country\\/NLD\\/wikidata cmc:wikidataItem ?item ;
        rdfs:comment ?comment ; prov:wasDerivedFrom/cmc:sourceKey ?key }""").rows
    assert nld == [{"item": str(WD.Q29999), "key": "OWID-CR",
                    "comment": "OWID-CR gives this item the label \u201cKingdom of the Netherlands\u201d."}]
    paris = select(store, "SELECT ?key WHERE { link:place\\/paris\\/wikidata prov:wasDerivedFrom/cmc:sourceKey ?key }")
    assert sorted(paris.column("key")) == ["COOKSENSE-PARIS", "REASONABLEGRAPH-624", "URBANRANKING-API"]
    # skos:exactMatch, not owl:sameAs: the reasoner copies no facts between the graph and Wikidata.
    same_as = select(store, f"SELECT (COUNT(*) AS ?n) WHERE {{ ?a <{OWL.sameAs}> ?b FILTER (STRSTARTS(STR(?b), STR(wd:))) }}")
    assert same_as.rows[0]["n"] == "0"


def test_no_wikidata_iri_spelled_in_python():
    offenders = []
    for path in sorted(REPO_ROOT.glob("**/*.py")):
        if ".venv" in path.parts or path == namegen.TARGET or "build" in path.parts:
            continue
        if re.search(r"wikidata\.org/(entity|prop)", path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(REPO_ROOT)))
    assert offenders == []


@pytest.mark.parametrize("row,message", [
    ("country:FRA\tFrance\t142\taccept\tiso-code-match\t\tOWID-CR\t2026-11-23\t", "not a Wikidata item ID"),
    ("country:FRA\tFrance\tQ142\tmaybe\tiso-code-match\t\tOWID-CR\t2026-11-23\t", "decision 'maybe'"),
    ("treaty:ccm\tCCM\tQ1\taccept\treconciliation\t\tWIKIDATA\t2026-11-23\t", "needs its score"),
    ("treaty:ccm\tCCM\tQ1\taccept\treconciliation\t1.5\tWIKIDATA\t2026-11-23\t", "from 0 to 1"),
    ("https://example.org/x\tX\tQ1\taccept\tcurated\t\tWIKIDATA\t2026-11-23\t", "not a prefixed name"),
    ("country:FRA\tFrance\tQ142\taccept\tcurated\t\tOWID-CR\tyesterday\t", "not a date"),
])
def test_curation_errors_name_file_and_line(tmp_path, row, message):
    curation = tmp_path / "curation.tsv"
    curation.write_text("entity\tlabel\tqid\tdecision\tmethod\tscore\tsource\tdecided\tnote\n"
                        "country:NOR\tNorway\tQ20\taccept\tiso-code-match\t\tOWID-CR\t2026-11-23\t\n" + row + "\n")
    with pytest.raises(CurationError, match=rf"curation\.tsv:3: .*{re.escape(message)}"):
        read_curation(curation)


def test_curation_errors_give_the_files_own_line_with_comments_and_quoted_line_breaks(tmp_path):
    curation = tmp_path / "curation.tsv"
    curation.write_text("# A comment above the header\n"
                        "entity\tlabel\tqid\tdecision\tmethod\tscore\tsource\tdecided\tnote\n"
                        "# a comment between rows\n"
                        'country:NOR\tNorway\tQ20\taccept\tiso-code-match\t\tOWID-CR\t2026-11-23\t"two\nlines"\n'
                        "# and another\n"
                        "country:FRA\tFrance\t142\taccept\tiso-code-match\t\tOWID-CR\t2026-11-23\t\n")
    with pytest.raises(CurationError, match=r"curation\.tsv:7: .*not a Wikidata item ID"):
        read_curation(curation)


def test_unregistered_source_key_is_refused(tmp_path):
    curation = tmp_path / "curation.tsv"
    curation.write_text("entity\tlabel\tqid\tdecision\tmethod\tscore\tsource\tdecided\tnote\n"
                        "country:NOR\tNorway\tQ20\taccept\tiso-code-match\t\tNO-SUCH-SOURCE\t2026-11-23\t\n")
    with pytest.raises(CurationError, match="NO-SUCH-SOURCE"):
        write_links(curation, tmp_path / "links.ttl", SETTINGS.graph_dir / "sources.ttl")


def test_scores():
    paris = LocalEntity("place:paris", "city", ("Paris",))
    assert label_similarity("São Tomé and Príncipe", "Sao Tome & Principe") == 1.0
    assert label_similarity("Geneva", "Genf") < 0.8
    assert score_label_candidate(paris, "Paris", False, ["city"]) == (1.0, 1.0, 1.0)
    assert score_label_candidate(paris, "Paris", False, ["given name"]) == (0.6, 1.0, 0.0)
    mbt = LocalEntity("treaty:mbt", "treaty", ("Mine Ban Treaty",))
    assert score_label_candidate(mbt, "Ottawa Convention", True, ["treaty"]) == (0.94, 0.9, 1.0)


def test_settings_are_layered_in_the_table_the_server_reads(tmp_path):
    config = tmp_path / "cmc.toml"
    config.write_text('port = 9001\nwikidata_batch_size = 10\nwikidata_endpoint = "http://a.example/sparql"\n')
    settings = Settings.load(config, environ={"CMC_KG_WIKIDATA_USER_AGENT": "me (me@example.org)"},
                             wikidata_batch_size=20)
    assert (settings.wikidata_endpoint, settings.wikidata_user_agent, settings.wikidata_batch_size,
            settings.port) == ("http://a.example/sparql", "me (me@example.org)", 20, 9001)
    with pytest.raises(ValueError, match="unknown setting 'wikidata_agent'"):
        Settings.load(environ={"CMC_KG_WIKIDATA_AGENT": "x"})


# The linker, against the Wikidata-shaped test server.

@pytest.fixture(scope="module")
def linked(fake_wikidata, built, tmp_path_factory):
    """One `cmc-kg link wikidata` run against the test server, with copies of the curation and link files."""
    folder = tmp_path_factory.mktemp("link")
    shutil.copy(LINKS / "curation.tsv", folder / "curation.tsv")
    args = ["link", "wikidata", "--endpoint", fake_wikidata, "--build-dir", str(built[0].build_dir),
            "--curation", str(folder / "curation.tsv"), "--links", str(folder / "links.ttl"),
            "--review", str(folder / "review.tsv"), "--user-agent", USER_AGENT, "--batch-size", "40"]
    result = _cli(*args)
    return folder, args, result


@pytest.mark.system
def test_linker_reports_contradictions_and_writes_the_review(linked):
    folder, _, result = linked
    assert result.returncode == 0, result.stderr
    assert "contradictions: 1" in result.stdout
    assert ("contradiction: country:NLD (Netherlands): the graph links wd:Q29999, but the endpoint gives "
            "ISO 3166-1 NLD/NL to wd:Q999999901") in result.stdout
    assert "states by ISO 3166-1 alpha-3 (P298): 249/249 codes" in result.stderr  # progress on stderr
    review = _tsv(folder / "review.tsv")
    rows = {(r["entity"], r["qid"]): r for r in review}
    assert rows[("country:FRA", "Q142")]["score"] == "1.000" and rows[("country:FRA", "Q142")]["status"] == "linked"
    assert rows[("country:NLD", "Q999999901")]["status"] == "contradicts-link"
    assert float(rows[("place:paris", "Q90")]["score"]) > float(rows[("place:paris", "Q999999941")]["score"])
    assert rows[("place:paris", "Q999999941")]["type_score"] == "0.000"  # the decoy is a given name
    assert rows[("treaty:mbt", "Q999999944")]["label_score"] == "0.900"  # found by its alias
    assert rows[("place:geneva", "Q999999942")]["status"] == "new"
    assert all(rows[(e, q)]["status"] == "linked" for e, q in VERIFIED.items())
    assert {r["decision"] for r in review} == {""}  # the review decides nothing
    # Only accepted curation rows are links: the new candidates are not.
    assert (folder / "links.ttl").read_bytes() == (LINKS / "links.ttl").read_bytes()


@pytest.mark.system
def test_strict_exits_non_zero_on_a_contradiction(linked):
    _, args, _ = linked
    assert _cli(*args, "--strict").returncode == 1


@pytest.mark.system
def test_accepting_a_candidate_makes_a_scored_link(linked, tmp_path):
    folder, _, _ = linked
    curation = tmp_path / "curation.tsv"
    shutil.copy(folder / "curation.tsv", curation)
    row = next(r for r in _tsv(folder / "review.tsv") if (r["entity"], r["qid"]) == ("treaty:ccm", "Q999999943"))
    row.update(decision="accept", decided="2026-11-23")
    with open(curation, "a", encoding="utf-8", newline="") as handle:
        csv.DictWriter(handle, list(row), delimiter="\t", lineterminator="\n").writerow(row)
    result = _cli("link", "wikidata", "--offline", "--curation", str(curation), "--links", str(tmp_path / "l.ttl"))
    assert result.returncode == 0, result.stderr
    assert "258 accepted (249 states, 9 others)" in result.stdout
    graph = Graph().parse(tmp_path / "l.ttl")
    record = PREFIXES["link"]["treaty/ccm/wikidata"]
    assert graph.value(record, CMC.linkMethod) == CMC.ReconciliationScore
    assert graph.value(record, CMC.matchScore) == Literal("1.000", datatype=XSD.decimal)
    assert graph.value(record, CMC.wikidataItem) == WD.Q999999943
    assert graph.value(record, PROV.wasDerivedFrom) == PREFIXES["source"]["wikidata"]
    assert (PREFIXES["treaty"]["ccm"], SKOS.exactMatch, WD.Q999999943) in graph


@pytest.mark.system
def test_offline_fetches_nothing_and_an_unreachable_endpoint_falls_back(tmp_path):
    listener = Listener()
    try:
        result = _cli("link", "wikidata", "--offline", "--endpoint", listener.url, "--links", str(tmp_path / "a.ttl"))
        assert result.returncode == 0 and "offline: nothing is fetched" in result.stderr
        result = _cli("enrich", "wikidata", "--offline", "--endpoint", listener.url, "--output", str(tmp_path / "f.ttl"))
        assert result.returncode == 0 and "no snapshot" in result.stdout
        time.sleep(0.3)
        assert listener.connections == []
    finally:
        listener.close()
    assert (tmp_path / "a.ttl").read_bytes() == (LINKS / "links.ttl").read_bytes()
    nobody = f"http://127.0.0.1:{free_port()}/sparql"
    result = _cli("enrich", "wikidata", "--endpoint", nobody, "--output", str(tmp_path / "f.ttl"))
    assert result.returncode != 0 and "cannot reach" in result.stderr and "nothing written" in result.stderr
    assert not (tmp_path / "f.ttl").exists()


@pytest.mark.system
def test_429_with_retry_after_is_honoured(fake_wikidata, tmp_path):
    seen = []

    def answer(handler, body):
        seen.append((time.monotonic(), handler.headers.get("User-Agent")))
        if len(seen) == 1:
            return 429, {"Retry-After": "1", "Content-Type": "text/plain"}, b"Too Many Requests"
        request = urllib.request.Request(fake_wikidata, data=body, headers={
            "Content-Type": handler.headers["Content-Type"], "Accept": handler.headers["Accept"]})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {"Content-Type": response.headers["Content-Type"]}, response.read()

    proxy, url = _http_server(answer)
    try:
        result = _cli("enrich", "wikidata", "--endpoint", url, "--user-agent", USER_AGENT, "--output",
                      str(tmp_path / "facts.ttl"), "--batch-size", "100")
    finally:
        proxy.shutdown()
    assert result.returncode == 0, result.stderr
    assert "HTTP 429" in result.stderr and "retrying in 1.0 s" in result.stderr
    assert seen[1][0] - seen[0][0] >= 1.0
    assert {agent for _, agent in seen} == {USER_AGENT}
    assert (tmp_path / "facts.ttl").exists()


@pytest.mark.system
def test_a_long_retry_after_stops_the_run(tmp_path):
    proxy, url = _http_server(lambda h, b: (429, {"Retry-After": "3600"}, b"slow down"))
    try:
        result = _cli("enrich", "wikidata", "--endpoint", url, "--output", str(tmp_path / "facts.ttl"))
    finally:
        proxy.shutdown()
    assert result.returncode != 0 and "Retry-After" in result.stderr


# The enrichment snapshot.

@pytest.mark.system
def test_enrichment_snapshot_builds_and_is_queryable(fake_wikidata, repo_copy):
    output = repo_copy.graph_dir / "wikidata-enrichment" / "facts.ttl"
    result = _cli("enrich", "wikidata", "--endpoint", fake_wikidata, "--user-agent", USER_AGENT, "--output", str(output))
    assert result.returncode == 0, result.stderr
    text = output.read_text("utf-8")
    assert text.startswith(f"# GENERATED by `cmc-kg enrich wikidata` from {fake_wikidata} at ")
    snapshot = Graph().parse(output)
    fixture = _fixture()
    # Exactly the fixture's values of the declared facts, for linked items only.
    linked = {WD[q] for q in _curation().values()}
    declared = {WDT[f.pid] for f in FACTS}
    expected = {(s, p, o) for s, p, o in fixture if s in linked and p in declared}
    assert {(s, p, o) for s, p, o in snapshot if p in declared} == expected
    statement = snapshot.value(WD.Q142, P.P1082)
    assert snapshot.value(statement, PS.P1082) == Literal("68000000", datatype=XSD.decimal)
    assert snapshot.value(statement, PQ.P585) == Literal("2024-01-01T00:00:00Z", datatype=XSD.dateTime)
    assert 'pq:P585 "2024-01-01T00:00:00Z"^^xsd:dateTime' in text  # Wikidata's lexical form, kept
    assert snapshot.value(WD.Q999999963, RDFS.label) == Literal("Port-au-Prince", lang="en")  # label of a capital
    assert WD.Q999999941 not in set(snapshot.subjects())  # not linked: not enriched
    report = build(repo_copy)
    assert report.triples_per_graph[str(GRAPH["wikidata-enrichment"])] == len(snapshot)
    store = open_store(repo_copy)
    rows = select(store, """SELECT ?name ?population ?when ?retrieved WHERE {
        country:FRA rdfs:label ?name ; skos:exactMatch ?item .
        GRAPH graph:wikidata-enrichment { ?item wdt:P1082 ?population ; p:P1082 [ ps:P1082 ?population ; pq:P585 ?when ] .
                                          graph:wikidata-enrichment prov:generatedAtTime ?retrieved } }""").rows
    assert [(r["name"], r["population"], r["when"]) for r in rows] == [("France", "68000000", "2024-01-01T00:00:00Z")]


def test_build_works_without_a_snapshot(built):
    assert not (SETTINGS.graph_dir / "wikidata-enrichment" / "facts.ttl").exists()
    assert "wikidata-enrichment" not in {g.rsplit("/", 1)[1] for g in built[1].triples_per_graph}


# Federated queries through `cmc-kg serve`.

@pytest.fixture(scope="module")
def broken_endpoints():
    """A server that answers HTML, one that answers 500, and a port where nothing listens."""
    html, html_url = _http_server(lambda h, b: (200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"))
    failing, failing_url = _http_server(lambda h, b: (500, {"Content-Type": "text/plain"}, b"internal error"))
    hanging = Listener()
    yield {"html": html_url, "500": failing_url, "dead": f"http://127.0.0.1:{free_port()}/sparql",
           "hanging": hanging.url}
    html.shutdown()
    failing.shutdown()
    hanging.close()


@pytest.fixture(scope="module")
def federating(built, fake_wikidata, broken_endpoints):
    allowlist = " ".join([fake_wikidata, *broken_endpoints.values()])
    live = start_server(built[0].build_dir, "--service-allowlist", allowlist, "--query-timeout", "4",
                        "--cache-entries", "0")
    yield live.url + "/sparql"
    stop_server(live)


def _federated(stem: str, endpoint: str) -> str:
    path = next(p for p in FEDERATED if p.stem.startswith(stem))
    text = path.read_text(encoding="utf-8")
    assert f"SERVICE <{WDQS}>" in text
    return text.replace(WDQS, endpoint)


def _sparqlwrapper(url: str, query: str) -> list[dict[str, str]]:
    client = SPARQLWrapper(url, agent=USER_AGENT)
    client.setMethod(POST)
    client.setReturnFormat(JSON)
    client.setQuery(query)
    return [{k: v["value"] for k, v in row.items()} for row in client.queryAndConvert()["results"]["bindings"]]


def test_federated_queries_have_headers_and_stay_out_of_the_main_examples():
    assert len(FEDERATED) >= 3
    assert not {q.path for q in example_queries()} & set(FEDERATED)
    for path in FEDERATED:
        text = path.read_text(encoding="utf-8")
        assert re.search(r"^# title: \S", text, re.M) and re.search(r"^# description: \S", text, re.M), path.name
        assert f"SERVICE <{WDQS}>" in text, path.name
    # Query 23 names the linked organizations' items; they must be the link set's.
    values = re.search(r"VALUES \?item \{([^}]*)\}", _federated("23", WDQS)).group(1).split()
    assert sorted(values) == sorted(f"wd:{q}" for e, q in _curation().items() if e.startswith("kgorg:"))


@pytest.mark.system
def test_q21_population_by_continent(federating, fake_wikidata, store):
    rows = _sparqlwrapper(federating, _federated("21", fake_wikidata))
    fixture = _fixture()
    parties = select(store, """SELECT ?item WHERE { ?c a cmc:ConsentToBeBound ; cmc:treaty treaty:ccm ; cmc:actor ?s .
        OPTIONAL { ?w a cmc:WithdrawalEffective ; cmc:treaty treaty:ccm ; cmc:actor ?s } FILTER (!BOUND(?w))
        ?s skos:exactMatch ?item }""").column("item")
    expected: dict[str, list[int]] = {}
    for item in map(URIRef, set(parties)):
        if fixture.value(item, WDT.P298) is None:
            continue
        for continent in fixture.objects(item, WDT.P30):
            expected.setdefault(str(fixture.value(continent, RDFS.label)), []).append(
                int(fixture.value(item, WDT.P1082)))
    assert {r["continent"]: (int(r["parties"]), int(r["totalPopulation"])) for r in rows} == {
        c: (len(v), sum(v)) for c, v in expected.items()}
    assert {r["continent"] for r in rows} == {"Europe", "North America", "Asia"}  # Kenya and Haiti only signed


@pytest.mark.system
def test_q22_capitals_of_signatories_not_ratified(federating, fake_wikidata):
    rows = _sparqlwrapper(federating, _federated("22", fake_wikidata))
    with open(SETTINGS.reference_dir / "ccm_participants_untc.csv", encoding="utf-8") as handle:
        signed_only = {r["iso3"] for r in csv.DictReader(handle) if r["signature_date"] and not r["consent_date"]}
    fixture, links = _fixture(), _curation()
    expected = {(code, str(fixture.value(fixture.value(WD[links[f"country:{code}"]], WDT.P36), RDFS.label)))
                for code in signed_only if fixture.value(WD[links[f"country:{code}"]], WDT.P36) is not None}
    assert {(r["state"].rsplit("/", 1)[1], r["capitalName"]) for r in rows} == expected
    assert len(expected) == 4


@pytest.mark.system
def test_q23_founding_beside_inception(federating, fake_wikidata):
    rows = _sparqlwrapper(federating, _federated("23", fake_wikidata))
    fixture = _fixture()
    assert {r["item"] for r in rows} == {str(WD[q]) for e, q in _curation().items() if e.startswith("kgorg:")}
    for row in rows:
        assert Literal(row["inception"], datatype=XSD.dateTime) == fixture.value(URIRef(row["item"]), WDT.P571)
    icbl = [r for r in rows if r["organization"].endswith("/org/icbl")]
    assert {r["founded"] for r in icbl} and all(r["inception"].startswith("1992-10") for r in icbl)


@pytest.mark.system
def test_q24_iso_codes_the_endpoint_disagrees_with(federating, fake_wikidata):
    rows = _sparqlwrapper(federating, _federated("24", fake_wikidata))
    fixture = _fixture()
    expected = {e[len("country:"):] for e, q in _curation().items() if e.startswith("country:")
                and str(fixture.value(WD[q], WDT.P298)) != e[len("country:"):]}
    assert {r["iso3"] for r in rows} == expected
    assert "NLD" in expected and "FRA" not in expected and len(expected) == 249 - 14


@pytest.mark.system
@pytest.mark.parametrize("which,expected", [
    ("html", b"Unsupported Content-Type"), ("500", b"500"), ("dead", b"refused")])
def test_failing_service_gives_502_with_the_reason(federating, broken_endpoints, which, expected):
    endpoint = broken_endpoints[which]
    status, headers, body = call(federating, f"SELECT * WHERE {{ SERVICE <{endpoint}> {{ ?s ?p ?o }} }}")
    assert status == 502 and headers["Content-Type"].startswith("text/plain")
    assert body.startswith(b"a SERVICE endpoint failed (<" + endpoint.encode() + b">)") and expected in body


@pytest.mark.system
def test_silent_service_failure_gives_no_rows(federating, broken_endpoints):
    status, _, body = call(federating, f"SELECT * WHERE {{ SERVICE SILENT <{broken_endpoints['dead']}> {{ ?s ?p ?o }} }}")
    assert status == 200 and json.loads(body)["results"]["bindings"] in ([], [{}])


@pytest.mark.system
def test_service_that_never_answers_is_stopped_by_the_query_timeout(federating, broken_endpoints):
    started = time.monotonic()
    status, _, body = call(federating, f"SELECT * WHERE {{ SERVICE <{broken_endpoints['hanging']}> {{ ?s ?p ?o }} }}")
    assert status == 503 and b"limit of 4 s" in body and 3.5 < time.monotonic() - started < 8
    assert call(federating, "ASK { country:FRA cmc:isoAlpha2 'FR' }")[0] == 200


@pytest.mark.system
def test_service_not_on_the_allowlist_is_refused_without_a_connection(federating, fake_wikidata):
    listener = Listener()
    try:
        status, _, body = call(federating, _federated("22", listener.url))
        assert status == 403 and b"allowlist" in body
        time.sleep(0.5)
        assert listener.connections == []
    finally:
        listener.close()
