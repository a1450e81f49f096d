/* read/read.h — the public interface of core/read/. Sections: safetensors, gguf, llama2.c. */
#ifndef QS_READ_H
#define QS_READ_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "kern/kern.h"

/* ---- safetensors.h — a bounds-checked reader for .safetensors files.
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
#define QS_ST_MAX_DIMS 8
/* The longest JSON header read, as the reference implementation's limit. */
#define QS_ST_MAX_HEADER 100000000

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
/* A tensor's bytes as stored, kept readable while store lives (the map
 * moves into it, as qs_st_to_f32 borrows). */
qs_status qs_st_bytes(qs_st_file *f, const qs_st_tensor *t, qs_store *store, const void **out);
/* Convert into caller memory dst (numel floats); same dtype rules. */
qs_status qs_st_read_f32(const qs_st_file *f, const qs_st_tensor *t, float *dst);

/* "[a,b,c]" into buf (returns buf). */
char *qs_st_shape_str(const qs_st_tensor *t, char *buf, size_t cap);

/* ---- gguf.h — a bounds-checked GGUF v3 reader, and the RoPE row order shared
 * by GGUF and llama2.c checkpoints.
 *
 * GGUF: magic "GGUF", u32 version (3), u64 tensor count, u64 key/value
 * count, the key/values (typed scalars, strings, arrays), the tensor infos
 * (name, dims ne[] fastest first, ggml type, offset), then the tensor data
 * from the first multiple of general.alignment (default 32). The reader maps
 * the file and checks every length, count and tensor extent against the file
 * size before it reads or allocates, so a corrupted file gives QS_EFORMAT
 * naming the file, never a crash.
 *
 *     qs_gguf *g;
 *     if (qs_gguf_open("stories260K.gguf", &g) != QS_OK) return ...;
 *     const qs_gguf_kv *kv = qs_gguf_get(g, "llama.block_count");
 *     int64_t n;
 *     if (kv && qs_gguf_kv_int(kv, &n)) ...;
 *     const qs_gguf_tensor *t = qs_gguf_find(g, "token_embd.weight");
 *     const float *w;   // (ne[1], ne[0]): ne[0] is the fastest dimension
 *     qs_gguf_to_f32(g, t, store, &w);
 *     qs_gguf_close(g);  // w stays valid: store owns it
 *
 * The model loader built on it, qs_gguf_load(), is declared in loaders.h.
 */
/* The value types of GGUF metadata, numbered as the format numbers them. */
typedef enum {
    QS_GGUF_U8, QS_GGUF_I8, QS_GGUF_U16, QS_GGUF_I16, QS_GGUF_U32, QS_GGUF_I32, QS_GGUF_F32, /* 0..6 */
    QS_GGUF_BOOL, QS_GGUF_STRING, QS_GGUF_ARRAY,                                          /* 7..9 */
    QS_GGUF_U64, QS_GGUF_I64, QS_GGUF_F64,                                                /* 10..12 */
} qs_gguf_type;

/* ggml tensor types qscope converts; others are named in errors only. */
enum { QS_GGML_F32 = 0, QS_GGML_F16 = 1, QS_GGML_BF16 = 30 };

/* Limits of the GGUF reader, far above any real model's and low enough that
 * no count or byte size computed from them overflows; a file past one is
 * refused naming it. A tensor has 1 to 4 dimensions, each at most 2^40, and
 * at most 2^56 elements (as safetensors). */
#define QS_GGUF_MAX_TENSORS (1 << 20)
#define QS_GGUF_MAX_KV (1 << 16)
#define QS_GGUF_MAX_NAME 256        /* bytes of a key or a tensor name */
#define QS_GGUF_MAX_STRING (1 << 24) /* bytes of a string value (a chat template) */
#define QS_GGUF_MAX_ARRAY (1 << 24)  /* elements of an array (a vocabulary and its scores) */

typedef struct {
    char *key;
    qs_gguf_type type;
    union {
        uint64_t u; /* U8..U64, BOOL */
        int64_t i;  /* I8..I64 */
        double f;   /* F32, F64 */
    } num;
    char *str;               /* STRING */
    qs_gguf_type arr_type;   /* ARRAY: element type */
    uint64_t arr_n;          /* ARRAY: element count */
    const uint8_t *arr_data; /* ARRAY of numbers: (arr_n) little-endian values in the map, unaligned */
    char **arr_str;          /* ARRAY of STRING: (arr_n) NUL-terminated copies */
} qs_gguf_kv;

