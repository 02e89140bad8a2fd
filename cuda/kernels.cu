// kernels.cu: every gopeft kernel that is not a cuBLAS GEMM, for the CUDA
// backend in kernels/cuda. build/ptx.sh compiles it to PTX, which is
// committed and embedded in the Go package, so users need no CUDA compiler.
//
// Conventions: one-dimensional grids with grid-stride loops over elements;
// row kernels run one block of BLOCK threads per row and reduce in double.
// Arithmetic that the CPU backends do in float64 is done in double here too.
// The op numbers match kernels.UnaryOp, BinaryOp and ReduceOp.
#include "device.h"
#include "gmath.h"

#define MAXRANK 8

// Nd is a strided n-d walk: shape, and the element strides of up to two
// operands (the destination is contiguous row-major over shape).
struct Nd {
	i64 n;
	int rank, pad;
	i64 shape[MAXRANK];
	i64 s0[MAXRANK];
	i64 s1[MAXRANK];
};

static __device__ inline void nd_offsets(const Nd &nd, i64 i, i64 *o0, i64 *o1) {
	i64 a = 0, b = 0;
	for (int k = nd.rank - 1; k >= 0; k--) {
		i64 d = nd.shape[k], c = i % d;
		i /= d;
		a += c * nd.s0[k];
		b += c * nd.s1[k];
	}
	*o0 = a;
	*o1 = b;
}

KERNEL k_strided_copy(float *d, const float *s, Nd nd) {
	for (i64 i = gid(); i < nd.n; i += gstride()) {
		i64 a, b;
		nd_offsets(nd, i, &a, &b);
		d[i] = s[a];
	}
}

// ---- elementwise ----

static __device__ double unary_f(int op, double x) {
	switch (op) {
	case 0: return -x;
	case 1: return __builtin_fabs(x);
	case 2: return g_exp(x);
	case 3: return g_log(x);
	case 4: return __builtin_sqrt(x);
	case 5: return 1.0 / __builtin_sqrt(x);
	case 6: return x * x;
	case 7: return 1.0 / x;
	case 8: return (x > 0 || x != x) ? x : 0.0;
	case 9: return x * g_phi(x);
	case 10: return 0.5 * x * (1.0 + g_tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
	case 11: return x * g_sigmoid(x);
	case 12: return g_sigmoid(x);
	case 13: return g_tanh(x);
	case 14: return g_sin(x);
	case 15: return g_cos(x);
	}
	return G_NAN;
}

KERNEL k_unary(int op, float *d, const float *s, i64 n) {
	for (i64 i = gid(); i < n; i += gstride()) {
		if (op == 6) { // Square is exact in float32, as on the CPU
			float x = s[i];
			d[i] = x * x;
		} else if (op == 7) {
			d[i] = 1.0f / s[i];
		} else if (op == 0) {
			d[i] = -s[i];
		} else {
			d[i] = (float)unary_f(op, (double)s[i]);
		}
	}
}

// unary_y recomputes y = op(x) for the ops whose derivative uses y.
static __device__ inline double unary_y(int op, const float *y, i64 i, double x) {
	if (y) return (double)y[i];
	return unary_f(op, x);
}

KERNEL k_unary_grad(int op, float *dx, const float *dy, const float *xs, const float *ys, i64 n) {
	for (i64 i = gid(); i < n; i += gstride()) {
		double v = xs[i], g = dy[i], r = 0;
		switch (op) {
		case 0: r = -g; break;
		case 1: r = v > 0 ? g : (v < 0 ? -g : 0.0); break;
		case 2: r = g * unary_y(op, ys, i, v); break;
		case 3: r = g / v; break;
		case 4: r = g * 0.5 / unary_y(op, ys, i, v); break;
		case 5: { double y = unary_y(op, ys, i, v); r = g * -0.5 * y * y * y; } break;
		case 6: r = g * 2 * v; break;
		case 7: { double y = unary_y(op, ys, i, v); r = -g * y * y; } break;
		case 8: r = v > 0 ? g : 0.0; break;
		case 9: r = g * (g_phi(v) + v * 0.39894228040143267794 * g_exp(-0.5 * v * v)); break;
		case 10: {
			double c = 0.79788456080286535588, k = 0.044715;
			double t = g_tanh(c * (v + k * v * v * v));
			r = g * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * k * v * v));
		} break;
		case 11: { double s = g_sigmoid(v); r = g * s * (1 + v * (1 - s)); } break;
		case 12: { double y = unary_y(op, ys, i, v); r = g * y * (1 - y); } break;
		case 13: { double y = unary_y(op, ys, i, v); r = g * (1 - y * y); } break;
		case 14: r = g * g_cos(v); break;
		case 15: r = -g * g_sin(v); break;
		default: r = G_NAN;
		}
		dx[i] = (float)r;
	}
}

