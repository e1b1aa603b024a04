/* ticketlab's CSR kernels for CPUs, all float32 with int32 indices: sparse weight times dense
 * activations and its transpose, the sampled product that gives the kept weights' gradient
 * (SDDMM), the ReLU and bias gradients in one pass, and a blocked transpose.
 *
 * Activations are stored (features, batch): row c of xt is feature c over the batch, so a
 * kept weight (r, c) scales one contiguous row of xt into one contiguous row of y and the
 * batch dimension is what the vector units run over. Every output element is the same
 * sequence of IEEE operations whatever its place in the batch and whichever path (32-wide,
 * 8-wide, scalar) computes it: start from the bias, then for each kept weight in column order
 * round the product, then round the sum. That holds because the library is built with
 * -ffp-contract=off (no multiply-add is ever fused, so no path fuses some and another not,
 * whatever -march picks, FMA or not) and no -ffast-math: a result does not depend on the
 * batch it was computed in, nor on the instruction set it was built for.
 *
 * `tl_csr_chain` runs a whole chain of CSR layers in one call, for the inference runtime.
 *
 * Compiled on first use by ticketlab/kernels/__init__.py with the machine's C compiler
 * (-O3 -ffp-contract=off -march=$TICKETLAB_NATIVE_MARCH, default native); GCC/Clang vector
 * extensions, no intrinsics, no other dependency. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
/* s in every lane, with no arithmetic (0 + -0 would be +0 where the scalar path keeps -0) */
static inline v8 splat8(float s) { return (v8){s, s, s, s, s, s, s, s}; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }
/* ReLU as torch's: negatives to zero, NaN kept */
static inline v8 relu8(v8 v) { v8 z = {0}; return (v8)((vi8)v & ~(v < z)); }
static inline float relu1(float v) { return v < 0.f ? 0.f : v; }

/* Batches under 8, four columns at a time then one, in scalar code: left to itself the
 * compiler vectorizes the inner loop over k with gathers, three times slower here. */
#if defined(__clang__)
#define SCALAR_LOOP _Pragma("clang loop vectorize(disable)")
#define SCALAR_FUNCTION
#else
#define SCALAR_LOOP
#define SCALAR_FUNCTION __attribute__((optimize("no-tree-vectorize")))
#endif

SCALAR_FUNCTION
static void csr_mm_columns(const int32_t *crow, const int32_t *col, const float *val, const float *bias,
                           const float *xt, int64_t n_out, int64_t batch, int relu, float *y) {
    int64_t j = 0;
    for (; j + 4 <= batch; j += 4) {
        for (int64_t r = 0; r < n_out; r++) {
            float a0 = bias ? bias[r] : 0.f, a1 = a0, a2 = a0, a3 = a0;
            SCALAR_LOOP
            for (int32_t k = crow[r]; k < crow[r + 1]; k++) {
                const float *x = xt + (int64_t)col[k] * batch + j;
                const float v = val[k];
                a0 += v * x[0]; a1 += v * x[1]; a2 += v * x[2]; a3 += v * x[3];
            }
            float *out = y + r * batch + j;
            out[0] = relu ? relu1(a0) : a0; out[1] = relu ? relu1(a1) : a1;
            out[2] = relu ? relu1(a2) : a2; out[3] = relu ? relu1(a3) : a3;
        }
    }
    for (; j < batch; j++) {
        for (int64_t r = 0; r < n_out; r++) {
            float a = bias ? bias[r] : 0.f;
            SCALAR_LOOP
            for (int32_t k = crow[r]; k < crow[r + 1]; k++) a += val[k] * xt[(int64_t)col[k] * batch + j];
            y[r * batch + j] = relu ? relu1(a) : a;
        }
    }
}

#define BLOCK 32  /* batch columns per pass: four 8-wide accumulators held in registers */

