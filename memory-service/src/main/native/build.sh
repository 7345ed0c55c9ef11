#!/usr/bin/env bash
# Builds libfaissjni.so (FAISS + OpenBLAS linked statically; needs only libc, libm and the
# libgomp copied beside it) into the directory given, from which it is packed into the jar.
# Needs: g++ and Debian's libfaiss-dev and libopenblas-openmp-dev (bin/install-build-deps).
set -euo pipefail
out="$1"
stamp_dir="${2:-$out}"
here="$(cd "$(dirname "$0")" && pwd)"
lib=/usr/lib/x86_64-linux-gnu
need=("$lib/libfaiss.a" "$lib/openblas-openmp/libopenblas.a")
for f in "${need[@]}"; do
  if [ ! -f "$f" ]; then
    echo "memory-service native build: $f is missing." >&2
    echo "  install once: bin/install-build-deps (apt-get install g++ libfaiss-dev libopenblas-openmp-dev)" >&2
    exit 1
  fi
done
java_home="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")}"
mkdir -p "$out"
stamp="$stamp_dir/.faissjni-built-from"
sum="$(sha256sum "$here/faiss_jni.cpp" "$0" | sha256sum | cut -c1-16)"
if [ -f "$out/libfaissjni.so" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
  exit 0  # up to date
fi
g++ -O2 -s -std=c++17 -fPIC -shared -fopenmp -o "$out/libfaissjni.so.tmp" "$here/faiss_jni.cpp" \
  -I"$java_home/include" -I"$java_home/include/linux" \
  "$lib/libfaiss.a" "$lib/openblas-openmp/libopenblas.a" \
  -static-libstdc++ -static-libgcc -Wl,--exclude-libs,ALL -Wl,-rpath,'$ORIGIN' -Wl,-z,defs -lm
cp "$(g++ -print-file-name=libgomp.so.1)" "$out/libgomp.so.1"
mv "$out/libfaissjni.so.tmp" "$out/libfaissjni.so"
echo "$sum" > "$stamp"
