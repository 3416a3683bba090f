"""Where cmc-kg reads its sources and writes its build, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["REPO_ROOT", "Settings"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Paths of one cmc-kg checkout; tests point them at temporary copies."""

    root: Path = REPO_ROOT
    build_dir: Path = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.build_dir is None:
            object.__setattr__(self, "build_dir", self.root / "build")

    @property
    def ontology_file(self) -> Path:
        return self.root / "ontology" / "cmc.ttl"

    @property
    def shapes_dir(self) -> Path:
        return self.root / "ontology" / "shapes"

    @property
    def checks_dir(self) -> Path:
        return self.root / "ontology" / "checks"

    @property
    def graph_dir(self) -> Path:
        return self.root / "graph"

    @property
    def reference_dir(self) -> Path:
        return self.root / "reference"

    @property
    def queries_dir(self) -> Path:
        return self.root / "queries"

    @property
    def dump_file(self) -> Path:
        """The build's one output of record: every named graph as canonical, sorted N-Quads."""
        return self.build_dir / "cmc-kg.nq"

    @property
    def report_file(self) -> Path:
        return self.build_dir / "build-report.json"
