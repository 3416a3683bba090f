"""Evaluate SPARQL in worker processes that can be stopped.

Oxigraph offers no way to cancel a running query, and a thread cannot be killed, so each query runs in
one of a few worker processes that hold the build in memory; a query past its time limit is stopped by
killing its worker, which is replaced in the background. The workers also let two cores evaluate at
once. Each worker checks the query (cmc_kg/safety.py) before Oxigraph sees it, so that the check, too,
runs where the time limit can stop it and off the server's threads. Answers are serialised in the
worker, cut at the row cap, refused past the byte cap, and come back as bytes. Each worker may be capped
in memory and, when no SERVICE endpoint is allowed, is denied network sockets; it dies with its server.
A worker that crashes (a signal other than the kill that stops a query) is logged with the query's hash,
and the same query is then refused at once: retrying it would only crash another worker.

A worker evaluates what clients send, so the server never trusts what comes back: replies are framed bytes
(a fixed header, short JSON metadata, the answer), never pickle, and are read only up to their bounds. A
worker whose reply does not fit the frame is killed and the query fails with WorkerProtocolError (a 500).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from dataclasses import fields

import pyoxigraph as ox

from .contract import (Answer, AnswerTooLarge, EngineBusy, EngineClosed, NotAcceptable, OutOfMemory, QueryError,
                       QueryPolicy, QueryRefused, QueryRequest, QueryTimeout, ServiceError, WorkerCrashed, WorkerDied)
from .formats import RDF_FORMATS, RESULT_FORMATS, write_boolean, write_solutions, write_triples
from .query import PREFIX_MAP, default_graph_size, load_store, run_query
from .safety import check_query

__all__ = ["Engine", "evaluate", "WorkerProtocolError"]

_STACK_BYTES = 64 << 20   # the worker's evaluating thread: Oxigraph recurses as deep as the query nests


class WorkerProtocolError(RuntimeError):
    """A worker sent a reply that is not a well-formed frame (garbage, pickle, a length past the bounds): it is
    killed and replaced, and nothing it sent is used."""


def evaluate(store: ox.Store, request: QueryRequest, policy: QueryPolicy = QueryPolicy(),
             graphs: frozenset[str] = frozenset()) -> Answer:
    """Check, run and serialise one query; raise QueryRefused, QueryError, NotAcceptable or AnswerTooLarge."""
    started = time.perf_counter()
    shape = check_query(request.text, policy.allowed_services, graphs, policy.max_depth)
    try:
        return _answer(store, request, bool(shape.datasets), started)
    except (OSError, RuntimeError) as error:
        if not shape.services:
            raise
        # pyoxigraph raises OSError for the connection and HTTP statuses, RuntimeError for an unreadable answer
        raise ServiceError(f"a SERVICE endpoint failed ({', '.join(f'<{iri}>' for iri in shape.services)}): "
                           f"{type(error).__name__}: {error}") from None


def _answer(store: ox.Store, request: QueryRequest, declares_dataset: bool, started: float) -> Answer:
    result = run_query(store, request.text, request.asserted_only, default_graphs=request.default_graphs,
                       named_graphs=request.named_graphs, declares_dataset=declares_dataset)
    if isinstance(result, ox.QueryBoolean):
        if request.results_format is None:
            raise NotAcceptable("results")
        fmt = RESULT_FORMATS[request.results_format]
        return Answer("boolean", fmt.name, write_boolean(bool(result), fmt), 1, False, time.perf_counter() - started)
    kind, name = ("graph", request.graph_format) if isinstance(result, ox.QueryTriples) else \
        ("results", request.results_format)
    if name is None:
        raise NotAcceptable(kind)
    rows: list = []
    truncated, size = False, 0
    for item in result:
        if len(rows) == request.max_rows:
            truncated = True
            break
        size += _size(item)
        if size > request.max_bytes:
            raise _too_large(request.max_bytes)
        rows.append(item)
    if kind == "graph":
        body = write_triples(rows, RDF_FORMATS[name], PREFIX_MAP)
    else:
        body = write_solutions([v.value for v in result.variables], rows, RESULT_FORMATS[name])
    if len(body) > request.max_bytes:
        raise _too_large(request.max_bytes)
    return Answer(kind, name, body, len(rows), truncated, time.perf_counter() - started)


def _size(item) -> int:
    """A lower bound of a solution's or triple's serialised size, to stop collecting before memory runs out."""
    terms = [item.subject, item.predicate, item.object] if isinstance(item, ox.Triple) else list(item)
    return sum(len(term.value) for term in terms if term is not None and hasattr(term, "value"))


def _too_large(limit: int) -> AnswerTooLarge:
    return AnswerTooLarge(f"the answer is larger than the limit of {limit:,} bytes (max_answer_bytes); ask for "
                          "fewer rows (LIMIT), fewer or shorter values, or page through it with OFFSET")


# A worker's message to the server: this header, then ``meta`` bytes of UTF-8 JSON (an object), then ``body``
# bytes (the serialised answer). Nothing else is read, and nothing is read past the lengths' bounds.
_HEADER = struct.Struct("!4sBBBxII")  # magic, status, kind, flags, (pad), meta length, body length
_MAGIC = b"CKW1"
_STATUSES = ("ready", "ok", "refused", "query-error", "not-acceptable", "too-large", "service-error", "memory",
             "error")
_KINDS = ("", "results", "boolean", "graph")
_TRUNCATED = 1
_MAX_META_BYTES = 1 << 20  # a message, or the build's graph names


def _frame(status: str, meta: dict, body: bytes = b"", kind: str = "", truncated: bool = False) -> bytes:
    data = json.dumps(meta).encode("utf-8")
    return _HEADER.pack(_MAGIC, _STATUSES.index(status), _KINDS.index(kind), _TRUNCATED if truncated else 0,
                        len(data), len(body)) + data + body


def _answer_frame(answer: Answer) -> bytes:
    return _frame("ok", {"format": answer.format, "rows": answer.rows, "seconds": answer.seconds}, answer.body,
                  answer.kind, answer.truncated)


def _readable(fd: int, seconds: float) -> bool:
    """Whether a pipe has data or was closed within ``seconds``. poll(), not select(), which fails for
    descriptors past 1024, nor Connection.poll(), which builds a selector each time (3x slower)."""
    waiting = select.poll()
    waiting.register(fd, select.POLLIN)
    return bool(waiting.poll(max(0, math.ceil(seconds * 1000))))


def _read_into(fd: int, data: bytearray, size: int, most: int, deadline: float, ready: bool = False) -> None:
    """Read from a pipe into ``data`` until it holds ``size`` bytes, never more than ``most``; EOFError if it
    closes first, QueryTimeout past the deadline. ``ready``: poll() just said the pipe has data."""
    while len(data) < size:
        if not ready and not _readable(fd, deadline - time.monotonic()):
            raise QueryTimeout("the query worker did not finish its reply in time")
        ready = False
        chunk = os.read(fd, min(most - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk


_FIRST_READ = 1 << 16  # read with the header: a small reply whole, in one read()


def _read_frame(fd: int, deadline: float, max_body: int, ready: bool = False) -> tuple[str, str, bool, dict, bytes]:
    """One message from a worker: (status, kind, truncated, metadata, body); WorkerProtocolError if it is not
    one, before reading more than the header and 64 KiB when the header is wrong. A worker sends nothing
    after its reply until it gets the next request, so bytes past the frame are an error too."""
    data = bytearray()
    _read_into(fd, data, _HEADER.size, _HEADER.size + _FIRST_READ, deadline, ready)
    magic, status, kind, flags, meta_size, body_size = _HEADER.unpack_from(data)
    if magic != _MAGIC or status >= len(_STATUSES) or kind >= len(_KINDS) or flags & ~_TRUNCATED:
        raise WorkerProtocolError("a query worker sent a reply that is not a cmc-kg frame; it was stopped")
    if meta_size > _MAX_META_BYTES or body_size > max_body:
        raise WorkerProtocolError(f"a query worker announced a reply of {meta_size:,} + {body_size:,} bytes, past "
                                  f"the bounds ({_MAX_META_BYTES:,} + {max_body:,}, max_answer_bytes); it was stopped")
    end = _HEADER.size + meta_size + body_size
    if len(data) > end:
        raise WorkerProtocolError("a query worker sent more than one reply; it was stopped")
    _read_into(fd, data, end, end, deadline)
    try:
        meta = json.loads(data[_HEADER.size:_HEADER.size + meta_size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WorkerProtocolError("a query worker sent metadata that is not UTF-8 JSON; it was stopped") from None
    if not isinstance(meta, dict):
        raise WorkerProtocolError("a query worker sent metadata that is not a JSON object; it was stopped")
    return _STATUSES[status], _KINDS[kind], bool(flags & _TRUNCATED), meta, bytes(data[end - body_size:end])


def _field(meta: dict, name: str, kind: type | tuple[type, ...]):
    value = meta.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise WorkerProtocolError(f"a query worker sent a reply whose {name!r} is not a {kind}; it was stopped")
    return value


def _reply(fd: int, deadline: float, max_body: int) -> tuple[str, Answer | str]:
    """A worker's reply to a query (poll() said it has begun), checked: ('ok', Answer) or (an error status, its
    message)."""
    status, kind, truncated, meta, body = _read_frame(fd, deadline, max_body, ready=True)
    if status == "ok":
        formats = RDF_FORMATS if kind == "graph" else RESULT_FORMATS
        name = _field(meta, "format", str)
        if not kind or name not in formats:
            raise WorkerProtocolError(f"a query worker sent an answer of kind {kind!r} in format {name[:40]!r}; "
                                      "it was stopped")
        return status, Answer(kind, name, body, _field(meta, "rows", int), truncated,
                              float(_field(meta, "seconds", (int, float))))
    if status == "ready":
        raise WorkerProtocolError("a query worker answered a query with its start-up message; it was stopped")
    return status, body.decode("utf-8", "replace")


def _send_reply(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _confine(memory_mb: int, network: bool) -> str:
    """Limit what a worker may do before it reads anything a client sent.

    ``memory_mb`` caps its address space (RLIMIT_AS): a query that needs more fails inside the worker, which
    then dies and is replaced, instead of the machine swapping. Without ``network`` (no SERVICE allowed) a
    seccomp filter makes socket() fail for every family but AF_UNIX (and io_uring, which could open sockets,
    is refused): even a SERVICE the query check missed cannot connect. Returns what became of that filter,
    for the server to report: 'installed', 'off: ...' (the network is allowed) or 'unavailable: why'.
    """
    if memory_mb > 0:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if network:
        return "off: the SERVICE allowlist needs the network"
    return _deny_network()


_SECCOMP_ARCHES = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}  # AUDIT_ARCH_*, __NR_socket


def _network_filter_missing() -> str | None:
    """Why the seccomp filter cannot be installed here, or None."""
    import platform

    if sys.platform != "linux":
        return f"seccomp filters are Linux-only and this is {sys.platform}"
    if platform.machine() not in _SECCOMP_ARCHES:
        return f"the filter is written for {' and '.join(_SECCOMP_ARCHES)} only and this is {platform.machine()}"
    return None


def _deny_network() -> str:
    import ctypes
    import platform

    missing = _network_filter_missing()
    if missing:
        return f"unavailable: {missing}"
    audit_arch, nr_socket = _SECCOMP_ARCHES[platform.machine()]
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
    return "installed"


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when the thread that started it ends (PR_SET_PDEATHSIG), so that no
    worker outlives its server, even one busy evaluating; if the server is already gone, stop now."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def _serve(options: dict, requests: Connection, replies: int) -> None:
    """A worker process: confine itself, load the build, then check and answer requests until the pipe closes."""
    _die_with(options["parent"])
    network_filter = _confine(options["memory_mb"], options["network"])
    store = load_store(options["dump"])
    graphs = frozenset(g.value for g in store.named_graphs() if isinstance(g, ox.NamedNode))
    policy = QueryPolicy(frozenset(options["allowed_services"]), options["max_depth"])
    _send_reply(replies, _frame("ready", {"triples": default_graph_size(store), "graphs": sorted(graphs),
                                          "network_filter": network_filter}))
    threading.stack_size(_STACK_BYTES)  # Oxigraph's parser and evaluator recurse as deep as a query nests
    answering = threading.Thread(target=_answer_requests, args=(store, policy, graphs, requests, replies))
    answering.start()
    answering.join()


def _answer_requests(store, policy: QueryPolicy, graphs: frozenset[str], requests: Connection, replies: int) -> None:
    while True:
        try:
            request = _request_from_json(requests.recv_bytes())
        except EOFError:
            return
        reply: tuple[str, Answer | str]
        try:
            _send_reply(replies, _answer_frame(evaluate(store, request, policy, graphs)))
            continue
        except QueryRefused as error:
            reply = ("refused", str(error))
        except QueryError as error:
            reply = ("query-error", str(error))
        except NotAcceptable as error:
            reply = ("not-acceptable", str(error))
        except AnswerTooLarge as error:
            reply = ("too-large", str(error))
        except ServiceError as error:
            reply = ("service-error", str(error))
        except (ValueError, TypeError) as error:  # a dataset IRI or a value Oxigraph does not accept
            reply = ("query-error", f"{type(error).__name__}: {error}")
        except MemoryError:
            reply = ("memory", "")
        except Exception as error:  # an engine failure is reported, the worker lives on
            reply = ("error", f"{type(error).__name__}: {error}")
        _send_reply(replies, _frame(reply[0], {}, reply[1].encode("utf-8")))


_REQUEST_FIELDS = tuple(f.name for f in fields(QueryRequest))


def _request_to_json(request: QueryRequest) -> bytes:
    # Not dataclasses.asdict, which deep-copies every value: it took 10 µs of the server's time per query.
    return json.dumps({name: getattr(request, name) for name in _REQUEST_FIELDS}).encode("utf-8")


def _request_from_json(data: bytes) -> QueryRequest:
    values = json.loads(data)
    for name in ("default_graphs", "named_graphs"):
        if values[name] is not None:
            values[name] = tuple(values[name])
    return QueryRequest(**values)


def _dump_path(fd: int, dump_file: str) -> str:
    """The path a worker loads: the engine's open file (the build it was started on, even after a new build
    replaced the file on disk), else the file's name."""
    return f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else dump_file