static __device__ inline float binary_f(int op, float x, float y) {
	switch (op) {
	case 0: return x + y;
	case 1: return x - y;
	case 2: return x * y;
	case 3: return x / y;
	case 4: return (x != x || x > y) ? x : y;
	case 5: return (x != x || x < y) ? x : y;
	case 6: return (float)g_pow((double)x, (double)y);
	}
	return G_NAN;
}

KERNEL k_binary(int op, float *d, const float *a, const float *b, Nd nd) {
	for (i64 i = gid(); i < nd.n; i += gstride()) {
		i64 oa, ob;
		nd_offsets(nd, i, &oa, &ob);
		d[i] = binary_f(op, a[oa], b[ob]);
	}
}

KERNEL k_affine(float *d, const float *s, i64 n, float scale, float shift) {
	for (i64 i = gid(); i < n; i += gstride()) d[i] = s[i] * scale + shift;
}

KERNEL k_axpy(float *d, const float *s, i64 n, float alpha) {
	for (i64 i = gid(); i < n; i += gstride()) d[i] += alpha * s[i];
}

KERNEL k_clamp_mask(float *d, const float *s, i64 n, float lo, float hi) {
	for (i64 i = gid(); i < n; i += gstride()) {
		float x = s[i];
		d[i] = (lo <= x && x <= hi) ? 1.0f : 0.0f;
	}
}

// ---- reductions ----

// k_reduce: one thread per output element of [outer, inner].
KERNEL k_reduce(int op, float *d, const float *s, i64 outer, i64 n, i64 inner) {
	i64 total = outer * inner;
	for (i64 o = gid(); o < total; o += gstride()) {
		i64 a = o / inner, c = o % inner;
		const float *p = s + a * n * inner + c;
		double acc;
		if (op == 2) acc = -G_INF;
		else if (op == 3) acc = G_INF;
		else acc = 0;
		for (i64 j = 0; j < n; j++) {
			double x = p[j * inner];
			switch (op) {
			case 0: case 1: acc += x; break;
			case 2: if (x != x || x > acc) acc = x; break;
			case 3: if (x != x || x < acc) acc = x; break;
			case 4: acc += x * x; break;
			}
			if (acc != acc && (op == 2 || op == 3)) break;
		}
		if (op == 1) acc = n == 0 ? G_NAN : acc / n;
		d[o] = (float)acc;
	}
}

KERNEL k_count_nonfinite(const float *s, i64 n, int *count) {
	int c = 0;
	for (i64 i = gid(); i < n; i += gstride()) {
		float x = s[i];
		if (x != x || __builtin_fabsf(x) == __builtin_inff()) c++;
	}
	if (c) atomic_add_i32(count, c);
}

// ---- softmax and norms: one block per row ----

KERNEL k_softmax(float *d, const float *s, i64 rows, i64 cols, int log) {
	__shared__ double sh[BLOCK];
	for (i64 r = bid(); r < rows; r += nbid()) {
		const float *x = s + r * cols;
		float *y = d + r * cols;
		double m = -G_INF;
		for (i64 j = tid(); j < cols; j += BLOCK) {
			double v = x[j];
			if (v != v || v > m) m = v;
		}
		m = block_max(m, sh);
		double z = 0;
		for (i64 j = tid(); j < cols; j += BLOCK) z += g_exp((double)x[j] - m);
		z = block_sum(z, sh);
		double lz = g_log(z);
		for (i64 j = tid(); j < cols; j += BLOCK) {
			double v = (double)x[j] - m;
			y[j] = (float)(log ? v - lz : g_exp(v) / z);
		}
	}
}

KERNEL k_softmax_grad(float *dx, const float *dy, const float *ys, i64 rows, i64 cols, int log) {
	__shared__ double sh[BLOCK];
	for (i64 r = bid(); r < rows; r += nbid()) {
		const float *g = dy + r * cols, *y = ys + r * cols;
		float *o = dx + r * cols;
		double acc = 0;
		for (i64 j = tid(); j < cols; j += BLOCK) acc += log ? (double)g[j] : (double)g[j] * y[j];
		acc = block_sum(acc, sh);
		for (i64 j = tid(); j < cols; j += BLOCK) {
			double yj = y[j], gj = g[j];
			o[j] = (float)(log ? gj - g_exp(yj) * acc : yj * (gj - acc));
		}
	}
}

