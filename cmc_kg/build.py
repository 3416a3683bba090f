"""Build the knowledge graph: parse, validate with SHACL, reason with OWL 2 RL, check, write atomically.

The pipeline is a plain function over Paths; the command line only reports its progress.
Nothing is written unless every step passes, so a failing build leaves the last good output served.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import owlrl
import pyoxigraph as ox
from rdflib import BNode, Dataset, Graph, Literal, URIRef
from rdflib.compare import to_canonical_graph
from rdflib.paths import Path as PropertyPath

from .namespaces import (CMC, GRAPH, ID, INFERRED_GRAPH, ONTOLOGY_GRAPH, OWL, PROV, RDF, RDFS, SOURCES_GRAPH, XSD,
                         bind_prefixes)
from .query import QueryError, merge_default_graph, select
from .settings import Paths
from .validate import Shapes, Violation, load_shapes, validate_shapes

__all__ = ["BuildError", "BuildReport", "build", "load_sources", "source_slug", "run_checks"]

Progress = Callable[[str], None]

# Namespaces whose terms' own axioms owlrl restates; inferences about them only bloat answers.
_BUILTIN_PREFIXES = tuple(str(ns) for ns in (RDF, RDFS, OWL, XSD))
_REFLEXIVE = {OWL.sameAs, OWL.equivalentClass, OWL.equivalentProperty, RDFS.subClassOf, RDFS.subPropertyOf}
_TRIVIAL_TYPES = {OWL.Thing, RDFS.Resource, OWL.NamedIndividual}
_VOCABULARIES = tuple(str(ns) for ns in (RDF, RDFS, OWL))
_SAME_AS = OWL.sameAs


# Limits on what the build reads, so that a mistaken or hostile file fails fast with a clear message instead of
# exhausting memory: every Turtle file, and every literal or IRI in it.
MAX_SOURCE_BYTES = 64 * 1024 * 1024
MAX_TERM_CHARS = 1_000_000
# Data files the build does not read. Only Turtle is read from graph/: a file in another RDF format would be
# silently left out, and RDF/XML can carry DOCTYPE entity expansion (a CPU and memory bomb in rdflib's parser:
# a 452-byte file took 17.5 s; RDFLib/rdflib PR #3440), so the build refuses them and names them.
REFUSED_DATA_SUFFIXES = {".rdf", ".owl", ".xml", ".rdfs", ".nt", ".nq", ".trig", ".n3", ".jsonld", ".json"}


class BuildError(Exception):
    """A build step failed; the message names the file and line, the shape or the check."""


@dataclass
class BuildReport:
    """What a build produced and how long each step took."""

    triples_per_graph: dict[str, int] = field(default_factory=dict)
    distinct_triples: int = 0   # the merged default graph: a triple stated by two sources counts once
    entities_per_class: dict[str, int] = field(default_factory=dict)
    seconds_per_step: dict[str, float] = field(default_factory=dict)
    cpu_seconds_per_step: dict[str, float] = field(default_factory=dict)  # user + system: steadier on a busy machine
    dump_sha256: str = ""
    dump_file: str = ""

    @property
    def asserted_triples(self) -> int:
        return sum(n for g, n in self.triples_per_graph.items() if g != str(INFERRED_GRAPH))

    @property
    def inferred_triples(self) -> int:
        return self.triples_per_graph.get(str(INFERRED_GRAPH), 0)

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "asserted_triples": self.asserted_triples,
                           "inferred_triples": self.inferred_triples}, indent=2, sort_keys=True) + "\n"


def source_slug(key: str) -> str:
    """The folder and graph name of a source key.

    >>> source_slug("CH-RS-0.515.093")
    'ch-rs-0-515-093'
    """
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")


def _check_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise BuildError(f"{path}: cannot read: {error}") from None
    if size > MAX_SOURCE_BYTES:
        raise BuildError(f"{path}: {size:,} bytes is more than the limit of {MAX_SOURCE_BYTES:,} bytes for one file "
                         "(MAX_SOURCE_BYTES in cmc_kg/build.py); split it or check what wrote it")


def _check_terms(path: Path, quad) -> None:
    for term in (quad.subject, quad.predicate, quad.object):
        value = getattr(term, "value", "")
        if len(value) > MAX_TERM_CHARS:
            what = "literal" if isinstance(term, ox.Literal) else "term"
            raise BuildError(f"{path}: a {what} of {len(value):,} characters (in the statement about "
                             f"{str(quad.subject)[:100]} {quad.predicate}) is longer than the limit "
                             f"of {MAX_TERM_CHARS:,} (MAX_TERM_CHARS in cmc_kg/build.py)")


_XSD_STRING = ox.NamedNode(str(XSD.string))


def _rdflib_term(term):
    """The rdflib term for an Oxigraph one. As from rdflib's own Turtle parser, a simple literal has no datatype;
    unlike it, a language tag is in lower case (as the dump, written by Oxigraph, always had it) and
    `"x"^^xsd:string` is the simple literal "x" (one term in RDF 1.1; graph/ and the ontology write neither)."""
    if isinstance(term, ox.NamedNode):
        return URIRef(term.value)
    if isinstance(term, ox.BlankNode):
        return BNode(term.value)
    if term.language:
        return Literal(term.value, lang=term.language)
    return Literal(term.value, datatype=None if term.datatype == _XSD_STRING else URIRef(term.datatype.value))


def _parse_turtle(path: Path, terms: dict) -> list:
    """Parse strictly, once: Oxigraph rejects what other tools would reject and counts lines exactly.

    ``terms`` keeps the rdflib term made for each Oxigraph one, to be reused by every file."""
    _check_size(path)

    def term(oxigraph_term):
        rdflib_term = terms.get(oxigraph_term)
        if rdflib_term is None:
            rdflib_term = terms[oxigraph_term] = _rdflib_term(oxigraph_term)
        return rdflib_term

    triples = []
    try:
        for quad in ox.parse(path=str(path), format=ox.RdfFormat.TURTLE):
            _check_terms(path, quad)
            triples.append((term(quad.subject), term(quad.predicate), term(quad.object)))
    except SyntaxError as error:
        why = re.sub(r"^Parser error at line \d+ column \d+: | \([^()]*, line \d+\)$", "", str(error))
        raise BuildError(f"{path}:{error.lineno}: bad Turtle: {why}") from None
    except MemoryError as error:  # Oxigraph's token buffer is capped (16 MiB): a literal or line that large
        raise BuildError(f"{path}: a term is too large to parse ({error}); the limit for a literal or IRI is "
                         f"{MAX_TERM_CHARS:,} characters (MAX_TERM_CHARS in cmc_kg/build.py)") from None
    except OSError as error:
        raise BuildError(f"{path}: cannot read: {error}") from None
    if not any(isinstance(t, BNode) for triple in triples for t in triple):
        return triples
    # Blank nodes get names derived from their content and file, so dumps are byte-identical.
    graph = Graph()
    graph.addN((*triple, graph) for triple in triples)
    salt = hashlib.sha1(str(path.name).encode()).hexdigest()[:8]
    return [tuple(BNode(f"b{salt}{t}") if isinstance(t, BNode) else t for t in triple)
            for triple in to_canonical_graph(graph)]


def load_sources(paths: Paths, progress: Progress = lambda _: None) -> Dataset:
    """Parse the ontology, the source registry and every source folder into one named graph each."""
    dataset = bind_prefixes(Dataset())
    files = [(ONTOLOGY_GRAPH, paths.ontology_file), (SOURCES_GRAPH, paths.graph_dir / "sources.ttl")]
    for folder in sorted(p for p in paths.graph_dir.iterdir() if p.is_dir()):
        _refuse_other_formats(folder)
        turtle = sorted(folder.glob("*.ttl"))
        files += [(GRAPH[folder.name], f) for f in turtle]
    terms: dict = {}
    for name, path in files:
        progress(f"parse {path.relative_to(paths.root) if path.is_relative_to(paths.root) else path}")
        target = dataset.graph(name)
        target.addN((*triple, target) for triple in _parse_turtle(path, terms))
    _link_graphs_to_sources(dataset, paths)
    return dataset


def _refuse_other_formats(folder: Path) -> None:
    """Stop at a data file the build would not read (see REFUSED_DATA_SUFFIXES); never open it."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in REFUSED_DATA_SUFFIXES:
            xml = " RDF/XML is not parsed at all: it can expand entities (a DOCTYPE bomb)." if \
                path.suffix.lower() in (".rdf", ".owl", ".xml", ".rdfs") else ""
            raise BuildError(f"{path}: only Turtle (.ttl) is read from graph/; convert this file to Turtle or move "
                             f"it out of graph/.{xml}")


