"""The SHACL shapes: every class the graph uses has one, and each shape file has examples it accepts and refuses."""

from __future__ import annotations

import re

import pytest
from rdflib import Graph
from rdflib.namespace import SH

from cmc_kg.namespaces import RDF
from cmc_kg.settings import REPO_ROOT, Paths
from cmc_kg.validate import load_shapes, validate_shapes

SETTINGS = Paths()
SHAPES = load_shapes(SETTINGS.shapes_dir)
ONTOLOGY = Graph().parse(SETTINGS.ontology_file)
EXAMPLES = REPO_ROOT / "tests" / "data" / "shapes"
VALID = sorted((EXAMPLES / "valid").glob("*.ttl"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.ttl"))


def test_every_class_used_in_graph_has_a_shape():
    used = set()
    for path in SETTINGS.graph_dir.glob("**/*.ttl"):
        used |= set(Graph().parse(path).objects(None, RDF.type))
    targeted = set(SHAPES.graph.objects(None, SH.targetClass))
    assert used and used <= targeted, sorted(str(c) for c in used - targeted)


def test_every_shape_file_has_valid_and_invalid_examples():
    for shape_file in SETTINGS.shapes_dir.glob("*.ttl"):
        assert (EXAMPLES / "valid" / shape_file.name).exists(), shape_file.name
        assert list((EXAMPLES / "invalid").glob(f"{shape_file.stem}-*.ttl")), shape_file.name


@pytest.mark.parametrize("example", VALID, ids=lambda p: p.stem)
def test_valid_example_conforms(example):
    assert validate_shapes(Graph().parse(example), SHAPES, ONTOLOGY) == []


@pytest.mark.parametrize("example", INVALID, ids=lambda p: p.stem)
def test_invalid_example_is_refused_by_the_expected_shape(example):
    expected = re.search(r"^# expect: (\S+)", example.read_text(encoding="utf-8"), re.M).group(1)
    violations = validate_shapes(Graph().parse(example), SHAPES, ONTOLOGY)
    assert violations, f"{example.name} conforms but should not"
    assert expected in {v.shape for v in violations}, [str(v) for v in violations]
    assert all(v.file.endswith(".ttl") for v in violations)
