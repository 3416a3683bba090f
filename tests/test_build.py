"""The build pipeline: separated inferences, and clear failures that keep the last good build (determinism:
tests/test_wheel.py)."""

from __future__ import annotations

import os
import re
import threading

import owlrl
import pyoxigraph as ox
import pytest
from rdflib import Dataset, Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic

from cmc_kg import build as build_module
from cmc_kg.build import (BuildError, _is_trivial, _parse_turtle, _reason, _ShapeValidation, _union, build,
                          load_sources, run_checks)
from cmc_kg.namespaces import (CMC, GRAPH, ID, INFERRED_GRAPH, ONTOLOGY_GRAPH, OWL, PREFIXES, PROV, RDF, RDFS,
                               SOURCES_GRAPH, XSD)
from cmc_kg.query import merge_default_graph, select
from cmc_kg.settings import Paths
from cmc_kg.validate import load_shapes


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
    asserted = _union(dataset)
    closure = Graph()
    closure.addN((*triple, closure) for triple in asserted.triples((None, None, None)))
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics, axiomatic_triples=False, datatype_axioms=False).expand(closure)
    return {triple for triple in closure if triple not in asserted and not _is_trivial(*triple)}


@pytest.mark.slow  # plain owlrl over every asserted triple: about 30 s
def test_reasoning_gives_the_same_inferred_triples_as_the_closure_of_everything():
    dataset = load_sources(Paths())
    slow = _closure_of_everything(dataset)
    assert len(slow) > 5_000
    assert set(_reason(_union(dataset))) == slow


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
    inferred = set(_reason(_union(dataset)))
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


def _shapes_input():
    """The ontology and a country whose ISO code breaks its shape."""
    data = Graph().parse(Paths().ontology_file)
    country = URIRef(f'{PREFIXES["country"]}AFG')
    data.add((country, RDF.type, CMC.Country))
    data.add((country, CMC.isoAlpha3, Literal("afghanistan")))
    return data, load_shapes(Paths().shapes_dir)


def test_shape_validation_in_a_child_gives_the_violations_it_gives_here(monkeypatch):
    data, shapes = _shapes_input()
    monkeypatch.setattr(build_module, "_one_thread", lambda: True)
    with _ShapeValidation(data, shapes) as validation:
        assert validation._child is not None
        beside = validation.violations()
    monkeypatch.setattr(build_module, "_one_thread", lambda: False)  # another thread: no fork
    with _ShapeValidation(data, shapes) as validation:
        assert validation._child is None
        here = validation.violations()
    assert beside == here
    assert any("isoAlpha3" in v.path for v in here)
    assert validation.cpu_seconds > 0


def test_a_failed_child_validation_is_run_again_here_and_raises_as_without_a_child(monkeypatch):
    def broken(*_):
        raise ValueError("the shapes cannot be read")

    monkeypatch.setattr(build_module, "_one_thread", lambda: True)
    monkeypatch.setattr(build_module, "validate_shapes", broken)
    with pytest.raises(ValueError, match="the shapes cannot be read"):
        with _ShapeValidation(*_shapes_input()) as validation:
            assert validation._child is not None
            validation.violations()


def test_the_validating_child_is_stopped_when_the_build_fails_first(monkeypatch):
    monkeypatch.setattr(build_module, "_one_thread", lambda: True)
    with pytest.raises(RuntimeError):
        with _ShapeValidation(*_shapes_input()) as validation:
            child = validation._child
            raise RuntimeError("the reasoning failed")
    assert child is not None
    with pytest.raises(ChildProcessError):  # stopped and reaped: no such child any more
        os.waitpid(child, os.WNOHANG)


def test_blank_nodes_are_named_by_their_content_and_file_name(tmp_path):
    written = {"a": '@prefix ex: <https://example.org/> .\nex:x ex:p [ ex:q "1" ; ex:r _:n ] .\n_:n ex:s ex:y .\n',
               "b": '@prefix ex: <https://example.org/> .\n_:m ex:s ex:y .\nex:x ex:p _:k .\n_:k ex:q "1" ; ex:r _:m .\n'}
    parsed = []
    for folder, text in written.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "facts.ttl").write_text(text, encoding="utf-8")
        parsed.append(_parse_turtle(tmp_path / folder / "facts.ttl", {}))
    assert sorted(parsed[0]) == sorted(parsed[1])  # other labels, same content and file name: same names
    graph = Graph()
    graph.addN((*triple, graph) for triple in parsed[0])
    assert isomorphic(graph, Graph().parse(tmp_path / "a" / "facts.ttl"))


def test_no_fork_while_another_thread_runs():
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert not build_module._one_thread()
    finally:
        release.set()
        other.join()


def test_reasoning_over_axioms_the_real_graph_lacks_equals_the_closure_of_everything():
    # Blank-node restrictions and lists, inverse, transitive and symmetric properties, a property chain: the rules
    # owlrl still runs for vocabulary triples only must give what it gives run over every triple.
    turtle = """@prefix ex: <https://example.org/> . @prefix owl: <http://www.w3.org/2002/07/owl#> .
    @prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
    ex:Member owl:equivalentClass [ a owl:Restriction ; owl:onProperty ex:memberOf ; owl:someValuesFrom ex:Coalition ] .
    ex:Actor owl:unionOf ( ex:State ex:Organization ) .
    ex:memberOf owl:inverseOf ex:hasMember ; rdfs:domain ex:Organization .
    ex:partOf a owl:TransitiveProperty . ex:allied a owl:SymmetricProperty .
    ex:grandMember owl:propertyChainAxiom ( ex:memberOf ex:partOf ) .
    ex:Campaign rdfs:subClassOf [ a owl:Restriction ; owl:onProperty ex:kind ; owl:hasValue ex:campaign ] .
    ex:cmc a ex:Coalition ; ex:partOf ex:network . ex:network ex:partOf ex:world .
    ex:hrw ex:memberOf ex:cmc ; ex:allied ex:icbl . ex:icbl a ex:Campaign . ex:norway a ex:State ."""
    dataset = Dataset()
    dataset.graph(URIRef("https://example.org/data")).parse(data=turtle, format="turtle")
    inferred = set(_reason(_union(dataset)))
    ex = Namespace("https://example.org/")
    assert {(ex.hrw, RDF.type, ex.Member), (ex.cmc, ex.hasMember, ex.hrw), (ex.cmc, ex.partOf, ex.world),
            (ex.icbl, ex.allied, ex.hrw), (ex.hrw, ex.grandMember, ex.network), (ex.icbl, ex.kind, ex.campaign),
            (ex.norway, RDF.type, ex.Actor), (ex.hrw, RDF.type, ex.Actor)} <= inferred
    assert inferred == _closure_of_everything(dataset)