def _link_graphs_to_sources(dataset: Dataset, paths: Paths) -> None:
    """Each source folder's graph is derived from the source registered under the same slug."""
    registry = dataset.graph(SOURCES_GRAPH)
    registered = {source_slug(str(key)): source for source, key in registry.subject_objects(CMC.sourceKey)}
    for folder in sorted(p for p in paths.graph_dir.iterdir() if p.is_dir() and any(p.glob("*.ttl"))):
        source = registered.get(folder.name)
        if source is None:
            raise BuildError(f"{folder}: no source in graph/sources.ttl has a cmc:sourceKey whose slug is "
                             f"'{folder.name}'; register the source before adding its facts")
        registry.add((GRAPH[folder.name], PROV.wasDerivedFrom, source))


def _union(dataset: Dataset) -> Dataset:
    """Every triple of every graph, once: a view of the dataset, not a copy. Until the inferred graph is filled,
    these are the asserted triples, the ontology's included, which SHACL and the reasoner read."""
    return Dataset(store=dataset.store, default_union=True)


def _one_thread() -> bool:
    """Whether this process runs a single thread, counted by the system where it shows them (/proc), so that
    threads started by C or Rust libraries count too."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return threading.active_count() == 1


class _ShapeValidation:
    """SHACL validation beside the reasoning: both read the same asserted triples and take about as long.

    When this process can fork safely (it runs one thread: a fork copies the locks other threads may hold), a
    child validates the triples it shares with its parent while the parent reasons, and sends back the
    violations as JSON. Otherwise, or if the child fails in any way, validation runs here when asked for, so an
    error is raised as it would be without a child.
    """

    def __init__(self, asserted: Graph, shapes: Shapes, progress: Progress = lambda _: None):
        self.asserted, self.shapes, self.progress = asserted, shapes, progress
        self.cpu_seconds = 0.0  # the child's, or this process's, for the validation alone
        self._child: int | None = None
        self.forked = hasattr(os, "fork") and _one_thread()
        if self.forked:
            self._fork()

    def _fork(self) -> None:
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            status = 1
            try:
                os.close(read_end)
                with os.fdopen(write_end, "w", encoding="utf-8") as answer:
                    json.dump([asdict(v) for v in validate_shapes(self.asserted, self.shapes)], answer)
                status = 0
            finally:
                os._exit(status)  # no cleanup of the parent's: its buffers, its atexit handlers
        os.close(write_end)
        self._child, self._answer = child, os.fdopen(read_end, encoding="utf-8")

    def violations(self) -> list[Violation]:
        if self._child is not None:
            with self._answer:
                answer = self._answer.read()
            _, status, usage = os.wait4(self._child, 0)
            self._child = None
            if status == 0:
                self.cpu_seconds = usage.ru_utime + usage.ru_stime
                return [Violation(**fields) for fields in json.loads(answer)]
        self.progress("validate with SHACL shapes")
        started = time.process_time()
        violations = validate_shapes(self.asserted, self.shapes)
        self.cpu_seconds = time.process_time() - started
        return violations

    def __enter__(self) -> _ShapeValidation:
        return self

    def __exit__(self, *_) -> None:
        """Stop and reap a child whose answer was not read (the parent failed first)."""
        if self._child is not None:
            os.kill(self._child, signal.SIGKILL)
            os.waitpid(self._child, 0)
            self._answer.close()
            self._child = None


def _is_trivial(s, p, o) -> bool:
    if isinstance(s, Literal) or str(s).startswith(_BUILTIN_PREFIXES):
        return True
    if p in _REFLEXIVE and s == o:
        return True
    return p == RDF.type and o in _TRIVIAL_TYPES


class _Terms:
    """A vocabulary's terms as plain attributes. owlrl's rules name about 50 terms for each triple they read
    (`OWL.sameAs`), and on rdflib's vocabulary classes each name is a call of their __getattr__: a quarter of the
    rules' time. Any other name is looked up on the vocabulary, as before."""

    def __init__(self, vocabulary):
        self.__dict__.update({name: vocabulary[name] for name in vocabulary.__annotations__})
        self._vocabulary = vocabulary

    def __getattr__(self, name):
        return getattr(self._vocabulary, name)


