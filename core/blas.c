#include "blas.h"

#include <cblas.h>
#include <stdio.h>

void qs_blas_linear(const float *x, int n, const qs_linear *l, float *y) {
    if (n == 1) {
        if (l->b) {
            for (int i = 0; i < l->n_out; i++) y[i] = l->b[i];
            cblas_sgemv(CblasRowMajor, CblasNoTrans, l->n_out, l->n_in, 1.0f, l->w, l->n_in, x, 1,
                        1.0f, y, 1);
        } else {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, l->n_out, l->n_in, 1.0f, l->w, l->n_in, x, 1,
                        0.0f, y, 1);
        }
        return;
    }
    float beta = 0.0f;
    if (l->b) {
        for (int r = 0; r < n; r++) {
            float *yr = y + (size_t)r * l->n_out;
            for (int i = 0; i < l->n_out; i++) yr[i] = l->b[i];
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->n_out, l->n_in, 1.0f, x, l->n_in,
                l->w, l->n_in, beta, y, l->n_out);
}

void qs_blas_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc) {
    if (m == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, b, ldb, a, 1, beta, c, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void qs_blas_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc) {
    if (m == 1) {
        cblas_sgemv(CblasRowMajor, CblasTrans, k, n, alpha, b, ldb, a, 1, beta, c, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void qs_blas_gemv(int trans, int m, int n, float alpha, const float *a, int lda, const float *x,
                  float beta, float *y) {
    cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}

int qs_blas_threads(void) { return openblas_get_num_threads(); }

void qs_blas_set_threads(int n) {
    if (n > 0) openblas_set_num_threads(n);
}

const char *qs_blas_describe(void) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s, core %s, %d threads", openblas_get_config(),
             openblas_get_corename(), openblas_get_num_threads());
    return buf;
}
