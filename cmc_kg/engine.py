"""Evaluate SPARQL in worker processes that can be stopped.

Oxigraph offers no way to cancel a running query, and a thread cannot be killed, so each query runs in
one of a few worker processes that hold the build in memory; a query past its time limit is stopped by
killing its worker, which is replaced in the background. The workers also let two cores evaluate at
once. Answers are serialised in the worker, cut at the row cap, and come back as bytes. Each worker
may be capped in memory and, when no SERVICE endpoint is allowed, is denied network sockets.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from dataclasses import dataclass

import pyoxigraph as ox

from .formats import RDF_FORMATS, RESULT_FORMATS, NotAcceptable, write_boolean, write_solutions, write_triples
from .query import PREFIX_MAP, QueryError, default_graph_size, load_store, run_query
from .safety import QueryRefused, check_query

__all__ = ["QueryRequest", "Answer", "Engine", "QueryTimeout", "EngineBusy", "EngineClosed", "WorkerDied",
           "NotAcceptable", "ServiceError"]


class QueryTimeout(Exception):
    """The query ran past the time limit and was stopped."""


class EngineBusy(Exception):
    """No worker became free within the time limit."""


class WorkerDied(EngineBusy):
    """The worker stopped while answering (killed from outside, or out of memory); it has been replaced."""


class EngineClosed(Exception):
    """The engine was retired: a newer build is served by another engine."""


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


def _confine(memory_mb: int, network: bool) -> None:
    """Limit what a worker may do before it reads anything a client sent.

    ``memory_mb`` caps its address space (RLIMIT_AS): a query that needs more fails inside the worker, which
    then dies and is replaced, instead of the machine swapping. Without ``network`` (no SERVICE allowed) a
    seccomp filter makes socket() fail for every family but AF_UNIX (and io_uring, which could open sockets,
    is refused): even a SERVICE the query check missed cannot connect. Linux only; elsewhere a no-op.
    """
    if memory_mb > 0:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if not network:
        _deny_network()


def _deny_network() -> None:
    import ctypes
    import platform
    import struct

    arches = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}  # AUDIT_ARCH_*, __NR_socket
    if sys.platform != "linux" or platform.machine() not in arches:
        return
    audit_arch, nr_socket = arches[platform.machine()]
    nr_io_uring_setup, af_unix = 425, 1
    load, jump_eq, jump_ge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 13  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EACCES

    def op(code, jt, jf, k):  # a classic BPF instruction; jt/jf: how many instructions to skip
        return struct.pack("HBBI", code, jt, jf, k)

    program = b"".join([
        op(load, 0, 0, 4), op(jump_eq, 1, 0, audit_arch),                 # 0-1 seccomp_data.arch
        op(ret, 0, 0, deny),                                              # 2   another ABI: refuse everything
        op(load, 0, 0, 0), op(jump_ge, 6, 0, 0x40000000),                 # 3-4 seccomp_data.nr; x32 calls: refuse
        op(jump_eq, 2, 0, nr_socket), op(jump_eq, 4, 0, nr_io_uring_setup),  # 5-6
        op(ret, 0, 0, allow),                                             # 7   any other call
        op(load, 0, 0, 16), op(jump_eq, 0, 1, af_unix),                   # 8-9 socket(domain, ...)
        op(ret, 0, 0, allow),                                             # 10  AF_UNIX
        op(ret, 0, 0, deny),                                              # 11
    ])
    buffer = ctypes.create_string_buffer(program)

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    fprog = Program(len(program) // 8, ctypes.addressof(buffer))
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # NO_NEW_PRIVS, SECCOMP
        raise OSError(ctypes.get_errno(), "cannot install the seccomp filter that denies network sockets")


def _serve(dump_file: str, requests: Connection, connection: Connection, memory_mb: int = 0,
           network: bool = True) -> None:
    """A worker process: confine itself, load the build, then answer requests until the pipe closes."""
    _confine(memory_mb, network)
    store = load_store(dump_file)
    graphs = sorted(g.value for g in store.named_graphs() if isinstance(g, ox.NamedNode))
    connection.send(("ready", default_graph_size(store), graphs))
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
        except (ValueError, TypeError) as error:  # a dataset IRI or a value Oxigraph does not accept
            connection.send(("query-error", f"{type(error).__name__}: {error}"))
        except MemoryError:
            connection.send(("memory", "the query needed more memory than a worker may use"))
        except (OSError, RuntimeError) as error:
            if not _calls_service(request.text):
                connection.send(("error", f"{type(error).__name__}: {error}"))
            else:
                connection.send(("service-error", _service_failure(request.text, error)))
        except Exception as error:  # an engine failure is reported, the worker lives on
            connection.send(("error", f"{type(error).__name__}: {error}"))


def _dump_path(fd: int, dump_file: str) -> str:
    """The path a worker loads: the engine's open file (the build it was started on, even after a new build
    replaced the file on disk), else the file's name."""
    return f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else dump_file


