"""How fast `cmc-kg serve` answers, beside Oxigraph server loaded with the same build.

Starts the project's server and an Oxigraph server (the `oxigraph` program of PyPI's oxigraph) over the
same N-Quads dump, sends both the same fixed mix of queries (benchmarks/queries/*.rq) over HTTP with
keep-alive connections at each concurrency (with wrk when it is installed, else a Python client), and prints
queries/s and p50/p99 latency per query, the ratio, and the geometric means against the targets; then the
same for two trivial lookups (ASK and DESCRIBE of one country, uncached), the memory of our server and of
each query worker, and the example queries (queries/*.rq) at concurrency 1 against the project's server, for
their p99. Both on the real build and on a generated, CMC-shaped graph of about `--triples` triples
(100,000 by default); uncached (`--cache-entries 0`) and cached (the same queries repeated, answered from
the cache that the build's checksum validates).

Everything listens on 127.0.0.1; every loop is bounded in time; both servers are stopped at the end,
also on errors and Ctrl-C.

    .venv/bin/python benchmarks/benchmark.py --duration 3
    .venv/bin/python benchmarks/benchmark.py --graph real --cache off --concurrency 1,8,16
    .venv/bin/python benchmarks/benchmark.py --graph generated --triples 1000000 --cache off --no-examples
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pyoxigraph as ox

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cmc_kg.namespaces import GRAPH, ID, INFERRED_GRAPH, ONTOLOGY_GRAPH, PREFIXES, SOURCES_GRAPH  # noqa: E402
from cmc_kg.query import example_queries  # noqa: E402
from cmc_kg.settings import Paths  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import process_tree, status_kb  # noqa: E402

MIX_DIR = Path(__file__).resolve().parent / "queries"
HOST = "127.0.0.1"
SELECT_ACCEPT = "application/sparql-results+json"
GRAPH_ACCEPT = "text/turtle"

# Targets (2-core machine): see benchmarks/README.md.
TARGET_UNCACHED_RATIO = 1.0   # geometric-mean q/s against Oxigraph server at concurrency 1 and 8, uncached
TARGET_CACHED_RATIO = 1.0     # the same at concurrency 8, repeated mix answered from the cache
TARGET_TRIVIAL_QPS = 2000.0   # each trivial lookup, uncached, at concurrency 8
TARGET_EXAMPLE_P99_MS = 50.0  # every example query on the real graph


# ---------------------------------------------------------------------------------------------- queries

@dataclass(frozen=True)
class BenchQuery:
    name: str
    title: str
    text: str          # as sent: with the PREFIX lines it uses, so that any endpoint can run it
    graph_form: bool   # CONSTRUCT or DESCRIBE: asks for Turtle


_FORM = re.compile(r"^\s*(SELECT|ASK|CONSTRUCT|DESCRIBE)\b", re.IGNORECASE | re.MULTILINE)


def with_prefixes(text: str) -> str:
    """The query with PREFIX lines for the project prefixes it uses (Oxigraph server predefines none)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = [p for p in PREFIXES if re.search(rf"(?<![\w:<]){re.escape(p)}:", body)]
    return "".join(f"PREFIX {p}: <{PREFIXES[p]}>\n" for p in used) + text


