"""The one error type of the client: a call the node refused, with its gRPC status."""

import grpc


class MemoryServiceError(Exception):
    """A call that ended with a non-OK gRPC status (or a reply the client cannot read).

    ``code`` is the ``grpc.StatusCode`` (``INVALID_ARGUMENT``, ``NOT_FOUND``, ``RESOURCE_EXHAUSTED``,
    ``UNAVAILABLE``, ...) and ``details`` the node's message, so callers can tell a bad request
    from a node that is down without parsing text.
    """

    def __init__(self, method, code, details):
        self.method = method
        self.code = code
        self.details = details or ""
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        super().__init__("%s: %s: %s" % (method, name, self.details))
