/* i8gemm.h — exact int8 matrix multiply: C (M, N) int32 = A (M, K) int8 . B^T,
 * with B (N, K) int8 the weights of a linear layer, packed once.
 *
 * The kernel is chosen at run time from the CPU: AVX-512 VNNI (vpdpbusd,
 * unsigned x signed bytes: A is shifted by +128 and 128 x the column sums of
 * B, kept with the packed matrix, are taken off again), AVX2 (bytes widened to
 * int16 and multiplied with vpmaddwd, which cannot saturate), or plain C.
 * All of them read the same packed layout and give the same, exact result.
 *
 *     qs_i8mat *w;
 *     if (qs_i8mat_pack(wq, N, K, &w) != QS_OK) return ...;  // wq (N, K) int8
 *     qs_i8_gemm(a, M, K, w, c, N);                          // a (M, K), c (M, N)
 *     qs_i8mat_free(w);
 *
 * qs_i8_gemm runs on the thread pool (pool.h); like the pool it serves one
 * caller at a time. Exactness: every kernel accumulates in int32; with
 * K <= QS_I8_KMAX = 65536 no sum can leave int32 (|C| <= 128 x 128 x K =
 * 2^30, and the VNNI kernel's shifted sum stays below 255 x 128 x K < 2^31),
 * so every result is exact for any input.
 */
#ifndef QS_I8GEMM_H
#define QS_I8GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Packed weights (opaque). Layout: panels of 16 output rows of B; inside a
 * panel, K in groups of 4 bytes, each group 16 rows x 4 bytes (64 bytes, the
 * operand of one vpdpbusd); N and K are zero-padded to whole panels/groups. */
typedef struct qs_i8mat qs_i8mat;

enum { QS_I8_KMAX = 65536 };

/* Pack b (N, K) int8, row stride K. *out is the caller's, freed with
 * qs_i8mat_free. QS_EARG for N, K < 1 or K > QS_I8_KMAX; QS_ENOMEM. */
qs_status qs_i8mat_pack(const int8_t *b, int N, int K, qs_i8mat **out);
void qs_i8mat_free(qs_i8mat *m);
/* Bytes the packed matrix holds (padded codes + column sums). */
size_t qs_i8mat_bytes(const qs_i8mat *m);
int qs_i8mat_n(const qs_i8mat *m);
int qs_i8mat_k(const qs_i8mat *m);
/* Row n of B back: dst (K). */
void qs_i8mat_row(const qs_i8mat *m, int n, int8_t *dst);
/* Column k of B back: dst (N) = B[:, k] (the outlier path reads these). */
void qs_i8mat_col(const qs_i8mat *m, int k, int8_t *dst);

/* c (M, N) row stride ldc = a (M, K) row stride lda . b^T, with the active
 * kernel, threaded over the pool. M >= 1; overwrites c. */
void qs_i8_gemm(const int8_t *a, int M, int lda, const qs_i8mat *b, int32_t *c, int ldc);

/* The reference: the same product in plain C from an unpacked b (N, K) row
 * stride ldb. Single-threaded; every kernel is tested against it. */
void qs_i8_gemm_ref(const int8_t *a, int M, int lda, const int8_t *b, int N, int K, int ldb,
                    int32_t *c, int ldc);

/* The active kernel: "avx512vnni", "avx2" or "ref". */
const char *qs_i8_kernel_name(void);
/* Select a kernel by name ("auto" or NULL: the best this CPU has). QS_EARG for
 * an unknown name, QS_EUNSUPPORTED when the CPU lacks it (the active kernel is
 * then unchanged). Not to be called while a qs_i8_gemm runs. */
qs_status qs_i8_set_kernel(const char *name);
/* Whether this CPU (and build) can run the named kernel. */
int qs_i8_kernel_available(const char *name);

#endif