typedef struct {
    char *name;
    int n_dims;
    uint64_t ne[4];      /* (n_dims) fastest dimension first */
    uint32_t type;       /* ggml type */
    uint64_t numel;
    uint64_t offset;     /* from the start of the data section */
    const uint8_t *data; /* in the map */
    size_t nbytes;       /* 0 for a type whose size qscope does not know */
} qs_gguf_tensor;

typedef struct qs_gguf qs_gguf;

qs_status qs_gguf_open(const char *path, qs_gguf **out);
void qs_gguf_close(qs_gguf *g); /* NULL: no-op; keeps a map a borrow moved into a store */

const char *qs_gguf_path(const qs_gguf *g);
size_t qs_gguf_n_kv(const qs_gguf *g);
const qs_gguf_kv *qs_gguf_kv_at(const qs_gguf *g, size_t i);
const qs_gguf_kv *qs_gguf_get(const qs_gguf *g, const char *key); /* NULL when absent */
size_t qs_gguf_n_tensors(const qs_gguf *g);
const qs_gguf_tensor *qs_gguf_tensor_at(const qs_gguf *g, size_t i); /* file order */
const qs_gguf_tensor *qs_gguf_find(const qs_gguf *g, const char *name);

/* Integer / float value of a scalar kv; 0 when the kv has another type. */
int qs_gguf_kv_int(const qs_gguf_kv *kv, int64_t *out);
int qs_gguf_kv_float(const qs_gguf_kv *kv, double *out);

const char *qs_gguf_type_name(uint32_t ggml_type); /* "F32", "Q4_K", ... or "unknown" */


/* fp32 data of an F32/F16/BF16 or block-quantized tensor, row-major
 * (ne[n-1], ..., ne[0]): borrowed from the map when F32 and aligned (the map
 * moves into store), else converted into a store buffer. Other types:
 * QS_EUNSUPPORTED naming the tensor and its type. */
qs_status qs_gguf_to_f32(qs_gguf *g, const qs_gguf_tensor *t, qs_store *store, const float **out);
/* A tensor's bytes as stored, kept readable while store lives. */
qs_status qs_gguf_bytes(qs_gguf *g, const qs_gguf_tensor *t, qs_store *store, const void **out);
/* Convert into caller memory dst (numel floats); same type rules. */
qs_status qs_gguf_read_f32(const qs_gguf *g, const qs_gguf_tensor *t, float *dst);

/* Meta's Llama checkpoints (and so llama2.c and GGUF files) order the rows
 * of each q/k head as interleaved rotary pairs (0,1),(2,3),...; Hugging Face
 * rotates halves (j, j + hd/2). dst row h*hd + j = src row h*hd + 2j and
 * dst row h*hd + hd/2 + j = src row h*hd + 2j + 1, for j < hd/2.
 * src, dst: (n_heads*head_dim, n_in), distinct. */
void qs_gguf_rope_rows(float *dst, const float *src, int n_heads, int head_dim, int n_in);

/* A GGUF v3 writer (gguf_write.c): key/values and tensors gathered in
 * memory, written by one atomic replace. Shapes are given row-major
 * (slowest first), as the rest of qscope holds them.
 *
 *     qs_gguf_w *w = qs_gguf_w_new();
 *     qs_gguf_w_str(w, "general.architecture", "llama");
 *     qs_gguf_w_tensor(w, "token_embd.weight", 2, (int64_t[]){vocab, d}, QS_GGML_F32, emb, bytes);
 *     qs_gguf_w_write(w, "out.gguf");
 *     qs_gguf_w_free(w);
 */
