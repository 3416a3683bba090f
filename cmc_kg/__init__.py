"""cmc-kg: the open knowledge graph of the Cluster Munition Coalition and the treaties it campaigned for."""

__version__ = "0.1.0"  # before the imports: settings.py names the user's build folder after it

from .api import load_dataset, query
from .settings import Paths, Settings

__all__ = ["Paths", "Settings", "load_dataset", "query", "__version__"]