static inline void block32(const int32_t *crow, const int32_t *col, const float *val, const float *bias,
                           const float *xt, int64_t r, int64_t batch, int64_t j, int relu, float *y) {
    const v8 b = splat8(bias ? bias[r] : 0.f);
    v8 a0 = b, a1 = b, a2 = b, a3 = b;
    for (int32_t k = crow[r]; k < crow[r + 1]; k++) {
        const float *x = xt + (int64_t)col[k] * batch + j;
        const float v = val[k];
        a0 += v * load8(x); a1 += v * load8(x + 8); a2 += v * load8(x + 16); a3 += v * load8(x + 24);
    }
    if (relu) { a0 = relu8(a0); a1 = relu8(a1); a2 = relu8(a2); a3 = relu8(a3); }
    float *out = y + r * batch + j;
    store8(out, a0); store8(out + 8, a1); store8(out + 16, a2); store8(out + 24, a3);
}

static inline void block8(const int32_t *crow, const int32_t *col, const float *val, const float *bias,
                          const float *xt, int64_t r, int64_t batch, int64_t j, int relu, float *y) {
    v8 a = splat8(bias ? bias[r] : 0.f);
    for (int32_t k = crow[r]; k < crow[r + 1]; k++) a += val[k] * load8(xt + (int64_t)col[k] * batch + j);
    store8(y + r * batch + j, relu ? relu8(a) : a);
}

/* y (n_out x batch) = W xt + bias (bias may be NULL); with relu, max(., 0) on the way out.
 * W: CSR (crow[n_out + 1], col[nnz], val[nnz]); xt: (n_in x batch), contiguous. Blocks of
 * 32 columns (8 below a batch of 32); a batch that is not a multiple ends with one block
 * flush with its end, overlapping the one before: the overlapped columns are computed again
 * in the same order, so they are written with the values they already hold. */
void tl_csr_mm(const int32_t *crow, const int32_t *col, const float *val, const float *bias,
               const float *xt, int64_t n_out, int64_t batch, int relu, float *y) {
    if (batch >= BLOCK) {
        for (int64_t r = 0; r < n_out; r++) {  /* a row of W at a time: its rows of xt stay in L1 */
            int64_t j = 0;
            for (; j + BLOCK <= batch; j += BLOCK) block32(crow, col, val, bias, xt, r, batch, j, relu, y);
            if (j < batch) block32(crow, col, val, bias, xt, r, batch, batch - BLOCK, relu, y);
        }
    } else if (batch >= 8) {
        for (int64_t r = 0; r < n_out; r++) {
            int64_t j = 0;
            for (; j + 8 <= batch; j += 8) block8(crow, col, val, bias, xt, r, batch, j, relu, y);
            if (j < batch) block8(crow, col, val, bias, xt, r, batch, batch - 8, relu, y);
        }
    } else {
        csr_mm_columns(crow, col, val, bias, xt, n_out, batch, relu, y);
    }
}

