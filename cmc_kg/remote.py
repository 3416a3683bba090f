"""Working with an existing SPARQL engine (Oxigraph server, Fuseki, Virtuoso, QLever) when one machine is not enough.

`push` uploads the build with the SPARQL 1.1 Graph Store Protocol: every named graph by PUT (which
replaces it), the merged default graph by PUT ?default, and graphs of an earlier upload that the build
no longer has are deleted. `RemoteEngine` answers the server's queries from such an engine, so the
endpoint, the query page and the entity pages work the same over it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

import pyoxigraph as ox

from .engine import Answer, AnswerTooLarge, NotAcceptable, QueryPolicy, QueryRequest, QueryTimeout
from .formats import RDF_FORMATS, RESULT_FORMATS, write_boolean, write_solutions, write_triples
from .namespaces import GRAPH
from .query import PREFIX_MAP, QueryError, load_store
from .safety import check_query

__all__ = ["RemoteEngine", "RemoteError", "push"]

_USER_AGENT = "cmc-kg/0.1 (SPARQL 1.1 client of the cmc-kg server)"


class RemoteError(Exception):
    """The remote engine failed or refused; the message carries its status and words."""


def _send(url: str, data: bytes | None = None, method: str = "GET", headers: dict | None = None,
          timeout: float = 60.0, max_bytes: int | None = None) -> tuple[int, str, bytes]:
    """One HTTP exchange; a body longer than ``max_bytes`` raises AnswerTooLarge without being read whole."""
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"User-Agent": _USER_AGENT, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read() if max_bytes is None else response.read(max_bytes + 1)
            if max_bytes is not None and len(body) > max_bytes:
                raise AnswerTooLarge(f"the answer is larger than the limit of {max_bytes:,} bytes "
                                     "(max_answer_bytes); ask for fewer rows (LIMIT) or fewer or shorter values")
            return response.status, response.headers.get("Content-Type", ""), body
    except urllib.error.HTTPError as failure:
        return failure.code, failure.headers.get("Content-Type", ""), failure.read()


def _prologue() -> str:
    """PREFIX lines for the project's prefixes, which other engines do not predefine."""
    return "".join(f"PREFIX {prefix}: <{namespace}>\n" for prefix, namespace in PREFIX_MAP.items())


def _unshift_lines(message: str, shift: int) -> str:
    """Make a parser's 'line:column' count from the user's query, not from the PREFIX lines put before it.

    >>> _unshift_lines("error at 31:4: expected", 30)
    'error at 1:4: expected'
    """
    return re.sub(r"\b(\d+):(\d+)\b", lambda m: f"{max(1, int(m.group(1)) - shift)}:{m.group(2)}", message, count=1)


