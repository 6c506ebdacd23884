/*
 * log.h — level-checked logging (STYLE 12).
 *
 * Every line carries time, level, and the caller's context: the translator
 * name, the op and the request id where there is one (kb_log_call). Messages
 * go to the log file set by kb_log_open (stderr by default). kb_log_reopen is
 * async-signal-safe to *request* (it sets a flag); the reopen happens on the
 * next line written, so SIGHUP + logrotate work.
 */
#ifndef KB_LOG_H
#define KB_LOG_H

#include <stdint.h>

enum kb_log_level { KB_LOG_NONE, KB_LOG_ERROR, KB_LOG_WARN, KB_LOG_INFO, KB_LOG_DEBUG, KB_LOG_TRACE };

extern int kb_log_level;

int kb_log_open(const char *path);          /* NULL or "-" = stderr */
void kb_log_request_reopen(void);           /* async-signal-safe */
int kb_log_parse_level(const char *s);      /* -1 on unknown */
void kb_log_set_ident(const char *ident);   /* e.g. "kembard:24800" */
void kb_log_write(int level, const char *ctx, uint64_t req_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define kb_log(level, ctx, ...) \
    do { if ((level) <= kb_log_level) kb_log_write((level), (ctx), 0, __VA_ARGS__); } while (0)
#define kb_err(ctx, ...)   kb_log(KB_LOG_ERROR, ctx, __VA_ARGS__)
#define kb_warn(ctx, ...)  kb_log(KB_LOG_WARN, ctx, __VA_ARGS__)
#define kb_info(ctx, ...)  kb_log(KB_LOG_INFO, ctx, __VA_ARGS__)
#define kb_debug(ctx, ...) kb_log(KB_LOG_DEBUG, ctx, __VA_ARGS__)
/* With a request id (STYLE 12: every fop-path line names xl, op and req). */
#define kb_log_req(level, ctx, req, ...) \
    do { if ((level) <= kb_log_level) kb_log_write((level), (ctx), (req), __VA_ARGS__); } while (0)

/* Rate limiter for repeated per-child errors: returns 1 when a line may be
 * written (at most one per interval_ms per limiter), counting suppressed ones. */
struct kb_ratelimit { uint64_t last_ms; uint32_t suppressed; uint32_t interval_ms; };
int kb_ratelimit_ok(struct kb_ratelimit *rl);

#endif
