"""Reads longmem FAISS index files with Python faiss: prints ntotal and the top-3 ids per query.

usage: read_faiss.py INDEX_FILE QUERIES.npy K
"""
import sys

import faiss
import numpy as np

index = faiss.read_index(sys.argv[1])
queries = np.load(sys.argv[2]).astype("float32")
k = int(sys.argv[3])
_, ids = index.search(queries, k)
print(index.ntotal)
for row in ids:
    print(" ".join(str(int(i)) for i in row))