class _Worker:
    """One worker process, started as `python -m cmc_kg.engine` so that nothing of the server is copied into it."""

    def __init__(self, dump_file: str, dump_fd: int, memory_mb: int = 0, network: bool = True,
                 start_timeout: float = 120.0):
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cmc_kg.engine", _dump_path(dump_fd, dump_file), str(to_child), str(from_child),
             str(memory_mb), "network" if network else "no-network"],
            pass_fds=(to_child, from_child, dump_fd), stdin=subprocess.DEVNULL,
            # Few malloc arenas: each reserves address space, which the memory cap counts.
            env={**os.environ, "MALLOC_ARENA_MAX": "2"} if memory_mb > 0 else None)
        os.close(to_child)
        os.close(from_child)
        self.connection = Connection(to_parent, readable=True, writable=False)
        self.requests = Connection(from_parent, readable=False, writable=True)
        try:
            if not self.connection.poll(start_timeout):
                raise EOFError
            status, self.triples, self.graphs = self.connection.recv()
        except (EOFError, OSError):
            self.stop()
            raise RuntimeError(f"a query worker could not start on {dump_file} (exit status {self.process.returncode}; "
                               "its error is above; if it ran out of memory, raise worker_memory)") from None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, request: QueryRequest) -> None:
        self.requests.send(request)

    def stop(self) -> None:
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.connection.close()
        self.requests.close()


