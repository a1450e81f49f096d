/* status.h — error codes, the last-error message and the log callback.
 *
 * Every fallible core function returns a qs_status. On failure it has also
 * stored a one-line message that names the file, the tensor, the expected and
 * the found value; read it with qs_last_error(). Core never prints and never
 * exits: diagnostics go through the callback a front end installs.
 *
 *     qs_model *m;
 *     if (qs_model_load(path, &m) != QS_OK)
 *         fprintf(stderr, "qscope: %s\n", qs_last_error());
 */
#ifndef QS_STATUS_H
#define QS_STATUS_H

#include <stdarg.h>

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

#endif