def load_queries(folder: Path, add_prefixes: bool = True) -> list[BenchQuery]:
    queries = []
    for path in sorted(folder.glob("*.rq")):
        text = path.read_text(encoding="utf-8")
        title = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# title:")),
                     path.stem)
        form = _FORM.search("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
        graph_form = bool(form) and form.group(1).upper() in ("CONSTRUCT", "DESCRIBE")
        queries.append(BenchQuery(path.stem, title, with_prefixes(text) if add_prefixes else text, graph_form))
    return queries


def mix_queries() -> list[BenchQuery]:
    return load_queries(MIX_DIR)


def trivial_queries() -> list[BenchQuery]:
    """One entity asked about (ASK) and described (DESCRIBE): the cheapest useful requests, where the cost is the
    server's own path rather than the engine's evaluation."""
    return [BenchQuery("ask-entity", "ASK about one country", with_prefixes("ASK { country:FRA ?p ?o }"), False),
            BenchQuery("describe-entity", "DESCRIBE one country", with_prefixes("DESCRIBE country:FRA"), True)]


def example_mix() -> list[BenchQuery]:
    """The 20 example queries, as users send them (relying on the endpoint's predefined prefixes)."""
    return [BenchQuery(q.path.stem, q.title, q.text, bool(re.match(r"\s*(CONSTRUCT|DESCRIBE)", "\n".join(
        line for line in q.text.splitlines() if not line.startswith("#")), re.IGNORECASE)))
        for q in example_queries()]


# ---------------------------------------------------------------------------------------- generated graph

_WORDS = ("landmine", "cluster", "munition", "campaign", "peace", "action", "survivor", "coalition", "network",
          "institute", "humanitarian", "disarmament", "relief", "rights", "mine", "clearance", "victim", "aid",
          "society", "justice", "watch", "forum", "alliance", "centre", "council", "youth", "women", "church")


def generate_graph(build_dir: Path, target_triples: int = 100_000, seed: int = 2008) -> Path:
    """Write a synthetic, CMC-shaped build (`cmc-kg.nq`) of about ``target_triples`` quads; return the dump path.

    Deterministic for a seed. Same IRI shapes, classes, properties and graph layout as the real build:
    the ontology graph (ontology/cmc.ttl), a sources graph, one graph per source, and an inferred graph
    with the supertypes and generic properties the reasoner adds. Countries include the real codes the
    benchmark queries name (LTU, NOR, FRA, ...) and the treaties include ccm, mbt and ccw.
    """
    rng = random.Random(seed)
    build_dir.mkdir(parents=True, exist_ok=True)
    quads: set[ox.Quad] = set()
    N = ox.NamedNode
    rdf_type, label = N(str(PREFIXES["rdf"]) + "type"), N(str(PREFIXES["rdfs"]) + "label")
    was_derived_from = N(str(PREFIXES["prov"]) + "wasDerivedFrom")
    associated, activity = N(str(PREFIXES["prov"]) + "wasAssociatedWith"), N(str(PREFIXES["prov"]) + "Activity")
    dc_date, dc_title = N(str(PREFIXES["dcterms"]) + "date"), N(str(PREFIXES["dcterms"]) + "title")
    org_member, org_organization, org_role = (N(str(PREFIXES["org"]) + p) for p in ("member", "organization", "role"))
    membership_class = N(str(PREFIXES["org"]) + "Membership")
    xsd_date = N(str(PREFIXES["xsd"]) + "date")
    inferred, ontology, sources = N(str(INFERRED_GRAPH)), N(str(ONTOLOGY_GRAPH)), N(str(SOURCES_GRAPH))
    c = lambda term: N(str(PREFIXES["cmc"]) + term)  # noqa: E731
    iri = lambda kind, *parts: N(str(ID) + kind + "/" + "/".join(parts))  # noqa: E731

    def add(s, p, o, g):
        quads.add(ox.Quad(s, p, o, g))

    def text(value: str) -> ox.Literal:
        return ox.Literal(value, language="en")

    # The ontology, as the build puts it in its own graph.
    ontology_file = Paths().ontology_file
    for triple in ox.parse(path=str(ontology_file), format=ox.RdfFormat.TURTLE):
        add(triple.subject, triple.predicate, triple.object, ontology)
    supertypes = {
        "Signature": ["TreatyAction"], "Ratification": ["ConsentToBeBound", "TreatyAction"],
        "Accession": ["ConsentToBeBound", "TreatyAction"], "Acceptance": ["ConsentToBeBound", "TreatyAction"],
        "Approval": ["ConsentToBeBound", "TreatyAction"], "Succession": ["ConsentToBeBound", "TreatyAction"],
        "EntryIntoForceForState": ["TreatyAction"], "WithdrawalNotification": ["TreatyAction"],
        "WithdrawalEffective": ["TreatyAction"],
    }

    # Sources: one graph each, described in the sources graph.
    source_keys = ["UNTC-SYNTH", "MONITOR-SYNTH", "SEED-SYNTH-A", "SEED-SYNTH-B", "SEED-SYNTH-C"]
    source_graphs = []
    for key in source_keys:
        slug = key.lower()
        graph, source = N(str(GRAPH[slug])), iri("source", slug)
        source_graphs.append(graph)
        add(graph, was_derived_from, source, sources)
        add(source, rdf_type, c("SourceDocument"), sources)
        add(source, c("sourceKey"), ox.Literal(key), sources)
        add(source, dc_title, text(f"Synthetic source {key}"), sources)
        add(source, label, text(f"Synthetic source {key}"), sources)
        add(source, c("quality"), c(rng.choice(["Primary", "Secondary", "Tertiary"])), sources)
    depositary, monitor = source_graphs[0], source_graphs[1]

    # Countries: the real codes the queries name, then generated ones.
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    codes = ["LTU", "NOR", "FRA", "CAN", "LAO", "LBN", "CUB", "DEU", "GBR", "USA"]
    while len(codes) < 250:
        code = "".join(rng.choice(letters) for _ in range(3))
        if code not in codes:
            codes.append(code)
    countries = {}
    for code in codes:
        country = iri("country", code)
        countries[code] = country
        name = f"{rng.choice(['Republic', 'Kingdom', 'State', 'Federation', 'Commonwealth'])} of {code.title()}"
        add(country, rdf_type, c("Country"), N(str(GRAPH["iso-codes"])))
        add(country, label, text(name), N(str(GRAPH["iso-codes"])))
        add(country, c("isoAlpha3"), ox.Literal(code), N(str(GRAPH["iso-codes"])))
        add(country, c("isoAlpha2"), ox.Literal(code[:2]), N(str(GRAPH["iso-codes"])))

    # Organizations and their memberships in a few coalitions.
    coalitions = [iri("org", slug) for slug in ("cmc", "icbl", "icbl-cmc")]
    for coalition, name in zip(coalitions, ("Cluster Munition Coalition", "International Campaign to Ban Landmines",
                                            "ICBL-CMC")):
        add(coalition, rdf_type, c("Coalition"), source_graphs[2])
        add(coalition, label, text(name), source_graphs[2])
    roles = ["MemberRole", "FoundingMemberRole", "SteeringCommitteeMemberRole", "AmbassadorRole"]
    organizations = []
    for n in range(max(1500, target_triples * 15 // 1000)):
        words = rng.sample(_WORDS, 3)
        slug = f"{'-'.join(words)}-{n}"
        organization = iri("org", slug)
        organizations.append(organization)
        graph = rng.choice(source_graphs[2:])
        add(organization, rdf_type, c(rng.choice(["NGO", "CivilSocietyOrganization", "NationalCampaign"])), graph)
        add(organization, label, text(" ".join(w.title() for w in words) + f" {n}"), graph)
        add(organization, c("country"), countries[rng.choice(codes)], graph)
        for coalition in rng.sample(coalitions, rng.choice([1, 1, 2])):
            role = rng.choice(roles)
            membership = iri("membership", coalition.value.rsplit("/", 1)[1], slug, role.lower())
            add(membership, rdf_type, membership_class, graph)
            add(membership, org_member, organization, graph)
            add(membership, org_organization, coalition, graph)
            add(membership, org_role, c(role), graph)
            add(membership, label, text(f"{slug}: {role}"), graph)

    # Treaties and their treaty actions, dated, with a second source restating (and sometimes contradicting) some.
    # As many treaties as the target needs (about 3,700 quads each): 23 for 100,000, 229 for 1,000,000.
    treaties = itertools.chain(["ccm", "mbt", "ccw"], (f"treaty-{n:02d}" for n in itertools.count(3)))
    day0 = date(1980, 1, 1)
    for slug in treaties:
        treaty = iri("treaty", slug)
        add(treaty, rdf_type, c("Treaty"), depositary)
        add(treaty, label, text({"ccm": "Convention on Cluster Munitions", "mbt": "Mine Ban Treaty",
                                 "ccw": "Convention on Certain Conventional Weapons"}.get(slug, f"Treaty {slug}")),
            depositary)
        opened = day0 + timedelta(days=rng.randrange(0, 40 * 365))
        for code in codes:
            if rng.random() > 0.55:
                continue
            state = countries[code]
            actions = []
            if rng.random() < 0.7:
                signed = opened + timedelta(days=rng.randrange(0, 400))
                actions.append(("signature", "Signature", signed))
                if rng.random() < 0.85:
                    consented = signed + timedelta(days=rng.randrange(30, 3000))
                    actions.append(("ratification", rng.choice(["Ratification", "Ratification", "Acceptance",
                                                                "Approval"]), consented))
            else:
                consented = opened + timedelta(days=rng.randrange(300, 6000))
                actions.append(("accession", rng.choice(["Accession", "Succession"]), consented))
            if actions[-1][0] != "signature":
                actions.append(("entry-into-force", "EntryIntoForceForState", actions[-1][2] + timedelta(days=180)))
                if rng.random() < 0.03:
                    notified = actions[-1][2] + timedelta(days=rng.randrange(300, 5000))
                    actions.append(("withdrawal-notification", "WithdrawalNotification", notified))
                    actions.append(("withdrawal-effective", "WithdrawalEffective", notified + timedelta(days=180)))
            for kind, cls, when in actions:
                action = iri("action", slug, code, kind)
                stated = ox.Literal(when.isoformat(), datatype=xsd_date)
                for graph, value in [(depositary, stated)] + (
                        [(monitor, stated if rng.random() < 0.9 else ox.Literal(
                            (when + timedelta(days=rng.choice([-1, 1, 30]))).isoformat(), datatype=xsd_date))]
                        if rng.random() < 0.25 else []):
                    add(action, rdf_type, c(cls), graph)
                    add(action, c("treaty"), treaty, graph)
                    add(action, c("actor"), state, graph)
                    add(action, c("date"), value, graph)
                    add(action, label, text(f"{code}: {kind.replace('-', ' ')}, {slug}"), graph)
                    add(action, dc_date, value, inferred)
                for supertype in supertypes[cls]:
                    add(action, rdf_type, c(supertype), inferred)
                add(action, rdf_type, activity, inferred)
                add(action, associated, state, inferred)
        if len(quads) >= target_triples:
            break
    dump = build_dir / "cmc-kg.nq"
    ox.serialize(sorted(quads, key=str), output=str(dump), format=ox.RdfFormat.N_QUADS)
    return dump


# ------------------------------------------------------------------------------------------------ servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    path: str  # the query path: /sparql or /query
    log: Path

    def stop(self) -> None:
        """Stop the process this script started (and its query workers, in its own process group)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        try:  # the group was created for this process alone (start_new_session)
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_until_answering(server: Server, seconds: float = 120) -> Server:
    deadline = time.monotonic() + seconds
    target = server.path + "?" + urllib.parse.urlencode({"query": "ASK { ?s ?p ?o }"})
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited: {server.log.read_text(errors='replace')[-2000:]}")
        try:
            connection = http.client.HTTPConnection(HOST, server.port, timeout=2)
            connection.request("GET", target, headers={"Accept": SELECT_ACCEPT})
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{server.name} did not answer within {seconds:g} s")


def start_ours(build_dir: Path, cached: bool, workdir: Path, extra: tuple[str, ...] = ()) -> Server:
    port = free_port()
    log = workdir / f"cmc-kg-{port}.log"
    flags = ["--cache-entries", "0"] if not cached else []
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "cmc_kg.cli", "serve", "--host", HOST, "--port", str(port),
                                    "--build-dir", str(build_dir), *flags, *extra],
                                   cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    return _wait_until_answering(Server("cmc-kg" + (" cached" if cached else ""), process, port, "/sparql", log))


def oxigraph_program() -> str:
    beside = Path(sys.executable).parent / "oxigraph"
    found = str(beside) if beside.exists() else shutil.which("oxigraph")
    if not found:
        raise RuntimeError("the `oxigraph` program is not installed: pip install 'oxigraph>=0.5' (the test extra)")
    return found


def start_oxigraph(dump: Path, workdir: Path, default_graph: str = "union") -> Server:
    """`oxigraph load` the dump into a fresh store, then `oxigraph serve-read-only` on it.

    ``default_graph``: "union" serves with `--union-default-graph` (the default graph is the union of the
    named graphs, evaluated per query); "merged" also loads the set merge of all graphs into the default
    graph, as `cmc-kg serve` holds it, and serves without the union option.
    """
    location = workdir / f"oxigraph-{dump.parent.name}-{os.getpid()}-{time.monotonic_ns()}"
    files = [str(dump)]
    if default_graph == "merged":
        from cmc_kg.query import load_store

        merged = location.with_suffix(".default.nt")
        ox.serialize(load_store(dump).quads_for_pattern(None, None, None, ox.DefaultGraph()), output=str(merged),
                     format=ox.RdfFormat.N_TRIPLES)
        files.append(str(merged))
    subprocess.run([oxigraph_program(), "load", "--location", str(location), "--file", *files], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    port = free_port()
    log = workdir / f"oxigraph-{port}.log"
    union = ["--union-default-graph"] if default_graph == "union" else []
    with open(log, "wb") as out:
        process = subprocess.Popen([oxigraph_program(), "serve-read-only", "--location", str(location),
                                    "--bind", f"{HOST}:{port}", *union],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    return _wait_until_answering(Server("oxigraph", process, port, "/query", log))


# -------------------------------------------------------------------------------------------- load generator

@dataclass
class Measure:
    """One query at one concurrency against one server."""

    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)   # wrk counts only 0 (not 2xx or 3xx) and 200 (the rest)
    errors: int = 0
    reported: dict[float, float] = field(default_factory=dict)   # percentile -> ms, as wrk prints them
    cpu_seconds: float | None = None   # CPU the server's processes used meanwhile (see hammer_timed)

    @property
    def qps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in milliseconds (nearest rank)."""
        if not self.latencies:
            return self.reported.get(p, float("nan"))
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] * 1000

    @property
    def all_ok(self) -> bool:
        return self.errors == 0 and set(self.statuses) == {200}

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1e6 if self.cpu_seconds is not None and self.requests else math.nan


def _target(server: Server, query: BenchQuery) -> tuple[str, dict]:
    return (server.path + "?" + urllib.parse.urlencode({"query": query.text}),
            {"Accept": GRAPH_ACCEPT if query.graph_form else SELECT_ACCEPT, "Connection": "keep-alive"})


WRK = shutil.which("wrk")
_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def hammer(server: Server, query: BenchQuery, duration: float, concurrency: int, timeout: float = 30) -> Measure:
    """Send the query over ``concurrency`` keep-alive connections, back to back, for ``duration`` seconds: with wrk
    when it is installed and the duration is whole seconds (wrk counts no less), else with the Python client."""
    if WRK and duration >= 1:
        return hammer_wrk(server, query, duration, concurrency, timeout)
    return hammer_python(server, query, duration, concurrency, timeout)


def hammer_wrk(server: Server, query: BenchQuery, duration: float, concurrency: int, timeout: float = 30) -> Measure:
    """The same load from wrk (C, event loop): one thread per core, ``concurrency`` connections."""
    target, headers = _target(server, query)
    seconds = max(1, round(duration))
    threads = max(1, min(concurrency, os.cpu_count() or 1))
    out = subprocess.run([WRK, "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--latency",
                          "--timeout", f"{timeout:g}s", "-H", f"Accept: {headers['Accept']}",
                          f"http://{HOST}:{server.port}{target}"],
                         capture_output=True, text=True, timeout=seconds + timeout + 30)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    text = out.stdout
    requests, took, unit = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text).groups()
    measure = Measure(requests=int(requests), seconds=float(took) * _WRK_UNITS[unit] / 1000)
    for percent, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE):
        measure.reported[float(percent)] = float(value) * _WRK_UNITS[unit]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    bad = int(failed.group(1)) if failed else 0
    measure.statuses = {k: v for k, v in ((200, measure.requests - bad), (0, bad)) if v}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    measure.errors = sum(int(n) for n in errors.groups()) if errors else 0
    return measure