class _Worker:
    """One worker process, started as `python -m cmc_kg.engine` so that nothing of the server is copied into it.

    Its standard error is passed on to the server's, and its last lines are kept to tell why it died.
    """

    lane = False  # whether it is the engine's quick-lane worker
    _stat: int | None = None  # its /proc/<pid>/stat, open (see alive)
    command = (sys.executable, "-m", "cmc_kg.engine")  # then: options as JSON, the request and reply pipes' fds

    def __init__(self, options: dict, dump_fd: int, start_timeout: float = 120.0):
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        self.process = subprocess.Popen(
            [*self.command, json.dumps({**options, "parent": os.getpid()}),
             str(to_child), str(from_child)],
            pass_fds=(to_child, from_child, dump_fd), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
            # Few malloc arenas: each reserves address space, which the memory cap counts.
            env={**os.environ, "MALLOC_ARENA_MAX": "2"} if options["memory_mb"] > 0 else None)
        os.close(to_child)
        os.close(from_child)
        self.stderr_tail: list[str] = []
        threading.Thread(target=self._pass_stderr, daemon=True).start()
        self.connection = Connection(to_parent, readable=True, writable=False)  # read as frames, see _read_frame
        self.requests = Connection(from_parent, readable=False, writable=True)
        try:
            status, _, _, meta, _ = _read_frame(to_parent, time.monotonic() + start_timeout, 0)
            if status != "ready":
                raise WorkerProtocolError(f"a query worker started with {status!r} instead of 'ready'")
            self.triples = _field(meta, "triples", int)
            self.graphs = _field(meta, "graphs", list)
            self.network_filter = _field(meta, "network_filter", str)
            if not all(isinstance(graph, str) for graph in self.graphs):
                raise WorkerProtocolError("a query worker named its graphs with values that are not strings")
        except WorkerProtocolError:
            self.stop()
            raise
        except (EOFError, OSError, QueryTimeout):
            self.stop()
            raise RuntimeError(f"a query worker could not start on {options['dump']} (exit status "
                               f"{self.process.returncode}; its error is above; if it ran out of memory, raise "
                               "worker_memory)") from None

    def _pass_stderr(self) -> None:
        assert self.process.stderr is not None  # started with stderr=PIPE
        for line in iter(self.process.stderr.readline, b""):
            text = line.decode("utf-8", "replace")
            self.stderr_tail = (self.stderr_tail + [text])[-20:]
            sys.stderr.write(text)

    @property
    def alive(self) -> bool:
        """Read from /proc where there is one: Popen.poll() says "alive" while another thread is waiting on it.
        Its stat file is kept open (it is asked before every query: opening it each time took 90 µs); read
        after the process was reaped, it fails with ESRCH."""
        if self.process.returncode is not None:
            return False
        try:
            if self._stat is None:
                self._stat = os.open(f"/proc/{self.process.pid}/stat", os.O_RDONLY)
            return os.pread(self._stat, 1024, 0).rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
        except (FileNotFoundError, ProcessLookupError):
            return False
        except OSError:
            return self.process.poll() is None

    def send(self, request: QueryRequest) -> None:
        self.requests.send_bytes(_request_to_json(request))

    def death(self) -> str:
        """How the worker ended: 'killed' (SIGKILL or SIGTERM: stopped from outside, or by the kernel's OOM
        killer), 'memory' (it ran out of its address space) or 'crashed' (any other signal or exit)."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "killed"
        time.sleep(0.05)  # let the last lines of its error output arrive
        if any("memory allocation of" in line or "MemoryError" in line for line in self.stderr_tail):
            return "memory"
        return "killed" if code in (-signal.SIGKILL, -signal.SIGTERM) else "crashed"

    def stop(self) -> None:
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.connection.close()
        self.requests.close()
        stat, self._stat = self._stat, None
        if stat is not None:
            os.close(stat)


class Engine:
    """A pool of worker processes over one build.

    The engine opens the dump once: its workers, also those started later to replace one that was killed,
    all load that file, so a new build written meanwhile never mixes with this one (``build_id`` is the
    SHA-256 of what they load). A request that finds its worker dead before the query was sent is retried on
    another; a worker found dead (killed, out of memory) is replaced in the background.
    ``network_filter`` says whether the workers could deny themselves network sockets: 'installed', 'off: ...'
    (the SERVICE allowlist needs them) or 'unavailable: why' (another system or architecture; also logged).

    :param dump_file: the build's N-Quads dump.
    :param workers: how many queries may run at once.
    :param timeout: seconds a query may take, waiting for a free worker included.
    :param memory_mb: address-space limit of each worker in MiB; 0: none.
    :param network: whether workers may open network sockets (only needed for SERVICE on the allowlist).
    :param policy: what the workers' check lets through; SERVICE endpoints need ``network``.
    :param max_answer_bytes: the largest reply read from a worker (the request's byte cap is checked there).
    :param lane_seconds: when > 0, one more worker is kept as a quick lane: a query that finds every other
        worker busy may run there for this long; past it the lane worker is replaced and the query waits for
        a regular worker with the time it has left (and never takes the lane again). Costly queries then cannot
        hold up quick ones, whoever sends them.
    """

    def __init__(self, dump_file, workers: int = 2, timeout: float = 10.0, memory_mb: int = 0,
                 network: bool = False, policy: QueryPolicy = QueryPolicy(), max_answer_bytes: int = 16 << 20,
                 lane_seconds: float = 0.0):
        self.dump_file, self.timeout, self.lane_seconds = str(dump_file), timeout, lane_seconds
        self.size, self.memory_mb, self.network = max(1, workers), memory_mb, network
        self.max_reply_bytes = max_answer_bytes + (1 << 20)
        self._options = {"dump": None, "memory_mb": memory_mb, "network": network,
                         "allowed_services": sorted(policy.allowed_services), "max_depth": policy.max_depth}
        self._crashed: dict[str, str] = {}  # requests that crashed or exhausted a worker -> what to answer
        self._slow: dict[str, None] = {}     # requests that outran the quick lane
        # One long-lived thread starts every worker: a worker dies with the thread that started it (see _die_with).
        self._spawns: queue.Queue = queue.Queue()
        threading.Thread(target=self._spawner, name="cmc-kg-engine-spawner", daemon=True).start()
        self._dump = open(self.dump_file, "rb")
        digest = hashlib.sha256()
        for block in iter(lambda: self._dump.read(1 << 20), b""):
            digest.update(block)
        self.build_id = digest.hexdigest()
        self.loaded = _file_identity(os.fstat, self._dump.fileno())
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._in_flight = 0
        try:
            for lane in [False] * self.size + [True] * (lane_seconds > 0):
                worker = self._start_worker(lane)
                self._all.add(worker)
                self._idle.append(worker)
        except BaseException:
            self.close()
            raise
        first = next(iter(self._all))
        self.triples, self.graphs = first.triples, frozenset(first.graphs)
        self.network_filter = first.network_filter
        if self.network_filter.startswith("unavailable"):
            print(f"cmc-kg: WARNING: the query workers cannot deny themselves network sockets ({self.network_filter}); "
                  "only the query check stops SERVICE and FROM from reaching the network (SECURITY.md)",
                  file=sys.stderr)
        threading.Thread(target=self._watch, name="cmc-kg-engine-watch", daemon=True).start()

    def _spawner(self) -> None:
        while True:
            job = self._spawns.get()
            if job is None:  # close() asked; the dump is closed here, after any start in progress has read it
                self._dump.close()
                return
            done, outcome = job
            try:
                if self._closed:  # a successor asked for while the engine closed: its dump is closed too
                    raise RuntimeError("the engine was closed")
                outcome.append(_Worker({**self._options, "dump": _dump_path(self._dump.fileno(), self.dump_file)},
                                       self._dump.fileno()))
            except BaseException as failure:  # reported to the caller
                outcome.append(failure)
            done.set()

    def _start_worker(self, lane: bool = False) -> _Worker:
        done, outcome = threading.Event(), []  # type: threading.Event, list
        self._spawns.put((done, outcome))
        while not done.wait(1.0):
            if self._closed:
                raise RuntimeError("the engine was closed")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        outcome[0].lane = lane
        return outcome[0]

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._all]

    def live_workers(self) -> int:
        """Regular workers running now (not the quick lane; not those being replaced)."""
        with self._lock:
            return sum(not w.lane for w in self._all)

    def run(self, request: QueryRequest) -> Answer:
        """Answer a request; raise QueryRefused, QueryError, NotAcceptable, AnswerTooLarge, ServiceError,
        QueryTimeout, EngineBusy (WorkerDied when the worker was killed while answering), WorkerCrashed,
        OutOfMemory or EngineClosed (a newer engine took over)."""
        deadline = time.monotonic() + self.timeout
        key = _request_hash(request)
        with self._lock:
            if self._closed:
                raise EngineClosed("this build is no longer served")
            if key in self._crashed:
                raise (OutOfMemory if self._crashed[key] == "memory" else WorkerCrashed)(self._death_message(
                    self._crashed[key], key, again=True))
            self._in_flight += 1
        try:
            status, value = self._ask(request, deadline, key)
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._closed:  # only close() waits for this count
                    self._changed.notify_all()
        if status == "ok":
            return value
        errors = {"refused": QueryRefused, "query-error": QueryError, "not-acceptable": NotAcceptable,
                  "too-large": AnswerTooLarge, "service-error": ServiceError}
        if status in errors:
            raise errors[status](value)
        if status in ("memory", "crashed"):
            self._remember_death(key, status)
            raise (OutOfMemory if status == "memory" else WorkerCrashed)(self._death_message(status, key))
        raise RuntimeError(value)

    def _remember_death(self, key: str, how: str) -> None:
        with self._lock:
            self._crashed[key] = how
            while len(self._crashed) > 1024:
                self._crashed.pop(next(iter(self._crashed)))
        print(f"cmc-kg: a query {'ran out of memory in' if how == 'memory' else 'crashed'} its worker; "
              f"query {key[:16]} is refused from now on", file=sys.stderr)

    def _death_message(self, how: str, key: str, again: bool = False) -> str:
        earlier = "earlier " if again else ""
        if how == "memory":
            return (f"the query {earlier}needed more memory than a query worker may use "
                    f"({self.memory_mb} MiB, worker_memory); ask for less (LIMIT, fewer variables, no ORDER BY "
                    f"over everything); query {key[:16]}")
        return (f"the query {earlier}crashed its query worker; it is not run again (query {key[:16]}, logged). "
                "Simplify it, and report it: a crash is a defect")

    def _take(self, deadline: float, lane: bool) -> _Worker:
        """An idle regular worker, else (when ``lane``) the idle quick-lane worker; wait until the deadline."""
        with self._lock:
            while True:
                found = next((w for w in reversed(self._idle) if not w.lane), None) or (
                    next((w for w in self._idle if w.lane), None) if lane else None)
                if found is not None:
                    self._idle.remove(found)
                    return found
                remaining = deadline - time.monotonic()
                if self._closed:
                    raise EngineClosed("this build is no longer served")
                if remaining <= 0:
                    raise EngineBusy(f"no query worker became free within {self.timeout:g} s")
                self._changed.wait(remaining)

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._idle.append(worker)
                # Any waiter takes a regular worker: wake one, not every thread waiting (each would take the GIL
                # to find nothing). Only some may take the quick lane: for it, wake them all.
                if worker.lane:
                    self._changed.notify_all()
                else:
                    self._changed.notify()

    def _ask(self, request: QueryRequest, deadline: float, key: str):
        lane = self.lane_seconds > 0 and key not in self._slow
        for _ in range(self.size + 3):  # a few retries: each finds a dead worker, or leaves the quick lane
            worker = self._take(deadline, lane)
            if not worker.alive:
                self._replace(worker)
                continue
            try:
                worker.send(request)
            except OSError:  # the worker died while idle: the query never reached it
                self._replace(worker)
                continue
            try:
                limit = min(deadline, time.monotonic() + self.lane_seconds) if worker.lane else deadline
                answered = _readable(worker.connection.fileno(), limit - time.monotonic())
                if not answered:
                    self._replace(worker)
                    if worker.lane and time.monotonic() < deadline:
                        lane = False
                        with self._lock:
                            self._slow[key] = None
                            while len(self._slow) > 1024:
                                self._slow.pop(next(iter(self._slow)))
                        continue
                    raise QueryTimeout(f"the query ran longer than the limit of {self.timeout:g} s and was stopped")
                try:
                    reply = _reply(worker.connection.fileno(), limit, self.max_reply_bytes)
                except (WorkerProtocolError, QueryTimeout):  # not a frame, or cut off: the rest is never read
                    self._replace(worker)
                    raise
            except (EOFError, OSError):
                death = worker.death()
                self._replace(worker)
                if death != "killed":
                    return death, ""
                raise WorkerDied("the query worker was stopped from outside while answering; it has been "
                                 "replaced, try again") from None
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
            threading.Thread(target=self._start_successor, args=(worker.lane,), daemon=True).start()

    def _start_successor(self, lane: bool) -> None:
        for attempt in range(10):  # bounded: a build that cannot load any more is reported, not retried forever
            if self._closed:
                return
            try:
                successor = self._start_worker(lane)
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

    def latest(self) -> tuple | None:
        """The dump file's identity now (a build renames a new file over it); None while there is none."""
        return _file_identity(os.stat, self.dump_file)

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
        self._spawns.put(None)

    def retire(self) -> None:
        """Close in the background once the queries in flight are answered (at most the time limit)."""
        threading.Thread(target=self.close, args=(self.timeout + 5,), daemon=True).start()


def _file_identity(stat, file) -> tuple | None:
    try:
        found = stat(file)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def _request_hash(request: QueryRequest) -> str:
    return hashlib.sha256(repr(request).encode("utf-8")).hexdigest()


if __name__ == "__main__":
    # The importable module's function, so that its classes are cmc_kg.engine's, not __main__'s.
    from cmc_kg import engine

    engine._serve(json.loads(sys.argv[1]), Connection(int(sys.argv[2]), writable=False), int(sys.argv[3]))
