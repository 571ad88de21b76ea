/* Fused density attention on the CPU: statistics, gate and y = x * gate in one kernel, and its backward in one more.
 *
 * x is laid out (A, N, B), contiguous, with the statistics taken along N inside segments
 * [seg_start[s], seg_start[s + 1]) (one segment per head when heads are chunks of N, else one). The gate's
 * parameters come as a table (R, 3, K, W): row r = row_a[a] + row_n[n] (the head, when heads lie along A or N),
 * then (offset, -1/(2 scale^2), log weight) for K components, over W = 1 or W = B entries (B when heads lie along
 * B, so each column has its own head's parameters). A product of Gaussians is passed as K = 1: its one Gaussian.
 *
 *     z = (x - mean) / sqrt(var + eps)        (biased variance over the segment's real entries)
 *     gate = sum_k exp(logw_k + negc_k (z - mu_k)^2),   y = x * gate;   padding: gate 1, y = x
 *
 * Work is split into (a, segment, block of up to 1024 columns) items (a block's rows are contiguous memory, so a
 * segment of one item stays in cache between passes), so nothing is shared between threads but the parameter
 * gradients, which each thread accumulates privately. Inner loops run over contiguous b and vectorise; exp is
 * computed inline (every exponent here is <= 0, so it never overflows). Built once per machine by daam/fused.py. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define BLOCK 1024

/* exp(v) for v <= 0: 2^n * e^r with n = round(v / ln 2), |r| <= ln(2) / 2, e^r by its Taylor series to r^7
 * (relative error < 2e-7 there); v is clamped at -87, so the smallest result is exp(-87) ~ 1.6e-38, not a
 * denormal. */
static inline float exp_nonpositive(float v) {
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
    v = v < -87.0f ? -87.0f : v;
    float n = floorf(v * log2e + 0.5f);
    float r = v - n * ln2_hi - n * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}

typedef struct {
    int64_t A, N, B, S, R, K, W;
    const int32_t *seg_start, *row_a, *row_n;
    float eps;
} layout_t;

/* The (a, segment, block) work items, in order. */
static inline void item(const layout_t *L, int64_t i, int64_t *a, int64_t *s, int64_t *b0, int64_t *bw) {
    int64_t blocks = (L->B + BLOCK - 1) / BLOCK;
    *b0 = (i % blocks) * BLOCK;
    *bw = L->B - *b0 < BLOCK ? L->B - *b0 : BLOCK;
    *s = (i / blocks) % L->S;
    *a = i / (blocks * L->S);
}

static const uint8_t ALL_REAL[BLOCK] = {[0 ... BLOCK - 1] = 1};

/* The real-entry flags of the block row at offset off: every entry is real when there is no mask. */
static inline const uint8_t *flags(const uint8_t *real, int64_t off) { return real ? real + off : ALL_REAL; }

/* Mean and 1/sqrt(var + eps) of each column b of one work item, over the segment's real entries (the block stays in
 * cache between the two passes). Padding is selected away, never multiplied: it may be NaN or inf. */
static void statistics(const layout_t *L, const float *restrict x, const uint8_t *real, int64_t a, int64_t s,
                       int64_t b0, int64_t bw, float *restrict mean, float *restrict rstd) {
    float sum[BLOCK] = {0}, sq[BLOCK] = {0}, cnt[BLOCK] = {0};
    for (int64_t n = L->seg_start[s]; n < L->seg_start[s + 1]; n++) {
        int64_t off = (a * L->N + n) * L->B + b0;
        const uint8_t *restrict mr = flags(real, off);
        for (int64_t b = 0; b < bw; b++) {
            sum[b] += mr[b] ? x[off + b] : 0.0f;
            cnt[b] += mr[b] ? 1.0f : 0.0f;
        }
    }
    for (int64_t b = 0; b < bw; b++) mean[b] = sum[b] / (cnt[b] > 1.0f ? cnt[b] : 1.0f);
    for (int64_t n = L->seg_start[s]; n < L->seg_start[s + 1]; n++) {
        int64_t off = (a * L->N + n) * L->B + b0;
        const uint8_t *restrict mr = flags(real, off);
        for (int64_t b = 0; b < bw; b++) {
            float d = mr[b] ? x[off + b] - mean[b] : 0.0f;
            sq[b] += d * d;
        }
    }
    for (int64_t b = 0; b < bw; b++) rstd[b] = 1.0f / sqrtf(sq[b] / (cnt[b] > 1.0f ? cnt[b] : 1.0f) + L->eps);
}

