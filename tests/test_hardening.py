"""The red-team's second round, through a real `cmc-kg serve` on 127.0.0.1: SERVICE and FROM written the way
Oxigraph's grammar allows are refused with 403 (also over `serve --store`), deep queries get 400 before the
engine, a query that crashes its worker is logged and never retried, answers and the cache are bounded in
bytes, and the workers die with their server whatever signal it gets.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import start_oxigraph, start_server, stop_server
from test_hostile import Listener, query

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import soak  # noqa: E402  (process-tree helpers)

pytestmark = pytest.mark.system

CHEAP = "ASK { ?s ?p ?o }"
COSTLY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"


@pytest.fixture(scope="module")
def listener():
    live = Listener()
    yield live
    live.close()


def _forms(listener: Listener) -> list[str]:
    base = f"http://127.0.0.1:{listener.port}/"
    return [f"PREFIX : <{base}admin/> SELECT * WHERE {{ SERVICE:secret {{ ?s ?p ?o }} }}",
            f"PREFIX : <{base}admin/> select * where {{ sErViCe:secret {{ ?s ?p ?o }} }}",
            f"PREFIX ex: <{base}> SELECT * WHERE {{ ?s ?p ?o . ?s ?p 1SERVICE ex:x {{ ?s ?p ?o }} }}",
            f"PREFIXex:<{base}>SELECT*WHERE{{SERVICESILENTex:x{{?s ?p ?o}}}}",
            f"BASE <{base}> SELECT * WHERE {{ SERVICE <x> {{ ?s ?p ?o }} }}",
            "PREFIX : <file:///etc/> SELECT * FROM:passwd WHERE { ?s ?p ?o }",
            f"PREFIX : <{base}> SELECT * FROMNAMED:g WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}"]


@pytest.fixture(scope="module")
def allowlisted(built, listener):
    """A server whose workers have the network, because one SERVICE endpoint (not the listener's paths) is allowed."""
    live = start_server(built[0].build_dir, "--service-allowlist", f"http://127.0.0.1:{listener.port}/allowed",
                        "--reload-interval", "0", "--query-timeout", "5")
    yield live
    stop_server(live)


@pytest.mark.parametrize("setting", ["allowlist", "none"])
def test_glued_service_and_from_are_403_and_nothing_is_fetched(server, allowlisted, listener, setting):
    _assert_every_form_refused(allowlisted if setting == "allowlist" else server, listener)


def _assert_every_form_refused(live, listener: Listener) -> None:
    """Each form of SERVICE or FROM gets 403 and the listener sees no connection."""
    for text in _forms(listener):
        before = listener.connections
        status, _, body, _ = query(live.url, text)
        time.sleep(0.05)
        assert status == 403, (text, status, body[:300])
        assert listener.connections == before, text


def test_service_forms_are_refused_over_serve_store(built, listener, tmp_path):
    """`serve --store` forwards to an engine that would fetch: there the check is the only guard."""
    oxigraph, process = start_oxigraph(tmp_path / "oxigraph", data=Path(built[0].dump_file))
    live = start_server(built[0].build_dir, "--store", f"{oxigraph}/query", "--service-allowlist",
                        f"http://127.0.0.1:{listener.port}/allowed", "--reload-interval", "0")
    try:
        assert query(live.url, CHEAP)[0] == 200
        _assert_every_form_refused(live, listener)
    finally:
        stop_server(live)
        process.kill()


# ------------------------------------------------------------------------------------- depth and crashes

@pytest.fixture(scope="module")
def strict(built):
    live = start_server(built[0].build_dir, "--reload-interval", "0", "--query-timeout", "5", "--cache-entries", "0",
                        "--max-answer-bytes", str(1 << 20))
    yield live
    stop_server(live)


@pytest.mark.parametrize("text", [
    "SELECT ?x WHERE { BIND(" + "STR(" * 1000 + "1" + ")" * 1000 + " AS ?x) }",
    "SELECT * WHERE " + "{" * 4000 + " ?s ?p ?o " + "}" * 4000,
    "SELECT * WHERE { " + " ".join(f"BIND({i} AS ?v{i})" for i in range(5000)) + " }",
    "SELECT * WHERE { ?s ?p ?o " + "FILTER NOT EXISTS { ?s ?p ?o " * 1000 + "}" * 1000 + " }",
])
def test_queries_that_would_overflow_the_engine_get_400_and_crash_nothing(strict, text):
    workers = sorted(soak.worker_pids(strict.process.pid))
    status, headers, body, _ = query(strict.url, text)
    assert status == 400 and b"nests more than" in body and "Retry-After" not in headers
    assert sorted(soak.worker_pids(strict.process.pid)) == workers  # no worker died or was replaced


def test_a_query_that_crashes_its_worker_is_logged_and_never_retried(built):
    """A crash is simulated by SIGSEGV sent to the worker while it evaluates; the answer says not to retry, the
    log names the query's hash, and the same query is then refused at once without costing a worker."""
    live = start_server(built[0].build_dir, "--reload-interval", "0", "--query-timeout", "20")
    try:
        outcome = {}
        thread = threading.Thread(target=lambda: outcome.update(answer=query(live.url, COSTLY)))
        thread.start()
        deadline = time.monotonic() + 20
        busy = []
        while time.monotonic() < deadline and not busy:
            busy = [pid for pid in soak.worker_pids(live.process.pid) if soak.cpu_seconds(pid) > 0.5]
            time.sleep(0.1)
        assert busy, "no worker started evaluating"
        os.kill(busy[0], signal.SIGSEGV)
        thread.join(timeout=30)
        status, headers, body, _ = outcome["answer"]
        assert status == 500 and "Retry-After" not in headers and b"crashed" in body
        started = time.monotonic()
        status, headers, body, _ = query(live.url, COSTLY)
        assert status == 500 and "Retry-After" not in headers and b"not run again" in body
        assert time.monotonic() - started < 5  # refused at once, not evaluated again
        assert query(live.url, CHEAP)[0] == 200
    finally:
        stop_server(live)
    output = live.process.stdout.read()
    assert "crashed its worker" in output and body.split(b"query ")[-1][:16].decode() in output


def test_quick_queries_are_answered_while_costly_ones_hold_every_worker(built):
    """The red-team's case, all from one address (so per-client sharing cannot tell the clients apart): two
    costly queries hold both workers; quick queries run on the quick lane and are answered long before the
    costly ones are stopped, and a costly query that strays onto the lane leaves it after `quick_lane` seconds."""
    live = start_server(built[0].build_dir, "--reload-interval", "0", "--query-timeout", "20", "--cache-entries", "0",
                        "--workers", "2")
    threads = [threading.Thread(target=_quietly, args=(query, live.url, COSTLY.replace("?i", f"?i{n}")))
               for n in range(3)]
    try:
        costly_stopped = time.monotonic() + 20  # no worker frees before the costly queries' time limit
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        answers = [query(live.url, f"ASK {{ ?s ?p {n} }}") for n in range(5)]
        assert [status for status, *_ in answers] == [200] * 5
        assert time.monotonic() < costly_stopped, [seconds for *_, seconds in answers]
    finally:
        stop_server(live)  # ends the costly queries too
        for thread in threads:
            thread.join(timeout=30)


# ------------------------------------------------------------------------------------------------ bytes

_DOUBLING = ('SELECT ?s WHERE { BIND("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" AS ?a) ' + " ".join(
    f"BIND(CONCAT({', '.join([f'?{a}'] * 8)}) AS ?{b})" for a, b in zip("abcde", "bcdef")) +
    " BIND(CONCAT(?f, ?f, ?f, ?f, ?f, ?f, ?f, ?f) AS ?s) }")


@pytest.mark.parametrize("text", [
    _DOUBLING,
    "SELECT (GROUP_CONCAT(CONCAT(STR(?s), STR(?p), STR(?o))) AS ?all) WHERE { ?s ?p ?o }",
    "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }",
])
def test_an_answer_over_the_byte_cap_gets_413(strict, text):
    status, headers, body, _ = query(strict.url, text)
    assert status == 413 and b"max_answer_bytes" in body, (status, body[:300])


PAGES = 240  # about 240 MB of answers in all: twice the bound below, so an unbounded cache would cross it


def test_the_server_stays_within_its_memory_bound_under_a_cache_filling_load(built):
    """Distinct paging queries each worth caching (the red-team's 2,200 of them took the server to 5.2 GiB):
    the server process (not its workers) stays under its stated bound."""
    cache_mb = 16
    live = start_server(built[0].build_dir, "--reload-interval", "0", "--cache-bytes", str(cache_mb << 20))
    try:
        base = _rss_mb(live.process.pid)
        failures = []

        def page(start: int) -> None:
            for offset in range(start, PAGES, 4):
                status = query(live.url, f"SELECT * WHERE {{ ?s ?p ?o }} LIMIT 4000 OFFSET {offset * 40}")[0]
                if status != 200:
                    failures.append(status)

        threads = [threading.Thread(target=page, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        peak = base
        while any(thread.is_alive() for thread in threads):
            peak = max(peak, _rss_mb(live.process.pid))
            time.sleep(0.05)
        assert failures == []
        print(f"\nserver RSS {base:.0f} MiB at start, {peak:.0f} MiB at most under {PAGES} distinct paging queries "
              f"of about 1 MB each")
        assert peak - base < cache_mb + 96
    finally:
        stop_server(live)


def _rss_mb(pid: int) -> float:
    return soak.status_kb(pid, "VmRSS") / 1024


# ---------------------------------------------------------------------------------------------- shutdown

@pytest.mark.alone
@pytest.mark.xdist_group("costly")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_workers_die_with_their_server_even_when_busy(built, how):
    live = start_server(built[0].build_dir, "--reload-interval", "0", "--query-timeout", "60")
    workers = soak.worker_pids(live.process.pid)
    assert workers
    thread = threading.Thread(target=lambda: _quietly(query, live.url, COSTLY), daemon=True)
    thread.start()
    time.sleep(1.0)
    os.kill(live.process.pid, how)
    live.process.wait(timeout=90)  # generous: the machine may be loaded
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.1)
    assert [pid for pid in workers if _running(pid)] == []


def _quietly(function, *args):
    try:
        function(*args)
    except OSError:
        pass


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
