"""The ontology in the OWL tools people open it with: owlready2 and the HermiT reasoner it ships (Java)."""

from __future__ import annotations

import shutil

from owlready2 import World, sync_reasoner
from rdflib import Graph

from cmc_kg.namespaces import CMC, OWL, RDF
from cmc_kg.settings import Paths


def test_hermit_finds_the_ontology_consistent_with_no_unsatisfiable_class(tmp_path):
    assert shutil.which("java"), "Java is needed for HermiT: install Debian's default-jre-headless (.ci/run does)"
    ontology = Graph().parse(Paths().ontology_file)
    path = tmp_path / "cmc.owl"
    ontology.serialize(path, format="xml")
    world = World()
    loaded = world.get_ontology(path.as_uri()).load()
    classes = {c.iri for c in loaded.classes()}
    assert {str(c) for c in ontology.subjects(RDF.type, OWL.Class) if str(c).startswith(str(CMC))} <= classes
    with loaded:
        sync_reasoner(world, infer_property_values=False, debug=0)  # raises if the ontology is inconsistent
    assert list(world.inconsistent_classes()) == []