def hammer_python(server: Server, query: BenchQuery, duration: float, concurrency: int,
                  timeout: float = 30) -> Measure:
    """Send the query over ``concurrency`` keep-alive connections, back to back, for ``duration`` seconds."""
    target, headers = _target(server, query)
    measure, lock = Measure(), threading.Lock()
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client():
        connection = http.client.HTTPConnection(HOST, server.port, timeout=timeout)
        latencies, statuses, errors = [], {}, 0
        start.wait()
        try:
            while time.perf_counter() < stop_at[0]:
                began = time.perf_counter()
                try:
                    connection.request("GET", target, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                    if response.getheader("Connection", "").lower() == "close":
                        connection.close()
                except (OSError, http.client.HTTPException):
                    errors += 1
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, server.port, timeout=timeout)
                    continue
                latencies.append(time.perf_counter() - began)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            connection.close()
            with lock:
                measure.latencies.extend(latencies)
                for status, n in statuses.items():
                    measure.statuses[status] = measure.statuses.get(status, 0) + n
                measure.errors += errors

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + duration
    start.wait()
    for thread in threads:
        thread.join(duration + timeout + 5)
    measure.seconds = time.perf_counter() - began
    measure.requests = len(measure.latencies)
    return measure


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process and its children now running (our query workers), from /proc."""
    total = 0
    for process in process_tree(pid):
        try:
            with open(f"/proc/{process}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def hammer_timed(server: Server, query: BenchQuery, duration: float, concurrency: int) -> Measure:
    """``hammer``, with the CPU time the server used meanwhile: on a machine shared with other work, CPU per
    request varies less than queries/s."""
    before = process_cpu_seconds(server.process.pid)
    measure = hammer(server, query, duration, concurrency)
    measure.cpu_seconds = process_cpu_seconds(server.process.pid) - before
    return measure


def warm_up(server: Server, queries: list[BenchQuery], seconds: float = 0.2) -> None:
    for query in queries:
        hammer(server, query, seconds, 1)


# ------------------------------------------------------------------------------------------------- running

def geomean(values: list[float]) -> float:
    values = [v for v in values if v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else 0.0


@dataclass
class GraphResult:
    """Measures of one graph: mix[(server, concurrency)][query], examples[cache][query], trivial lookups like the
    mix, and the memory of our server's processes once loaded and warmed up."""

    graph: str
    triples: int
    mix: dict[tuple[str, int], dict[str, Measure]] = field(default_factory=dict)
    examples: dict[str, dict[str, Measure]] = field(default_factory=dict)
    trivial: dict[tuple[str, int], dict[str, Measure]] = field(default_factory=dict)   # uncached only
    memory: dict[str, dict[str, float]] = field(default_factory=dict)   # cache mode -> process -> MiB

    def geomean_qps(self, server: str, concurrency: int, only: set[str] | None = None) -> float:
        return geomean([m.qps for name, m in self.mix[(server, concurrency)].items() if only is None or name in only])

    @property
    def all_ok(self) -> bool:
        return all(m.all_ok for table in list(self.mix.values()) + list(self.examples.values())
                   for m in table.values())


