# gopeft developer targets. `make test` is what CI runs (via .ci/run).
#
#   make deps       install system packages (OpenBLAS, gcc, make) if missing
#   make test       gofmt check, go vet, race tests, tests with -tags blas
#   make test-blas  vet and test with the OpenBLAS backend compiled in
#   make bench      GEMM benchmarks on every compiled backend, as one table
#   make lint       gofmt check, go vet (both tag sets), staticcheck
#   make peak       measure this CPU's clock and fp32 FMA peak (bench/README.md)
#   make cuda-check-build  compile, vet, link and test -tags cuda without CUDA (stub libraries)
#   make cuda-check        on a GPU host: conformance, golden suite and benchmarks on CUDA

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

GO ?= go
# Build tags the bench target compiles in (add cuda on a CUDA machine).
BENCH_TAGS ?= blas
# Which benchmarks, how long each, how many runs, and how the table sums up
# several runs: median, or best (the fastest; use it on a busy machine).
BENCH ?= .
BENCHTIME ?= 1s
COUNT ?= 1
STAT ?= median
BENCH_OUT ?= out/bench.txt
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: test test-blas bench peak lint fmt-check vet deps

deps:
	bash build/deps.sh

fmt-check:
	@files=$$(find . -name '*.go' -not -path './.git/*' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then \
		echo "gofmt: these files are not formatted (run gofmt -w):"; \
		echo "$$files"; \
		exit 1; \
	fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags blas ./...

test: fmt-check vet
	$(GO) test -race ./...
	$(GO) test -tags blas ./...

test-blas:
	$(GO) vet -tags blas ./...
	$(GO) test -tags blas ./...

bench:
	@mkdir -p $(dir $(BENCH_OUT))
	$(GO) test -tags '$(BENCH_TAGS)' -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -count $(COUNT) ./bench | tee $(BENCH_OUT)
	$(GO) run ./bench/cmd/benchtable -stat $(STAT) < $(BENCH_OUT)

peak:
	@mkdir -p out
	gcc -O2 -pthread -o out/peakflops build/peakflops.c
	out/peakflops

lint: fmt-check vet
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags blas ./...

# The command line's demo and its generators (cmd/gopeft, internal/demo):
#   make demo        fine-tune the embedded tiny LLaMA (METHOD=lora|dora|ia3|...)
#   make demo-base   regenerate internal/demo/base (the embedded base model)
#   make merge-rss   measure gopeft merge's peak RSS on 4 shards of 256 MiB (writes 2.25 GiB to a temp dir;
#                    MERGE_DTYPE=BF16 for 128 MiB BF16 shards)
METHOD ?= lora
MERGE_DTYPE ?= F32
.PHONY: demo demo-base merge-rss

demo:
	$(GO) run ./cmd/gopeft demo --method $(METHOD)

demo-base:
	$(GO) generate ./internal/demo

merge-rss:
	$(GO) test ./cmd/gopeft -run MergePeakRSS -merge-rss -merge-rss-dtype $(MERGE_DTYPE) -v

# The CUDA backend without CUDA: stub libcuda/libcublas (build/cudastub.c)
# let the -tags cuda build compile, vet, link and run its tests on any
# machine; the GPU tests skip (no device) and kernels.Default must fall back.
# The cudaemu tag adds cuda/kernels.cu compiled for the host and runs the
# conformance suite on it (the kernels' logic and the Go glue, no GPU), then
# the golden suite through it (GOPEFT_BACKEND=cudaemu): no code above the
# kernels may assume host buffers.
# Vet covers the packages with cuda-tagged files (the tag changes no other
# package's sources); build covers everything. When clang or a host C++
# compiler is present, the committed PTX is also checked against a rebuild.
CUDA_STUB_DIR ?= out/cudastub
.PHONY: cuda-check-build cuda-check

cuda-check-build:
	bash build/cudastub.sh $(CUDA_STUB_DIR)
	@stub=$$(cd $(CUDA_STUB_DIR) && pwd); \
	export CGO_LDFLAGS="-L$$stub" LD_LIBRARY_PATH="$$stub"; \
	pkgs=$$(grep -rl --include='*.go' '^//go:build.*cuda' . | xargs -n1 dirname | sort -u); \
	set -x; \
	$(GO) vet -tags cuda $$pkgs; \
	$(GO) build -tags cuda ./...; \
	$(GO) test -tags cuda $$pkgs; \
	if command -v "$$($(GO) env CXX)" >/dev/null; then \
		$(GO) vet -tags 'cuda cudaemu' ./kernels/cuda; \
		$(GO) test -tags 'cuda cudaemu' -run Emulated ./kernels/cuda; \
		GOPEFT_BACKEND=cudaemu $(GO) test -tags 'cuda cudaemu' -run Golden ./peft; \
	else set +x; echo "cuda-check-build: no C++ compiler ($$($(GO) env CXX)), emulated conformance and golden runs skipped"; fi
	@if command -v clang++ >/dev/null; then bash build/ptx.sh --check; \
	else echo "cuda-check-build: clang++ not installed, committed PTX not re-derived"; \
		if command -v c++ >/dev/null; then \
			c++ -O1 -std=c++17 -DGMATH_HOST -Icuda cuda/gmath_check.cpp -o $(CUDA_STUB_DIR)/gmath_check && \
			$(CUDA_STUB_DIR)/gmath_check | tail -1; \
		fi; fi

cuda-check:
	bash build/cuda-check.sh