/* The parameters of the item's row for its columns, as (3, K, BLOCK) local arrays: the row is the same for every
 * entry of a work item (its head, when heads lie along A or N), and W == 1 broadcasts one value over the columns. */
static void load_parameters(const layout_t *L, const float *table, int64_t r, int64_t b0, int64_t bw, float *p) {
    for (int64_t j = 0; j < 3 * L->K; j++) {
        const float *row = table + (r * 3 * L->K + j) * L->W;
        for (int64_t b = 0; b < bw; b++) p[j * BLOCK + b] = L->W == 1 ? row[0] : row[b0 + b];
    }
}

/* z of one row of a block; padding (which may be NaN or inf) gets 0. */
static inline void standardise(const float *restrict x, const uint8_t *restrict mr, const float *restrict mean,
                               const float *restrict rstd, int64_t bw, float *restrict z) {
    for (int64_t b = 0; b < bw; b++) z[b] = mr[b] ? (x[b] - mean[b]) * rstd[b] : 0.0f;
}

void daam_fused_forward(const float *x, const uint8_t *real, int64_t A, int64_t N, int64_t B, const int32_t *seg_start,
                        int64_t S, const int32_t *row_a, const int32_t *row_n, int64_t R, int64_t K, int64_t W,
                        const float *table, float eps, float *y, float *gate, float *z_out, float *mean_out,
                        float *rstd_out, int threads) {
    layout_t L = {A, N, B, S, R, K, W, seg_start, row_a, row_n, eps};
    int64_t items = A * S * ((B + BLOCK - 1) / BLOCK);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < items; i++) {
        int64_t a, s, b0, bw;
        item(&L, i, &a, &s, &b0, &bw);
        float mean[BLOCK], rstd[BLOCK], *p = malloc(sizeof(float) * 3 * K * BLOCK);
        statistics(&L, x, real, a, s, b0, bw, mean, rstd);
        load_parameters(&L, table, row_a[a] + row_n[seg_start[s]], b0, bw, p);
        for (int64_t b = 0; b < bw; b++) {
            mean_out[(a * S + s) * B + b0 + b] = mean[b];
            rstd_out[(a * S + s) * B + b0 + b] = rstd[b];
        }
        for (int64_t n = seg_start[s]; n < seg_start[s + 1]; n++) {
            int64_t off = (a * N + n) * B + b0;
            const uint8_t *mr = flags(real, off);
            float g[BLOCK] = {0}, z[BLOCK];
            standardise(x + off, mr, mean, rstd, bw, z);
            for (int64_t k = 0; k < K; k++) {
                const float *mu = p + k * BLOCK, *nc = p + (K + k) * BLOCK, *lw = p + (2 * K + k) * BLOCK;
                for (int64_t b = 0; b < bw; b++) {
                    float d = z[b] - mu[b];
                    g[b] += exp_nonpositive(lw[b] + nc[b] * d * d);
                }
            }
            for (int64_t b = 0; b < bw; b++) {
                int keep = mr[b];
                float gb = keep ? g[b] : 1.0f;
                y[off + b] = keep ? x[off + b] * gb : x[off + b];
                if (gate) gate[off + b] = gb;
                if (z_out) z_out[off + b] = z[b];
            }
        }
        free(p);
    }
}

