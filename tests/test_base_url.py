"""Absolute URLs the server writes (VoID, the SPARQL service description) come from the `base_url` setting,
never from the request's Host header: a hostile or malformed Host changes no answer. Every answer says
`X-Content-Type-Options: nosniff`."""

from __future__ import annotations

import http.client
import re
import urllib.parse

import pyoxigraph as ox
import pytest
from rdflib import Graph, URIRef

from cmc_kg.namespaces import SD, VOID
from cmc_kg.settings import Settings

from conftest import start_server, stop_server
from test_sparql_protocol import call

HOSTILE_HOSTS = ["evil.example", "evil.example:8443", "evil.example:notaport", "[::1", "a b", "évil.example",
                 "evil.example/../x", "127.0.0.1, evil.example", "@evil.example", "", ":", "evil.example\t"]
PUBLIC = "https://cmc.example.org/kg"


def with_host(url: str, path: str, host: str, accept: str = "text/turtle") -> tuple[int, dict, bytes]:
    """GET ``path`` with exactly this Host header (http.client sends what it is given)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host.encode("utf-8"))
        connection.putheader("Accept", accept)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def same_graph(left: bytes, right: bytes) -> bool:
    """Whether two Turtle documents hold the same triples up to blank-node names (Oxigraph's canonical form:
    rdflib's isomorphism test takes seconds on a service description's blank nodes)."""
    def canonical(data: bytes) -> set:
        dataset = ox.Dataset(ox.parse(data, ox.RdfFormat.TURTLE))
        dataset.canonicalize(ox.CanonicalizationAlgorithm.UNSTABLE)
        return set(dataset)
    return canonical(left) == canonical(right)


def urls_in(body: bytes) -> set[str]:
    return set(re.findall(r"<(https?://[^>]*)>", body.decode("utf-8")))


PAGES = {"/.well-known/void": lambda g, base: (set(g.objects(None, VOID.sparqlEndpoint)), {URIRef(base + "/sparql")}),
         "/sparql": lambda g, base: (set(g.subjects(None, SD.Service)) | set(g.objects(None, SD.endpoint)),
                                     {URIRef(base + "/sparql")})}


@pytest.fixture(scope="module")
def published(built):
    """A server told its public URL, as behind a reverse proxy."""
    live = start_server(built[0].build_dir, "--workers", "1", "--base-url", PUBLIC + "/")
    yield live
    stop_server(live)


@pytest.mark.system
@pytest.mark.parametrize("path", list(PAGES))
@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_host_header_changes_no_answer(server, published, path, host):
    for live, base in ((server, server.url), (published, PUBLIC)):
        status, headers, body = with_host(live.url, path, host)
        assert status in (200, 400), body  # waitress may refuse a Host it cannot read; never 500
        assert status == 200 or host not in ("evil.example", "evil.example:8443", "evil.example:notaport")
        if status != 200:
            continue
        _, _, plain = with_host(live.url, path, urllib.parse.urlsplit(live.url).netloc)
        # the data may hold these words itself (a source's title): the hostile Host adds none of them
        for marker in (b"evil", b"http:///", "é".encode()):
            assert body.count(marker) == plain.count(marker), marker
        graph = Graph().parse(data=body, format="turtle")
        got, expected = PAGES[path](graph, base)
        assert got == expected
        own = {u for u in urls_in(body) if u.startswith(("http://127.0.0.1", "https://cmc.example.org"))}
        assert own and all(u.startswith(base + "/") for u in own), own
        assert same_graph(body, plain)
        assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.system
def test_void_dumps_and_endpoint_use_the_configured_base(published):
    status, _, body = call(published.url + "/.well-known/void", accept="text/turtle")
    assert status == 200
    void = Graph().parse(data=body, format="turtle")
    assert set(void.objects(None, VOID.sparqlEndpoint)) == {URIRef(PUBLIC + "/sparql")}
    dumps = list(void.objects(None, VOID.dataDump))
    assert dumps and all(str(d).startswith(PUBLIC + "/dumps/") for d in dumps)
    assert not any("127.0.0.1" in u for u in urls_in(body))


@pytest.mark.system
def test_nosniff_on_every_sparql_answer(server):
    endpoint = server.url + "/sparql"
    for answer in (call(endpoint, "ASK {}"), call(endpoint, "SELEC nothing"), call(endpoint, accept="text/turtle"),
                   call(endpoint, "ASK {}", accept="image/png"), call(endpoint, "ASK {}", method="POST"),
                   call(endpoint, method="POST", body=b"x", content_type="text/plain"),
                   call(server.url + "/query"), call(server.url + "/health")):
        assert answer[1]["X-Content-Type-Options"] == "nosniff", answer[0]


def test_base_url_setting():
    assert Settings().public_url == "http://127.0.0.1:8000"
    assert Settings(host="::1", port=9).public_url == "http://[::1]:9"
    assert Settings.load(environ={"CMC_KG_BASE_URL": PUBLIC + "/"}).public_url == PUBLIC
    assert Settings.load(environ={}, base_url="http://localhost:1/").public_url == "http://localhost:1"
    for bad in ("evil.example", "ftp://x.example", "http://x.example/?q=1", "http://x.example/#f", "http://a b",
                "http://u@x.example", "http://x.example:port", "http:///sparql"):
        with pytest.raises(ValueError):
            Settings.load(environ={"CMC_KG_BASE_URL": bad})
        with pytest.raises(ValueError):
            Settings(base_url=bad)
