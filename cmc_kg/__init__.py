"""cmc-kg: the open knowledge graph of the Cluster Munition Coalition and the treaties it campaigned for."""

from .api import load_dataset, query
from .settings import Settings

__all__ = ["Settings", "load_dataset", "query", "__version__"]

__version__ = "0.1.0"
