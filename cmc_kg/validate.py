"""SHACL validation of the asserted graph against ontology/shapes/, with violations a person can act on.

The ontology is validated together with the data (both read, never added to) so that
its subclass axioms and its own individuals (roles, kinds, measures) are known to the shapes; SHACL
follows rdfs:subClassOf by itself. No RDFS inference is run first: it would type every object of a
property with the property's range, and every sh:class check would then pass. Each violation names the
shape's file, the node and the property.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyshacl import validate
from rdflib import Graph, Node
from rdflib.namespace import SH

from .namespaces import bind_prefixes

__all__ = ["Shapes", "Violation", "load_shapes", "validate_shapes"]


@dataclass(frozen=True)
class Shapes:
    """Every shape file parsed into one graph, remembering which file declared which shape."""

    graph: Graph
    files: dict[Node, Path]


@dataclass(frozen=True, order=True)
class Violation:
    """One failed constraint, in words."""

    focus: str
    path: str
    message: str
    shape: str
    file: str

    def __str__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return f"{self.file}: shape {self.shape}: {self.focus}{where}: {self.message}"


def load_shapes(shapes_dir: Path) -> Shapes:
    """Parse ontology/shapes/*.ttl."""
    graph, files = bind_prefixes(Graph()), {}
    for path in sorted(shapes_dir.glob("*.ttl")):
        part = Graph().parse(path, format="turtle")
        for shape in set(part.subjects(SH.targetClass, None)) | set(part.subjects(SH.property, None)):
            files[shape] = path
        graph += part
        for prefix, namespace in part.namespaces():
            graph.bind(prefix, namespace, override=False)
    return Shapes(graph, files)


def validate_shapes(data: Graph, shapes: Shapes, ontology: Graph | None = None) -> list[Violation]:
    """Validate ``data``, with ``ontology`` if it is not already in it; return the violations, sorted, or an empty
    list when it conforms. ``data`` is read, not changed."""
    conforms, results, _ = validate(data if ontology is None else data + ontology, shacl_graph=shapes.graph,
                                    inference="none", abort_on_first=False, allow_warnings=False)
    if conforms:
        return []
    names = shapes.graph.namespace_manager

    def show(node) -> str:
        return "" if node is None else node.n3(names)

    violations = []
    for result in results.subjects(SH.resultSeverity, SH.Violation):
        shape = results.value(result, SH.sourceShape)
        owner = next((s for s in [shape, *shapes.graph.subjects(SH.property, shape)] if s in shapes.files), None)
        message = results.value(result, SH.resultMessage) or results.value(result, SH.sourceConstraintComponent)
        value = results.value(result, SH.value)
        violations.append(Violation(
            focus=show(results.value(result, SH.focusNode)),
            path=show(results.value(result, SH.resultPath)),
            message=f"{message}" + (f" (value: {show(value)})" if value is not None else ""),
            shape=show(owner) if owner is not None else show(shape),
            file=str(shapes.files.get(owner, "ontology/shapes") if owner is not None else "ontology/shapes"),
        ))
    return sorted(set(violations))
