"""Evaluate SPARQL in worker processes that can be stopped.

Oxigraph offers no way to cancel a running query, and a thread cannot be killed, so each query runs in
one of a few worker processes that hold the build in memory; a query past its time limit is stopped by
killing its worker, which is replaced in the background. The workers also let two cores evaluate at
once. Answers are serialised in the worker, cut at the row cap, and come back as bytes.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from dataclasses import dataclass

import pyoxigraph as ox

from .formats import RDF_FORMATS, RESULT_FORMATS, write_boolean, write_solutions, write_triples
from .query import PREFIX_MAP, QueryError, default_graph_size, load_store, run_query
from .safety import QueryRefused, check_query

__all__ = ["QueryRequest", "Answer", "Engine", "QueryTimeout", "EngineBusy", "NotAcceptable", "ServiceError"]


class QueryTimeout(Exception):
    """The query ran past the time limit and was stopped."""


class EngineBusy(Exception):
    """No worker became free within the time limit."""


class NotAcceptable(Exception):
    """The query's form (results or graph) has no format the client accepts."""


class ServiceError(Exception):
    """A SERVICE endpoint the query called failed: no connection, an HTTP error, or an answer that is not SPARQL
    results. (One that does not answer at all is stopped by the query's time limit, as any slow query is.)"""


def _calls_service(text: str) -> bool:
    try:
        check_query(text)
    except QueryRefused as refused:
        return str(refused).startswith("SERVICE")
    return False


def _service_failure(text: str, error: Exception) -> str:
    """What pyoxigraph raised while a SERVICE ran (OSError for the connection and HTTP statuses, RuntimeError for
    an unreadable answer), with the endpoints the query calls."""
    called = sorted(set(re.findall(r"SERVICE\s+(?:SILENT\s+)?(<[^<>\s]*>)", text, re.IGNORECASE)))
    return f"a SERVICE endpoint failed ({', '.join(called) or 'unknown'}): {type(error).__name__}: {error}"


@dataclass(frozen=True)
class QueryRequest:
    """A query with its dataset and the formats the client accepts for each kind of answer.

    ``default_graphs`` / ``named_graphs`` are the protocol's default-graph-uri and named-graph-uri, which
    override the query's FROM and FROM NAMED; with neither, the default graph is the union of all graphs
    (``asserted_only``: all but the inferred graph) and every graph is named.
    """

    text: str
    results_format: str | None = "json"
    graph_format: str | None = "turtle"
    default_graphs: tuple[str, ...] | None = None
    named_graphs: tuple[str, ...] | None = None
    asserted_only: bool = False
    max_rows: int = 10_000


@dataclass(frozen=True)
class Answer:
    """A serialised answer: ``kind`` is 'results', 'boolean' or 'graph'; ``truncated`` says the row cap cut it."""

    kind: str
    format: str
    body: bytes
    rows: int
    truncated: bool
    seconds: float


def evaluate(store: ox.Store, request: QueryRequest) -> Answer:
    """Run one query and serialise its answer; raise QueryError or NotAcceptable."""
    started = time.perf_counter()
    result = run_query(store, request.text, request.asserted_only, default_graphs=request.default_graphs,
                       named_graphs=request.named_graphs)
    if isinstance(result, ox.QueryBoolean):
        if request.results_format is None:
            raise NotAcceptable("results")
        fmt = RESULT_FORMATS[request.results_format]
        return Answer("boolean", fmt.name, write_boolean(bool(result), fmt), 1, False, time.perf_counter() - started)
    kind, name = ("graph", request.graph_format) if isinstance(result, ox.QueryTriples) else \
        ("results", request.results_format)
    if name is None:
        raise NotAcceptable(kind)
    rows = []
    for item in result:
        if len(rows) == request.max_rows:
            truncated = True
            break
        rows.append(item)
    else:
        truncated = False
    if kind == "graph":
        body = write_triples(rows, RDF_FORMATS[name], PREFIX_MAP)
    else:
        body = write_solutions([v.value for v in result.variables], rows, RESULT_FORMATS[name])
    return Answer(kind, name, body, len(rows), truncated, time.perf_counter() - started)