def run_graph(graph: str, build_dir: Path, workdir: Path, duration: float, concurrencies: list[int],
              cache_modes: list[str], examples: bool, example_duration: float, warmup: float = 0.2,
              oxigraph_default: str = "union", say=print) -> GraphResult:
    """Measure one build: Oxigraph server and our server (per cache mode) on the mix; our examples at c=1."""
    dump = build_dir / "cmc-kg.nq"
    queries = mix_queries()
    with ExitStack() as stack:
        oxigraph = start_oxigraph(dump, workdir, oxigraph_default)
        stack.callback(oxigraph.stop)
        result = GraphResult(graph, _triples(oxigraph))
        say(f"\n== {graph} graph: {dump}; Oxigraph's default graph ({oxigraph_default}) holds {result.triples:,} triples")
        warm_up(oxigraph, queries, warmup)
        for concurrency in concurrencies:
            result.mix[("oxigraph", concurrency)] = {q.name: hammer(oxigraph, q, duration, concurrency)
                                                    for q in queries}
            result.trivial[("oxigraph", concurrency)] = {q.name: hammer_timed(oxigraph, q, duration, concurrency)
                                                        for q in trivial_queries()}
        oxigraph.stop()
        for mode in cache_modes:
            ours = start_ours(build_dir, cached=(mode == "on"), workdir=workdir)
            try:
                warm_up(ours, queries, warmup)  # with the cache on, this also fills it: the repeated mix
                for concurrency in concurrencies:
                    result.mix[(f"cmc-kg cache {mode}", concurrency)] = {
                        q.name: hammer(ours, q, duration, concurrency) for q in queries}
                    if mode == "off":
                        result.trivial[("cmc-kg cache off", concurrency)] = {
                            q.name: hammer_timed(ours, q, duration, concurrency) for q in trivial_queries()}
                result.memory[mode] = process_memory(ours.process.pid)
                if examples:
                    example_list = example_mix()
                    warm_up(ours, example_list, warmup)
                    result.examples[mode] = {q.name: hammer(ours, q, example_duration, 1) for q in example_list}
            finally:
                ours.stop()
    return result


