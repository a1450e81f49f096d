/* base/base.h — the public interface of core/base/. Sections: status, io, pool. */
#ifndef QS_BASE_H
#define QS_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- status.h — error codes, the last-error message and the log callback.
 *
 * Every fallible core function returns a qs_status. On failure it has also
 * stored a one-line message that names the file, the tensor, the expected and
 * the found value; read it with qs_last_error(). Core never prints and never
 * exits: diagnostics go through the callback a front end installs.
 *
 *     qs_model *m;
 *     if (qs_model_load(path, NULL, &m) != QS_OK)
 *         fprintf(stderr, "qscope: %s\n", qs_last_error());
 */
typedef enum {
    QS_OK = 0,
    QS_EIO = -1,          /* open/read/write/mmap failed */
    QS_EFORMAT = -2,      /* a file is malformed or truncated */
    QS_ENOMEM = -3,       /* allocation failed */
    QS_ESHAPE = -4,       /* a shape disagrees with the config or another tensor */
    QS_EARG = -5,         /* the caller passed something out of range */
    QS_ECANCEL = -6,      /* a progress callback asked to stop */
    QS_EUNSUPPORTED = -7, /* valid input that qscope does not handle (an architecture, a dtype) */
} qs_status;

/* The message of the most recent failure on this thread ("" if none). The
 * pointer stays valid until the next failure on the same thread. */
const char *qs_last_error(void);

/* Store a printf-style message for qs_last_error() and return st, so that a
 * failure reads `return qs_fail(QS_EFORMAT, "%s: ...", path);`. */