def _serve(dump_file: str, requests: Connection, connection: Connection) -> None:
    """A worker process: load the build, then answer requests until the pipe closes."""
    store = load_store(dump_file)
    connection.send(("ready", default_graph_size(store)))
    while True:
        try:
            request = requests.recv()
        except EOFError:
            return
        try:
            connection.send(("ok", evaluate(store, request)))
        except QueryError as error:
            connection.send(("query-error", str(error)))
        except NotAcceptable as error:
            connection.send(("not-acceptable", str(error)))
        except (OSError, RuntimeError) as error:
            if not _calls_service(request.text):
                connection.send(("error", f"{type(error).__name__}: {error}"))
            else:
                connection.send(("service-error", _service_failure(request.text, error)))
        except Exception as error:  # an engine failure is reported, the worker lives on
            connection.send(("error", f"{type(error).__name__}: {error}"))


class _Worker:
    """One worker process, started as `python -m cmc_kg.engine` so that nothing of the server is copied into it."""

    def __init__(self, dump_file: str):
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cmc_kg.engine", dump_file, str(to_child), str(from_child)],
            pass_fds=(to_child, from_child), stdin=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self.connection = Connection(to_parent, readable=True, writable=False)
        self.requests = Connection(from_parent, readable=False, writable=True)
        status, self.triples = self.connection.recv()

    def send(self, request: QueryRequest) -> None:
        self.requests.send(request)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=5)
        self.connection.close()
        self.requests.close()


class Engine:
    """A pool of worker processes over one build file.

    :param dump_file: the build's N-Quads dump.
    :param workers: how many queries may run at once.
    :param timeout: seconds a query may take, waiting for a free worker included.
    """

    def __init__(self, dump_file, workers: int = 2, timeout: float = 10.0):
        self.dump_file, self.timeout = str(dump_file), timeout
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        for worker in [_Worker(self.dump_file) for _ in range(max(1, workers))]:
            self._all.add(worker)
            self._idle.put(worker)
        self.triples = next(iter(self._all)).triples

    def run(self, request: QueryRequest) -> Answer:
        """Answer a request; raise QueryError, NotAcceptable, ServiceError, QueryTimeout or EngineBusy."""
        deadline = time.monotonic() + self.timeout
        try:
            worker = self._idle.get(timeout=self.timeout)
        except queue.Empty:
            raise EngineBusy(f"no query worker became free within {self.timeout:g} s") from None
        try:
            worker.send(request)
            if not worker.connection.poll(max(0.0, deadline - time.monotonic())):
                self._replace(worker)
                worker = None
                raise QueryTimeout(f"the query ran longer than the limit of {self.timeout:g} s and was stopped")
            status, value = worker.connection.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._replace(worker)
            worker = None
            raise RuntimeError("the query worker died; it has been replaced") from None
        finally:
            if worker is not None:
                self._idle.put(worker)
        if status == "ok":
            return value
        if status == "query-error":
            raise QueryError(value)
        if status == "not-acceptable":
            raise NotAcceptable(value)
        if status == "service-error":
            raise ServiceError(value)
        raise RuntimeError(value)

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker now and start its successor in the background, so the caller answers at once."""
        worker.stop()
        with self._lock:
            self._all.discard(worker)

        def start():
            if self._closed:
                return
            successor = _Worker(self.dump_file)
            with self._lock:
                if self._closed:
                    successor.stop()
                    return
                self._all.add(successor)
            self._idle.put(successor)

        threading.Thread(target=start, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.stop()


if __name__ == "__main__":
    # Run the importable module's function, so that pickled answers name cmc_kg.engine, not __main__.
    from cmc_kg.engine import _serve

    _serve(sys.argv[1], Connection(int(sys.argv[2]), writable=False), Connection(int(sys.argv[3]), readable=False))
