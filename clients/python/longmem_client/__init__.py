"""A Python client of the longmem memory service (memory.proto): numpy arrays in and out.

The message classes are generated from the proto (``clients/python/generate.sh OUTDIR``; put
OUTDIR on ``PYTHONPATH``); this package only adds the numpy layout, sessions and channel options.
"""

from .errors import MemoryServiceError
from .client import CollectionInfo, MemoryClient, SearchResult, Session

__all__ = ["CollectionInfo", "MemoryClient", "MemoryServiceError", "SearchResult", "Session"]
