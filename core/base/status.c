#include "base/base.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];
static qs_log_fn log_fn;
static void *log_ud;

const char *qs_last_error(void) { return last_error; }

qs_status qs_fail(qs_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

qs_status qs_fail_prefix(qs_status st, const char *fmt, ...) {
    char prefix[512], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%.400s: %.600s", prefix, old);
    return st;
}

const char *qs_status_str(qs_status st) {
    switch (st) {
    case QS_OK: return "ok";
    case QS_EIO: return "I/O error";
    case QS_EFORMAT: return "format error";
    case QS_ENOMEM: return "out of memory";
    case QS_ESHAPE: return "shape mismatch";
    case QS_EARG: return "bad argument";
    case QS_ECANCEL: return "cancelled";
    case QS_EUNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

void qs_log_set(qs_log_fn fn, void *ud) {
    log_fn = fn;
    log_ud = ud;
}

void qs_log(int level, const char *fmt, ...) {
    if (!log_fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_fn(log_ud, level, buf);
}