/* Gradients of sum(grad_y * y) with respect to x and the parameter table (accumulated into grad_table). */
void daam_fused_backward(const float *x, const uint8_t *real, const float *grad_y, int64_t A, int64_t N, int64_t B,
                         const int32_t *seg_start, int64_t S, const int32_t *row_a, const int32_t *row_n, int64_t R,
                         int64_t K, int64_t W, const float *table, const float *mean_in, const float *rstd_in,
                         float *grad_x, float *grad_table, int threads) {
    layout_t L = {A, N, B, S, R, K, W, seg_start, row_a, row_n, 0.0f};
    int64_t items = A * S * ((B + BLOCK - 1) / BLOCK), table_size = R * 3 * K * W;
    float *private_grads = calloc((size_t)threads * table_size, sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        float *mine = private_grads + (int64_t)omp_get_thread_num() * table_size;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < items; i++) {
            int64_t a, s, b0, bw;
            item(&L, i, &a, &s, &b0, &bw);
            int64_t len = seg_start[s + 1] - seg_start[s], r = row_a[a] + row_n[seg_start[s]];
            float *grad_z = malloc(sizeof(float) * len * BLOCK);
            float sum_gz[BLOCK] = {0}, sum_gzz[BLOCK] = {0}, cnt[BLOCK] = {0};
            float *p = malloc(sizeof(float) * 3 * K * BLOCK), *acc = calloc(3 * K * BLOCK, sizeof(float));
            const float *mean = mean_in + (a * S + s) * B + b0, *rstd = rstd_in + (a * S + s) * B + b0;
            load_parameters(&L, table, r, b0, bw, p);
            for (int64_t n = seg_start[s]; n < seg_start[s + 1]; n++) {
                int64_t off = (a * N + n) * B + b0;
                const uint8_t *mr = flags(real, off);
                float z[BLOCK], g[BLOCK] = {0}, dg[BLOCK] = {0}, up[BLOCK];
                standardise(x + off, mr, mean, rstd, bw, z);
                for (int64_t b = 0; b < bw; b++) up[b] = mr[b] ? grad_y[off + b] * x[off + b] : 0.0f;  /* d loss / d gate */
                for (int64_t k = 0; k < K; k++) {
                    const float *mu = p + k * BLOCK, *nc = p + (K + k) * BLOCK, *lw = p + (2 * K + k) * BLOCK;
                    float *a_mu = acc + k * BLOCK, *a_nc = acc + (K + k) * BLOCK, *a_lw = acc + (2 * K + k) * BLOCK;
                    for (int64_t b = 0; b < bw; b++) {
                        float d = z[b] - mu[b], t = exp_nonpositive(lw[b] + nc[b] * d * d), ut = up[b] * t;
                        g[b] += t;
                        dg[b] += 2.0f * nc[b] * d * t;
                        a_lw[b] += ut;
                        a_mu[b] -= 2.0f * nc[b] * d * ut;
                        a_nc[b] += d * d * ut;
                    }
                }
                float *gz = grad_z + (n - seg_start[s]) * BLOCK;
                for (int64_t b = 0; b < bw; b++) {
                    int keep = mr[b];
                    gz[b] = up[b] * dg[b];
                    sum_gz[b] += gz[b];
                    sum_gzz[b] += gz[b] * z[b];
                    cnt[b] += keep;
                    grad_x[off + b] = keep ? grad_y[off + b] * g[b] : grad_y[off + b];
                }
            }
            for (int64_t j = 0; j < 3 * K; j++) {  /* this item's parameter gradients, into the thread's table */
                float *row = mine + (r * 3 * K + j) * W;
                for (int64_t b = 0; b < bw; b++) row[W == 1 ? 0 : b0 + b] += acc[j * BLOCK + b];
            }
            /* Through the statistics: d z / d x = rstd (I - 1/n - z z^T / n) on the segment's real entries. */
            for (int64_t b = 0; b < bw; b++) {
                float c = cnt[b] > 1.0f ? cnt[b] : 1.0f;
                sum_gz[b] /= c;
                sum_gzz[b] /= c;
            }
            for (int64_t n = seg_start[s]; n < seg_start[s + 1]; n++) {
                int64_t off = (a * N + n) * B + b0;
                const uint8_t *mr = flags(real, off);
                const float *gz = grad_z + (n - seg_start[s]) * BLOCK;
                float z[BLOCK];
                standardise(x + off, mr, mean, rstd, bw, z);
                for (int64_t b = 0; b < bw; b++)
                    grad_x[off + b] += !mr[b] ? 0.0f : rstd[b] * (gz[b] - sum_gz[b] - z[b] * sum_gzz[b]);
            }
            free(grad_z);
            free(p);
            free(acc);
        }
    }
    for (int t = 0; t < threads; t++)
        for (int64_t j = 0; j < table_size; j++) grad_table[j] += private_grads[t * table_size + j];
    free(private_grads);
}