# For owlrl wherever it runs in this process: the same terms, found faster.
owlrl.OWLRL.OWL, owlrl.OWLRL.RDF, owlrl.OWLRL.RDFS = (_Terms(owlrl.OWLRL.OWL), _Terms(owlrl.OWLRL.RDF),
                                                      _Terms(owlrl.OWLRL.RDFS))


class _Semantics(owlrl.OWLRL_Semantics):
    """owlrl's OWL 2 RL rules, minus two kinds of work that cannot change the closure.

    - eq-ref: its `x owl:sameAs x` for every term is dropped as trivial anyway and, kept, would be read again by
      every later cycle. Such a triple could only matter to eq-diff1 (`x owl:differentFrom x`), so _reason does
      not use this class when the graph says differentFrom.
    - Rules for a triple that fires none: every cycle calls `rules` on every triple, but apart from eq-ref each
      rule of owlrl's is triggered by a triple of the RDF, RDFS or OWL vocabulary (a `rdf:type` one only when
      its class is of these vocabularies too); any other triple is only read through the lookups of those rules.
      Skipping it saves about 50 comparisons per triple and cycle, on half the closure. In the first cycle
      owlrl also notes blank nodes (to drop triples with a blank-node predicate at the end): those still go in.
    """

    def store_triple(self, t):
        if not (t[1] == _SAME_AS and t[0] == t[2]):
            super().store_triple(t)

    def rules(self, t, cycle_num):
        s, p, o = t
        if str.startswith(p, _VOCABULARIES) and not (p == RDF.type and isinstance(o, URIRef)
                                                     and not str.startswith(o, _VOCABULARIES)):
            super().rules(t, cycle_num)
        elif cycle_num == 1 and any(isinstance(term, BNode) for term in t):
            super().rules(t, cycle_num)


