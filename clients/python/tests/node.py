"""What the tests share: the node under test (LONGMEM_ADDRESS) and where results go for the Java side."""

import os
import re

ADDRESS = os.environ.get("LONGMEM_ADDRESS")
#: where the tests leave their answers for the Java side's checks (optional)
OUT = os.environ.get("LONGMEM_OUT")
#: the node's data directory: no status message may show it
SERVER_ROOT = os.environ.get("LONGMEM_SERVER_ROOT")
#: the test node's collections: a Flat, an HNSW and an IVF index of the same documents
FLAT, HNSW, IVF = "books", "hnsw", "ivf"
LAYER = 2

ABSOLUTE_PATH = re.compile(r"(^|[\s'\"(=:])/(tmp|home|root|usr|etc|var|work|opt)\b")


def client(**kw):
    """A client of the node under test (the tests need one: LONGMEM_ADDRESS=HOST:PORT)."""
    if not ADDRESS:
        raise RuntimeError("set LONGMEM_ADDRESS=HOST:PORT of a memory node serving the test collections "
                           "(MemoryClientPythonTest in memory-server starts one)")
    from longmem_client import MemoryClient
    return MemoryClient(ADDRESS, **kw)


def out_dir(name):
    if not OUT:
        return None
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    return d