qs_status qs_fail(qs_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix the current message with "prefix: " (adds context while unwinding). */
qs_status qs_fail_prefix(qs_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A short name for a status ("format error"). */
const char *qs_status_str(qs_status st);

enum { QS_LOG_DEBUG = 0, QS_LOG_INFO = 1, QS_LOG_WARN = 2 };
typedef void (*qs_log_fn)(void *ud, int level, const char *msg);

/* Install the log sink (NULL: messages are dropped). Not thread-safe against
 * concurrent qs_log calls; install it once at start-up. */
void qs_log_set(qs_log_fn fn, void *ud);
void qs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Progress and cancellation for long operations (ppl, calibration). The
 * callback returns non-zero to cancel; the operation then returns QS_ECANCEL. */
typedef int (*qs_progress_fn)(void *ud, long done, long total);

/* ---- io.h — files, memory maps, number conversions and owned-buffer lists.
 *
 *     qs_map map;
 *     if (qs_io_map(path, &map) != QS_OK) return ...;   // read-only, whole file
 *     ... use map.data, map.size ...
 *     qs_io_unmap(&map);
 *
 * Writes that replace a user's file go through qs_io_write_atomic(), which
 * writes a temporary file beside the target and renames it over the target,
 * so an interrupted write never leaves a half-written file.
 */
/* Seconds on the monotonic clock: for timing, never for dates. */
double qs_io_clock(void);

/* Read a whole file into a malloc'd, NUL-terminated buffer (caller frees).
 * *len (may be NULL) gets the byte count without the NUL. Any file a user
 * names, a pipe included (/dev/stdin); a model's own files are read with
 * qs_io_read_file, which refuses what is not a regular file. */
qs_status qs_io_read_all(const char *path, char **data, size_t *len);

/* The most bytes read from one of a model's text files (config.json,
 * tokenizer.json, tokenizer_config.json, vocab.json, merges.txt, the shard
 * index): the largest real ones are tens of MiB. */
#define QS_IO_TEXT_MAX ((size_t)128 << 20)

/* As qs_io_read_all, for a file that must be a regular file of at most max
 * bytes: a FIFO, a device (/dev/zero), a socket or a directory is refused at
 * once (QS_EIO, "is a FIFO, not a regular file"), never waited on or read,
 * and a longer file is refused (QS_EFORMAT) before it is read. */
qs_status qs_io_read_file(const char *path, size_t max, char **data, size_t *len);

/* QS_OK when path opens as a regular file; else as qs_io_read_file. */
qs_status qs_io_check_regular(const char *path);

/* Up to cap bytes from the start of the regular file path (*got: how many);
 * other kinds of file are refused as by qs_io_read_file. */
qs_status qs_io_read_head(const char *path, void *buf, size_t cap, size_t *got);

/* Write len bytes to path atomically (temp file + fsync + rename). */
qs_status qs_io_write_atomic(const char *path, const void *data, size_t len);

/* The same, streamed: a temporary file beside path (mkstemp), written in
 * pieces, then commit (0644, fsync, rename over path) or abort (removed).
 * Either frees f. A failed write makes commit fail and remove the file. */
typedef struct qs_wfile qs_wfile;
qs_status qs_wfile_open(const char *path, qs_wfile **out);
qs_status qs_wfile_write(qs_wfile *f, const void *data, size_t len);
qs_status qs_wfile_commit(qs_wfile *f);
void qs_wfile_abort(qs_wfile *f);
const char *qs_wfile_tmp_path(const qs_wfile *f);

typedef struct {
    const uint8_t *data; /* (size) read-only mapping, NULL for an empty file */
    size_t size;
} qs_map;

/* Regular files only: anything else is refused as by qs_io_read_file. */
qs_status qs_io_map(const char *path, qs_map *out);
void qs_io_unmap(qs_map *m); /* no-op on a zeroed map */

int qs_io_is_dir(const char *path);
int qs_io_exists(const char *path);

/* dst = dir + "/" + name, truncated safely; returns dst. */
char *qs_io_join(char *dst, size_t cap, const char *dir, const char *name);

/* Number conversions (n elements, src may be unaligned). */
float qs_f16_to_f32(uint16_t h);
/* the little-endian f16 at p (a ggml block's scale), as fp32 */
static inline float qs_f16_at(const void *p) {
    const uint8_t *b = p;
    return qs_f16_to_f32((uint16_t)(b[0] | b[1] << 8));
}
float qs_bf16_to_f32(uint16_t h);
uint16_t qs_f32_to_f16(float f);  /* round to nearest even */
uint16_t qs_f32_to_bf16(float f); /* round to nearest even */
void qs_f16_to_f32_n(float *dst, const void *src, size_t n);
void qs_bf16_to_f32_n(float *dst, const void *src, size_t n);

/* A list of buffers and maps owned together (a model's weights). Everything
 * added is released by qs_store_free(). */
typedef struct qs_store qs_store;
qs_store *qs_store_new(void);
void qs_store_free(qs_store *s);
/* 64-byte aligned, uninitialised; NULL (with qs_last_error set) on failure. */
void *qs_store_alloc(qs_store *s, size_t bytes);
void *qs_store_calloc(qs_store *s, size_t bytes);
/* Take ownership of a map (unmapped by qs_store_free). */
qs_status qs_store_add_map(qs_store *s, qs_map m);
/* Bytes allocated through this store (maps not counted). */
size_t qs_store_bytes(const qs_store *s);

/* A tensor's fp32 values (numel at data, inside map): borrowed from the map
 * when they are fp32 already (is_f32) and aligned, the map then moving into
 * store (*owner records which store holds it; a map is borrowed by one store
 * only): *out set, *dst NULL. Otherwise *dst is store memory for numel floats
 * that the caller converts into and sets *out to. */
qs_status qs_store_f32(qs_store *store, qs_map map, qs_store **owner, const void *data, size_t numel, int is_f32,
                       const float **out, float **dst);
/* bytes at data (inside map) kept readable as long as store lives: the map
 * moves into store when no store holds it yet, else (another store holds
 * it) the bytes are copied into store. */
qs_status qs_store_bytes_of(qs_store *store, qs_map map, qs_store **owner, const void *data, size_t bytes,
                            const void **out);

/* ---- pool.h — a small persistent thread pool for the compute kernels.
 *
 * The int8 GEMM (and anything else that wants to split a loop over the
 * cores) hands the pool n_tasks numbered tasks; the pool's workers and the
 * calling thread take them in turn until none is left, and the call returns
 * when every task has run. Workers are created on the first call (one per
 * CPU the process may run on, at most QS_POOL_MAX, or $QSCOPE_THREADS), live
 * until qs_pool_shutdown() or process exit, spin for a few microseconds
 * after a job (so back-to-back calls start quickly) and then sleep on a
 * condition variable.
 *
 *     static void row_task(void *ud, int task, int thread) { ... rows of `task` ... }
 *     qs_pool_run(n_chunks, row_task, &args);   // returns when all chunks are done
 *
 * Threading contract: qs_pool_run may be called from any thread, but calls
 * are serialised (a mutex); a call made from inside a task runs its tasks
 * inline on the calling worker, so nesting is safe but not parallel. The
 * `thread` argument is 0 for the caller and 1..qs_pool_threads()-1 for the
 * workers, so a task may index per-thread scratch with it.
 */
enum { QS_POOL_MAX = 16 };

typedef void (*qs_pool_fn)(void *ud, int task, int thread);

/* Run fn(ud, t, thread) for every t in [0, n_tasks), in any order and on any
 * of the pool's threads, each exactly once; returns when all are done.
 * n_tasks <= 0 does nothing. If the workers cannot be started the tasks run
 * on the calling thread (the result is the same, only slower). */
void qs_pool_run(int n_tasks, qs_pool_fn fn, void *ud);

/* Threads that run tasks, the caller included (>= 1). Reads $QSCOPE_THREADS
 * (1..QS_POOL_MAX) the first time; it does not start the workers. */
int qs_pool_threads(void);

/* Stop and join the workers (a later qs_pool_run starts them again). For
 * tests and clean shutdown; must not race with qs_pool_run. */
void qs_pool_shutdown(void);

/* A kernel's workspace kept from call to call: at least n bytes, 64-byte
 * aligned, uninitialised, owned by the calling thread (slot 0 to
 * QS_SCRATCH_SLOTS - 1, one buffer each), grown when a call needs more and
 * freed when the thread exits, so that a large per-call buffer is not
 * mapped and faulted in afresh every call. A later call for the same slot
 * on the same thread may move it. NULL (qs_last_error set) when out of
 * memory. */
enum { QS_SCRATCH_SLOTS = 4 };
void *qs_scratch(int slot, size_t n);

#endif
