/*
 * common.h — small things every kembar module uses.
 *
 * Errors inside kembar are a single negative errno (STYLE 5). Helpers here
 * never abort on allocation failure: callers get NULL and complete their call
 * with -ENOMEM.
 */
#ifndef KB_COMMON_H
#define KB_COMMON_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <assert.h>

#define KB_VERSION "0.2.0"

#define KB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define KB_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define KB_UNUSED __attribute__((unused))
#define KB_LIKELY(x) __builtin_expect(!!(x), 1)
#define KB_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define kb_container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

/* Default TCP port of kembard (DESIGN §2). */
#define KB_DEFAULT_PORT 24800
#define KB_DEFAULT_STATE_DIR "/var/lib/kembar"

/* Monotonic clock in nanoseconds / milliseconds. */
uint64_t kb_now_ns(void);
static inline uint64_t kb_now_ms(void) { return kb_now_ns() / 1000000ull; }

/* Zeroing allocation; NULL on failure (callers report -ENOMEM). */
static inline void *kb_zalloc(size_t n) { return calloc(1, n); }

/* strdup that accepts NULL. */
char *kb_strdup0(const char *s);

/* Parse "HOST[:PORT]" into host (caller frees) and port (default if absent).
 * Accepts "[v6addr]:port". Returns 0 or -EINVAL. */
int kb_parse_hostport(const char *s, char **host, uint16_t *port, uint16_t dflt);

/* This process's client instance id (16 bytes, random once per process; or
 * KB_INSTANCE_ID = 32 hex digits from the environment, so a process that
 * takes over another's mount keeps its identity). Bricks key a client's
 * application locks by it (protocol 2, rpc/wire.h). */
void kb_instance_id(uint8_t out[16]);

/* Write a whole file atomically (tmp + fsync + rename + fsync dir). */
int kb_write_file_atomic(const char *path, const void *data, size_t len);
/* Read a whole file (NUL-terminated, *len excludes NUL). Caller frees. */
int kb_read_file(const char *path, char **data, size_t *len);
/* mkdir -p; returns 0 or -errno. */
int kb_mkdir_p(const char *path, unsigned mode);

#endif
