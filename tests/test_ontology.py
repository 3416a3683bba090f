"""The ontology: metadata, labels on every term, and the generated namespaces module in step with it."""

from __future__ import annotations

import re

from rdflib import Graph

from cmc_kg import namegen
from cmc_kg.namespaces import CMC, DCTERMS, ONTOLOGY, OWL, RDF, RDFS
from cmc_kg.settings import REPO_ROOT, Paths

ONTOLOGY_GRAPH = Graph().parse(Paths().ontology_file)
TERM_TYPES = (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.AnnotationProperty)


def test_namespaces_module_is_generated_from_the_ontology():
    assert namegen.render() == namegen.TARGET.read_text(encoding="utf-8"), \
        "cmc_kg/namespaces.py is stale: run `python -m cmc_kg.namegen`"


def test_ontology_metadata():
    for prop in (OWL.versionIRI, DCTERMS.title, DCTERMS.description, DCTERMS.license, DCTERMS.creator):
        assert ONTOLOGY_GRAPH.value(ONTOLOGY, prop) is not None, prop


def test_every_class_and_property_has_english_label_and_comment():
    terms = {s for t in TERM_TYPES for s in ONTOLOGY_GRAPH.subjects(RDF.type, t) if str(s).startswith(str(CMC))}
    assert len(terms) > 50
    for term in terms:
        for prop in (RDFS.label, RDFS.comment):
            assert any(getattr(v, "language", None) == "en" for v in ONTOLOGY_GRAPH.objects(term, prop)), (term, prop)


def test_minted_terms_are_aligned_to_reused_vocabularies():
    classes = {s for s in ONTOLOGY_GRAPH.subjects(RDF.type, OWL.Class) if str(s).startswith(str(CMC))}
    # Every minted class either specialises a reused class or another minted class (which does).
    for cls in classes:
        parents = set(ONTOLOGY_GRAPH.objects(cls, RDFS.subClassOf))
        assert parents or cls in (CMC.Goal,), f"{cls} has no rdfs:subClassOf"


def test_no_project_iri_spelled_in_python_outside_namespaces_module():
    base = str(ONTOLOGY).rsplit("/", 1)[0]
    host_and_path = re.escape(base.split("://", 1)[1])
    offenders = []
    for path in sorted(REPO_ROOT.glob("**/*.py")):
        if ".venv" in path.parts or path == namegen.TARGET or "build" in path.parts:
            continue
        if re.search(host_and_path, path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(REPO_ROOT)))
    assert offenders == []