// k_norm is LayerNorm (centre set) or RMSNorm. mean, rstd, w, b may be null.
KERNEL k_norm(float *d, float *mean, float *rstd, const float *s, const float *w, const float *b,
              i64 rows, i64 cols, float eps, int centre) {
	__shared__ double sh[BLOCK];
	for (i64 r = bid(); r < rows; r += nbid()) {
		const float *x = s + r * cols;
		float *y = d + r * cols;
		double m = 0;
		if (centre) {
			double t = 0;
			for (i64 j = tid(); j < cols; j += BLOCK) t += x[j];
			t = block_sum(t, sh);
			m = cols > 0 ? t / cols : G_NAN;
		}
		double v = 0;
		for (i64 j = tid(); j < cols; j += BLOCK) {
			double dv = (double)x[j] - m;
			v += dv * dv;
		}
		v = block_sum(v, sh);
		if (cols > 0) v /= cols;
		else if (!centre) v = G_NAN;
		double inv = 1.0 / __builtin_sqrt(v + (double)eps);
		if (tid() == 0) {
			if (mean) mean[r] = (float)m;
			if (rstd) rstd[r] = (float)inv;
		}
		for (i64 j = tid(); j < cols; j += BLOCK) {
			double o = ((double)x[j] - m) * inv;
			if (w) o *= (double)w[j];
			if (b) o += (double)b[j];
			y[j] = (float)o;
		}
	}
}

// k_norm_grad_dx writes dx for LayerNorm (mean given) or RMSNorm (mean null).
KERNEL k_norm_grad_dx(float *dx, const float *dy, const float *s, const float *mean, const float *rstd,
                      const float *w, i64 rows, i64 cols) {
	__shared__ double sh[BLOCK];
	for (i64 r = bid(); r < rows; r += nbid()) {
		const float *x = s + r * cols, *gy = dy + r * cols;
		double m = mean ? (double)mean[r] : 0.0, inv = rstd[r];
		double sg = 0, sgx = 0;
		for (i64 j = tid(); j < cols; j += BLOCK) {
			double xh = ((double)x[j] - m) * inv, gj = gy[j];
			if (w) gj *= (double)w[j];
			sg += gj;
			sgx += gj * xh;
		}
		sg = block_sum(sg, sh);
		sgx = block_sum(sgx, sh);
		double mg = mean ? sg / cols : 0.0, mgx = sgx / cols;
		for (i64 j = tid(); j < cols; j += BLOCK) {
			double xh = ((double)x[j] - m) * inv, gj = gy[j];
			if (w) gj *= (double)w[j];
			dx[r * cols + j] = (float)(inv * (gj - mg - xh * mgx));
		}
	}
}

// k_norm_grad_w writes dweight and dbias (either may be null): one thread
// per column, summing over rows (adjacent threads read adjacent columns).
KERNEL k_norm_grad_w(float *dw, float *db, const float *dy, const float *s, const float *mean,
                     const float *rstd, i64 rows, i64 cols) {
	for (i64 j = gid(); j < cols; j += gstride()) {
		double aw = 0, ab = 0;
		for (i64 r = 0; r < rows; r++) {
			double gj = dy[r * cols + j];
			double m = mean ? (double)mean[r] : 0.0;
			aw += gj * (((double)s[r * cols + j] - m) * (double)rstd[r]);
			ab += gj;
		}
		if (dw) dw[j] = (float)aw;
		if (db) db[j] = (float)ab;
	}
}

// ---- indexing ----

KERNEL k_gather(float *d, const float *table, const int *ids, i64 n, i64 dim) {
	i64 total = n * dim;
	for (i64 i = gid(); i < total; i += gstride()) {
		i64 r = i / dim, c = i % dim;
		d[i] = table[(i64)ids[r] * dim + c];
	}
}

KERNEL k_scatter_add(float *table, const float *s, const int *ids, i64 n, i64 dim) {
	i64 total = n * dim;
	for (i64 i = gid(); i < total; i += gstride()) {
		i64 r = i / dim, c = i % dim;
		atomic_add_f32(&table[(i64)ids[r] * dim + c], s[i]);
	}
}

// ---- convolution helpers ----

struct Geom {
	i64 c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
};

