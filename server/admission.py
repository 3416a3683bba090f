"""Fair sharing of the query workers between clients: who may start a query now, who waits, who gets 429.

A client is an address (an IPv6 client is its /64, which one subscriber usually holds whole); behind a
reverse proxy set ``trusted_proxy`` so that the address is the one in X-Forwarded-For. For every client the
server counts the seconds its queries kept a worker busy over the last minute (queries answered from the
cache cost nothing; a running query counts from its start). Then:

* A client may have at most ``client_queries`` queries running or waiting; one more gets 429.
* A client that used ``heavy_seconds`` or more in the last minute is *heavy*. Queries of heavy clients
  together run on at most ``workers - 1`` workers, so one worker is always left for the queries of the
  others (a worker being replaced counts as missing; with a single worker nothing can be kept). A heavy
  client's query that cannot start waits for its turn, the client that used least going first, for at most
  ``query_timeout`` seconds; then 429.
* A heavy client that used ``client_budget`` or more and would have to wait is refused at once (429). Alone
  on the server it may go on using the heavy share: the budget only decides who yields when others wait.
* Light clients are never held back here; their queries go to the engine's own queue.

Every 429 says why and carries Retry-After (whole seconds). Addresses in ``unthrottled`` (by default this
machine itself) are not counted. Runaway queries are still stopped by the engine's time limit; what this
cannot prevent is a client never seen before starting one costly query that takes the kept worker until that
limit: each client can do so once, after which it is heavy for a minute.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from cmc_kg.contract import EngineBusy, QueryEngine, WorkerDied

__all__ = ["Admission", "TooManyQueries", "client_key", "address_matcher"]

WINDOW = 60.0   # seconds of history that decide whether a client is heavy or over its budget
POLL = 0.2      # waiters look again this often: the engine's live workers change without telling us


class TooManyQueries(Exception):
    """The client is over one of its limits; ``retry_after`` is whole seconds (HTTP Retry-After)."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


def _per_address(function: Callable[[str], Any]) -> Callable[[str], Any]:
    """``function`` of an address, kept for the last few thousand addresses: parsing one with ipaddress on
    every request took 65 µs. Anything longer than an address (a junk X-Forwarded-For) is not kept."""
    cached = functools.lru_cache(maxsize=4096)(function)

    @functools.wraps(function)
    def per_address(address: str):
        return cached(address) if len(address) <= _LONGEST_ADDRESS else function(address)

    return per_address


_LONGEST_ADDRESS = 64  # an IPv6 address with a zone index