def process_memory(pid: int) -> dict[str, float]:
    """RSS and PSS (shared pages split between the processes sharing them) in MiB of the server and each query
    worker, from /proc."""
    memory = {}
    for n, process in enumerate(process_tree(pid)):
        name = "server" if process == pid else f"worker {n}"
        memory[f"{name} RSS"] = status_kb(process, "VmRSS") / 1024
        try:
            with open(f"/proc/{process}/smaps_rollup") as handle:
                pss = next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
            memory[f"{name} PSS"] = pss / 1024
        except (OSError, StopIteration):
            pass
    return memory


def _triples(server: Server) -> int:
    connection = http.client.HTTPConnection(HOST, server.port, timeout=60)
    connection.request("GET", server.path + "?" + urllib.parse.urlencode(
        {"query": "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"}), headers={"Accept": SELECT_ACCEPT})
    body = connection.getresponse().read()
    connection.close()
    return int(json.loads(body)["results"]["bindings"][0]["n"]["value"])


# ------------------------------------------------------------------------------------------------ reporting

_HEADER = (f"{'query':<24}{'ours q/s':>10}{'oxigraph':>10}{'ratio':>7}  {'ours p50/p99 ms':>17}  "
           f"{'oxigraph p50/p99':>17}  status")


def _row(name: str, x: Measure, y: Measure) -> str:
    """One query's line: ours (x) beside Oxigraph's (y)."""
    ratio = x.qps / y.qps if y.qps else float("inf")
    status = "ok" if x.all_ok and y.all_ok else f"ours {x.statuses} err {x.errors}; ox {y.statuses} err {y.errors}"
    return (f"{name:<24}{x.qps:>10.0f}{y.qps:>10.0f}{ratio:>7.2f}  {x.percentile(50):>8.1f}/{x.percentile(99):<8.1f}"
            f"  {y.percentile(50):>8.1f}/{y.percentile(99):<8.1f}  {status}")