static inline float hsum8(v8 a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* Lanes 8 - n .. 7 set: the last n of 8 floats ending at a batch's end. */
static inline v8 last_lanes(v8 v, int64_t n) {
    vi8 lane = {0, 1, 2, 3, 4, 5, 6, 7}, keep = lane >= (vi8){0} + (int32_t)(8 - n);
    return (v8)((vi8)v & keep);
}

/* dot(g, x) over a batch: 8 lanes from j = 0, then the last batch % 8 terms as one more
 * 8-wide step ending at the batch's end with its already-counted lanes zeroed (batch >= 8),
 * else in scalar code; then the lanes, pairwise. */
static inline float finish_dot(v8 a, const float *g, const float *x, int64_t j, int64_t batch) {
    if (j < batch && batch >= 8) {
        a += last_lanes(load8(g + batch - 8), batch - j) * last_lanes(load8(x + batch - 8), batch - j);
        j = batch;
    }
    float s = hsum8(a);
    for (; j < batch; j++) s += g[j] * x[j];
    return s;
}

/* out[k] = sum over the batch of gyt[r, :] * xt[col[k], :] for each kept (r, col[k]): the
 * gradient of the kept weights, (dL/dy)^T x sampled at W's non-zeros. gyt: (n_out x batch),
 * xt: (n_in x batch), both contiguous. Four kept weights of a row at a time share the loads
 * of gyt's row and keep four sums in flight; each dot product is summed in the same order
 * either way (`finish_dot`). */
void tl_sddmm(const int32_t *crow, const int32_t *col, const float *gyt, const float *xt,
              int64_t n_out, int64_t batch, float *out) {
    for (int64_t r = 0; r < n_out; r++) {
        const float *g = gyt + r * batch;
        int32_t k = crow[r];
        for (; k + 4 <= crow[r + 1]; k += 4) {
            const float *x0 = xt + (int64_t)col[k] * batch, *x1 = xt + (int64_t)col[k + 1] * batch,
                        *x2 = xt + (int64_t)col[k + 2] * batch, *x3 = xt + (int64_t)col[k + 3] * batch;
            v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            int64_t j = 0;
            for (; j + 8 <= batch; j += 8) {
                const v8 gj = load8(g + j);
                a0 += gj * load8(x0 + j);
                a1 += gj * load8(x1 + j);
                a2 += gj * load8(x2 + j);
                a3 += gj * load8(x3 + j);
            }
            out[k] = finish_dot(a0, g, x0, j, batch);
            out[k + 1] = finish_dot(a1, g, x1, j, batch);
            out[k + 2] = finish_dot(a2, g, x2, j, batch);
            out[k + 3] = finish_dot(a3, g, x3, j, batch);
        }
        for (; k < crow[r + 1]; k++) {
            const float *x0 = xt + (int64_t)col[k] * batch;
            v8 a0 = {0};
            int64_t j = 0;
            for (; j + 8 <= batch; j += 8) a0 += load8(g + j) * load8(x0 + j);
            out[k] = finish_dot(a0, g, x0, j, batch);
        }
    }
}

/* The output gradient's last steps in one pass over gyt (rows x batch): with y (the layer's
 * ReLU'd output) the gradient through that ReLU into `out` (0 where y <= 0, as torch: a NaN
 * output passes it); with `sums`, each row's sum over the batch (the bias gradient: 8 lanes,
 * pairwise, then the last batch % 8 terms). */
void tl_grad_rows(const float *gyt, const float *y, int64_t rows, int64_t batch, float *out, float *sums) {
    const v8 zero = {0};
    for (int64_t r = 0; r < rows; r++) {
        const float *g = gyt + r * batch;
        const float *yr = y ? y + r * batch : NULL;
        float *o = y ? out + r * batch : NULL;
        v8 a = {0};
        int64_t j = 0;
        for (; j + 8 <= batch; j += 8) {
            v8 v = load8(g + j);
            if (yr) {
                v = (v8)((vi8)v & ~(load8(yr + j) <= zero));
                store8(o + j, v);
            }
            a += v;
        }
        float s = hsum8(a);
        for (; j < batch; j++) {
            const float v = yr && yr[j] <= 0.f ? 0.f : g[j];
            if (o) o[j] = v;
            s += v;
        }
        if (sums) sums[r] = s;
    }
}

/* gxt (n_in x batch) = W^T gyt for W in CSR and gyt (n_out x batch): each kept weight adds
 * its row of gyt, scaled, into one row of gxt (the input's gradient without W^T's pattern). */
void tl_csr_mm_t(const int32_t *crow, const int32_t *col, const float *val, const float *gyt,
                 int64_t n_out, int64_t n_in, int64_t batch, float *gxt) {
    memset(gxt, 0, sizeof(float) * n_in * batch);
    for (int64_t r = 0; r < n_out; r++) {
        const float *g = gyt + r * batch;
        for (int32_t k = crow[r]; k < crow[r + 1]; k++) {
            float *o = gxt + (int64_t)col[k] * batch;
            const float v = val[k];
            int64_t j = 0;
            for (; j + 8 <= batch; j += 8) store8(o + j, load8(o + j) + v * load8(g + j));
            for (; j < batch; j++) o[j] += v * g[j];
        }
    }
}

/* out[j * ldo + i] = x[i * ldx + j] for i < rows, j < cols: 8x8 blocks transposed in
 * registers (GCC 12+ and Clang have __builtin_shufflevector), the edges element by element. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define SHUF __builtin_shufflevector
static inline void transpose8(const float *x, int64_t ldx, float *out, int64_t ldo) {
    v8 r0 = load8(x), r1 = load8(x + ldx), r2 = load8(x + 2 * ldx), r3 = load8(x + 3 * ldx),
       r4 = load8(x + 4 * ldx), r5 = load8(x + 5 * ldx), r6 = load8(x + 6 * ldx), r7 = load8(x + 7 * ldx);
    v8 t0 = SHUF(r0, r1, 0, 8, 1, 9, 4, 12, 5, 13), t1 = SHUF(r0, r1, 2, 10, 3, 11, 6, 14, 7, 15);
    v8 t2 = SHUF(r2, r3, 0, 8, 1, 9, 4, 12, 5, 13), t3 = SHUF(r2, r3, 2, 10, 3, 11, 6, 14, 7, 15);
    v8 t4 = SHUF(r4, r5, 0, 8, 1, 9, 4, 12, 5, 13), t5 = SHUF(r4, r5, 2, 10, 3, 11, 6, 14, 7, 15);
    v8 t6 = SHUF(r6, r7, 0, 8, 1, 9, 4, 12, 5, 13), t7 = SHUF(r6, r7, 2, 10, 3, 11, 6, 14, 7, 15);
    v8 u0 = SHUF(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13), u1 = SHUF(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
    v8 u2 = SHUF(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13), u3 = SHUF(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
    v8 u4 = SHUF(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13), u5 = SHUF(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
    v8 u6 = SHUF(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13), u7 = SHUF(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
    store8(out, SHUF(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11));
    store8(out + ldo, SHUF(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11));
    store8(out + 2 * ldo, SHUF(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11));
    store8(out + 3 * ldo, SHUF(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11));
    store8(out + 4 * ldo, SHUF(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15));
    store8(out + 5 * ldo, SHUF(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15));
    store8(out + 6 * ldo, SHUF(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15));
    store8(out + 7 * ldo, SHUF(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15));
}
#define HAVE_TRANSPOSE8 1
#endif

static void transpose_into(const float *x, int64_t ldx, int64_t rows, int64_t cols, float *out, int64_t ldo) {
    int64_t i = 0;
#if HAVE_TRANSPOSE8
    for (; i + 8 <= rows; i += 8) {
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) transpose8(x + i * ldx + j, ldx, out + j * ldo + i, ldo);
        for (; j < cols; j++)
            for (int64_t k = i; k < i + 8; k++) out[j * ldo + k] = x[k * ldx + j];
    }
#endif
    for (; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) out[j * ldo + i] = x[i * ldx + j];
}

/* out (cols x rows) = x^T for a contiguous x (rows x cols). */
void tl_transpose(const float *x, int64_t rows, int64_t cols, float *out) {
    transpose_into(x, cols, rows, cols, out, rows);
}

#define CHAIN 32  /* batch columns a chain carries through all its layers at a time */

/* A chain of CSR layers, as one call: out (batch x n_out_last) from x (batch x n_in), both
 * row-major. `layers` holds 6 int64 per layer: crow, col, val, bias (pointers; bias may be
 * 0), n_out, relu. Blocks of CHAIN inputs are transposed into a scratch buffer and carried
 * through every layer while they sit in cache. Returns 0, or -1 if scratch memory failed. */
int tl_csr_chain(int64_t n_layers, const int64_t *layers, const float *x, int64_t batch, int64_t n_in,
                 float *out) {
    int64_t widest = n_in;
    for (int64_t l = 0; l < n_layers; l++)
        if (layers[6 * l + 4] > widest) widest = layers[6 * l + 4];
    float *a = malloc(sizeof(float) * widest * CHAIN), *b = malloc(sizeof(float) * widest * CHAIN);
    if (!a || !b) { free(a); free(b); return -1; }
    const int64_t n_last = layers[6 * (n_layers - 1) + 4];
    for (int64_t b0 = 0; b0 < batch; b0 += CHAIN) {
        const int64_t w = batch - b0 < CHAIN ? batch - b0 : CHAIN;
        transpose_into(x + b0 * n_in, n_in, w, n_in, a, w);
        for (int64_t l = 0; l < n_layers; l++) {
            const int64_t *d = layers + 6 * l;
            tl_csr_mm((const int32_t *)d[0], (const int32_t *)d[1], (const float *)d[2], (const float *)d[3],
                      a, d[4], w, (int)d[5], b);
            float *t = a; a = b; b = t;
        }
        transpose_into(a, w, n_last, w, out + b0 * n_last, n_last);
    }
    free(a); free(b);
    return 0;
}
