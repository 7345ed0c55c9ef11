#!/usr/bin/env bash
# Builds libbf16jni.so (src/main/native/bf16_jni.cpp) into the directory given, from which it is
# packed into the jar. It links Debian's oneDNN (libdnnl.so.2) dynamically: that library is 40 MB,
# so it is not shipped in the jar; where it is missing at run time, --compute-dtype bfloat16 says so.
# Needs: g++ and libdnnl-dev (bin/install-build-deps).
set -euo pipefail
out="$1"
stamp_dir="${2:-$out}"
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -f /usr/include/dnnl.hpp ] || [ ! -e /usr/lib/x86_64-linux-gnu/libdnnl.so ]; then
  echo "model-worker native build: oneDNN is missing (/usr/include/dnnl.hpp, libdnnl.so)." >&2
  echo "  install once: bin/install-build-deps (apt-get install g++ libdnnl-dev)" >&2
  exit 1
fi
java_home="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}"
mkdir -p "$out"
sum="$(sha256sum "$here/bf16_jni.cpp" "$0" | sha256sum | cut -c1-16)"
stamp="$stamp_dir/.bf16jni-built-from"
if [ ! -f "$out/libbf16jni.so" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
  g++ -O3 -s -std=c++17 -fPIC -shared -fopenmp -o "$out/libbf16jni.so.tmp" "$here/bf16_jni.cpp" \
    -I"$java_home/include" -I"$java_home/include/linux" -ldnnl -Wl,-z,defs
  mv "$out/libbf16jni.so.tmp" "$out/libbf16jni.so"
  echo "$sum" > "$stamp"
fi
