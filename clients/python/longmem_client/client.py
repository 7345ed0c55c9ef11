"""MemoryClient: one channel to a memory node, numpy arrays in and out."""

import os
from dataclasses import dataclass
from typing import Tuple

import grpc
import numpy as np

from . import wire
from .errors import MemoryServiceError
from .stubs import MemoryStub, memory_pb2

#: Largest message sent or received, as the Java client (a prefill chunk's top-k with keys and values).
MAX_MESSAGE_BYTES = 1 << 30


@dataclass(frozen=True)
class CollectionInfo:
    """What ListCollections says of one collection."""
    name: str
    model_fingerprint: str
    layers: Tuple[int, ...]
    heads: int
    head_dim: int
    index_factory: str
    tokens: int
    shards: int
    documents: Tuple[str, ...]


@dataclass(frozen=True)
class SearchResult:
    """The top-k pairs of each query and head, token-major.

    keys, values: ``[queries, heads, k, head_dim]`` (float32, or float16 when asked for);
    scores: ``[queries, heads, k]`` q.k best first; positions: the pair's token position in its
    document; document: index into ``documents`` (document ids, or session ids for session
    pairs); valid: False where fewer than k pairs exist (keys 0, scores -inf, indexes -1).
    """
    keys: np.ndarray
    values: np.ndarray
    scores: np.ndarray
    positions: np.ndarray
    document: np.ndarray
    valid: np.ndarray
    documents: Tuple[str, ...]

    def document_id(self, query, head, rank):
        """The document (or session) id of one answer, None where there is none."""
        i = int(self.document[query, head, rank])
        return self.documents[i] if i >= 0 else None


