/* io.h — files, memory maps, number conversions and owned-buffer lists.
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
#ifndef QS_IO_H
#define QS_IO_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Seconds on the monotonic clock: for timing, never for dates. */
double qs_io_clock(void);

/* Read a whole file into a malloc'd, NUL-terminated buffer (caller frees).
 * *len (may be NULL) gets the byte count without the NUL. */
qs_status qs_io_read_all(const char *path, char **data, size_t *len);

/* Write len bytes to path atomically (temp file + fsync + rename). */
qs_status qs_io_write_atomic(const char *path, const void *data, size_t len);

typedef struct {
    const uint8_t *data; /* (size) read-only mapping, NULL for an empty file */
    size_t size;
} qs_map;

qs_status qs_io_map(const char *path, qs_map *out);
void qs_io_unmap(qs_map *m); /* no-op on a zeroed map */

int qs_io_is_dir(const char *path);
int qs_io_exists(const char *path);

/* dst = dir + "/" + name, truncated safely; returns dst. */
char *qs_io_join(char *dst, size_t cap, const char *dir, const char *name);

/* Number conversions (n elements, src may be unaligned). */
float qs_f16_to_f32(uint16_t h);
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

#endif