// k_im2col: one thread per element of dst [C*KH*KW, OH*OW].
KERNEL k_im2col(float *d, const float *s, Geom g) {
	i64 cols = g.oh * g.ow, total = g.c * g.kh * g.kw * cols;
	for (i64 i = gid(); i < total; i += gstride()) {
		i64 row = i / cols, col = i % cols;
		i64 kw = row % g.kw, kh = (row / g.kw) % g.kh, c = row / (g.kw * g.kh);
		i64 oy = col / g.ow, ox = col % g.ow;
		i64 y = oy * g.sh - g.ph + kh * g.dh, x = ox * g.sw - g.pw + kw * g.dw;
		d[i] = (y >= 0 && y < g.h && x >= 0 && x < g.w) ? s[(c * g.h + y) * g.w + x] : 0.0f;
	}
}

// k_col2im: one thread per image element, summing every column entry that
// Im2Col would have read from it (no atomics, deterministic), then adding.
KERNEL k_col2im(float *d, const float *s, Geom g) {
	i64 total = g.c * g.h * g.w, cols = g.oh * g.ow;
	for (i64 i = gid(); i < total; i += gstride()) {
		i64 x = i % g.w, y = (i / g.w) % g.h, c = i / (g.w * g.h);
		float acc = 0;
		for (i64 kh = 0; kh < g.kh; kh++) {
			i64 ty = y + g.ph - kh * g.dh;
			if (ty < 0 || ty % g.sh) continue;
			i64 oy = ty / g.sh;
			if (oy >= g.oh) continue;
			for (i64 kw = 0; kw < g.kw; kw++) {
				i64 tx = x + g.pw - kw * g.dw;
				if (tx < 0 || tx % g.sw) continue;
				i64 ox = tx / g.sw;
				if (ox >= g.ow) continue;
				acc += s[((c * g.kh + kh) * g.kw + kw) * cols + oy * g.ow + ox];
			}
		}
		d[i] += acc;
	}
}

// k_rope: one thread per pair (j, j+dim/2) of a row; float32 products as
// on the CPU.
KERNEL k_rope(float *d, const float *s, const float *cs, const float *sn, i64 rows, i64 seq, i64 dim, int inverse) {
	i64 h = dim / 2, total = rows * h;
	for (i64 i = gid(); i < total; i += gstride()) {
		i64 r = i / h, j = i % h, p = r % seq;
		const float *x = s + r * dim, *c = cs + p * dim, *sv = sn + p * dim;
		float *y = d + r * dim;
		float a = x[j], b = x[j + h];
		float p0 = a * c[j], p1 = b * c[j + h];
		if (inverse) {
			float q0 = b * sv[j + h], q1 = a * sv[j];
			y[j] = p0 + q0;
			y[j + h] = p1 - q1;
		} else {
			float q0 = b * sv[j], q1 = a * sv[j + h];
			y[j] = p0 - q0;
			y[j + h] = p1 + q1;
		}
	}
}

// ---- random numbers: Philox4x32-10 exactly as kernels.Philox4x32 ----

static __device__ inline void philox(u64 seed, u64 ctr, u32 *o0, u32 *o1) {
	u32 c0 = (u32)ctr, c1 = (u32)(ctr >> 32), c2 = 0, c3 = 0;
	u32 k0 = (u32)seed, k1 = (u32)(seed >> 32);
	for (int r = 0; r < 10; r++) {
		u64 p = (u64)c0 * 0xD2511F53u, q = (u64)c2 * 0xCD9E8D57u;
		u32 n0 = (u32)(q >> 32) ^ c1 ^ k0, n2 = (u32)(p >> 32) ^ c3 ^ k1;
		c0 = n0;
		c1 = (u32)q;
		c2 = n2;
		c3 = (u32)p;
		k0 += 0x9E3779B9u;
		k1 += 0xBB67AE85u;
	}
	*o0 = c0;
	*o1 = c1;
}

#define TWO_M24 5.9604644775390625e-08f

KERNEL k_uniform(float *d, i64 n, u64 seed, u64 offset, float lo, float hi) {
	float scale = hi - lo;
	for (i64 i = gid(); i < n; i += gstride()) {
		u32 x0, x1;
		philox(seed, offset + (u64)i, &x0, &x1);
		float u = (float)(x0 >> 8) * TWO_M24;
		float t = scale * u;
		d[i] = lo + t;
	}
}

