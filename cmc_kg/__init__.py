"""cmc-kg: the open knowledge graph of the Cluster Munition Coalition and the treaties it campaigned for."""

from .settings import Settings

__all__ = ["Settings", "__version__"]

__version__ = "0.1.0"