@_per_address
def client_key(address: str) -> str:
    """The client an address belongs to: an IPv4 address, or the /64 of an IPv6 one (IPv4-mapped: the IPv4).

    >>> client_key("2001:db8:1:2:3:4:5:6"), client_key("::ffff:192.0.2.7"), client_key("192.0.2.7")
    ('2001:db8:1:2::/64', '192.0.2.7', '192.0.2.7')
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def address_matcher(entries: Iterable[str]) -> Callable[[str], bool]:
    """A test for 'this address is one of these' (addresses or networks such as 10.0.0.0/8); junk entries
    match nothing but themselves as text."""
    networks, texts = [], set()
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            texts.add(entry)

    def matches(address: str) -> bool:
        if address in texts:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in networks if network.version == ip.version)

    return _per_address(matches)


@dataclass
class _Client:
    running: list[float] = field(default_factory=list)     # start times of its queries now running
    waiting: int = 0
    spent: deque = field(default_factory=deque)           # [second, seconds used by queries that ended then]

    def used(self, now: float) -> float:
        while self.spent and self.spent[0][0] <= now - WINDOW:
            self.spent.popleft()
        return sum(seconds for _, seconds in self.spent) + sum(now - started for started in self.running)

    def charge(self, now: float, seconds: float) -> None:
        second = math.floor(now)
        if self.spent and self.spent[-1][0] == second:
            self.spent[-1][1] += seconds
        else:
            self.spent.append([second, seconds])

    def budget_back_in(self, now: float, budget: float) -> float:
        """Seconds until enough of its past use has left the window to bring it under ``budget``."""
        used = self.used(now)
        for second, seconds in self.spent:  # oldest first
            used -= seconds
            if used < budget:
                return second + WINDOW - now
        return WINDOW  # its running queries alone keep it over

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting and not self.spent


class _Ticket:
    """One admitted query: charges the client the seconds it held a worker when it ends."""

    def __init__(self, admission: "Admission | None", key: str | None = None, started: float = 0.0):
        self.admission, self.key, self.started = admission, key, started
        self.seconds: float | None = None

    def charge(self, seconds: float) -> None:
        """The worker time the engine reports for the answer (its own queueing not included)."""
        self.seconds = seconds

    def __enter__(self) -> "_Ticket":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if self.admission is None:
            return
        if kind is not None and issubclass(kind, EngineBusy) and not issubclass(kind, WorkerDied):
            self.seconds = 0.0  # no worker took it: nothing was used
        self.admission._release(self)


@dataclass(frozen=True)
class _Waiter:
    key: str
    order: int


class Admission:
    """The admission policy of one server (see the module's description).

    :param workers: query workers the engine has (or queries a remote engine is sent at once).
    :param live_workers: the engine's workers alive now, when it can tell (one being replaced is not); None: always
        ``workers``.
    :param timeout: longest wait of a heavy client's query for its turn (the query time limit).
    :param threads: HTTP threads; waiting queries hold one each, so at most half of them may wait.
    """

    def __init__(self, workers: int, timeout: float, client_queries: int = 6, heavy_seconds: float = 5.0,
                 client_budget: float = 30.0, unthrottled: Iterable[str] = (), threads: int = 16,
                 live_workers: Callable[[], int | None] | None = None, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.workers, self.timeout, self.enabled = max(1, workers), timeout, enabled
        self.client_queries, self.heavy_seconds, self.client_budget = client_queries, heavy_seconds, client_budget
        self.max_waiting = max(1, threads // 2)
        self.live_workers, self.clock = live_workers, clock
        self._unthrottled = address_matcher(unthrottled)
        self._clients: dict[str, _Client] = {}
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._admitted = 0

    @classmethod
    def disabled(cls) -> "Admission":
        return cls(1, 0.0, enabled=False)

    @classmethod
    def for_server(cls, config, engine: Callable[[], QueryEngine]) -> "Admission":
        """The policy a Settings asks for, over the engine ``engine()`` serves now (it changes with builds)."""
        return cls(config.workers, config.query_timeout, client_queries=config.client_queries,
                   heavy_seconds=config.heavy_seconds, client_budget=config.client_budget,
                   unthrottled=config.unthrottled, threads=config.threads, live_workers=lambda: engine().live_workers(),
                   enabled=config.fair_share)

    def admit(self, address: str | None) -> _Ticket:
        """Admit a query from ``address`` (None: not from a client), waiting for a heavy client's turn;
        raise TooManyQueries. Use the ticket as a context manager around the engine's answer."""
        if not self.enabled or not address or self._unthrottled(address):
            return _Ticket(None)
        key = client_key(address)
        with self._changed:
            now = self.clock()
            client = self._clients.setdefault(key, _Client())
            if len(client.running) + client.waiting >= self.client_queries:
                raise TooManyQueries(
                    f"too many queries at once: {len(client.running) + client.waiting} from your address are "
                    f"running or waiting, and the limit is {self.client_queries}; wait for their answers", 1)
            used = client.used(now)
            if used < self.heavy_seconds or (not self._waiters and self._heavy_running(now) < self._lane()):
                return self._start(key, client, now)
            if used >= self.client_budget:
                raise TooManyQueries(
                    f"your queries used {used:.0f} s of query time in the last {WINDOW:.0f} s, over the budget of "
                    f"{self.client_budget:g} s, and other costly queries are waiting; try again later",
                    client.budget_back_in(now, self.client_budget))
            if len(self._waiters) >= self.max_waiting:
                raise TooManyQueries(self._busy_message("too many costly queries are already waiting"),
                                     self._estimate(now))
            me = _Waiter(key, next(self._order))
            self._waiters.append(me)
            client.waiting += 1
            deadline = now + self.timeout
            try:
                while True:
                    now = self.clock()
                    if self._first_waiter(now) == me and self._heavy_running(now) < self._lane():
                        return self._start(key, client, now)
                    if now >= deadline:
                        raise TooManyQueries(self._busy_message(
                            f"your query waited {self.timeout:g} s for its turn"), self._estimate(now))
                    self._changed.wait(min(POLL, deadline - now))
            finally:
                self._waiters.remove(me)
                client.waiting -= 1
                self._changed.notify_all()

    def _busy_message(self, what: str) -> str:
        return (f"{what}: your address used much query time recently, and costly queries share "
                f"{self._lane()} of the {self.workers} query workers so that one stays free for others; "
                f"try again after Retry-After seconds")

    def _start(self, key: str, client: _Client, now: float) -> _Ticket:
        client.running.append(now)
        self._admitted += 1
        if self._admitted % 1024 == 0:
            self._forget_idle(now)
        return _Ticket(self, key, now)

    def _release(self, ticket: _Ticket) -> None:
        with self._changed:
            now = self.clock()
            client = self._clients.get(ticket.key)  # type: ignore[arg-type]  # an admitted ticket has a key
            if client is not None:
                client.running.remove(ticket.started)
                seconds = now - ticket.started if ticket.seconds is None else ticket.seconds
                client.charge(now, max(0.0, min(seconds, now - ticket.started)))
            self._changed.notify_all()

    def _lane(self) -> int:
        """Workers the queries of heavy clients may hold at once: all but one (one worker: that one)."""
        if self.workers == 1:
            return 1
        live = self.live_workers() if self.live_workers is not None else None
        return max(0, min(self.workers, self.workers if live is None else live) - 1)

    def _heavy_running(self, now: float) -> int:
        return sum(len(c.running) for c in self._clients.values()
                   if c.running and c.used(now) >= self.heavy_seconds)

    def _first_waiter(self, now: float) -> _Waiter | None:
        """The waiter whose client used least in the window (the earliest among equals)."""
        return min(self._waiters, key=lambda w: (round(self._clients[w.key].used(now), 1), w.order), default=None)

    def _estimate(self, now: float) -> float:
        """Seconds until a heavy query now running will have ended (its time limit at the latest)."""
        ends = [started + self.timeout - now for c in self._clients.values() for started in c.running
                if c.used(now) >= self.heavy_seconds]
        return min(ends, default=1.0)

    def _forget_idle(self, now: float) -> None:
        for key, client in list(self._clients.items()):
            client.used(now)  # drops what left the window
            if client.idle:
                del self._clients[key]
