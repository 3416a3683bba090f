"""Working with an existing SPARQL engine (Oxigraph server, Fuseki, Virtuoso, QLever) when one machine is not enough.

`push` uploads the build with the SPARQL 1.1 Graph Store Protocol and, where the engine has an update endpoint,
switches to it in one SPARQL update (on Oxigraph readers see the old build or the new one, never a mix). It then
records which build the engine holds in the graph PUSH_GRAPH. `RemoteEngine` answers the server's queries from such an
engine, so the endpoint, the query page and the entity pages work the same over it; its build id is the one
push recorded, read again every few seconds, so that the answer cache and ETags change with each push.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import netrc
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable

import pyoxigraph as ox

from .contract import Answer, AnswerTooLarge, NotAcceptable, QueryPolicy, QueryRequest, QueryTimeout
from .formats import RDF_FORMATS, RESULT_FORMATS, write_boolean, write_solutions, write_triples
from .namespaces import DCTERMS, GRAPH, MERGED_GRAPH, PUSH_GRAPH
from .query import PREFIX_MAP, QueryError, internal_query, load_store, prologue, set_values
from .safety import check_query
from .settings import PUSH_PASSWORD_VARIABLE, PUSH_USER_VARIABLE

__all__ = ["RemoteEngine", "RemoteError", "Credentials", "push"]

_USER_AGENT = "cmc-kg/0.1 (SPARQL 1.1 client of the cmc-kg server)"
USER_VARIABLE, PASSWORD_VARIABLE = PUSH_USER_VARIABLE, PUSH_PASSWORD_VARIABLE


class RemoteError(Exception):
    """The remote engine failed or refused; the message carries its status and words."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password for an engine's endpoints; ``repr`` never shows the password."""

    user: str
    password: str
    origin: str  # where they came from, for messages

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, from {self.origin})"

    @classmethod
    def find(cls, url: str, environ=None) -> "Credentials | None":
        """From CMC_KG_PUSH_USER and CMC_KG_PUSH_PASSWORD, else from the netrc file ($NETRC or ~/.netrc) entry of
        the URL's host; never from the command line, where other users of the machine could read them."""
        environ = os.environ if environ is None else environ
        if environ.get(USER_VARIABLE) or environ.get(PASSWORD_VARIABLE):
            if not (environ.get(USER_VARIABLE) and environ.get(PASSWORD_VARIABLE)):
                raise RemoteError(f"set both {USER_VARIABLE} and {PASSWORD_VARIABLE}, or neither")
            return cls(environ[USER_VARIABLE], environ[PASSWORD_VARIABLE], f"{USER_VARIABLE}/{PASSWORD_VARIABLE}")
        path = environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
        if not os.path.exists(path):
            return None
        try:
            entry = netrc.netrc(path).authenticators(urllib.parse.urlsplit(url).hostname or "")
        except (netrc.NetrcParseError, OSError) as bad:
            raise RemoteError(f"cannot read the netrc file {path}: {bad}") from None
        return cls(entry[0], entry[2], path) if entry and entry[0] else None