class Session:
    """Session memory on the node; ``with client.create_session(...) as s:`` drops it at the end."""

    def __init__(self, client, session_id, layers, heads, head_dim):
        self.client = client
        self.id = session_id
        self.layers = tuple(layers)
        self.heads = heads
        self.head_dim = head_dim

    def append(self, layer, keys, values, positions=None):
        return self.client.append(self, layer, keys, values, positions)

    def drop(self):
        self.client.drop(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.drop()

    def __repr__(self):
        return "Session(%r, layers=%s, heads=%d, head_dim=%d)" % (self.id, self.layers, self.heads, self.head_dim)


def _read(pem, what):
    """PEM bytes from bytes or a file path; None stays None."""
    if pem is None or isinstance(pem, bytes):
        return pem
    try:
        with open(os.fspath(pem), "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError("%s: cannot read %s: %s" % (what, pem, e.strerror)) from None


def _target(address):
    """``host:port`` from ``host:port`` or the command line's ``grpc://host:port``."""
    a = address[len("grpc://"):] if address.startswith("grpc://") else address
    host, sep, port = a.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("address %r is not HOST:PORT (or grpc://HOST:PORT)" % address)
    return a


def _names(x):
    if x is None:
        return []
    if isinstance(x, (str, Session)):
        x = [x]
    return [s.id if isinstance(s, Session) else str(s) for s in x]


class MemoryClient:
    """A channel to one memory node (a coordinator answers for its cluster).

    ``token`` is sent as ``authorization: Bearer <token>`` on every call. TLS is used when
    ``tls_ca`` (PEM path or bytes of the CA that signed the node's certificate) is given or
    ``tls=True`` (the system's roots); ``client_cert`` and ``client_key`` add a client
    certificate (mutual TLS). ``timeout`` is each call's deadline in seconds.
    """

    def __init__(self, address, token=None, tls_ca=None, client_cert=None, client_key=None,
                 timeout=30.0, tls=None, max_message_bytes=MAX_MESSAGE_BYTES):
        target = _target(address)
        if (client_cert is None) != (client_key is None):
            raise ValueError("client_cert and client_key go together (mutual TLS needs both)")
        if tls is False and (tls_ca is not None or client_cert is not None):
            raise ValueError("tls=False with TLS files: choose one")
        if token is not None and (not token or any(c in token for c in "\r\n")):
            raise ValueError("token must be a non-empty single line")
        secure = tls or tls_ca is not None or client_cert is not None
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if secure:
            creds = grpc.ssl_channel_credentials(root_certificates=_read(tls_ca, "tls_ca"),
                                                 private_key=_read(client_key, "client_key"),
                                                 certificate_chain=_read(client_cert, "client_cert"))
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._metadata = (("authorization", "Bearer " + token),) if token else ()
        self.address = target
        self.timeout = timeout
        #: the generated methods on this channel, for requests the wrapper does not shape
        self.stub = MemoryStub(self._channel)

    # -- plumbing --------------------------------------------------------------------------------

    def call(self, method, request, timeout=None):
        """Calls one rpc with this client's token and deadline; a non-OK status is a MemoryServiceError."""
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise MemoryServiceError(method, e.code(), e.details()) from None

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- collections and search -------------------------------------------------------------------

    def collections(self):
        """What the node (or its cluster) serves."""
        r = self.call("ListCollections", memory_pb2.ListCollectionsRequest())
        return [CollectionInfo(c.name, c.model_fingerprint, tuple(c.layers), c.heads, c.head_dim, c.index_factory,
                               c.tokens, c.shards, tuple(c.documents)) for c in r.collections]

    def search(self, collections, layer, queries, k, sessions=(), documents=(), nprobe=0, ef_search=0,
               refine=0, float16_pairs=False, timeout=None):
        """Top-k pairs of each query ``[queries, heads, head_dim]`` (rotated as the layer rotates them).

        ``collections`` and ``sessions`` are names (a str, a list, Session handles); ``documents``
        restricts collections to those documents; nprobe, ef_search, refine 0: the node's defaults.
        """
        q = np.asarray(queries)
        body = wire.token_major_bytes(q, "queries")
        n_queries, heads, head_dim = q.shape
        k = int(k)
        request = memory_pb2.SearchRequest(
            collections=_names(collections), sessions=_names(sessions), documents=_names(documents),
            layer=int(layer), heads=heads, queries=n_queries, head_dim=head_dim, query=body, k=k,
            nprobe=int(nprobe), ef_search=int(ef_search), refine=int(refine), float16_pairs=bool(float16_pairs))
        response = self.call("Search", request, timeout)
        try:
            arrays = wire.decode_heads(response, heads, n_queries, k, head_dim, float16_pairs)
        except ValueError as e:
            raise MemoryServiceError("Search", grpc.StatusCode.INTERNAL, "malformed answer: " + str(e)) from None
        return SearchResult(*arrays, documents=tuple(response.documents))

    # -- sessions ---------------------------------------------------------------------------------

    def create_session(self, layers, heads, head_dim):
        """New session memory for these model layers; searched like a collection by its handle."""
        layers = wire.int32s(layers, "layers")
        r = self.call("CreateSession", memory_pb2.CreateSessionRequest(layers=layers, heads=int(heads),
                                                                        head_dim=int(head_dim)))
        return Session(self, r.session, layers, int(heads), int(head_dim))

    def append(self, session, layer, keys, values, positions=None):
        """Appends n tokens' unrotated keys and values ``[n, heads, head_dim]`` to a session's layer.

        ``positions`` (n ints) are the tokens' positions (default: 0.. in arrival order). Returns
        the session's token count after the append.
        """
        keys = np.asarray(keys)
        values = np.asarray(values)
        if keys.shape != values.shape:
            raise ValueError("keys %s and values %s differ in shape" % (keys.shape, values.shape))
        kb = wire.token_major_bytes(keys, "keys")
        vb = wire.token_major_bytes(values, "values")
        pos = wire.int32s(positions, "positions")
        if positions is not None and len(pos) != keys.shape[0]:
            raise ValueError("%d positions for %d tokens" % (len(pos), keys.shape[0]))
        r = self.call("AppendSession", memory_pb2.AppendSessionRequest(
            session=_names(session)[0], layer=int(layer), tokens=keys.shape[0], keys=kb, values=vb, positions=pos))
        return r.tokens

    def drop(self, session):
        """Drops a session (its memory is freed on the node)."""
        self.call("DropSession", memory_pb2.DropSessionRequest(session=_names(session)[0]))