# Predicates of the RDF, RDFS and OWL vocabularies that no OWL 2 RL rule reads.
_ANNOTATIONS = {RDFS.label, RDFS.comment, RDFS.seeAlso, RDFS.isDefinedBy, OWL.versionInfo, OWL.versionIRI,
                OWL.priorVersion, OWL.backwardCompatibleWith, OWL.incompatibleWith, OWL.deprecated}


def _is_axiom(predicate) -> bool:
    return str(predicate).startswith(_VOCABULARIES) and predicate not in _ANNOTATIONS


class _SetGraph(Graph):
    """A graph that also holds its triples in a set: owlrl asks whether a triple is already there for each one
    it derives (about 200,000 times per build), and a set answers that far faster than rdflib's store."""

    def __init__(self):
        super().__init__(store="SimpleMemory")  # owlrl's lookups are twice as fast without context bookkeeping
        self._triples: set = set()

    def add(self, triple):
        self._triples.add(triple)
        return super().add(triple)

    def addN(self, quads):  # noqa: N802  (rdflib's name)
        quads = list(quads)
        self._triples.update((s, p, o) for s, p, o, _ in quads)
        return super().addN(quads)

    def remove(self, triple):
        super().remove(triple)
        if self._is_pattern(triple):
            self._triples = set(super().triples((None, None, None)))
        else:
            self._triples.discard(triple)
        return self

    def __contains__(self, triple):
        return triple in self._triples or (self._is_pattern(triple) and super().__contains__(triple))

    @staticmethod
    def _is_pattern(triple) -> bool:
        s, p, o = triple
        return s is None or p is None or o is None or isinstance(p, PropertyPath)


def _rule_input(asserted: set) -> Graph:
    """The triples an OWL 2 RL rule can read: those of the RDF, RDFS and OWL vocabularies (types, axioms,
    sameAs, lists), those whose predicate an axiom names, and those with a typed literal (owlrl checks its
    form). Any other triple (a label, a note, a link the ontology says nothing about) can only be copied along
    owl:sameAs by eq-rep-*: _reason adds the triples of such terms when the closure equates them."""
    named = {term for s, p, o in asserted if _is_axiom(p) for term in (s, o)}
    rule_input = _SetGraph()
    for triple in asserted:
        s, p, o = triple
        if _is_axiom(p) or p in named or (isinstance(o, Literal) and o.datatype is not None):
            rule_input.add(triple)
    return rule_input


def _reason(asserted: Graph) -> set:
    """OWL 2 RL closure of the asserted triples (ontology and data), minus what was asserted and what is trivial.

    owlrl is given only what its rules can read (_rule_input; about three quarters of the triples), in a graph
    that answers membership from a set (_SetGraph), and neither derives reflexive sameAs nor calls its rules
    for triples that fire none (_Semantics): the same inferred triples as the closure of everything, which
    tests/test_build.py checks, in about a sixth of the time.
    """
    semantics = owlrl.OWLRL_Semantics if any(asserted.triples((None, OWL.differentFrom, None))) or any(
        asserted.triples((None, RDF.type, OWL.AllDifferent))) else _Semantics
    stated = set(asserted.triples((None, None, None)))
    closure = _rule_input(stated)
    while True:
        owlrl.DeductiveClosure(semantics, axiomatic_triples=False, datatype_axioms=False).expand(closure)
        equated = {term for s, o in closure.subject_objects(OWL.sameAs) if s != o for term in (s, o)}
        missing = {triple for term in equated
                   for pattern in ((term, None, None), (None, term, None), (None, None, term))
                   for triple in asserted.triples(pattern) if triple not in closure}
        if not missing:
            break
        for triple in missing:
            closure.add(triple)
    return {triple for triple in closure if triple not in stated and not _is_trivial(*triple)}


