"""The build pipeline: separated inferences, and clear failures that keep the last good build (determinism:
tests/test_wheel.py)."""

from __future__ import annotations

import re

import owlrl
import pyoxigraph as ox
import pytest
from rdflib import Dataset, Graph, Literal, Namespace

from cmc_kg.build import BuildError, _asserted_union, _is_trivial, _reason, build, load_sources, run_checks
from cmc_kg.namespaces import (CMC, GRAPH, ID, INFERRED_GRAPH, ONTOLOGY_GRAPH, OWL, PREFIXES, PROV, RDF, RDFS,
                               SOURCES_GRAPH, XSD)
from cmc_kg.query import merge_default_graph, select
from cmc_kg.settings import Paths


def test_build_writes_dump_and_report(built):
    settings, report = built
    assert settings.dump_file.stat().st_size > 0
    assert settings.report_file.exists()
    assert report.asserted_triples > 10_000
    assert report.inferred_triples > 0
    assert {str(ONTOLOGY_GRAPH), str(SOURCES_GRAPH), str(INFERRED_GRAPH)} <= set(report.triples_per_graph)


def test_inferred_triples_are_kept_apart(store):
    # A ratification is a consent to be bound only by inference, and that inference is in the inferred graph.
    rows = select(store, """SELECT ?g WHERE { GRAPH ?g { action:ccm\\/AFG\\/ratification a cmc:ConsentToBeBound } }""").rows
    assert [r["g"] for r in rows] == [str(INFERRED_GRAPH)]
    asserted = select(store, "SELECT * WHERE { action:ccm\\/AFG\\/ratification a cmc:ConsentToBeBound }",
                      asserted_only=True)
    assert asserted.rows == []


def test_trivial_inferences_are_dropped(store):
    rows = select(store, """SELECT (COUNT(*) AS ?n) WHERE { GRAPH graph:inferred {
        { ?s owl:sameAs ?s } UNION { ?s a owl:Thing } UNION { ?s a rdfs:Resource } } }""").rows
    assert rows[0]["n"] == "0"


def _good_build(settings, built):
    """Put a good build where the broken one would write, as if it had been built there before."""
    settings.build_dir.mkdir(parents=True, exist_ok=True)
    settings.dump_file.write_bytes(built[0].dump_file.read_bytes())
    return settings.dump_file.read_bytes()


def test_malformed_turtle_names_file_and_line_and_keeps_last_build(repo_copy, built):
    before = _good_build(repo_copy, built)
    broken = repo_copy.graph_dir / "seed-002" / "seed-002.ttl"
    lines = broken.read_text(encoding="utf-8").splitlines()
    lines.append("kgorg:cmc rdfs:label .")
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(BuildError) as error:
        build(repo_copy)
    assert re.search(rf"{re.escape(str(broken))}:{len(lines)}: bad Turtle", str(error.value))
    assert repo_copy.dump_file.read_bytes() == before


@pytest.mark.slow  # a build of its own
def test_shape_violation_names_the_shape_and_keeps_last_build(repo_copy, built):
    before = _good_build(repo_copy, built)
    (repo_copy.graph_dir / "seed-000" / "broken.ttl").write_text(
        f'<{PREFIXES["country"]}AFG> <{CMC.isoAlpha3}> "afghanistan" .\n', encoding="utf-8")
    with pytest.raises(BuildError) as error:
        build(repo_copy)
    message = str(error.value)
    assert "SHACL validation failed" in message and "isoAlpha3" in message and "country:AFG" in message and "shapes/country.ttl" in message
    assert repo_copy.dump_file.read_bytes() == before


@pytest.mark.slow  # a build of its own
def test_failed_check_names_the_check_and_keeps_last_build(repo_copy, built):
    before = _good_build(repo_copy, built)
    # A ratification dated before the state's signature passes the shapes but not the checks.
    (repo_copy.graph_dir / "seed-000" / "broken.ttl").write_text(
        f'<{PREFIXES["action"]}ccm/AFG/ratification> <{CMC.date}> "2001-01-01"^^<{XSD.date}> .\n', encoding="utf-8")
    with pytest.raises(BuildError) as error:
        build(repo_copy)
    assert "ratification-before-signature-violation.rq" in str(error.value)
    assert repo_copy.dump_file.read_bytes() == before


@pytest.mark.slow  # a build of its own
def test_unregistered_source_folder_is_refused(repo_copy):
    (repo_copy.graph_dir / "nowhere").mkdir()
    (repo_copy.graph_dir / "nowhere" / "facts.ttl").write_text("", encoding="utf-8")
    with pytest.raises(BuildError, match="nowhere"):
        build(repo_copy, write=False)


def _closure_of_everything(dataset) -> set:
    """What the build inferred before it was made fast: plain owlrl over every asserted triple."""
    asserted = _asserted_union(dataset, include_ontology=True)
    closure = Graph()
    closure += asserted
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics, axiomatic_triples=False, datatype_axioms=False).expand(closure)
    return {triple for triple in closure if triple not in asserted and not _is_trivial(*triple)}


@pytest.mark.slow  # plain owlrl over every asserted triple: about 30 s
def test_reasoning_gives_the_same_inferred_triples_as_the_closure_of_everything():
    dataset = load_sources(Paths())
    slow = _closure_of_everything(dataset)
    assert len(slow) > 5_000
    assert set(_reason(dataset)) == slow


def test_triples_no_rule_reads_are_still_copied_along_an_inferred_sameas():
    # A functional property with two values makes them the same: the label of one becomes the other's, though
    # owlrl is first given no labels.
    ex = Namespace("https://example.org/")
    dataset = Dataset()
    dataset.graph(ONTOLOGY_GRAPH).add((ex.p, RDF.type, OWL.FunctionalProperty))
    data = dataset.graph(ex.data)
    for triple in [(ex.x, ex.p, ex.a), (ex.x, ex.p, ex.b), (ex.a, RDFS.label, Literal("A")),
                   (ex.a, ex.unrelated, ex.c)]:
        data.add(triple)
    inferred = set(_reason(dataset))
    assert {(ex.b, RDFS.label, Literal("A")), (ex.b, ex.unrelated, ex.c), (ex.a, OWL.sameAs, ex.b)} <= inferred
    assert inferred == _closure_of_everything(dataset)


def test_an_entity_described_outside_the_source_graphs_is_found():
    store = ox.Store()
    derived, loose = ox.NamedNode(f"{GRAPH}seed-000"), ox.NamedNode(f"{GRAPH}loose")
    sourced, unsourced = ox.NamedNode(f"{ID}org/sourced"), ox.NamedNode(f"{ID}org/unsourced")
    label = ox.NamedNode(str(RDFS.label))
    store.add(ox.Quad(derived, ox.NamedNode(str(PROV.wasDerivedFrom)), ox.NamedNode(f"{ID}source/x"), derived))
    store.add(ox.Quad(sourced, label, ox.Literal("sourced"), derived))
    store.add(ox.Quad(sourced, label, ox.Literal("also here"), loose))
    store.add(ox.Quad(unsourced, label, ox.Literal("unsourced"), loose))
    failures = run_checks(merge_default_graph(store), Paths().checks_dir)
    assert failures["entity-without-source-violation.rq"] == [{"entity": unsourced.value}]
