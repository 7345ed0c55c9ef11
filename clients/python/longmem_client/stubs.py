"""The service's methods bound on a channel, from the descriptor generated from memory.proto.

Debian's grpc_tools (the ``--grpc_python_out`` plugin) is far older than its grpcio, so only the
message classes are generated (protoc ``--python_out``) and each method of the ``Memory`` service
in their descriptor becomes a ``channel.unary_unary`` callable here: the method names, paths and
message types still come from the proto.
"""

try:
    from longmem.memory.v1 import memory_pb2
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "longmem_client needs the message classes generated from memory.proto: run "
        "clients/python/generate.sh OUTDIR and put OUTDIR on PYTHONPATH (%s)" % e) from e

SERVICE = memory_pb2.DESCRIPTOR.services_by_name["Memory"]


def message_class(descriptor):
    """The generated class of a message of memory.proto."""
    return getattr(memory_pb2, descriptor.name)


class MemoryStub:
    """One callable per rpc of ``longmem.memory.v1.Memory``: ``stub.Search(request, timeout=...)``."""

    def __init__(self, channel):
        for method in SERVICE.methods:
            setattr(self, method.name, channel.unary_unary(
                "/%s/%s" % (SERVICE.full_name, method.name),
                request_serializer=message_class(method.input_type).SerializeToString,
                response_deserializer=message_class(method.output_type).FromString))
