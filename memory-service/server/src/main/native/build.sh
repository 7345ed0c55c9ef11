#!/usr/bin/env bash
# Builds libfaissjni.so (FAISS + OpenBLAS linked statically; needs only libc, libm and the
# libgomp copied beside it) into the directory given, from which it is packed into the jar:
#   - generic: against Debian's libfaiss.a (no SIMD);
#   - AVX2: against libfaiss_avx2.a compiled here from Debian's source package of the same
#     FAISS (bin/install-build-deps fetches it into ~/.cache/longmem/faiss-src), when present.
# Needs: g++, cmake and Debian's libfaiss-dev and libopenblas-openmp-dev (bin/install-build-deps).
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
src_root="${LONGMEM_FAISS_SRC:-$HOME/.cache/longmem/faiss-src}"
faiss_src="$src_root/faiss-1.7.3"
mkdir -p "$out"

link() { # link NAME FAISS_ARCHIVE EXTRA_FLAGS...
  local name="$1" archive="$2"
  shift 2
  g++ -O2 -s -std=c++17 -fPIC -shared -fopenmp "$@" -o "$out/$name.tmp" "$here/faiss_jni.cpp" \
    -I"$java_home/include" -I"$java_home/include/linux" \
    "$archive" "$lib/openblas-openmp/libopenblas.a" \
    -static-libstdc++ -static-libgcc -Wl,--exclude-libs,ALL -Wl,-rpath,'$ORIGIN' -Wl,-z,defs -lm
  mv "$out/$name.tmp" "$out/$name"
}

sum="$(sha256sum "$here/faiss_jni.cpp" "$0" | sha256sum | cut -c1-16)"
stamp="$stamp_dir/.faissjni-built-from"
if [ ! -f "$out/libfaissjni.so" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
  link libfaissjni.so "$lib/libfaiss.a"
  cp "$(g++ -print-file-name=libgomp.so.1)" "$out/libgomp.so.1"
  rm -f "$out/libfaissjni_avx2.so"
  echo "$sum" > "$stamp"
fi

if [ -d "$faiss_src" ]; then
  avx2_archive="$src_root/build-avx2/faiss/libfaiss_avx2.a"
  if [ ! -f "$avx2_archive" ]; then
    echo "memory-service native build: compiling FAISS 1.7.3 with AVX2 from $faiss_src (once)" >&2
    cmake -S "$faiss_src" -B "$src_root/build-avx2" -DFAISS_ENABLE_GPU=OFF -DFAISS_ENABLE_PYTHON=OFF \
      -DBUILD_TESTING=OFF -DFAISS_OPT_LEVEL=avx2 -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
      -DCMAKE_BUILD_TYPE=Release -DBLA_VENDOR=OpenBLAS > "$src_root/cmake.log" 2>&1
    make -C "$src_root/build-avx2" -j"$(nproc)" faiss_avx2 > "$src_root/make.log" 2>&1
  fi
  if [ ! -f "$out/libfaissjni_avx2.so" ]; then
    link libfaissjni_avx2.so "$avx2_archive" -mavx2 -mfma -mf16c -I"$faiss_src"
  fi
else
  echo "memory-service native build: no FAISS source in $src_root, building the generic library only" \
       "(bin/install-build-deps fetches the source for the AVX2 one)" >&2
fi
