"""waitress, guarded against clients that hold connections open: a deadline for receiving a request, and a cap on
connections per client address.

waitress reads requests asynchronously, so a slow client costs no thread, only one of its ``connection_limit``
slots; but it has no deadline for a request (``channel_timeout`` only closes connections that are silent, and
a client sending one byte every few seconds never is), so about connection_limit such clients kept everyone
else out. Here:

* a request's headers must arrive within ``request_read_timeout`` seconds of its first byte (the first request
  of a connection: of connecting), and its body within as many again after the headers; a connection past
  that is answered 408 and closed (checked every second);
* one client address may hold at most ``client_connections`` connections; one more is answered 429 and
  closed at once (the trusted proxy and ``unthrottled`` addresses are not counted);
* connections are watched with poll(), not select(), so ``connection_limit`` may exceed 1024.

Idle keep-alive connections between requests are closed after ``channel_timeout``, as before.
"""

from __future__ import annotations

import logging
import resource
import socket
import time

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask

from cmc_kg.settings import Settings

from .admission import address_matcher, client_key

__all__ = ["create_server", "serve"]

log = logging.getLogger("cmc-kg.connections")


class _Task(WSGITask):
    """Writes a response's header together with its first body chunk, so that the thread answering sends a small
    answer in one send() (``send_bytes`` is 1) instead of waking the main loop to send it in two."""

    def write(self, data):
        room = None if self.content_length is None else self.content_length - self.content_bytes_written
        if self.wrote_header or not self.complete or not data or not self.has_body or self.chunked_response \
                or (room is not None and len(data) > room):
            return super().write(data)  # waitress's own path, with its checks and warnings
        header = self.build_response_header()
        self.wrote_header = True
        if room is not None:
            self.content_bytes_written += len(data)
        self.channel.write_soon(header + data)


class _Channel(HTTPChannel):
    """A connection that remembers when the request it is receiving began and when its headers were complete.

    While a thread answers a request, that thread sends what it writes (``send_bytes`` is 1); the main loop
    polls for writability only when the thread left something unsent (a full socket), not, as waitress does,
    whenever the buffer holds bytes the thread is about to send, which made it spin on a lock it cannot take."""

    task_class = _Task
    unsent = False  # the answering thread could not send all it wrote: the main loop sends the rest

    def writable(self):
        return super().writable() and (self.unsent or not self.requests or self.will_close
                                       or self.close_when_flushed)

    def write_soon(self, data):
        written = super().write_soon(data)
        self.unsent = self.total_outbufs_len > 0
        return written

    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map)
        self.client = client_key(str(addr[0])) if addr else ""
        self.request_started: float | None = self.creation_time  # the first request: counted from connecting
        self.headers_done: float | None = None

    def received(self, data):
        now = time.time()
        before = self.request
        result = super().received(data)
        current = self.request
        if current is None:
            if before is not None or self.requests:  # a request is complete: idle until the next one begins
                self.request_started = self.headers_done = None
        elif current is not before and (before is not None or self.request_started is None):
            self.request_started, self.headers_done = now, None  # a new request began in this data
        if current is not None and current.headers_finished and self.headers_done is None:
            self.headers_done = now
        return result

    def overdue(self, now: float, limit: float) -> bool:
        """Still receiving a request (or its first one) past the deadline of its current part."""
        if self.requests or self.will_close or self.close_when_flushed or self.request_started is None:
            return False
        return now - (self.headers_done or self.request_started) > limit


class _GuardedServer(TcpWSGIServer):
    channel_class = _Channel
    read_timeout = 0.0
    per_client = 0
    exempt = staticmethod(lambda address: False)

    def handle_accept(self):
        try:
            accepted = self.accept()
            if accepted is None:
                return
            conn, addr = accepted
            self.set_socket_options(conn)
        except OSError:
            return
        addr = self.fix_addr(addr)
        if self.per_client and addr and not self.exempt(str(addr[0])):
            client = client_key(str(addr[0]))
            held = sum(1 for channel in self.active_channels.values() if getattr(channel, "client", None) == client)
            if held >= self.per_client:
                _refuse(conn, 429, "Too Many Requests", f"too many connections from your address: {held} are open "
                                                        f"and the limit is {self.per_client}; close some and retry")
                return
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def maintenance(self, now):
        super().maintenance(now)
        if self.read_timeout <= 0:
            return
        closed = 0
        for channel in list(self.active_channels.values()):
            if isinstance(channel, _Channel) and channel.overdue(now, self.read_timeout):
                _send_quietly(channel.socket, _response(408, "Request Timeout",
                                                        f"the request was not received within "
                                                        f"{self.read_timeout:g} s"))
                channel.will_close = True
                closed += 1
        if closed:
            log.info("closed %d connections whose request did not arrive within %g s", closed, self.read_timeout)


