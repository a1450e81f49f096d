#include "kern/kern.h"

#include <cblas.h>
#include <lapacke.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

void qs_blas_linear(const float *x, int n, const float *w, const float *b, int n_out, int n_in, float *y) {
    if (n == 1) {
        if (b) {
            for (int i = 0; i < n_out; i++) y[i] = b[i];
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f, w, n_in, x, 1,
                        1.0f, y, 1);
        } else {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n_out, n_in, 1.0f, w, n_in, x, 1,
                        0.0f, y, 1);
        }
        return;
    }
    float beta = 0.0f;
    if (b) {
        for (int r = 0; r < n; r++) {
            float *yr = y + (size_t)r * n_out;
            for (int i = 0; i < n_out; i++) yr[i] = b[i];
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n_out, n_in, 1.0f, x, n_in,
                w, n_in, beta, y, n_out);
}

/* C (m, n) = alpha A (m, k) op(B) + beta C with op(B) = B^T (B stored (n, k))
 * or B (stored (k, n)); one row goes through sgemv (see qs_blas_linear). */
static void gemm(int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc) {
    if (m == 1) {
        if (trans_b) cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, b, ldb, a, 1, beta, c, 1);
        else cblas_sgemv(CblasRowMajor, CblasTrans, k, n, alpha, b, ldb, a, 1, beta, c, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
                beta, c, ldc);
}

void qs_blas_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc) {
    gemm(1, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void qs_blas_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc) {
    gemm(0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void qs_blas_gemm_tn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void qs_blas_gemv(int trans, int m, int n, float alpha, const float *a, int lda, const float *x,
                  float beta, float *y) {
    cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}

int qs_blas_threads(void) { return openblas_get_num_threads(); }

void qs_pool_run_blas1(int n_tasks, qs_pool_fn fn, void *ud) {
    int was = openblas_get_num_threads();
    openblas_set_num_threads(1);
    qs_pool_run(n_tasks, fn, ud);
    openblas_set_num_threads(was);
}

void qs_blas_set_threads(int n) {
    if (n > 0) openblas_set_num_threads(n);
}

const char *qs_blas_describe(void) {
    static char buf[256];
    int n = openblas_get_num_threads();
    snprintf(buf, sizeof buf, "%s, core %s, %d thread%s", openblas_get_config(), openblas_get_corename(), n,
             n == 1 ? "" : "s");
    return buf;
}

/* OpenBLAS's own choice on an AVX-512 CPU is one of these; OPENBLAS_CORETYPE can hold it to
 * an older core's kernels (Haswell's are 8 wide: half the sgemm rate where 16 wide runs) */
const char *qs_blas_core_note(void) {
    static char buf[256];
    const char *env = getenv("OPENBLAS_CORETYPE"), *core = openblas_get_corename();
    static const char *const wide[] = {"skylakex", "cooperlake", "sapphirerapids"};
    if (!env || !*env || !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vl") ||
        !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512dq"))
        return NULL;
    for (size_t i = 0; i < sizeof wide / sizeof *wide; i++)
        if (!strcasecmp(core, wide[i])) return NULL;
    snprintf(buf, sizeof buf,
             "OPENBLAS_CORETYPE=%s holds OpenBLAS to core %s's kernels on this AVX-512 CPU; unset it to let OpenBLAS "
             "choose (prefill's matrix products are sgemm)",
             env, core);
    return buf;
}

void qs_blas_dgemm(int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                   const double *b, int ldb, double beta, double *c, int ldc) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
}

void qs_blas_dsyrk_acc(int n, int dim, const double *x, double *c) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, n, 1.0, x, dim, 1.0, c, dim);
}

void qs_blas_symmetrize(int dim, double *c) {
    for (int i = 0; i < dim; i++)
        for (int j = i + 1; j < dim; j++) c[(size_t)j * dim + i] = c[(size_t)i * dim + j];
}

qs_status qs_lapack_eigh_desc(int dim, double *a, double *w) {
    /* dsyevd returns ascending eigenvalues with eigenvectors in columns;
     * reverse both so the leading columns carry the most variance */
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', dim, a, dim, w);
    if (info != 0) return qs_fail(QS_EARG, "eigendecomposition (dsyevd) of a %dx%d matrix failed (info %d)",
                                  dim, dim, (int)info);
    for (int i = 0; i < dim / 2; i++) {
        double t = w[i];
        w[i] = w[dim - 1 - i];
        w[dim - 1 - i] = t;
        for (int r = 0; r < dim; r++) {
            double *row = a + (size_t)r * dim;
            t = row[i];
            row[i] = row[dim - 1 - i];
            row[dim - 1 - i] = t;
        }
    }
    return QS_OK;
}

qs_status qs_lapack_orth_complete(int dim, int r, double *a) {
    if (r < 1 || r > dim) return qs_fail(QS_EARG, "orthonormal completion of %d columns in dimension %d", r, dim);
    double *tau = malloc((size_t)r * sizeof *tau);
    signed char *sign = malloc((size_t)r);
    if (!tau || !sign) {
        free(tau);
        free(sign);
        return qs_fail(QS_ENOMEM, "out of memory");
    }
    lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, dim, r, a, dim, tau);
    if (!info) {
        for (int i = 0; i < r; i++) sign[i] = a[(size_t)i * dim + i] < 0 ? -1 : 1;
        info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, dim, dim, r, a, dim, tau);
    }
    if (!info) /* the first r columns: the given ones, not their negatives */
        for (int row = 0; row < dim; row++)
            for (int i = 0; i < r; i++) a[(size_t)row * dim + i] *= sign[i];
    free(tau);
    free(sign);
    if (info) return qs_fail(QS_EARG, "QR (dgeqrf/dorgqr) of a %dx%d matrix failed (info %d)", dim, r, (int)info);
    return QS_OK;
}

qs_status qs_lapack_inv_chol_upper(int dim, double *a) {
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', dim, a, dim);
    if (info != 0)
        return qs_fail(QS_EARG, "Cholesky factorisation (dpotrf) of a %dx%d matrix failed (info %d): not positive definite",
                       dim, dim, (int)info);
    if ((info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', dim, a, dim)) != 0)
        return qs_fail(QS_EARG, "inverse from the Cholesky factor (dpotri) of a %dx%d matrix failed (info %d)", dim,
                       dim, (int)info);
    if ((info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', dim, a, dim)) != 0)
        return qs_fail(QS_EARG, "Cholesky factorisation (dpotrf) of a %dx%d inverse failed (info %d)", dim, dim,
                       (int)info);
    for (int i = 1; i < dim; i++) memset(a + (size_t)i * dim, 0, (size_t)i * sizeof(double));
    return QS_OK;
}
