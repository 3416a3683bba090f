"""Fair sharing: one or a few clients cannot deny service to everyone, with costly queries or with connections.

The live tests run `cmc-kg serve` on 127.0.0.1 and give each client its own loopback address (127.0.0.2,
127.0.0.3, ...: Linux routes all of 127/8 to the server), so that the server sees distinct clients; requests
from 127.0.0.1 itself are unthrottled by default. Bounds are generous: the machine may be busy. Latency
numbers are measured by `benchmarks/fairness.py`, not here.
"""

from __future__ import annotations

import http.client
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from cmc_kg.settings import Settings
from cmc_kg.server.admission import Admission, TooManyQueries, client_key

from conftest import start_server, stop_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fairness  # noqa: E402

TIMEOUT = 3.0
CHEAP = "SELECT ?code WHERE { ?c cmc:isoAlpha3 ?code FILTER(?code IN ('FRA', 'NOR')) } ORDER BY ?code"


def ask(url: str, text: str, source: str | None = None, headers: dict | None = None, timeout: float = 30.0):
    """(status, headers, body, seconds) of one GET of a query, sent from the loopback address ``source``."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout,
                                            source_address=(source, 0) if source else None)
    started = time.monotonic()
    try:
        connection.request("GET", "/sparql?" + urllib.parse.urlencode({"query": text}), headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read(), time.monotonic() - started
    finally:
        connection.close()


# ------------------------------------------------------------------------ the policy, without a server

def _hold(admission: Admission, address: str, release: threading.Event, outcome: dict, name: str) -> threading.Thread:
    """A query from ``address`` that is admitted (or refused) and then runs until ``release`` is set."""
    def run():
        try:
            with admission.admit(address):
                outcome[name] = "admitted"
                release.wait(10)
        except TooManyQueries as refused:
            outcome[name] = refused

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_heavy_clients_together_leave_one_worker_to_the_others():
    admission = Admission(workers=2, timeout=1.0, heavy_seconds=0.2, client_budget=100)
    for address in ("192.0.2.1", "192.0.2.2"):  # both used a worker for a while: heavy
        with admission.admit(address):
            time.sleep(0.25)
    release, outcome = threading.Event(), {}
    try:
        first = _hold(admission, "192.0.2.1", release, outcome, "first heavy")
        _wait_for(lambda: "first heavy" in outcome)
        second = _hold(admission, "192.0.2.2", release, outcome, "second heavy")
        time.sleep(0.2)
        assert "second heavy" not in outcome  # waiting: the other worker is kept
        with admission.admit("192.0.2.3"):  # a light client is admitted at once
            pass
        second.join(timeout=5)
        refused = outcome["second heavy"]
        assert isinstance(refused, TooManyQueries) and refused.retry_after >= 1
        assert "waited 1 s for its turn" in str(refused) and "one stays free" in str(refused)
    finally:
        release.set()
        first.join(timeout=5)
    # Once the first heavy query has ended, the next one starts.
    with admission.admit("192.0.2.2"):
        pass


def test_a_waiting_heavy_client_starts_when_the_share_frees_and_the_least_used_goes_first():
    admission = Admission(workers=2, timeout=5.0, heavy_seconds=0.1, client_budget=100)
    for address, seconds in (("192.0.2.1", 0.15), ("192.0.2.2", 0.6), ("192.0.2.3", 0.15)):
        with admission.admit(address):
            time.sleep(seconds)
    release, later, outcome = threading.Event(), threading.Event(), {}
    holder = _hold(admission, "192.0.2.1", release, outcome, "running")
    _wait_for(lambda: "running" in outcome)
    heavier = _hold(admission, "192.0.2.2", later, outcome, "heavier")
    time.sleep(0.1)
    lighter = _hold(admission, "192.0.2.3", later, outcome, "lighter")
    time.sleep(0.3)
    assert "heavier" not in outcome and "lighter" not in outcome
    release.set()
    _wait_for(lambda: "lighter" in outcome)
    assert outcome["lighter"] == "admitted" and "heavier" not in outcome  # it arrived later but used less
    later.set()
    for thread in (holder, heavier, lighter):
        thread.join(timeout=5)
    assert outcome["heavier"] == "admitted"


def test_a_client_over_its_queries_in_flight_or_its_budget_gets_429():
    admission = Admission(workers=2, timeout=1.0, client_queries=2, heavy_seconds=0.1, client_budget=0.2)
    release, outcome = threading.Event(), {}
    threads = [_hold(admission, "198.51.100.7", release, outcome, f"q{i}") for i in range(2)]
    _wait_for(lambda: len(outcome) == 2)
    with pytest.raises(TooManyQueries, match="too many queries at once: 2 .* the limit is 2") as refused:
        admission.admit("198.51.100.7")
    assert refused.value.retry_after == 1
    with admission.admit("198.51.100.8"):  # another client is not concerned
        pass
    time.sleep(0.3)  # its two queries have now used 0.6 s: heavy, and over its budget
    release.set()
    for thread in threads:
        thread.join(timeout=5)
    # Over its budget, the client is refused only when it would have to wait (here: another heavy query runs).
    with admission.admit("198.51.100.7"):
        pass
    with admission.admit("198.51.100.9"):
        time.sleep(0.15)
    release, outcome = threading.Event(), {}
    holder = _hold(admission, "198.51.100.9", release, outcome, "other heavy")
    _wait_for(lambda: "other heavy" in outcome)
    with pytest.raises(TooManyQueries, match="over the budget of 0.2 s") as refused:
        admission.admit("198.51.100.7")
    assert 1 <= refused.value.retry_after <= 61
    release.set()
    holder.join(timeout=5)


def test_unthrottled_addresses_and_client_identity():
    admission = Admission(workers=2, timeout=1.0, client_queries=1, unthrottled=["127.0.0.1", "10.0.0.0/8", "::1"])
    with admission.admit("127.0.0.1"), admission.admit("127.0.0.1"), admission.admit("10.1.2.3"), \
            admission.admit("::ffff:10.1.2.3"), admission.admit("::1"), admission.admit(None):
        pass
    # One IPv6 subscriber (a /64) is one client.
    assert client_key("2001:db8:0:1::1") == client_key("2001:db8:0:1:ffff::2") != client_key("2001:db8:0:2::1")
    with admission.admit("2001:db8:0:1::1"):
        with pytest.raises(TooManyQueries):
            admission.admit("2001:db8:0:1::2")
        with admission.admit("2001:db8:0:2::1"):
            pass
    assert not Admission.disabled().enabled


def test_fairness_settings_parse():
    config = Settings.load(environ={"CMC_KG_FAIR_SHARE": "off", "CMC_KG_UNTHROTTLED": "", "CMC_KG_CLIENT_QUERIES": "3"})
    assert (config.fair_share, config.unthrottled, config.client_queries) == (False, (), 3)
    assert Settings.load(environ={}).fair_share is True
    with pytest.raises(ValueError, match="'fair_share'"):
        Settings.load(environ={"CMC_KG_FAIR_SHARE": "maybe"})


# ------------------------------------------------------------------------ costly queries against a live server

@pytest.fixture(scope="module")
def fair(built):
    # heavy_seconds below the time limit: one stopped query makes a client heavy (as with the defaults, 5 and 10).
    live = start_server(built[0].build_dir, "--query-timeout", str(TIMEOUT), "--heavy-seconds", "1.5",
                        "--workers", "2", "--cache-entries", "0", "--reload-interval", "0")
    yield live
    stop_server(live)


@pytest.mark.alone
@pytest.mark.xdist_group("costly")
def test_cheap_queries_stay_fast_while_three_clients_send_costly_ones(fair):
    """Three clients send a cross product (stopped at 3 s) again and again, ignoring Retry-After; a fourth sends
    a cheap lookup every 0.05 s. Once each costly client has had one query stopped (the onset: a client never
    seen before may take the kept worker once), every cheap query of the next 5 s is answered 200, far within the
    time limit, and the costly clients get 429 or 503, never an answer."""
    report = fairness.measure(fair.url, costly_clients=3, duration=24, query_timeout=TIMEOUT, after_onset=5)
    print(f"\n{report}")
    assert report["onset_s"] is not None and report["onset_s"] < 16, report
    after = report["cheap_after_onset"]
    assert after["queries"] >= 20 and after["statuses"] == {"200": after["queries"]}, report
    assert after["latency_ms"]["max"] < 1000 * TIMEOUT, report  # never waited for a costly query to be stopped
    costly = report["costly_statuses"]
    assert set(costly) <= {"429", "503 stopped", "503 no worker"} and costly.get("429", 0) > 0, report


@pytest.mark.alone
@pytest.mark.xdist_group("costly")
def test_a_trusted_proxy_names_the_client(built):
    live = start_server(built[0].build_dir, "--trusted-proxy", "127.0.0.1", "--client-queries", "1",
                        "--query-timeout", str(TIMEOUT), "--cache-entries", "0", "--reload-interval", "0")
    try:
        outcome = {}
        costly = threading.Thread(target=lambda: outcome.update(costly=ask(
            live.url, fairness.COSTLY, headers={"X-Forwarded-For": "203.0.113.5"})))
        costly.start()
        time.sleep(0.5)
        status, headers, body, _ = ask(live.url, CHEAP, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.5"})
        assert status == 429 and headers["Retry-After"] == "1" and b"too many queries at once" in body
        # Another client behind the proxy, the proxy itself, and a peer that is not the proxy (whose
        # X-Forwarded-For is ignored) are all answered.
        assert ask(live.url, CHEAP, headers={"X-Forwarded-For": "203.0.113.6"})[0] == 200
        assert ask(live.url, CHEAP)[0] == 200
        assert ask(live.url, CHEAP, source="127.0.0.2", headers={"X-Forwarded-For": "203.0.113.5"})[0] == 200
        costly.join(timeout=30)
        assert outcome["costly"][0] == 503
    finally:
        stop_server(live)


# ------------------------------------------------------------------------ connections held open (slowloris)

class Dribbler:
    """A connection from ``source`` that sends a request one byte every ``every`` seconds; records how it ended."""

    REQUEST = b"GET /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"

    def __init__(self, url: str, source: str, every: float = 0.3):
        self.port, self.source, self.every = urllib.parse.urlsplit(url).port, source, every
        self.ended: tuple[float, bytes | str] | None = None  # (seconds after connecting, what the server sent)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with socket.socket() as sock:
            sock.bind((self.source, 0))
            sock.settimeout(self.every)
            started = time.monotonic()
            try:
                sock.connect(("127.0.0.1", self.port))
                for byte in self.REQUEST:
                    sock.send(bytes([byte]))
                    try:
                        data = sock.recv(4096)
                    except socket.timeout:
                        continue
                    self.ended = (time.monotonic() - started, data)
                    return
            except OSError as error:
                self.ended = (time.monotonic() - started, type(error).__name__)
                return
            self.ended = (time.monotonic() - started, "sent the whole request")

    def join(self, seconds: float):
        self.thread.join(timeout=seconds)


@pytest.mark.alone
@pytest.mark.xdist_group("connections")
def test_slow_connections_from_one_address_neither_take_every_slot_nor_stay(built):
    read_timeout, per_client = 4.0, 5
    live = start_server(built[0].build_dir, "--request-read-timeout", str(read_timeout),
                        "--client-connections", str(per_client), "--reload-interval", "0")
    try:
        dribblers = [Dribbler(live.url, "127.0.0.2") for _ in range(3 * per_client)]
        time.sleep(read_timeout / 2)
        refused = [d for d in dribblers if d.ended is not None]
        assert len(refused) >= 2 * per_client  # beyond its share, at once (429 then closed, or reset)
        assert all(d.ended[0] < read_timeout / 2 and (isinstance(d.ended[1], str) or d.ended[1].startswith(
            b"HTTP/1.1 429")) for d in refused)
        # Another client is answered before the deadline frees any of the held connections.
        status, _, _, seconds = ask(live.url, CHEAP, source="127.0.0.3")
        assert status == 200 and seconds < read_timeout / 2
        # The connections it was allowed are closed by the deadline: 408, between 4 and 4 + 1 (the check's
        # period) seconds, with a generous margin for a busy machine.
        for dribbler in dribblers:
            dribbler.join(read_timeout + 10)
        held = [d for d in dribblers if d not in refused]
        assert held and all(d.ended is not None and read_timeout <= d.ended[0] < read_timeout + 4
                            and not isinstance(d.ended[1], str) and d.ended[1].startswith(b"HTTP/1.1 408")
                            for d in held), [d.ended for d in held]
    finally:
        stop_server(live)


@pytest.mark.alone
@pytest.mark.xdist_group("connections")
def test_slow_connections_from_many_addresses_delay_others_only_until_the_deadline(built):
    """Without a proxy in front, clients with many addresses can fill connection_limit; the deadline frees the
    slots, so another client waits at most about request_read_timeout (its connection waits to be accepted)."""
    read_timeout = 2.0
    live = start_server(built[0].build_dir, "--request-read-timeout", str(read_timeout), "--client-connections", "5",
                        "--connection-limit", "12", "--reload-interval", "0")
    try:
        dribblers = [Dribbler(live.url, f"127.0.0.{2 + i % 3}") for i in range(15)]
        time.sleep(0.8)
        status, _, _, seconds = ask(live.url, CHEAP, source="127.0.0.9", timeout=30)
        assert status == 200 and seconds < read_timeout + 4
        for dribbler in dribblers:
            dribbler.join(2 * read_timeout + 10)
        assert all(d.ended is not None and d.ended[1] != "sent the whole request" for d in dribblers)
    finally:
        stop_server(live)


@pytest.mark.alone
@pytest.mark.xdist_group("connections")
def test_the_server_still_answers_after_the_red_team_slowloris(built):
    """The report's case: 101 connections from one address dribbling header bytes, with default settings. Every
    other client is answered at once, and none of the connections outlives the default deadline (10 s) by much."""
    live = start_server(built[0].build_dir, "--reload-interval", "0")
    try:
        dribblers = [Dribbler(live.url, "127.0.0.2", every=1.0) for _ in range(101)]
        time.sleep(1.0)
        defaults = Settings()
        for source in ("127.0.0.3", "127.0.0.4", None):
            status, _, _, seconds = ask(live.url, CHEAP, source=source)
            assert status == 200 and seconds < defaults.request_read_timeout / 2  # long before the deadline
        held = 0
        for dribbler in dribblers:
            dribbler.join(defaults.request_read_timeout + 10)
            assert dribbler.ended is not None and dribbler.ended[0] < defaults.request_read_timeout + 5
            held += isinstance(dribbler.ended[1], bytes) and dribbler.ended[1].startswith(b"HTTP/1.1 408")
        assert held == defaults.client_connections
    finally:
        stop_server(live)


def test_queue_depth_warnings_become_one_summary_line_per_interval():
    """Under load waitress warned once per waiting request (5,879 lines in a 60 s soak); now one line per interval."""
    import logging

    from cmc_kg.server.connections import QueueDepthSummary

    now = [0.0]
    summary = QueueDepthSummary(interval=10.0, clock=lambda: now[0])
    kept = []
    for second in range(0, 30):
        for depth in (1, 5, 3):
            now[0] = second
            record = logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d",
                                       (depth,), None)
            if summary.filter(record):
                kept.append(record.getMessage())
    assert len(kept) == 2 and all("waited for an HTTP thread" in line and "deepest queue 5" in line for line in kept)
    other = logging.LogRecord("waitress", logging.WARNING, __file__, 1, "something else", (), None)
    assert summary.filter(other)