def report(result: GraphResult, concurrencies: list[int], cache_modes: list[str], say=print) -> dict[str, bool]:
    """Print the tables and the targets of one graph; return {target: met}."""
    met: dict[str, bool] = {}
    names = list(next(iter(result.mix.values())).keys())
    for mode in cache_modes:
        ours = f"cmc-kg cache {mode}"
        for concurrency in concurrencies:
            a, b = result.mix[(ours, concurrency)], result.mix[("oxigraph", concurrency)]
            say(f"\n-- {result.graph} graph, cache {mode}, concurrency {concurrency}")
            say(_HEADER)
            for name in names:
                say(_row(name, a[name], b[name]))
            # Over the queries both servers answered within the duration (wrk counts no answer still on its way).
            both = {name for name in names if a[name].qps > 0 and b[name].qps > 0}
            g_ours, g_ox = result.geomean_qps(ours, concurrency, both), result.geomean_qps("oxigraph", concurrency, both)
            ratio = g_ours / g_ox if g_ox else 0.0
            say(f"{'geometric mean':<24}{g_ours:>10.0f}{g_ox:>10.0f}{ratio:>7.2f}"
                + (f"  without {', '.join(sorted(set(names) - both))}: no answer within the duration"
                   if both != set(names) else ""))
            if concurrency in ((1, 8) if mode == "off" else (8,)):
                goal = TARGET_UNCACHED_RATIO if mode == "off" else TARGET_CACHED_RATIO
                key = (f"{result.graph}: {'uncached' if mode == 'off' else 'cached (repeated)'} c={concurrency} "
                       f">= {goal}x Oxigraph")
                met[key] = ratio >= goal
                say(f"target {key}: {'MET' if met[key] else 'MISSED'} ({ratio:.2f}x)")
    for concurrency in concurrencies:
        ours, theirs = result.trivial.get(("cmc-kg cache off", concurrency)), result.trivial.get(("oxigraph", concurrency))
        if not ours or not theirs:
            continue
        say(f"\n-- trivial lookups, {result.graph} graph, uncached, concurrency {concurrency}")
        say(_HEADER)
        for name, x in ours.items():
            say(_row(name, x, theirs[name]))
        for name, x in ours.items():
            say(f"{name}: server CPU per request {x.cpu_us_per_request:.0f} µs (query workers included), "
                f"Oxigraph {theirs[name].cpu_us_per_request:.0f} µs")
        if concurrency == 8:
            key = f"{result.graph}: trivial lookups uncached c=8 >= {TARGET_TRIVIAL_QPS:,.0f} q/s"
            met[key] = all(x.qps >= TARGET_TRIVIAL_QPS for x in ours.values())
            say(f"target {key}: {'MET' if met[key] else 'MISSED'} "
                f"({', '.join(f'{name} {x.qps:,.0f}' for name, x in ours.items())})")
    for mode, memory in result.memory.items():
        workers = [mb for name, mb in memory.items() if name.startswith("worker") and name.endswith("RSS")]
        say(f"\n-- memory, {result.graph} graph ({result.triples:,} triples), cache {mode}: "
            + ", ".join(f"{name} {mb:.0f}" for name, mb in memory.items()) + " MiB"
            + (f"; per worker RSS {sum(workers) / len(workers):.0f} MiB on average" if workers else ""))
    for mode, table in result.examples.items():
        say(f"\n-- example queries (queries/*.rq), {result.graph} graph, cache {mode}, concurrency 1")
        say(f"{'query':<40}{'q/s':>8}{'p50 ms':>9}{'p99 ms':>9}  status")
        for name, m in table.items():
            say(f"{name:<40}{m.qps:>8.0f}{m.percentile(50):>9.1f}{m.percentile(99):>9.1f}  "
                f"{'ok' if m.all_ok else str(m.statuses) + ' err ' + str(m.errors)}")
        worst = max(table.items(), key=lambda item: item[1].percentile(99))
        if result.graph == "real":
            key = f"real: every example query p99 < {TARGET_EXAMPLE_P99_MS:g} ms, cache {mode}"
            met[key] = all(m.percentile(99) < TARGET_EXAMPLE_P99_MS for m in table.values())
            say(f"target {key}: {'MET' if met[key] else 'MISSED'} (worst {worst[0]}: {worst[1].percentile(99):.1f} ms)")
    return met


