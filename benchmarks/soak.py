"""Soak `cmc-kg serve`: a steady load for a fixed time, with memory sampled, and optionally a worker killed.

Starts the project's server on 127.0.0.1 over a build (or uses --url), sends a mix of queries from
--concurrency threads, each on its own keep-alive connection, for --duration seconds: the example queries
(queries/*.rq, mostly answered from the cache) and generated lookups that are nearly all different (so the
query workers keep evaluating). Every 0.25 s it samples the resident memory of the server and of its query
workers (/proc). With --kill-worker-at S it kills one query worker (SIGKILL) S seconds in and counts the
requests in flight at that moment: only those may fail.

It reports requests, failures, latency percentiles, peak memory (sampled RSS of the whole process tree and
each process's VmHWM), and the mean memory of the first and the last window (10 s, or a quarter of a
shorter run). It exits 1 when a request failed that may not fail, or memory grew past --memory-tolerance.

Every loop is bounded in time and count; the server it started is stopped at the end, also on errors.

    .venv/bin/python benchmarks/soak.py --duration 60 --concurrency 32
    .venv/bin/python benchmarks/soak.py --duration 5 --concurrency 16 --kill-worker-at 2.5 --json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cmc_kg.query import example_queries  # noqa: E402
from cmc_kg.settings import Paths  # noqa: E402

HOST = "127.0.0.1"
MAX_REQUESTS_PER_CLIENT = 1_000_000
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# ---------------------------------------------------------------------------------------------- memory

def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (the query workers of a server), from /proc."""
    found, todo = [], [pid]
    while todo and len(found) < 1000:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return found


def status_kb(pid: int, key: str) -> int:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM) in KiB; 0 for a process that is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(pid: int) -> float:
    return sum(status_kb(p, "VmRSS") for p in process_tree(pid)) / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used; 0 for a process that is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def worker_pids(pid: int) -> list[int]:
    return [p for p in process_tree(pid) if p != pid]


class MemorySampler:
    """Samples the tree's total RSS and each process's VmHWM every ``interval`` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []   # (seconds since start, MiB)
        self.hwm_kb: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def __enter__(self):
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self):
        pids = process_tree(self.pid)
        total = 0
        for p in pids:
            total += status_kb(p, "VmRSS")
            self.hwm_kb[p] = max(self.hwm_kb.get(p, 0), status_kb(p, "VmHWM"))
        self.samples.append((time.monotonic() - self.started, total / 1024))

    def peak_mb(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)

    def window_mb(self, start: float, end: float) -> float:
        chosen = [mb for t, mb in self.samples if start <= t < end]
        return sum(chosen) / len(chosen) if chosen else 0.0


# ---------------------------------------------------------------------------------------------- load

def query_mix(seed: int = 1):
    """A function giving the next query: example queries and generated, nearly always different lookups."""
    examples = [q.text for q in example_queries(Paths())]
    rng = random.Random(seed)
    lock = threading.Lock()

    def generated() -> str:
        code = "".join(rng.choice(LETTERS) for _ in range(3))
        kind = rng.randrange(3)
        if kind == 0:
            return f"SELECT ?c ?l WHERE {{ ?c cmc:isoAlpha3 '{code}' ; rdfs:label ?l }}"
        if kind == 1:
            return f"ASK {{ ?c cmc:isoAlpha3 '{code}' }}"
        return (f"SELECT ?s ?l WHERE {{ ?s rdfs:label ?l FILTER(STRSTARTS(STR(?l), '{code[:2].title()}')) }} "
                f"LIMIT {rng.randrange(1, 50)}")

    def next_query() -> str:
        with lock:
            if examples and rng.random() < 0.4:
                return rng.choice(examples)
            return generated()

    return next_query


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)   # (seconds since start, what)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def client(url: str, deadline: float, started: float, next_query, results: Results, timeout: float) -> None:
    parts = urllib.parse.urlsplit(url)
    connection = None
    for _ in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= deadline:
            break
        body = urllib.parse.urlencode({"query": next_query()})
        with results.lock:
            results.in_flight += 1
        sent = time.monotonic()
        outcome = None
        try:
            if connection is None:
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            connection.request("POST", parts.path, body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/sparql-results+json"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                outcome = f"HTTP {response.status}"
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as error:
            outcome = f"{type(error).__name__}: {error}"
            if connection is not None:
                connection.close()
            connection = None
        finally:
            with results.lock:
                results.in_flight -= 1
        elapsed = time.monotonic() - sent
        with results.lock:
            if outcome is None:
                results.latencies.append(elapsed)
            else:
                results.failures.append((sent - started, outcome))
    if connection is not None:
        connection.close()


# ---------------------------------------------------------------------------------------------- server

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(build_dir: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cmc_kg.cli", "serve", "--port", str(port), "--build-dir",
                                str(build_dir), *flags], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).read()
            return process, url
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"cmc-kg serve exited with status {process.returncode}") from None
            time.sleep(0.2)
    stop_server(process)
    raise RuntimeError("cmc-kg serve did not answer /health within 60 s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def server_pid_of(url: str) -> int | None:
    """The pid listening on the URL's port (for --url runs), from /proc/net/tcp; None if not found."""
    port = urllib.parse.urlsplit(url).port
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                for line in list(handle)[1:]:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                        inodes.add(fields[9])
        except OSError:
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").rstrip("]") in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