class _Client:
    """HTTP to one engine, answering its Basic or Digest challenge with the credentials.

    urllib's own handlers send a request's body before learning that it needs credentials, and Virtuoso closes
    the connection on a large unauthenticated PUT before reading it (a broken pipe, not a 401). So the client
    learns the challenge first, with a HEAD request, and then authenticates every request up front.
    """

    def __init__(self, credentials: Credentials | None = None, urls: tuple[str, ...] = ()):
        self.credentials = credentials
        self._passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        if credentials is not None:
            for url in urls:
                self._passwords.add_password(None, url, credentials.user, credentials.password)
        self._digest = urllib.request.HTTPDigestAuthHandler(self._passwords)   # computes Digest responses
        self._challenge: tuple[str, dict] | None = None
        self._opener = urllib.request.build_opener()

    def _authorization(self, request: urllib.request.Request) -> str | None:
        user, password = self._passwords.find_user_password(None, request.full_url)
        if user is None or self._challenge is None:
            return None  # never send credentials to a URL they were not given for
        scheme, params = self._challenge
        if scheme == "basic":
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        response = self._digest.get_authorization(request, params)
        return f"Digest {response}" if response else None

    def _learn(self, headers) -> bool:
        """Keep the engine's challenge (Digest preferred over Basic); says whether there was one."""
        offers = {}
        for header in headers.get_all("WWW-Authenticate") or ():
            scheme, _, rest = header.partition(" ")
            offers[scheme.lower()] = urllib.request.parse_keqv_list([p for p in urllib.request.parse_http_list(rest) if p])
        for scheme in ("digest", "basic"):
            if scheme in offers:
                self._challenge = (scheme, offers[scheme])
                return True
        return False

    def send(self, url: str, data: bytes | None = None, method: str = "GET", headers: dict | None = None,
             timeout: float = 60.0, max_bytes: int | None = None) -> tuple[int, str, bytes]:
        """One HTTP exchange; a body longer than ``max_bytes`` raises AnswerTooLarge without being read whole."""
        if self.credentials is not None and self._challenge is None and data is not None:
            try:  # only to learn the challenge, if the engine has one
                self._opener.open(urllib.request.Request(url, method="HEAD", headers={"User-Agent": _USER_AGENT}),
                                  timeout=timeout).close()
            except urllib.error.HTTPError as failure:
                if failure.code == 401:
                    self._learn(failure.headers)
        for attempt in (1, 2):
            request = urllib.request.Request(url, data=data, method=method,
                                             headers={"User-Agent": _USER_AGENT, **(headers or {})})
            authorization = self._authorization(request) if self.credentials is not None else None
            if authorization:
                request.add_unredirected_header("Authorization", authorization)
            try:
                with self._opener.open(request, timeout=timeout) as response:
                    body = response.read() if max_bytes is None else response.read(max_bytes + 1)
                    if max_bytes is not None and len(body) > max_bytes:
                        raise AnswerTooLarge(f"the answer is larger than the limit of {max_bytes:,} bytes "
                                             "(max_answer_bytes); ask for fewer rows (LIMIT) or fewer or shorter values")
                    return response.status, response.headers.get("Content-Type", ""), body
            except urllib.error.HTTPError as failure:
                # a first challenge, or a new nonce (Digest nonces go stale): answer it once
                if failure.code == 401 and attempt == 1 and self.credentials is not None and self._learn(failure.headers):
                    failure.read()
                    continue
                return failure.code, failure.headers.get("Content-Type", ""), failure.read()
        raise AssertionError("unreachable")

    def expect(self, what: str, status: int, body: bytes, ok=(200, 201, 204)) -> None:
        if status in ok:
            return
        if status == 401:
            raise RemoteError(f"{what} answered 401: " + (
                f"the engine refused the credentials from {self.credentials.origin}" if self.credentials else
                f"the engine asks for credentials: set {USER_VARIABLE} and {PASSWORD_VARIABLE}, or add its host "
                "to your netrc file"))
        raise RemoteError(f"{what} answered {status}: {_words(body)}")

    def select(self, endpoint: str, text: str, timeout: float = 60.0) -> list[dict]:
        status, _, body = self.send(endpoint, urllib.parse.urlencode({"query": text}).encode(), "POST", {
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/sparql-results+json"},
            timeout)
        self.expect(f"the query endpoint {endpoint}", status, body, ok=(200,))
        return json.loads(body)["results"]["bindings"]


def _words(body: bytes) -> str:
    """The gist of an error page: its text without markup, shortened."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", body.decode("utf-8", "replace"))).strip()[:500]


def _unshift_lines(message: str, shift: int) -> str:
    """Make a parser's 'line:column' count from the user's query, not from the PREFIX lines put before it.

    >>> _unshift_lines("error at 31:4: expected", 30)
    'error at 1:4: expected'
    """
    return re.sub(r"\b(\d+):(\d+)\b", lambda m: f"{max(1, int(m.group(1)) - shift)}:{m.group(2)}", message, count=1)


class RemoteEngine:
    """Answers :class:`QueryRequest`s from a remote SPARQL 1.1 query endpoint (a :class:`QueryEngine`).

    The build id is the one `cmc-kg push` recorded in PUSH_GRAPH (an engine loaded otherwise: its URL and size).
    When the engine's default graph is the union of all its graphs (Virtuoso), each query that names no graphs
    of its own is sent with the build's graphs as its dataset (the merged graph as default graph, the build's
    graphs as named graphs), so that it sees what the embedded store holds: not the engine's own system graphs,
    nor a push's staging graphs.

    :param endpoint: the engine's query URL (Oxigraph: http://host:7878/query; Virtuoso: http://host:8890/sparql).
    :param timeout: seconds to wait for an answer; past it the request is abandoned with QueryTimeout.
    :param policy: what the check lets through. Here the check is the only guard: the remote engine may
        fetch what a query names, so every query is checked before it is sent, with the time limit.
    :param max_answer_bytes: the largest answer read from the remote engine.
    """

    def __init__(self, endpoint: str, timeout: float = 10.0, policy: QueryPolicy = QueryPolicy(),
                 max_answer_bytes: int = 16 << 20):
        self.endpoint, self.timeout, self.policy = endpoint, timeout, policy
        self.max_answer_bytes = max_answer_bytes
        # an engine behind a password (Virtuoso's /sparql-auth, a proxy's auth_basic) gets the same credentials
        # as push, sent only to this endpoint and only once it has asked for them
        self._client = _Client(Credentials.find(endpoint), (endpoint,))
        self.graphs: frozenset[str] = frozenset()
        self.network_filter: str | None = None  # the remote engine guards its own network
        self._dataset: tuple[tuple[str, str], ...] = ()
        pushed, build_graphs = self._marker()
        if pushed and str(MERGED_GRAPH) in build_graphs:   # push found the engine's default graph to be the union
            self._dataset = (("default-graph-uri", str(MERGED_GRAPH)),
                             *(("named-graph-uri", g) for g in sorted(build_graphs - {str(MERGED_GRAPH)})))
            # Virtuoso answers with one header per graph of the dataset (X-SPARQL-named-graph), more than the
            # standard library's limit of 100 headers once the build has 100 graphs: raise it for this dataset
            http.client._MAXHEADERS = max(http.client._MAXHEADERS, len(self._dataset) + 100)  # type: ignore[attr-defined]
        self.triples = self._count()
        if pushed:
            self.graphs = frozenset(build_graphs - {str(MERGED_GRAPH)})
        else:
            answer = self.run(QueryRequest(internal_query("graph-names"), max_rows=100_000))
            self.graphs = frozenset(b["g"]["value"] for b in json.loads(answer.body)["results"]["bindings"])
        # Loaded by hand, not by push: its size stands in for a build id (a change of size is then a new build).
        self.build_id = self.loaded = pushed or f"{endpoint}#{self.triples}"

    def _marker(self) -> tuple[str | None, frozenset[str]]:
        rows = self._client.select(self.endpoint, prologue() + internal_query("push-marker"))
        builds = {row["build"]["value"] for row in rows}
        return (builds.pop() if len(builds) == 1 else None), frozenset(r["graph"]["value"] for r in rows if "graph" in r)

    def _count(self) -> int:
        answer = self.run(QueryRequest(internal_query("triples")))
        return int(json.loads(answer.body)["results"]["bindings"][0]["n"]["value"])

    def latest(self) -> str | None:
        """The build id push recorded last (one small query)."""
        pushed, _ = self._marker()
        return pushed or f"{self.endpoint}#{self._count()}"

    def live_workers(self) -> None:
        return None  # the remote engine's capacity is its own

    def run(self, request: QueryRequest) -> Answer:
        started = time.perf_counter()
        try:
            shape = check_query(request.text, self.policy.allowed_services, self.graphs, self.policy.max_depth,
                                deadline=time.monotonic() + self.timeout)
        except TimeoutError:
            raise QueryTimeout(f"checking the query took longer than the limit of {self.timeout:g} s") from None
        fields = [("query", prologue() + request.text)]
        fields += [("default-graph-uri", g) for g in request.default_graphs or ()]
        fields += [("named-graph-uri", g) for g in request.named_graphs or ()]
        if len(fields) == 1 and not shape.datasets:
            fields += self._dataset
        try:
            status, mime, body = self._client.send(self.endpoint, urllib.parse.urlencode(fields).encode(), "POST", {
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/sparql-results+json, application/n-triples;q=0.9"}, self.timeout,
                max_bytes=min(request.max_bytes, self.max_answer_bytes))
        except (TimeoutError, urllib.error.URLError) as failure:
            if isinstance(failure, TimeoutError) or isinstance(getattr(failure, "reason", None), TimeoutError):
                raise QueryTimeout(f"the remote engine gave no answer within {self.timeout:g} s") from None
            raise RemoteError(f"cannot reach the remote engine at {self.endpoint}: {failure}") from None
        if status == 400:
            raise QueryError(_unshift_lines(body.decode("utf-8", "replace").strip(), prologue().count("\n")))
        if status != 200:
            raise RemoteError(f"the remote engine answered {status}: {body.decode('utf-8', 'replace')[:500]}")
        media_type = mime.split(";")[0].strip()
        if media_type in RDF_FORMATS["ntriples"].media_types:
            if request.graph_format is None:
                raise NotAcceptable("graph")
            triples = [q.triple for q in ox.parse(body, format=ox.RdfFormat.N_TRIPLES)]
            cut = triples[:request.max_rows]
            return Answer("graph", request.graph_format, write_triples(cut, RDF_FORMATS[request.graph_format], PREFIX_MAP),
                          len(cut), len(triples) > len(cut), time.perf_counter() - started)
        result = ox.parse_query_results(body, format=ox.QueryResultsFormat.JSON)
        if request.results_format is None:
            raise NotAcceptable("results")
        fmt = RESULT_FORMATS[request.results_format]
        if isinstance(result, ox.QueryBoolean):
            return Answer("boolean", fmt.name, write_boolean(bool(result), fmt), 1, False,
                          time.perf_counter() - started)
        variables = [v.value for v in result.variables]
        rows = list(result)
        if variables == ["__ASK_RETVAL"]:  # Virtuoso answers an ASK sent with a dataset as rows: one row for true
            return Answer("boolean", fmt.name, write_boolean(bool(rows), fmt), 1, False, time.perf_counter() - started)
        cut = rows[:request.max_rows]
        return Answer("results", fmt.name, write_solutions(variables, cut, fmt), len(cut), len(rows) > len(cut),
                      time.perf_counter() - started)

    def close(self, wait: float = 0.0) -> None:
        pass

    def retire(self) -> None:
        pass


def _graph_store_url(base: str, graph: str | None) -> str:
    return f"{base}{'&' if '?' in base else '?'}" + ("default" if graph is None else
                                                      urllib.parse.urlencode({"graph": graph}))


def _sibling(endpoint: str, name: str) -> str | None:
    """Oxigraph's query and update URLs, next to its /store."""
    trimmed = endpoint.rstrip("/")
    return trimmed[:-len("store")] + name if trimmed.endswith("/store") else None