KERNEL k_normal(float *d, i64 n, u64 seed, u64 offset, float mean, float std) {
	for (i64 i = gid(); i < n; i += gstride()) {
		u32 x0, x1;
		philox(seed, offset + (u64)i, &x0, &x1);
		float u1 = ((float)(x0 >> 8) + 1.0f) * TWO_M24;
		float u2 = (float)(x1 >> 8) * TWO_M24;
		double r = __builtin_sqrt(-2.0 * g_log((double)u1));
		float z = (float)(r * g_cos(2.0 * G_PI * (double)u2));
		float t = std * z;
		d[i] = mean + t;
	}
}

// ---- optimizer ----

// k_adamw: decay = 1-lr*wd, step = lr/(1-b1^t), rbc2 = 1/sqrt(1-b2^t),
// computed on the host in double like the CPU backends.
KERNEL k_adamw(float *p, const float *g, float *m, float *v, i64 n, double b1, double b2, double eps,
               double decay, double step, double rbc2) {
	for (i64 i = gid(); i < n; i += gstride()) {
		double gi = g[i];
		double mi = b1 * (double)m[i] + (1 - b1) * gi;
		double vi = b2 * (double)v[i] + (1 - b2) * gi * gi;
		m[i] = (float)mi;
		v[i] = (float)vi;
		double pi = (double)p[i] * decay;
		p[i] = (float)(pi - step * mi / (__builtin_sqrt(vi) * rbc2 + eps));
	}
}

// ---- linear algebra ----

// k_inverse: Gauss-Jordan elimination with partial pivoting in double, one
// block per matrix; work holds 2*n*n doubles per block ([A | I]).
KERNEL k_inverse(float *d, const float *s, i64 batch, i64 n, double *work, int *singular) {
	__shared__ i64 piv;
	__shared__ int bad;
	for (i64 bm = bid(); bm < batch; bm += nbid()) {
		double *a = work + (i64)bid() * 2 * n * n, *inv = a + n * n;
		const float *src = s + bm * n * n;
		for (i64 i = tid(); i < n * n; i += BLOCK) {
			a[i] = src[i];
			inv[i] = (i / n == i % n) ? 1.0 : 0.0;
		}
		if (tid() == 0) bad = 0;
		sync_threads();
		for (i64 c = 0; c < n; c++) {
			if (tid() == 0) {
				i64 p = c;
				double best = __builtin_fabs(a[c * n + c]);
				for (i64 r = c + 1; r < n; r++) {
					double v = __builtin_fabs(a[r * n + c]);
					if (v > best) {
						p = r;
						best = v;
					}
				}
				piv = p;
				if (best == 0 || best != best) bad = 1;
			}
			sync_threads();
			if (bad) break;
			i64 p = piv;
			if (p != c) {
				for (i64 j = tid(); j < n; j += BLOCK) {
					double t = a[p * n + j];
					a[p * n + j] = a[c * n + j];
					a[c * n + j] = t;
					t = inv[p * n + j];
					inv[p * n + j] = inv[c * n + j];
					inv[c * n + j] = t;
				}
				sync_threads();
			}
			double f = 1.0 / a[c * n + c];
			sync_threads();
			for (i64 j = tid(); j < n; j += BLOCK) {
				a[c * n + j] *= f;
				inv[c * n + j] *= f;
			}
			sync_threads();
			for (i64 r = tid(); r < n; r += BLOCK) {
				if (r == c) continue;
				double mlt = a[r * n + c];
				if (mlt == 0) continue;
				for (i64 j = c; j < n; j++) a[r * n + j] -= mlt * a[c * n + j];
				for (i64 j = 0; j < n; j++) inv[r * n + j] -= mlt * inv[c * n + j];
			}
			sync_threads();
		}
		float *out = d + bm * n * n;
		for (i64 i = tid(); i < n * n; i += BLOCK) out[i] = bad ? G_NAN : (float)inv[i];
		if (tid() == 0 && bad) atomic_add_i32(singular, 1);
		sync_threads();
	}
}

// k_gemm_beta scales C by beta (0 writes zeros): the K == 0 GEMM.
KERNEL k_gemm_beta(float *c, i64 batch, i64 m, i64 n, i64 ldc, i64 stride, float beta) {
	i64 total = batch * m * n;
	for (i64 i = gid(); i < total; i += gstride()) {
		i64 b = i / (m * n), r = (i / n) % m, j = i % n;
		float *p = c + b * stride + r * ldc + j;
		*p = beta == 0 ? 0.0f : beta * *p;
	}
}
