#!/usr/bin/env bash
# cuda-check.sh: the GPU checks of the CUDA backend, in one run on a GPU
# host (CUDA 11-13 at $CUDA_HOME, default /usr/local/cuda; a driver and
# libcublas are all it needs: no CUDA compiler).
#
#  1. the committed PTX: re-derived and compared when clang is present
#     (CUDA_CHECK_REGEN_PTX=1 overwrites it with a fresh clang or nvcc build)
#  2. go vet / go build -tags cuda
#  3. the kernel conformance suite on the GPU (kernels/cuda, kerneltest.Run)
#     and the fallback/registration tests (kernels/all); a missing device
#     fails here instead of skipping (GOPEFT_REQUIRE_CUDA=1)
#  4. the golden suite with GOPEFT_BACKEND=cuda
#  5. benchmarks: GEMM 4096^3 through the backend vs cublasSgemm directly,
#     LoRA forward (512 tokens, 4096x4096, r16) vs the base projection
#
# and ends with one summary. Logs go to out/cuda-check/. Exit status is
# non-zero when any check failed. Takes a few minutes; each step is cut off
# after STEP_TIMEOUT seconds (default 900). BENCHTIME sets -benchtime (20x).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=/usr/local/go/bin:$PATH

CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
LOG=out/cuda-check
mkdir -p "$LOG"
export CGO_LDFLAGS="-L$CUDA_HOME/lib64 -L$CUDA_HOME/targets/x86_64-linux/lib ${CGO_LDFLAGS:-}"
export LD_LIBRARY_PATH="$CUDA_HOME/lib64:$CUDA_HOME/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
export GOPEFT_REQUIRE_CUDA=1
BENCHTIME=${BENCHTIME:-20x}

declare -a summary
status=0
step() { # step NAME LOGFILE CMD...: run, record PASS/FAIL
	local name=$1 log=$2
	shift 2
	echo "== $name"
	if timeout "${STEP_TIMEOUT:-900}" "$@" >"$LOG/$log" 2>&1; then
		summary+=("PASS  $name")
	else
		summary+=("FAIL  $name (see $LOG/$log)")
		status=1
		tail -20 "$LOG/$log"
	fi
}

echo "== device"
if command -v nvidia-smi >/dev/null; then
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOG/device.txt"
else
	echo "nvidia-smi not found" | tee "$LOG/device.txt"
fi
[ -x "$CUDA_HOME/bin/nvcc" ] && "$CUDA_HOME/bin/nvcc" --version | tail -1 | tee -a "$LOG/device.txt"
ls "$CUDA_HOME"/lib64/libcublas.so* 2>/dev/null | head -3 | tee -a "$LOG/device.txt"

if [ "${CUDA_CHECK_REGEN_PTX:-}" = 1 ]; then
	step "regenerate PTX" ptx.txt bash build/ptx.sh
elif command -v clang++ >/dev/null || command -v clang >/dev/null; then
	step "committed PTX matches cuda/kernels.cu" ptx.txt bash build/ptx.sh --check
else
	summary+=("----  PTX: no clang here, using the committed kernels/cuda/kernels.ptx")
fi

step "go vet -tags cuda" vet.txt go vet -tags cuda ./kernels/cuda ./kernels/all
step "go build -tags cuda ./..." build.txt go build -tags cuda ./...
step "conformance suite on the GPU (kernels/cuda)" conformance.txt \
	go test -tags cuda -count=1 -v ./kernels/cuda
step "registration and default choice (kernels/all)" all.txt \
	go test -tags cuda -count=1 -v ./kernels/all
step "golden suite, GOPEFT_BACKEND=cuda" golden.txt \
	env GOPEFT_BACKEND=cuda go test -tags cuda -count=1 -v -run Golden ./peft
step "benchmarks" bench.txt \
	go test -tags cuda -count=1 -run '^$' -bench 'Gemm4096|LoRAForward' -benchtime "$BENCHTIME" ./kernels/cuda

# ---- summary ---------------------------------------------------------------
metric() { # metric BENCH-NAME-REGEX UNIT: the value before UNIT on the first matching line
	awk -v re="$1" -v unit="$2" '$1 ~ re { for (i = 2; i <= NF; i++) if ($i == unit) { print $(i-1); exit } }' "$LOG/bench.txt" 2>/dev/null
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.3f", a / b }'; }

echo
echo "================ CUDA check summary ================"
cat "$LOG/device.txt"
for s in "${summary[@]}"; do echo "$s"; done
if [ -f "$LOG/conformance.txt" ]; then
	echo "conformance: $(grep -c -- '--- PASS' "$LOG/conformance.txt") passed, $(grep -c -- '--- FAIL' "$LOG/conformance.txt") failed, $(grep -c -- '--- SKIP' "$LOG/conformance.txt") skipped (subtests included)"
	grep -- '--- FAIL' "$LOG/conformance.txt" | head -20
fi
if [ -f "$LOG/golden.txt" ]; then
	grep 'golden: [0-9]* passed' "$LOG/golden.txt" || echo "golden: no summary line"
	grep 'golden: .* FAIL' "$LOG/golden.txt" | head -20
fi
if [ -f "$LOG/bench.txt" ]; then
	gb=$(metric 'Gemm4096/backend' GFLOP/s)
	gc=$(metric 'Gemm4096/cublas' GFLOP/s)
	tb=$(metric 'LoRAForward/base' tokens/s)
	tl=$(metric 'LoRAForward/lora' tokens/s)
	echo "GEMM 4096^3 FP32: backend ${gb:-?} GFLOP/s, cublasSgemm direct ${gc:-?} GFLOP/s, ratio $(ratio "$gb" "$gc")"
	echo "LoRA fwd 512 tok 4096x4096 r16: base ${tb:-?} tokens/s, lora ${tl:-?} tokens/s, lora/base $(ratio "$tl" "$tb")"
fi
echo "===================================================="
exit $status