def _oxigraph_store(dataset: Dataset) -> ox.Store:
    """The named graphs in Oxigraph (the default graph stays empty: the dump holds named graphs only)."""
    store = ox.Store()
    store.load(dataset.serialize(format="nquads").encode("utf-8"), format=ox.RdfFormat.N_QUADS)
    return store


def run_checks(store: ox.Store, checks_dir: Path) -> dict[str, list[dict[str, str]]]:
    """Run every *-violation.rq over the union of all graphs; return the rows of those that failed."""
    failures = {}
    for check in sorted(checks_dir.glob("*-violation.rq")):
        try:
            rows = select(store, check.read_text(encoding="utf-8")).rows
        except QueryError as error:
            raise BuildError(f"{check}: not a valid SPARQL query: {error}") from None
        if rows:
            failures[check.name] = rows
    return failures


def _canonical_nquads(store: ox.Store) -> bytes:
    lines = store.dump(format=ox.RdfFormat.N_QUADS).decode("utf-8").splitlines()  # type: ignore[union-attr]  # bytes without an output
    return ("\n".join(sorted(set(lines))) + "\n").encode("utf-8")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build(paths: Paths = Paths(), progress: Progress = lambda _: None, write: bool = True) -> BuildReport:
    """Run the whole pipeline; raise BuildError (and write nothing) at the first failing step."""
    report = BuildReport()
    started, started_cpu = time.perf_counter(), time.process_time()

    def step(name: str, cpu: float | None = None):
        nonlocal started, started_cpu
        now, now_cpu = time.perf_counter(), time.process_time()
        report.seconds_per_step[name] = round(now - started, 3)
        report.cpu_seconds_per_step[name] = round(now_cpu - started_cpu if cpu is None else cpu, 3)
        started, started_cpu = now, now_cpu

    progress("parse ontology and graph/")
    dataset = load_sources(paths, progress)
    step("parse")
    asserted = _union(dataset)  # read before the inferred graph is filled
    with _ShapeValidation(asserted, load_shapes(paths.shapes_dir), progress) as validation:
        progress(f"reason (OWL 2 RL, owlrl){', and validate with SHACL shapes beside it' if validation.forked else ''}")
        inferred = _reason(asserted)
        step("reason")
        violations = validation.violations()
    step("shacl", cpu=validation.cpu_seconds)  # wall: what validation added to the reasoning's time
    if violations:
        shown = "\n  ".join(str(v) for v in violations[:50])
        more = f"\n  … and {len(violations) - 50} more" if len(violations) > 50 else ""
        raise BuildError(f"SHACL validation failed with {len(violations)} violation(s):\n  {shown}{more}")
    target = dataset.graph(INFERRED_GRAPH)  # only now: until validated, the union view must hold asserted triples
    target.addN((*triple, target) for triple in inferred)
    progress("run consistency checks")
    store = _oxigraph_store(dataset)
    dump = _canonical_nquads(store)
    failures = run_checks(merge_default_graph(store), paths.checks_dir)
    if failures:
        lines = []
        for name, rows in failures.items():
            lines.append(f"{paths.checks_dir / name}: {len(rows)} row(s), the check must return none:")
            lines += [f"    {row}" for row in rows[:10]]
        raise BuildError("consistency checks failed:\n" + "\n".join(lines))
    step("checks")
    for graph in dataset.graphs():
        if len(graph):
            report.triples_per_graph[str(graph.identifier)] = len(graph)
    report.triples_per_graph = dict(sorted(report.triples_per_graph.items()))
    report.distinct_triples = len(_union(dataset))
    typed = {(s, o) for s, _, o, graph in dataset.quads((None, RDF.type, None, None))
             if graph not in (ONTOLOGY_GRAPH, INFERRED_GRAPH) and str(s).startswith(str(ID))}
    report.entities_per_class = dict(sorted(Counter(str(o) for s, o in typed).items()))
    if write:
        progress(f"write {paths.dump_file}")
        report.dump_sha256 = hashlib.sha256(dump).hexdigest()
        report.dump_file = str(paths.dump_file)
        _write_atomically(paths.dump_file, dump)
        step("write")
        _write_atomically(paths.report_file, report.to_json().encode("utf-8"))
    return report