# ---------------------------------------------------------------------------------------------- soak

def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def soak(url: str, pid: int, duration: float, concurrency: int, kill_worker_at: float | None = None,
         request_timeout: float = 30.0, memory_tolerance: float = 0.10, memory_slack_mb: float = 16.0) -> dict:
    """Run the load against a live server whose process is ``pid``; return the report (a dict)."""
    endpoint = url.rstrip("/") + "/sparql"
    results = Results()
    next_query = query_mix()
    kill: dict = {}
    with MemorySampler(pid) as memory:
        started = memory.started
        deadline = started + duration
        threads = [threading.Thread(target=client, args=(endpoint, deadline, started, next_query, results,
                                                         request_timeout), daemon=True)
                   for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        if kill_worker_at is not None:
            time.sleep(max(0.0, started + kill_worker_at - time.monotonic()))
            workers = worker_pids(pid)
            if workers:
                victim = random.Random(2).choice(workers)
                with results.lock:
                    kill = {"at": round(time.monotonic() - started, 3), "pid": victim,
                            "in_flight": results.in_flight, "workers_before": len(workers)}
                    os.kill(victim, signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()) + request_timeout + 5)
        elapsed = time.monotonic() - started
        memory.sample()
    window = min(10.0, duration / 4)
    first, last = memory.window_mb(0, window), memory.window_mb(elapsed - window, elapsed + 1)
    if kill:
        kill["workers_after"] = len(worker_pids(pid))
        kill["failures_after_kill"] = sum(1 for t, _ in results.failures if t >= kill["at"] - 0.5)
        kill["recovered"] = not any(t > kill["at"] + 2 for t, _ in results.failures)
    failures: dict[str, int] = {}
    for _, what in results.failures:
        failures[what] = failures.get(what, 0) + 1
    allowed = kill.get("in_flight", 0)
    report = {
        "duration_s": round(elapsed, 2),
        "concurrency": concurrency,
        "requests": len(results.latencies) + len(results.failures),
        "failed": len(results.failures),
        "failures": failures,
        "requests_per_s": round((len(results.latencies) + len(results.failures)) / elapsed, 1),
        "latency_ms": {name: round(percentile(results.latencies, q) * 1000, 1)
                       for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))},
        "peak_rss_mb": round(memory.peak_mb(), 1),
        "peak_vmhwm_mb": {("server" if p == pid else f"worker {p}"): round(kb / 1024, 1)
                          for p, kb in sorted(memory.hwm_kb.items())},
        "memory_window_s": window,
        "memory_first_mb": round(first, 1),
        "memory_last_mb": round(last, 1),
        "memory_flat": last <= first * (1 + memory_tolerance) + memory_slack_mb,
        "kill": kill,
        "failures_allowed": allowed,
    }
    report["ok"] = report["failed"] <= allowed and report["memory_flat"] and (not kill or kill["recovered"])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads (default 32)")
    parser.add_argument("--build-dir", default=str(REPO_ROOT / "build"), help="build to serve (default build/)")
    parser.add_argument("--url", help="soak an already running server instead (its process must be local)")
    parser.add_argument("--workers", type=int, default=2, help="query workers of the started server")
    parser.add_argument("--kill-worker-at", type=float, help="kill one query worker this many seconds in")
    parser.add_argument("--memory-tolerance", type=float, default=0.10,
                        help="allowed growth of the last window's memory over the first's (default 0.10)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 3600 or not 0 < args.concurrency <= 512:
        parser.error("--duration must be in (0, 3600] and --concurrency in (0, 512]")
    process = None
    try:
        if args.url:
            url, pid = args.url, server_pid_of(args.url)
            if pid is None:
                parser.error(f"no local process listens at {args.url}")
        else:
            build_dir = Path(args.build_dir)
            if not (build_dir / "cmc-kg.nq").exists():
                parser.error(f"{build_dir}/cmc-kg.nq does not exist: run `cmc-kg build` first")
            process, url = start_server(build_dir, "--workers", str(args.workers))
            pid = process.pid
        report = soak(url, pid, args.duration, args.concurrency, args.kill_worker_at,
                      memory_tolerance=args.memory_tolerance)
    finally:
        if process is not None:
            stop_server(process)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['requests']} requests in {report['duration_s']} s at concurrency {report['concurrency']} "
              f"({report['requests_per_s']}/s), {report['failed']} failed {report['failures'] or ''}")
        latency = report["latency_ms"]
        print(f"latency ms: p50 {latency['p50']}, p90 {latency['p90']}, p99 {latency['p99']}, max {latency['max']}")
        print(f"peak RSS (server + workers): {report['peak_rss_mb']} MiB; VmHWM: {report['peak_vmhwm_mb']}")
        print(f"memory, first {report['memory_window_s']:g} s: {report['memory_first_mb']} MiB, last: "
              f"{report['memory_last_mb']} MiB ({'flat' if report['memory_flat'] else 'GREW'})")
        if report["kill"]:
            print(f"killed worker: {report['kill']}")
        print("OK" if report["ok"] else "FAILED")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