def real_build(build_dir: Path | None, say=print) -> Path:
    """The real build to serve: --build-dir, else build/ in the checkout (built first when missing)."""
    settings = Paths(build_dir=build_dir) if build_dir else Paths()
    if not settings.dump_file.exists():
        from cmc_kg.build import build

        say(f"building {settings.dump_file} ...")
        build(settings)
    return settings.build_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per query and concurrency (default 3)")
    parser.add_argument("--example-duration", type=float, default=None,
                        help="seconds per example query (default: --duration)")
    parser.add_argument("--concurrency", default="1,8", help="comma-separated client connections (default 1,8)")
    parser.add_argument("--graph", choices=["real", "generated", "both"], default="both")
    parser.add_argument("--cache", choices=["on", "off", "both"], default="both",
                        help="our server's answer cache: off is --cache-entries 0; on repeats the mix (default both)")
    parser.add_argument("--build-dir", type=Path, default=None, help="the real build to serve (default: build/)")
    parser.add_argument("--triples", type=int, default=100_000, help="size of the generated graph (default 100000)")
    parser.add_argument("--seed", type=int, default=2008, help="seed of the generated graph")
    parser.add_argument("--oxigraph-default", choices=["union", "merged"], default="union",
                        help="Oxigraph's default graph: --union-default-graph, or the merge of all graphs loaded "
                             "into its default graph as ours is (default union)")
    parser.add_argument("--no-examples", action="store_true", help="skip the example queries")
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    cache_modes = ["off", "on"] if args.cache == "both" else [args.cache]
    graphs = ["real", "generated"] if args.graph == "both" else [args.graph]
    print(f"cmc-kg benchmark: {os.cpu_count()} CPUs, {args.duration:g} s per query, concurrency {concurrencies}, "
          f"cache {cache_modes}, Oxigraph default graph {args.oxigraph_default}, {'wrk (whole seconds)' if WRK else 'Python client'} with keep-alive connections, all on {HOST}")
    met: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="cmc-kg-bench-") as scratch:
        workdir = Path(scratch)
        for graph in graphs:
            if graph == "real":
                build_dir = real_build(args.build_dir)
            else:
                build_dir = workdir / "generated" / "build"
                dump = generate_graph(build_dir, args.triples, args.seed)
                print(f"\ngenerated {dump} ({sum(1 for _ in open(dump, 'rb')):,} quads, seed {args.seed})")
            result = run_graph(graph, build_dir, workdir, args.duration, concurrencies, cache_modes,
                               examples=not args.no_examples and graph == "real",
                               example_duration=args.example_duration or args.duration,
                               oxigraph_default=args.oxigraph_default)
            met.update(report(result, concurrencies, cache_modes))
            if not result.all_ok:
                print(f"\nWARNING: some answers on the {graph} graph were not 200 (see the status column)")
    print("\n== targets")
    for key, ok in met.items():
        print(f"  {'MET   ' if ok else 'MISSED'}  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
