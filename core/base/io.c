#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

qs_status qs_io_read_all(const char *path, char **data, size_t *len) {
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return qs_fail(QS_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return qs_fail(QS_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return qs_fail(QS_ENOMEM, "%s: out of memory reading %zu bytes", path, cap * 2);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return qs_fail(QS_EIO, "%s: read error", path);
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return QS_OK;
}

static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

/* An fd on path when it is a regular file, else -1 with the message set.
 * O_NONBLOCK: opening a FIFO that no one writes would otherwise wait for a
 * writer forever; the FIFO is then refused by its type, never read. */
static int open_regular(const char *path, struct stat *st) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        qs_fail(QS_EIO, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        qs_fail(QS_EIO, "%s: cannot stat: %s", path, strerror(e));
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        if (S_ISDIR(st->st_mode)) qs_fail(QS_EIO, "%s: is a directory", path);
        else qs_fail(QS_EIO, "%s: is %s, not a regular file (qscope reads models only from regular files)", path,
                     file_kind(st->st_mode));
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

qs_status qs_io_check_regular(const char *path) {
    struct stat st;
    int fd = open_regular(path, &st);
    if (fd < 0) return QS_EIO;
    close(fd);
    return QS_OK;
}

qs_status qs_io_read_file(const char *path, size_t max, char **data, size_t *len) {
    *data = NULL;
    if (len) *len = 0;
    struct stat st;
    int fd = open_regular(path, &st);
    if (fd < 0) return QS_EIO;
    if ((unsigned long long)st.st_size > max) {
        close(fd);
        return qs_fail(QS_EFORMAT, "%s: %lld bytes, over the limit of %zu MiB for this file", path,
                       (long long)st.st_size, max >> 20);
    }
    /* one byte past the size: a file that grows while read still stops at max */
    size_t cap = (size_t)st.st_size + 2, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return qs_fail(QS_ENOMEM, "%s: out of memory reading %zu bytes", path, cap);
    }
    while (n + 1 < cap) {
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return qs_fail(QS_EIO, "%s: read error: %s", path, strerror(e));
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    close(fd);
    if (n > max) {
        free(buf);
        return qs_fail(QS_EFORMAT, "%s: over the limit of %zu MiB for this file", path, max >> 20);
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return QS_OK;
}

qs_status qs_io_read_head(const char *path, void *buf, size_t cap, size_t *got) {
    *got = 0;
    struct stat st;
    int fd = open_regular(path, &st);
    if (fd < 0) return QS_EIO;
    while (*got < cap) {
        ssize_t r = read(fd, (char *)buf + *got, cap - *got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        *got += (size_t)r;
    }
    close(fd);
    return QS_OK;
}

struct qs_wfile {
    int fd;
    int failed;
    char path[4096], tmp[4096];
};

qs_status qs_wfile_open(const char *path, qs_wfile **out) {
    /* a fresh name beside the target (mkstemp: never an existing file or a
     * link), made an ordinary 0644 file at commit, then renamed over it */
    *out = NULL;
    qs_wfile *f = calloc(1, sizeof *f);
    if (!f) return qs_fail(QS_ENOMEM, "%s: out of memory", path);
    if ((size_t)snprintf(f->path, sizeof f->path, "%s", path) >= sizeof f->path ||
        (size_t)snprintf(f->tmp, sizeof f->tmp, "%s.XXXXXX", path) >= sizeof f->tmp) {
        free(f);
        return qs_fail(QS_EARG, "%s: path too long", path);
    }
    f->fd = mkstemp(f->tmp);
    if (f->fd < 0) {
        int e = errno;
        free(f);
        return qs_fail(QS_EIO, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    *out = f;
    return QS_OK;
}

const char *qs_wfile_tmp_path(const qs_wfile *f) { return f->tmp; }

qs_status qs_wfile_write(qs_wfile *f, const void *data, size_t len) {
    if (f->failed) return QS_EIO;
    const char *p = data;
    while (len) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            f->failed = 1;
            return qs_fail(QS_EIO, "%s: write failed: %s", f->tmp, strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return QS_OK;
}

void qs_wfile_abort(qs_wfile *f) {
    if (!f) return;
    close(f->fd);
    unlink(f->tmp);
    free(f);
}

qs_status qs_wfile_commit(qs_wfile *f) {
    if (f->failed) {
        qs_wfile_abort(f);
        return QS_EIO;
    }
    qs_status st = QS_OK;
    if (fchmod(f->fd, 0644) != 0 || fsync(f->fd) != 0) st = qs_fail(QS_EIO, "%s: cannot flush: %s", f->tmp, strerror(errno));
    if (close(f->fd) != 0 && !st) st = qs_fail(QS_EIO, "%s: cannot flush: %s", f->tmp, strerror(errno));
    if (!st && rename(f->tmp, f->path) != 0) st = qs_fail(QS_EIO, "%s: cannot rename into place: %s", f->path, strerror(errno));
    if (st) unlink(f->tmp);
    free(f);
    return st;
}

qs_status qs_io_write_atomic(const char *path, const void *data, size_t len) {
    qs_wfile *f;
    qs_status st = qs_wfile_open(path, &f);
    if (st) return st;
    if ((st = qs_wfile_write(f, data, len))) {
        qs_wfile_abort(f);
        return st;
    }
    return qs_wfile_commit(f);
}

qs_status qs_io_map(const char *path, qs_map *out) {
    out->data = NULL;
    out->size = 0;
    struct stat st;
    int fd = open_regular(path, &st);
    if (fd < 0) return QS_EIO;
    if (st.st_size == 0) {
        close(fd);
        return QS_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return qs_fail(QS_EIO, "%s: cannot mmap: %s", path, strerror(e));
    out->data = p;
    out->size = (size_t)st.st_size;
    return QS_OK;
}

void qs_io_unmap(qs_map *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

int qs_io_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int qs_io_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char *qs_io_join(char *dst, size_t cap, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    snprintf(dst, cap, "%.*s/%s", (int)dl, dir, name);
    return dst;
}

float qs_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float qs_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t qs_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

uint16_t qs_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00);
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to inf */
    if (ax < 0x38800000u) { /* subnormal half or zero */
        if (ax < 0x33000000u) return (uint16_t)sign;
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t lo = r & 0x1fff;
    r >>= 13;
    if (lo > 0x1000 || (lo == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

void qs_f16_to_f32_n(float *dst, const void *src, size_t n) {
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = qs_f16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
}

void qs_bf16_to_f32_n(float *dst, const void *src, size_t n) {
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = qs_bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
}


double qs_io_clock(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- store ---- */

struct qs_store {
    void **bufs;
    size_t n_bufs, cap_bufs, bytes;
    qs_map *maps;
    size_t n_maps, cap_maps;
};

qs_store *qs_store_new(void) {
    qs_store *s = calloc(1, sizeof *s);
    if (!s) qs_fail(QS_ENOMEM, "out of memory");
    return s;
}

void qs_store_free(qs_store *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_bufs; i++) free(s->bufs[i]);
    for (size_t i = 0; i < s->n_maps; i++) qs_io_unmap(&s->maps[i]);
    free(s->bufs);
    free(s->maps);
    free(s);
}

void *qs_store_alloc(qs_store *s, size_t bytes) {
    if (s->n_bufs == s->cap_bufs) {
        size_t nc = s->cap_bufs ? 2 * s->cap_bufs : 64;
        void **nb = realloc(s->bufs, nc * sizeof *nb);
        if (!nb) {
            qs_fail(QS_ENOMEM, "out of memory");
            return NULL;
        }
        s->bufs = nb;
        s->cap_bufs = nc;
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? (bytes + 63) / 64 * 64 : 64) != 0) {
        qs_fail(QS_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    s->bufs[s->n_bufs++] = p;
    s->bytes += bytes;
    return p;
}

void *qs_store_calloc(qs_store *s, size_t bytes) {
    void *p = qs_store_alloc(s, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

qs_status qs_store_add_map(qs_store *s, qs_map m) {
    if (s->n_maps == s->cap_maps) {
        size_t nc = s->cap_maps ? 2 * s->cap_maps : 4;
        qs_map *nm = realloc(s->maps, nc * sizeof *nm);
        if (!nm) return qs_fail(QS_ENOMEM, "out of memory");
        s->maps = nm;
        s->cap_maps = nc;
    }
    s->maps[s->n_maps++] = m;
    return QS_OK;
}

size_t qs_store_bytes(const qs_store *s) { return s->bytes; }

qs_status qs_store_bytes_of(qs_store *store, qs_map map, qs_store **owner, const void *data, size_t bytes,
                            const void **out) {
    *out = NULL;
    if (!*owner) {
        qs_status st = qs_store_add_map(store, map);
        if (st) return st;
        *owner = store;
    }
    if (*owner == store) {
        *out = data;
        return QS_OK;
    }
    void *copy = qs_store_alloc(store, bytes ? bytes : 1);
    if (!copy) return qs_fail(QS_ENOMEM, "out of memory copying %zu bytes", bytes);
    memcpy(copy, data, bytes);
    *out = copy;
    return QS_OK;
}

qs_status qs_store_f32(qs_store *store, qs_map map, qs_store **owner, const void *data, size_t numel, int is_f32,
                       const float **out, float **dst) {
    *dst = NULL;
    if (is_f32 && (uintptr_t)data % sizeof(float) == 0 && (!*owner || *owner == store)) {
        if (!*owner) {
            qs_status st = qs_store_add_map(store, map);
            if (st) return st;
            *owner = store;
        }
        *out = (const float *)data;
        return QS_OK;
    }
    if (!(*dst = qs_store_alloc(store, numel * sizeof(float))))
        return qs_fail(QS_ENOMEM, "out of memory converting it to fp32");
    return QS_OK;
}