typedef struct qs_gguf_w qs_gguf_w;
qs_gguf_w *qs_gguf_w_new(void);
void qs_gguf_w_free(qs_gguf_w *w);
void qs_gguf_w_str(qs_gguf_w *w, const char *key, const char *v);
void qs_gguf_w_u32(qs_gguf_w *w, const char *key, uint32_t v);
void qs_gguf_w_i32(qs_gguf_w *w, const char *key, int32_t v);
void qs_gguf_w_f32(qs_gguf_w *w, const char *key, float v);
void qs_gguf_w_bool(qs_gguf_w *w, const char *key, int v);
void qs_gguf_w_strs(qs_gguf_w *w, const char *key, size_t n, const char *const *v);
void qs_gguf_w_f32s(qs_gguf_w *w, const char *key, size_t n, const float *v);
void qs_gguf_w_i32s(qs_gguf_w *w, const char *key, size_t n, const int32_t *v);
/* The data is copied. */
qs_status qs_gguf_w_tensor(qs_gguf_w *w, const char *name, int n_dims, const int64_t *shape, uint32_t ggml_type,
                           const void *data, size_t nbytes);
/* The data is made when the file is written: fill(ud, dst, nbytes) writes
 * the tensor's nbytes into dst (a buffer the writer owns), or fails. */
typedef qs_status (*qs_gguf_w_fill)(void *ud, void *dst, size_t nbytes);
qs_status qs_gguf_w_tensor_fn(qs_gguf_w *w, const char *name, int n_dims, const int64_t *shape, uint32_t ggml_type,
                              size_t nbytes, qs_gguf_w_fill fill, void *ud);
/* Called with KiB written of the total after each tensor; nonzero cancels
 * (the temporary file is removed, the target left as it was). */
void qs_gguf_w_progress(qs_gguf_w *w, qs_progress_fn fn, void *ud);
/* Stream the file to a temporary name beside path, then rename it there. */
qs_status qs_gguf_w_write(qs_gguf_w *w, const char *path);

/* A streaming safetensors writer (st_write.c): every tensor declared first
 * (the header holds their byte ranges), then their bytes written in the
 * order declared, a piece at a time, into a temporary file renamed over
 * path on commit. The header is padded so the data starts 8-aligned; its
 * __metadata__ is {"format": "pt"}, as transformers writes it. Only the
 * header is held in memory.
 *
 *     qs_st_w *w = qs_st_w_new();
 *     qs_st_w_add(w, "lm_head.weight", QS_ST_BF16, 2, (int64_t[]){vocab, d});
 *     qs_st_w_begin(w, "dir/model.safetensors");
 *     qs_st_w_data(w, rows, nbytes);          // as many pieces as it takes
 *     qs_st_w_commit(w);                      // fails unless every byte came
 *     qs_st_w_free(w);                        // removes the file if not committed
 */
typedef struct qs_st_w qs_st_w;
qs_st_w *qs_st_w_new(void); /* NULL: out of memory */
void qs_st_w_free(qs_st_w *w);
qs_status qs_st_w_add(qs_st_w *w, const char *name, qs_st_dtype dtype, int n_dims, const int64_t *shape);
uint64_t qs_st_w_total(const qs_st_w *w); /* data bytes of the tensors declared */
qs_status qs_st_w_begin(qs_st_w *w, const char *path);
qs_status qs_st_w_data(qs_st_w *w, const void *data, size_t n);
qs_status qs_st_w_commit(qs_st_w *w);

/* ---- llama2.c checkpoints (llama2c.c): the legacy version-0 .bin, its
 * header checked against the file's size and its fp32 arrays found in the
 * map, in the file's own layout (q/k rows in Meta's interleaved RoPE order;
 * w1 the gate, w3 the up projection).
 *
 *     qs_l2c_file f;
 *     if (qs_l2c_open("stories260K.bin", &f) == QS_OK) ... f.wq + layer * f.dim * f.dim ...
 *     qs_io_unmap(&f.map);   // unless the map was handed to a store
 */
typedef struct {
    int dim, hidden, layers, heads, kv_heads, vocab, seq;
    int shared;    /* the classifier is the token embedding */
    qs_map map;    /* owned by the caller once opened */
    const float *tok_embed;            /* (vocab, dim) */
    const float *rms_att, *rms_ffn;    /* (layers, dim) */
    const float *wq, *wo;              /* (layers, dim, dim) */
    const float *wk, *wv;              /* (layers, kv_heads * dim/heads, dim) */
    const float *w1, *w3;              /* (layers, hidden, dim) */
    const float *w2;                   /* (layers, dim, hidden) */
    const float *rms_final;            /* (dim) */
    const float *wcls;                 /* (vocab, dim); tok_embed when shared */
} qs_l2c_file;

qs_status qs_l2c_open(const char *path, qs_l2c_file *f);
#endif
