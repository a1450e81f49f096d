/* safetensors.h — a bounds-checked reader for .safetensors files.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of
 * JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * optional "__metadata__"}), then the tensor data, offsets relative to byte
 * 8 + N. The reader maps the file, parses and checks the whole header once
 * (header length, every dtype, shape and data range against the file size),
 * and then hands out tensors by name, converted to fp32.
 *
 *     qs_st_file *f;
 *     if (qs_st_open("dir/model.safetensors", &f) != QS_OK) return ...;
 *     const qs_st_tensor *t = qs_st_find(f, "lm_head.weight");
 *     const float *w;                        // (shape[0], shape[1])
 *     if (t && qs_st_to_f32(f, t, store, &w) == QS_OK) ...;
 *     qs_st_close(f);                        // w stays valid: store owns it
 *
 * F32 tensors whose data is 4-byte aligned in the map are borrowed: the first
 * borrow moves the file's map into the store, so the pointer lives as long as
 * the store. F16/BF16 (and unaligned F32) are converted into a store buffer.
 * Other dtypes (I64, F8_E4M3, ...) are parsed and bounds-checked but only
 * readable as raw bytes: qs_st_to_f32 fails with QS_EUNSUPPORTED naming the
 * tensor and its dtype.
 */
#ifndef QS_SAFETENSORS_H
#define QS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "io.h"
#include "status.h"

#define QS_ST_MAX_DIMS 8

typedef enum {
    QS_ST_F32 = 0,
    QS_ST_F16,
    QS_ST_BF16,
    QS_ST_F64,
    QS_ST_I64,
    QS_ST_U64,
    QS_ST_I32,
    QS_ST_U32,
    QS_ST_I16,
    QS_ST_U16,
    QS_ST_I8,
    QS_ST_U8,
    QS_ST_BOOL,
    QS_ST_F8_E4M3,
    QS_ST_F8_E5M2,
    QS_ST_N_DTYPES
} qs_st_dtype;

typedef struct {
    char *name;
    qs_st_dtype dtype;
    int n_dims;
    int64_t shape[QS_ST_MAX_DIMS]; /* (n_dims), slowest first, as torch */
    int64_t numel;
    const uint8_t *data; /* (nbytes) inside the file map */
    size_t nbytes;
} qs_st_tensor;

typedef struct qs_st_file qs_st_file;

/* Map and parse a file. Every failure names the file: QS_EIO (open/map),
 * QS_EFORMAT (truncated, bad JSON, a range past the end, a byte count that
 * disagrees with dtype x shape, an unknown dtype string). */
qs_status qs_st_open(const char *path, qs_st_file **out);
/* Unmaps the file unless a borrow moved the map into a store. NULL: no-op. */
void qs_st_close(qs_st_file *f);

const char *qs_st_path(const qs_st_file *f);
size_t qs_st_count(const qs_st_file *f);
const qs_st_tensor *qs_st_tensor_at(const qs_st_file *f, size_t i); /* sorted by name */
/* NULL when absent (O(log n)). */
const qs_st_tensor *qs_st_find(const qs_st_file *f, const char *name);

const char *qs_st_dtype_str(qs_st_dtype d); /* "F32", "BF16", ... */
size_t qs_st_dtype_size(qs_st_dtype d);     /* bytes per element */

/* fp32 view of a F32/F16/BF16 tensor: borrowed from the map when possible,
 * else converted into a buffer allocated from store. Any other dtype:
 * QS_EUNSUPPORTED ("<file>: tensor 'x' has dtype I64; qscope reads F32,
 * F16 and BF16"). Use the same store for every call on one file. */
qs_status qs_st_to_f32(qs_st_file *f, const qs_st_tensor *t, qs_store *store, const float **out);
/* Convert into caller memory dst (numel floats); same dtype rules. */
qs_status qs_st_read_f32(const qs_st_file *f, const qs_st_tensor *t, float *dst);

/* "[a,b,c]" into buf (returns buf). */
char *qs_st_shape_str(const qs_st_tensor *t, char *buf, size_t cap);

#endif