class RemoteEngine:
    """Answers :class:`QueryRequest`s from a remote SPARQL 1.1 query endpoint.

    :param endpoint: the engine's query URL (Oxigraph: http://host:7878/query; Fuseki: …/dataset/sparql).
    :param timeout: seconds to wait for an answer; past it the request is abandoned with QueryTimeout.
    :param policy: what the check lets through. Here the check is the only guard: the remote engine may
        fetch what a query names, so every query is checked before it is sent, with the time limit.
    :param max_answer_bytes: the largest answer read from the remote engine.
    """

    def __init__(self, endpoint: str, timeout: float = 10.0, policy: QueryPolicy = QueryPolicy(),
                 max_answer_bytes: int = 16 << 20):
        self.endpoint, self.timeout, self.policy = endpoint, timeout, policy
        self.max_answer_bytes = max_answer_bytes
        self.graphs: frozenset[str] = frozenset()
        self.triples = self._count()
        answer = self.run(QueryRequest("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }", max_rows=100_000))
        self.graphs = frozenset(b["g"]["value"] for b in json.loads(answer.body)["results"]["bindings"])

    def _count(self) -> int:
        answer = self.run(QueryRequest("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"))
        return int(json.loads(answer.body)["results"]["bindings"][0]["n"]["value"])

    def run(self, request: QueryRequest) -> Answer:
        started = time.perf_counter()
        try:
            check_query(request.text, self.policy.allowed_services, self.graphs, self.policy.max_depth,
                        deadline=time.monotonic() + self.timeout)
        except TimeoutError:
            raise QueryTimeout(f"checking the query took longer than the limit of {self.timeout:g} s") from None
        fields = [("query", _prologue() + request.text)]
        fields += [("default-graph-uri", g) for g in request.default_graphs or ()]
        fields += [("named-graph-uri", g) for g in request.named_graphs or ()]
        try:
            status, mime, body = _send(self.endpoint, urllib.parse.urlencode(fields).encode(), "POST", {
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/sparql-results+json, application/n-triples;q=0.9"}, self.timeout,
                max_bytes=min(request.max_bytes, self.max_answer_bytes))
        except (TimeoutError, urllib.error.URLError) as failure:
            if isinstance(failure, TimeoutError) or isinstance(getattr(failure, "reason", None), TimeoutError):
                raise QueryTimeout(f"the remote engine gave no answer within {self.timeout:g} s") from None
            raise RemoteError(f"cannot reach the remote engine at {self.endpoint}: {failure}") from None
        if status == 400:
            raise QueryError(_unshift_lines(body.decode("utf-8", "replace").strip(), _prologue().count("\n")))
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
        cut = rows[:request.max_rows]
        return Answer("results", fmt.name, write_solutions(variables, cut, fmt), len(cut), len(rows) > len(cut),
                      time.perf_counter() - started)

    def close(self) -> None:
        pass


def _graph_store_url(base: str, graph: str | None) -> str:
    return f"{base}{'&' if '?' in base else '?'}" + ("default" if graph is None else
                                                      urllib.parse.urlencode({"graph": graph}))


def push(dump_file, endpoint: str, query_endpoint: str | None = None,
         progress: Callable[[str], None] = lambda _: None) -> dict[str, int]:
    """Upload the build to a Graph Store Protocol endpoint, replacing the previous upload.

    :param endpoint: the GSP URL (Oxigraph: http://host:7878/store; Fuseki: http://host:3030/ds/data).
    :param query_endpoint: a SPARQL query URL of the same store, used to find graphs of an earlier upload
        that the build no longer has (Oxigraph's is derived from its /store URL).
    :returns: triples uploaded per graph (the default graph under "default").
    """
    store = load_store(dump_file)
    graphs = sorted(g.value for g in store.named_graphs())
    uploaded = {}
    for name in graphs + [None]:
        graph_name = ox.NamedNode(name) if name else ox.DefaultGraph()
        triples = [q.triple for q in store.quads_for_pattern(None, None, None, graph_name)]
        progress(f"PUT {name or 'default graph'} ({len(triples)} triples)")
        status, _, body = _send(_graph_store_url(endpoint, name), ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES),
                                "PUT", {"Content-Type": "application/n-triples"}, timeout=300)
        if status not in (200, 201, 204):
            raise RemoteError(f"PUT {name or 'default graph'} answered {status}: {body.decode('utf-8', 'replace')[:500]}")
        uploaded[name or "default"] = len(triples)
    if query_endpoint is None and endpoint.rstrip("/").endswith("/store"):
        query_endpoint = endpoint.rstrip("/")[:-len("store")] + "query"
    if query_endpoint:
        status, _, body = _send(query_endpoint, urllib.parse.urlencode(
            {"query": "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }"}).encode(), "POST",
            {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/sparql-results+json"})
        if status != 200:
            raise RemoteError(f"listing the remote graphs answered {status}")
        remote = {s["g"].value for s in ox.parse_query_results(body, format=ox.QueryResultsFormat.JSON)}  # type: ignore[union-attr]
        for stale in sorted(g for g in remote - set(graphs) if g.startswith(str(GRAPH))):
            progress(f"DELETE {stale} (not in this build)")
            status, _, body = _send(_graph_store_url(endpoint, stale), method="DELETE")
            if status not in (200, 204, 404):
                raise RemoteError(f"DELETE {stale} answered {status}: {body.decode('utf-8', 'replace')[:500]}")
    return uploaded