def _response(status: int, reason: str, message: str) -> bytes:
    body = (message + "\n").encode("utf-8")
    retry = b"Retry-After: 5\r\n" if status == 429 else b""
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n").encode("ascii") + retry + b"\r\n" + body


def _send_quietly(sock, data: bytes) -> None:
    """Best effort, never blocking: the client may be gone or not reading."""
    if sock is None:
        return
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass


def _refuse(conn: socket.socket, status: int, reason: str, message: str) -> None:
    try:
        conn.setblocking(False)
        try:
            conn.recv(65536)  # what the client already sent, so that closing sends FIN rather than RST
        except OSError:
            pass
        _send_quietly(conn, _response(status, reason, message))
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()


def _adjustments(config: Settings) -> Adjustments:
    proxy = {}
    if config.trusted_proxy:
        proxy = {"trusted_proxy": config.trusted_proxy, "trusted_proxy_count": 1,
                 "trusted_proxy_headers": "x-forwarded-for x-forwarded-proto"}
    return Adjustments(host=config.host, port=config.port, threads=config.threads, ident="cmc-kg",
                       max_request_body_size=config.max_request_bytes,
                       channel_timeout=int(max(30, config.query_timeout * 3)), connection_limit=config.connection_limit,
                       cleanup_interval=1, asyncore_use_poll=True, send_bytes=1, clear_untrusted_proxy_headers=True, **proxy)


def _enough_file_descriptors(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass


def create_server(app, config: Settings):
    """The waitress server for ``app`` with the guards above; call ``run()`` on it."""
    adj = _adjustments(config)
    _enough_file_descriptors(config.connection_limit + 256)
    exempt_addresses = address_matcher(config.unthrottled)
    trusted = config.trusted_proxy

    def exempt(address: str) -> bool:
        return trusted == "*" or address == trusted or exempt_addresses(address)

    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict = {}
    servers = []
    for sockinfo in adj.listen:
        server = _GuardedServer(app, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo)
        server.read_timeout, server.per_client, server.exempt = (config.request_read_timeout,
                                                                 config.client_connections, exempt)
        servers.append(server)
    if len(servers) == 1:
        return servers[0]
    listening = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[-1].log_info)


class QueueDepthSummary(logging.Filter):
    """waitress warns once per request that waits for a thread ("Task queue depth is N"): thousands of lines a
    minute under load. Keep one line per ``interval`` seconds with how many waited and the deepest queue."""

    def __init__(self, interval: float = 10.0, clock=time.monotonic):
        super().__init__()
        self.interval, self.clock = interval, clock
        self.waited, self.deepest, self.since = 0, 0, clock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Task queue depth"):
            return True
        self.waited += 1
        self.deepest = max(self.deepest, int(record.args[0]) if record.args else 0)  # type: ignore[index, call-overload]
        now = self.clock()
        if now - self.since < self.interval:
            return False
        record.msg, record.args = ("%d requests waited for an HTTP thread in the last %.0f s (deepest queue %d); "
                                   "if this goes on, raise `threads`", (self.waited, now - self.since, self.deepest))
        self.waited, self.deepest, self.since = 0, 0, now
        return True


def serve(app, config: Settings) -> None:
    """Serve until interrupted, as waitress.serve does."""
    logging.basicConfig()
    logging.getLogger("waitress.queue").addFilter(QueueDepthSummary())
    server = create_server(app, config)
    server.print_listen("Serving on http://{}:{}")
    server.run()