class Engine:
    """A pool of worker processes over one build.

    The engine opens the dump once: its workers, also those started later to replace one that was killed,
    all load that file, so a new build written meanwhile never mixes with this one (``build_id`` is the
    SHA-256 of what they load). A request that finds its worker dead before the query was sent is retried on
    another; a worker found dead (killed, out of memory) is replaced in the background.

    :param dump_file: the build's N-Quads dump.
    :param workers: how many queries may run at once.
    :param timeout: seconds a query may take, waiting for a free worker included.
    :param memory_mb: address-space limit of each worker in MiB; 0: none.
    :param network: whether workers may open network sockets (only needed for SERVICE on the allowlist).
    """

    def __init__(self, dump_file, workers: int = 2, timeout: float = 10.0, memory_mb: int = 0,
                 network: bool = False):
        self.dump_file, self.timeout = str(dump_file), timeout
        self.size, self.memory_mb, self.network = max(1, workers), memory_mb, network
        self._dump = open(self.dump_file, "rb")
        digest = hashlib.sha256()
        for block in iter(lambda: self._dump.read(1 << 20), b""):
            digest.update(block)
        self.build_id = digest.hexdigest()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._in_flight = 0
        try:
            for worker in [self._start_worker() for _ in range(self.size)]:
                self._all.add(worker)
                self._idle.append(worker)
        except BaseException:
            self.close()
            raise
        first = next(iter(self._all))
        self.triples, self.graphs = first.triples, frozenset(first.graphs)
        threading.Thread(target=self._watch, name="cmc-kg-engine-watch", daemon=True).start()

    def _start_worker(self) -> _Worker:
        return _Worker(self.dump_file, self._dump.fileno(), self.memory_mb, self.network)

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._all]

    def run(self, request: QueryRequest) -> Answer:
        """Answer a request; raise QueryError, NotAcceptable, ServiceError, QueryTimeout, EngineBusy (WorkerDied
        when the worker stopped while answering) or EngineClosed (a newer engine took over)."""
        deadline = time.monotonic() + self.timeout
        with self._lock:
            if self._closed:
                raise EngineClosed("this build is no longer served")
            self._in_flight += 1
        try:
            status, value = self._ask(request, deadline)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._changed.notify_all()
        if status == "ok":
            return value
        if status == "query-error":
            raise QueryError(value)
        if status == "not-acceptable":
            raise NotAcceptable(value)
        if status == "service-error":
            raise ServiceError(value)
        if status == "memory":
            raise WorkerDied(value)
        raise RuntimeError(value)

    def _take(self, deadline: float) -> _Worker:
        with self._lock:
            while not self._idle:
                remaining = deadline - time.monotonic()
                if self._closed:
                    raise EngineClosed("this build is no longer served")
                if remaining <= 0:
                    raise EngineBusy(f"no query worker became free within {self.timeout:g} s")
                self._changed.wait(remaining)
            return self._idle.pop()

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._idle.append(worker)
                self._changed.notify_all()

    def _ask(self, request: QueryRequest, deadline: float):
        for _ in range(self.size + 2):  # a few retries: each one finds a dead worker and replaces it
            worker = self._take(deadline)
            if not worker.alive:
                self._replace(worker)
                continue
            try:
                worker.send(request)
            except OSError:  # the worker died while idle: the query never reached it
                self._replace(worker)
                continue
            try:
                answered = worker.connection.poll(max(0.0, deadline - time.monotonic()))
                if not answered:
                    self._replace(worker)
                    raise QueryTimeout(f"the query ran longer than the limit of {self.timeout:g} s and was stopped")
                reply = worker.connection.recv()
            except (EOFError, OSError):
                self._replace(worker)
                raise WorkerDied("the query worker stopped while answering (killed, or out of memory"
                                 + (f": the limit is {self.memory_mb} MiB" if self.memory_mb else "")
                                 + "); it has been replaced, try again") from None
            self._release(worker)
            return reply
        raise EngineBusy("no live query worker could take the query; they are being restarted")

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker now and start its successor in the background, so the caller answers at once."""
        with self._lock:
            owned = worker in self._all  # a worker found dead twice (by a request and the watch) is replaced once
            if worker in self._idle:
                self._idle.remove(worker)
            self._all.discard(worker)
        worker.stop()
        if owned:
            threading.Thread(target=self._start_successor, daemon=True).start()

    def _start_successor(self) -> None:
        for attempt in range(10):  # bounded: a build that cannot load any more is reported, not retried forever
            if self._closed:
                return
            try:
                successor = self._start_worker()
            except (RuntimeError, OSError) as error:
                print(f"cmc-kg: cannot start a query worker (attempt {attempt + 1}): {error}", file=sys.stderr)
                time.sleep(min(2 ** attempt, 10))
                continue
            with self._lock:
                if not self._closed:
                    self._all.add(successor)
                    self._idle.append(successor)
                    self._changed.notify_all()
                    return
            successor.stop()
            return

    def _watch(self, interval: float = 1.0) -> None:
        """Replace idle workers that died (killed from outside, crashed) without waiting for a request."""
        while not self._closed:
            time.sleep(interval)
            with self._lock:
                dead = [w for w in self._idle if not w.alive]
                for worker in dead:
                    self._idle.remove(worker)
            for worker in dead:
                self._replace(worker)

    def close(self, wait: float = 0.0) -> None:
        """Stop taking queries, let those in flight finish for up to ``wait`` seconds, then stop the workers."""
        deadline = time.monotonic() + wait
        with self._lock:
            self._closed = True
            self._changed.notify_all()
            while self._in_flight and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            workers, self._all, self._idle = list(self._all), set(), []
        for worker in workers:
            worker.stop()
        self._dump.close()

    def retire(self) -> None:
        """Close in the background once the queries in flight are answered (at most the time limit)."""
        threading.Thread(target=self.close, args=(self.timeout + 5,), daemon=True).start()


if __name__ == "__main__":
    # Run the importable module's function, so that pickled answers name cmc_kg.engine, not __main__.
    from cmc_kg import engine

    engine._serve(sys.argv[1], Connection(int(sys.argv[2]), writable=False), Connection(int(sys.argv[3]), readable=False),
                  int(sys.argv[4]) if len(sys.argv) > 4 else 0, sys.argv[5] != "no-network" if len(sys.argv) > 5 else True)
