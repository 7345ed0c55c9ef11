"""memory.proto's array fields as numpy arrays (little-endian float32/float16/int32 bytes).

The wire is head-major (a query is ``[heads, queries, head_dim]``, an answer is per head); the
client's arrays are token-major (``[queries, heads, ...]``), the layout a model's attention
holds per token, so the transposes live here and nowhere else.
"""

import numpy as np

F32 = np.dtype("<f4")
F16 = np.dtype("<f2")
I32 = np.dtype("<i4")
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def token_major_bytes(a, name):
    """``[n, heads, head_dim]`` numbers as the wire's float32 ``[heads, n, head_dim]`` bytes."""
    a = np.asarray(a)
    if a.ndim != 3 or 0 in a.shape:
        raise ValueError("%s must be a non-empty [n, heads, head_dim] array, got shape %s" % (name, a.shape))
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError("%s must hold numbers, got dtype %s" % (name, a.dtype))
    return np.ascontiguousarray(a.transpose(1, 0, 2), dtype=F32).tobytes()


def int32s(values, name):
    """A sequence of Python ints within int32, or a clear error (protobuf would say less)."""
    out = [int(v) for v in np.asarray(values, dtype=np.int64).reshape(-1)] if values is not None else []
    for v in out:
        if v < INT32_MIN or v > INT32_MAX:
            raise ValueError("%s: %d is outside int32" % (name, v))
    return out


def _array(data, dtype, shape, what):
    count = int(np.prod(shape))
    if len(data) != count * dtype.itemsize:
        raise ValueError("%s: %d bytes, expected %d (%s of %s)" % (what, len(data), count * dtype.itemsize,
                                                                   "x".join(map(str, shape)), dtype))
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def decode_heads(response, heads, queries, k, head_dim, float16):
    """A SearchResponse as token-major arrays; raises ValueError on an answer of the wrong shape.

    Returns keys, values ``[queries, heads, k, head_dim]``, scores, positions, document indexes
    ``[queries, heads, k]`` and the valid mask (False where a head had fewer than k pairs: there
    keys and values are 0, positions and document indexes -1, scores -inf).
    """
    if len(response.heads) != heads:
        raise ValueError("answer has %d heads, the request %d" % (len(response.heads), heads))
    pair_dtype = F16 if float16 else F32
    keys = np.zeros((queries, heads, k, head_dim), dtype=pair_dtype)
    values = np.zeros_like(keys)
    scores = np.full((queries, heads, k), -np.inf, dtype=np.float32)
    positions = np.full((queries, heads, k), -1, dtype=np.int32)
    documents = np.full((queries, heads, k), -1, dtype=np.int32)
    valid = np.zeros((queries, heads, k), dtype=bool)
    n_docs = len(response.documents)
    for h, hr in enumerate(response.heads):
        m = hr.pairs
        if m < 0:
            raise ValueError("head %d: %d pairs" % (h, m))
        what = "head %d " % h
        hk = _array(hr.keys, pair_dtype, (m, head_dim), what + "keys")
        hv = _array(hr.values, pair_dtype, (m, head_dim), what + "values")
        hd = _array(hr.pair_document, I32, (m,), what + "pair_document")
        hp = _array(hr.pair_position, I32, (m,), what + "pair_position")
        hs = _array(hr.scores, F32, (queries, k), what + "scores")
        slots = _array(hr.slots, I32, (queries, k), what + "slots")
        if slots.size and (slots.min() < -1 or slots.max() >= m):
            raise ValueError("%sslots outside [-1, %d)" % (what, m))
        if m and (hd.min() < 0 or hd.max() >= n_docs):
            raise ValueError("%spair_document outside the %d documents" % (what, n_docs))
        ok = slots >= 0
        pick = slots[ok]
        keys[:, h][ok] = hk[pick]
        values[:, h][ok] = hv[pick]
        scores[:, h][ok] = hs[ok]
        positions[:, h][ok] = hp[pick]
        documents[:, h][ok] = hd[pick]
        valid[:, h] = ok
    return keys, values, scores, positions, documents, valid
