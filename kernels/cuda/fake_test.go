//go:build cuda

package cuda

import (
	"fmt"
	"slices"
	"sort"
	"testing"
	"unsafe"

	"github.com/gopeft/gopeft/kernels"
)

// fakeDriver stands in for the GPU: it hands out fake device addresses and
// checks every kernel launch's packed parameters against the signature of
// that entry point in the embedded PTX. It computes nothing; the numbers
// are the conformance suite's job on a real device.
type fakeDriver struct {
	t        *testing.T
	sigs     map[string][]field
	next     uint64
	live     map[uint64]int
	launched map[string]int
	gemms    int
}

func newFake(t *testing.T) *fakeDriver {
	sigs, err := ptxSignatures(ptx)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeDriver{t: t, sigs: sigs, next: 1 << 20, live: map[uint64]int{}, launched: map[string]int{}}
}

func (f *fakeDriver) deviceName() string { return "fake" }

func (f *fakeDriver) malloc(bytes int) uint64 {
	if bytes == 0 {
		return 0
	}
	p := f.next
	f.next += uint64(bytes+255) &^ 255
	f.live[p] = bytes
	return p
}

func (f *fakeDriver) free(p uint64) {
	if p == 0 {
		return
	}
	if _, ok := f.live[p]; !ok {
		f.t.Errorf("free of %#x, which is not a live allocation", p)
	}
	delete(f.live, p)
}

// inside checks that [p, p+bytes) lies in one live allocation.
func (f *fakeDriver) inside(what string, p uint64, bytes int) {
	for base, n := range f.live {
		if p >= base && p+uint64(bytes) <= base+uint64(n) {
			return
		}
	}
	f.t.Errorf("%s: [%#x, +%d) is outside every live allocation", what, p, bytes)
}

func (f *fakeDriver) htod(dst uint64, _ unsafe.Pointer, bytes int) { f.inside("htod", dst, bytes) }
func (f *fakeDriver) dtoh(_ unsafe.Pointer, src uint64, bytes int) { f.inside("dtoh", src, bytes) }
func (f *fakeDriver) dtod(dst, src uint64, bytes int) {
	f.inside("dtod dst", dst, bytes)
	f.inside("dtod src", src, bytes)
}
func (f *fakeDriver) memset32(dst uint64, _ uint32, n int) { f.inside("memset", dst, 4*n) }
func (f *fakeDriver) sync() error                          { return nil }

func (f *fakeDriver) launch(name string, grid, blk int, a *args) {
	sig, ok := f.sigs[name]
	if !ok {
		f.t.Errorf("launch of %s, which kernels.ptx does not define", name)
		return
	}
	if !slices.Equal(a.fields, sig) {
		f.t.Errorf("launch %s: packed parameters %v, the PTX expects %v", name, a.fields, sig)
	}
	if end := sig[len(sig)-1]; len(a.b) != end.off+end.size {
		f.t.Errorf("launch %s: %d bytes of parameters, the PTX expects %d", name, len(a.b), end.off+end.size)
	}
	if grid < 1 || grid > maxGrid || blk != block {
		f.t.Errorf("launch %s: grid %d, block %d", name, grid, blk)
	}
	f.launched[name]++
}

func (f *fakeDriver) gemm(_, _ bool, m, n, k int, _ float32, a uint64, _, _ int, b uint64, _, _ int, _ float32, c uint64, _, _, _ int) {
	f.inside("gemm A", a, 4*m*k)
	f.inside("gemm B", b, 4*k*n)
	f.inside("gemm C", c, 4*m*n)
	f.gemms++
}

// TestKernelsMatchPTX drives every Backend method on the fake driver: each
// launch must pack exactly the parameters its PTX entry point declares, and
// every kernel in kernels.ptx must be reachable and listed in kernelNames.
func TestKernelsMatchPTX(t *testing.T) {
	f := newFake(t)
	be := &Backend{d: f}
	buf := func(n int) kernels.Buffer { return be.Alloc(n) }
	x, y, z := buf(24), buf(24), buf(24)
	be.Fill(x, 1)
	be.Copy(y, x)
	be.ToHost(make([]float32, 24), x)
	be.FromHost(make([]float32, 3))
	be.StridedCopy(y, x, []int{2, 3, 4}, []int{1, 2, 6})
	be.Gemm(&kernels.GemmArgs{M: 2, N: 3, K: 4, Alpha: 1, A: x, LdA: 4, B: y, LdB: 3, C: z, LdC: 3})
	be.Gemm(&kernels.GemmArgs{M: 2, N: 3, K: 0, Alpha: 1, Beta: 2, A: x, LdA: 1, B: y, LdB: 3, C: z, LdC: 3, Batch: 2, StrideC: 6})
	if s := be.Inverse(y, x, 1, 4); s != 0 {
		t.Errorf("Inverse on the fake counted %d singular", s)
	}
	for op := range kernels.NumUnaryOps {
		be.Unary(kernels.UnaryOp(op), y, x)
		be.UnaryGrad(kernels.UnaryOp(op), z, y, x, nil)
	}
	be.Binary(kernels.Pow, z, []int{2, 3, 4}, x, []int{12, 4, 1}, y, []int{0, 1, 0})
	be.Affine(y, x, 2, 1)
	be.Axpy(y, x, 2)
	be.ClampMask(y, x, 0, 1)
	be.Reduce(kernels.Mean, y, x, 2, 3, 4)
	be.CountNonFinite(x)
	be.Softmax(y, x, 4, 6, true)
	be.SoftmaxGrad(z, y, x, 4, 6, false)
	mean, rstd, w, bias := buf(4), buf(4), buf(6), buf(6)
	be.LayerNorm(y, mean, rstd, x, w, bias, 4, 6, 1e-5)
	be.LayerNormGrad(z, w, bias, y, x, mean, rstd, nil, 4, 6)
	be.RMSNorm(y, nil, x, nil, 4, 6, 1e-5)
	be.RMSNormGrad(nil, w, y, x, rstd, w, 4, 6)
	be.Gather(y, x, []int32{0, 2, 1}, 6)
	be.ScatterAdd(x, y, []int32{0, 0, 3}, 6)
	g := kernels.ConvGeom{C: 1, H: 4, W: 6, KH: 1, KW: 2, StrideH: 1, StrideW: 2, DilH: 1, DilW: 1}
	cols := buf(g.C * g.KH * g.KW * g.OutH() * g.OutW())
	be.Im2Col(cols, x, g)
	be.Col2Im(x, cols, g)
	be.Rope(y, x, z.Slice(0, 12), z.Slice(12, 12), 2, 2, 6, true)
	be.Uniform(x, 1, 2, 0, 1)
	be.Normal(x, 1, 2, 0, 1)
	be.AdamW(x, y, z, buf(24), kernels.AdamWArgs{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1})
	be.Free(x)
	be.Free(y.Slice(0, 3)) // a window: not freed

	if f.gemms != 1 {
		t.Errorf("cuBLAS called %d times, want 1 (K == 0 scales C with a kernel)", f.gemms)
	}
	var ptxNames []string
	for n := range f.sigs {
		ptxNames = append(ptxNames, n)
	}
	sort.Strings(ptxNames)
	want := slices.Clone(kernelNames)
	sort.Strings(want)
	if !slices.Equal(ptxNames, want) {
		t.Errorf("kernels.ptx defines %v, kernelNames lists %v", ptxNames, want)
	}
	for _, n := range kernelNames {
		if f.launched[n] == 0 {
			t.Errorf("kernel %s was never launched", n)
		}
	}
	if testing.Verbose() {
		t.Log(fmt.Sprint("launches: ", f.launched))
	}
}
