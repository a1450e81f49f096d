/* blas.h — every BLAS and LAPACK call qscope makes goes through here, so the
 * choice of routine (GEMM for batches, GEMV for one row) lives in one place.
 *
 *     qs_blas_linear(x, n, &layer->q, y);   // y (n, q.n_out) = x (n, q.n_in) W^T + b
 */
#ifndef QS_BLAS_H
#define QS_BLAS_H

#include "model.h"

/* y (n, l->n_out) = x (n, l->n_in) . l->w^T + l->b. One row goes through
 * sgemv: sgemm with M = 1 repacks the whole matrix on every call. */
void qs_blas_linear(const float *x, int n, const qs_linear *l, float *y);

/* C (m, n) = alpha * A (m, k) . B^T + beta * C, with B stored (n, k); row
 * strides lda, ldb, ldc. */
void qs_blas_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc);
/* C (m, n) = alpha * A (m, k) . B + beta * C, with B stored (k, n). */
void qs_blas_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc);
/* y (m) = alpha * A (m, n) . x + beta * y  (trans = 0), or
 * y (n) = alpha * A^T x + beta * y (trans = 1); A row-major with stride lda. */
void qs_blas_gemv(int trans, int m, int n, float alpha, const float *a, int lda, const float *x,
                  float beta, float *y);

/* C (m, n) = alpha * op(A) . op(B) + beta * C in float64, row-major; op(X)
 * is X^T when its flag (ta, tb) is set; op(A) is (m, k), op(B) (k, n). */
void qs_blas_dgemm(int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                   const double *b, int ldb, double beta, double *c, int ldc);

/* C (dim, dim) += X^T X for X (n, dim) row-major, float64; upper triangle
 * only (mirror it with qs_blas_symmetrize). */
void qs_blas_dsyrk_acc(int n, int dim, const double *x, double *c);
void qs_blas_symmetrize(int dim, double *c);

/* Eigen-decomposition of a symmetric matrix a (dim, dim), float64, in place:
 * on return a's columns are the eigenvectors and w (dim) the eigenvalues,
 * both in descending order of eigenvalue (LAPACKE dsyevd). */
qs_status qs_lapack_eigh_desc(int dim, double *a, double *w);

/* GPTQ's inverse Hessian factor: a (dim, dim), symmetric positive definite,
 * float64, row-major, is replaced by the upper triangular U with
 * a^-1 = U^T U (dpotrf, dpotri, dpotrf, all on the upper triangle; the lower
 * triangle is zeroed). QS_EARG when a is not positive definite. */
qs_status qs_lapack_inv_chol_upper(int dim, double *a);

/* Threads OpenBLAS uses (and a setter; n <= 0 leaves it alone). */
int qs_blas_threads(void);
void qs_blas_set_threads(int n);
/* "OpenBLAS 0.3.21 (Haswell, 2 threads)" */
const char *qs_blas_describe(void);

#endif