def push(dump_file, endpoint: str, query_endpoint: str | None = None, update_endpoint: str | None = None,
         credentials: Credentials | None = None, progress: Callable[[str], None] = lambda _: None) -> dict[str, int]:
    """Upload the build, replacing the previous upload, and record its build id in PUSH_GRAPH.

    With an update endpoint every graph is first PUT under a staging name, then one SPARQL update moves them all
    over the served graphs and drops graphs of an earlier upload that the build no longer has: an engine that
    runs an update request as one transaction and each query on a snapshot (Oxigraph) switches readers from the
    old build to the new one at once. A second update then moves the new build id into PUSH_GRAPH, so that it is
    never read with the old data. Without an update endpoint, each graph is replaced by its PUT in turn and the
    build id is written last.

    :param endpoint: the GSP URL (Oxigraph: http://host:7878/store; Virtuoso: http://host:8890/sparql-graph-crud-auth).
    :param query_endpoint: a query URL of the same store (derived for Oxigraph's /store), to find graphs of an
        earlier upload and whether the engine's default graph is the union of its graphs (then the merged
        default graph goes into MERGED_GRAPH instead).
    :param update_endpoint: a SPARQL update URL of the same store (derived for Oxigraph's /store).
    :param credentials: sent when the engine asks (HTTP Basic or Digest), never otherwise.
    :returns: triples uploaded per graph (the merged default graph under "default").
    """
    for url in (endpoint, query_endpoint, update_endpoint):
        if url and urllib.parse.urlsplit(url).password is not None:
            raise RemoteError(f"a password in a URL is refused (command lines are visible to every user of the "
                              f"machine): set {USER_VARIABLE} and {PASSWORD_VARIABLE} or use a netrc file")
    query_endpoint = query_endpoint or _sibling(endpoint, "query")
    update_endpoint = update_endpoint or _sibling(endpoint, "update")
    client = _Client(credentials, tuple(u for u in (endpoint, query_endpoint, update_endpoint) if u))
    build_id = _sha256(dump_file)
    store = load_store(dump_file)
    graphs = sorted(g.value for g in store.named_graphs())
    staging = f"{PUSH_GRAPH}/staging/{build_id[:16]}/"

    def put(triples: list, target: str | None) -> None:
        progress(f"PUT {target or 'default graph'} ({len(triples)} triples)")
        status, _, body = client.send(_graph_store_url(endpoint, target), ox.serialize(
            triples, format=ox.RdfFormat.N_TRIPLES), "PUT", {"Content-Type": "application/n-triples"}, timeout=300)
        client.expect(f"PUT {target or 'default graph'}", status, body)

    def triples_of(name: str | None) -> list:
        return [q.triple for q in store.quads_for_pattern(None, None, None, ox.NamedNode(name) if name else ox.DefaultGraph())]

    marker = [ox.Triple(ox.NamedNode(str(PUSH_GRAPH)), ox.NamedNode(str(DCTERMS.identifier)), ox.Literal(build_id))]
    marker += [ox.Triple(ox.NamedNode(str(PUSH_GRAPH)), ox.NamedNode(str(DCTERMS.hasPart)), ox.NamedNode(g))
               for g in graphs]
    atomic = update_endpoint is not None
    if atomic:
        put(marker, staging + "push")
    union = atomic and query_endpoint is not None and client.select(query_endpoint, prologue() + set_values(
        internal_query("default-graph-is-union"), ("build",), [(str(ox.Literal(build_id)),)])) != []
    if union:  # the engine's default graph is every graph it holds: the merged one is a graph of its own
        marker.append(ox.Triple(ox.NamedNode(str(PUSH_GRAPH)), ox.NamedNode(str(DCTERMS.hasPart)),
                                ox.NamedNode(str(MERGED_GRAPH))))
        put(marker, staging + "push")
    uploaded: dict[str, int] = {}
    moves: list[str] = []
    for name in graphs + [None]:
        triples = triples_of(name)
        final = name or (str(MERGED_GRAPH) if union else None)
        if atomic:
            put(triples, staging + str(len(moves)))
            moves.append(f"MOVE SILENT GRAPH <{staging}{len(moves)}> TO {f'GRAPH <{final}>' if final else 'DEFAULT'}")
        else:
            put(triples, final)
        uploaded[name or "default"] = len(triples)
    stale = []
    if query_endpoint:
        remote = {row["g"]["value"] for row in client.select(query_endpoint, internal_query("graph-names"), timeout=600)}
        keep = set(graphs) | {str(PUSH_GRAPH), str(MERGED_GRAPH) if union else ""}
        stale = sorted(g for g in remote - keep if g.startswith(str(GRAPH)) and not g.startswith(staging))
    if update_endpoint is not None:
        progress(f"switching to build {build_id[:12]} in one update ({len(moves)} graphs moved, {len(stale)} dropped)")
        # The build id moves only once the data update has returned: Virtuoso lets a query that runs during a
        # commit read some graphs before it and some after, so a build id moved with the data could be read with
        # the old data, and serve --store would cache old answers under the new id.
        for what, operations in (("the switching update", moves + [f"DROP SILENT GRAPH <{g}>" for g in stale]),
                                 ("recording the build id", [f"MOVE SILENT GRAPH <{staging}push> TO GRAPH <{PUSH_GRAPH}>"])):
            status, _, body = client.send(update_endpoint, " ;\n".join(operations).encode(), "POST",
                                          {"Content-Type": "application/sparql-update"}, timeout=600)
            client.expect(what, status, body)
        return uploaded
    for graph in stale:
        progress(f"DELETE {graph} (not in this build)")
        status, _, body = client.send(_graph_store_url(endpoint, graph), method="DELETE")
        client.expect(f"DELETE {graph}", status, body, ok=(200, 204, 404))
    put(marker, str(PUSH_GRAPH))
    return uploaded


def _sha256(path) -> str:
    """The dump's SHA-256, the build id the embedded engine gives the same build."""
    digest = hashlib.sha256()
    with open(path, "rb") as dump:
        for block in iter(lambda: dump.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
