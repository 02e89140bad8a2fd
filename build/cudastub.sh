#!/usr/bin/env bash
# cudastub.sh DIR builds stub libcuda.so and libcublas.so (from
# build/cudastub.c) into DIR, for compile-, link- and fallback-checking the
# -tags cuda build on machines without CUDA. Use them with
#   CGO_LDFLAGS=-LDIR LD_LIBRARY_PATH=DIR go test -tags cuda ...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=${1:?usage: build/cudastub.sh DIR}
mkdir -p "$dir"
CC=${CC:-gcc}
"$CC" -O1 -Wall -Werror -shared -fPIC -o "$dir/libcuda.so" build/cudastub.c
"$CC" -O1 -Wall -Werror -shared -fPIC -DSTUB_CUBLAS -o "$dir/libcublas.so" build/cudastub.c
