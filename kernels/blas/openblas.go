//go:build blas

package blas

// The netlib bindings declare the cblas functions but link no library; this
// directive links OpenBLAS into every binary that imports the backend, so
// "go build -tags blas" needs no CGO_LDFLAGS.

/*
#cgo LDFLAGS: -lopenblas
int openblas_get_num_threads(void);
char* openblas_get_config(void);
char* openblas_get_corename(void);
*/
import "C"

// Threads is the number of threads OpenBLAS uses for one large call: the
// number of online CPUs, or OPENBLAS_NUM_THREADS when that is set.
func Threads() int { return int(C.openblas_get_num_threads()) }

// Config describes the linked OpenBLAS build and the CPU kernels it chose,
// such as "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64".
func Config() string { return C.GoString(C.openblas_get_config()) }

// CoreName is the CPU family whose kernels OpenBLAS selected ("SkylakeX",
// "Haswell", ...).
func CoreName() string { return C.GoString(C.openblas_get_corename()) }
