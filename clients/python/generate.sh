#!/usr/bin/env bash
# Compiles memory.proto into Python message classes under OUTDIR (OUTDIR/longmem/memory/v1/memory_pb2.py).
# longmem_client binds the service's methods from the descriptor in that file, so protoc alone
# (Debian's protobuf-compiler, matching python3-protobuf) is enough: no grpc_tools plugin.
set -euo pipefail
out="${1:?usage: clients/python/generate.sh OUTDIR}"
here="$(cd "$(dirname "$0")" && pwd)"
proto_root="$here/../../memory-service/api/src/main/proto"
if ! command -v protoc >/dev/null 2>&1; then
  echo "generate.sh: protoc not found (Debian: protobuf-compiler; bin/install-build-deps installs it)" >&2
  exit 2
fi
mkdir -p "$out"
# compile to a temporary directory next to OUTDIR, then move the result in as a whole
tmp="$(mktemp -d "$out/.generate.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
protoc -I"$proto_root" --python_out="$tmp" longmem/memory/v1/memory.proto
if [ -d "$out/longmem" ]; then
  mv "$out/longmem" "$tmp/previous"
fi
mv "$tmp/longmem" "$out/longmem"
