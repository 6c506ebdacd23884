/*
 * client.c — libkembar lifecycle: volfile fetch, graph on a loop thread,
 * CHILD_UP wait, and the async entry point kbc_submit (client/kembar.h).
 *
 * Promises:
 *  - kbc_new never hangs: each server gets connect_timeout_ms to connect and
 *    answer GETSPEC (a loop-side timer bounds it), the CHILD_UP wait is
 *    bounded by up_timeout_ms, and every failure is one line in err.
 *  - The graph is touched on the loop thread only: init, winds, fini.
 *  - kbc_submit completes every call exactly once; kbc_free waits for calls
 *    in flight (bounded) before tearing the graph down.
 *
 * The top of the graph has no parent; its CHILD_UP / CHILD_DOWN reach the
 * client through kb_graph.on_event, on the loop thread, and are mirrored
 * into c->up for waiters on other threads.
 */
#include <openssl/ssl.h>
#include "client/internal.h"
#include "rpc/tls.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/log.h"
#include "rpc/conn.h"

#define KBC_CONNECT_TIMEOUT_MS 3000
#define KBC_UP_TIMEOUT_MS 10000
#define KBC_DRAIN_TIMEOUT_MS 30000

void kbc_deadline(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- running a function on the loop thread and waiting for it ---- */

struct loop_job {
    kbc_t *c;
    void (*fn)(struct loop_job *j);
    void *arg;
    int rc;
    char err[256];
    bool done;                   /* c->mu */
};

static void job_run(void *arg)
{
    struct loop_job *j = arg;
    j->fn(j);
    pthread_mutex_lock(&j->c->mu);
    j->done = true;
    pthread_cond_broadcast(&j->c->cv);
    pthread_mutex_unlock(&j->c->mu);
}

/* Runs J->fn on the loop thread; returns when it has returned. */
static int job_sync(struct loop_job *j)
{
    kbc_t *c = j->c;
    j->done = false;
    if (kb_loop_run_in(c->loop, job_run, j) < 0) {
        snprintf(j->err, sizeof(j->err), "out of memory");
        return j->rc = -ENOMEM;
    }
    pthread_mutex_lock(&c->mu);
    while (!j->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return j->rc;
}

/* ---- client object ---- */

static kbc_t *kbc_alloc(const kbc_opts_t *o, const char *volume)
{
    kbc_t *c = kb_zalloc(sizeof(*c));
    if (!c)
        return NULL;
    if (o)
        c->opts = *o;
    if (!c->opts.connect_timeout_ms)
        c->opts.connect_timeout_ms = KBC_CONNECT_TIMEOUT_MS;
    if (!c->opts.up_timeout_ms)
        c->opts.up_timeout_ms = KBC_UP_TIMEOUT_MS;
    kbc_cred_self(&c->cred);
    if (c->opts.tls_dir) {
        char err[256] = "";
        c->tls_dir = strdup(c->opts.tls_dir);
        c->tls = rpc_tls_ctx_from_dir(false, c->opts.tls_dir, err, sizeof(err));
        if (!c->tls) {
            kb_err("client", "TLS: %s", err);
            free(c->tls_dir);
            free(c);
            return NULL;
        }
        c->opts.tls_dir = c->tls_dir;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_cond_init(&c->watch_cv, NULL);
    c->volume = strdup(volume ? volume : "");
    c->loop = kb_loop_new();
    if (!c->volume || !c->loop || kb_loop_start_thread(c->loop) < 0) {
        if (c->loop)
            kb_loop_free(c->loop);
        free(c->volume);
        pthread_cond_destroy(&c->cv);
        pthread_cond_destroy(&c->watch_cv);
        pthread_mutex_destroy(&c->mu);
        free(c);
        return NULL;
    }
    return c;
}

struct init_arg {
    kb_graph_t *g;
    const char *volfile;
};

static void init_fn(struct loop_job *j)
{
    struct init_arg *ia = j->arg;
    j->rc = kbc_graphs_start(j->c, ia->g, ia->volfile, j->err, sizeof(j->err));
}

static void fini_fn(struct loop_job *j)
{
    kbc_graphs_fini(j->c);
}

/* Wait (bounded) for the graph top to come up. */
static int wait_up(kbc_t *c)
{
    struct timespec dl;
    int rc = 0;
    kbc_deadline(&dl, c->opts.up_timeout_ms);
    pthread_mutex_lock(&c->mu);
    while (!c->up && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    bool up = c->up;
    pthread_mutex_unlock(&c->mu);
    return up ? 0 : -ETIMEDOUT;
}

static kbc_t *build(kbc_t *c, const char *volfile, const char *what, char *err, size_t errlen)
{
    char perr[256] = "";
    kb_graph_t *g = kb_graph_parse(volfile, perr, sizeof(perr));
    if (!g) {
        set_err(err, errlen, "%s: bad volfile: %s", what, perr);
        kbc_free(c);
        return NULL;
    }
    struct init_arg ia = { g, volfile };
    struct loop_job j = { .c = c, .fn = init_fn, .arg = &ia };
    if (job_sync(&j) < 0) {
        set_err(err, errlen, "%s: cannot start the client graph: %s", what, j.err);
        kbc_free(c);
        return NULL;
    }
    if (!c->opts.no_wait_up && wait_up(c) < 0) {
        set_err(err, errlen, "%s: no brick came up within %u.%u s", what,
                c->opts.up_timeout_ms / 1000, c->opts.up_timeout_ms % 1000 / 100);
        kbc_free(c);
        return NULL;
    }
    return c;
}

kbc_t *kbc_new_from_volfile(const char *volfile, const kbc_opts_t *o, char *err, size_t errlen)
{
    kbc_t *c = kbc_alloc(o, NULL);
    if (!c) {
        set_err(err, errlen, "cannot start the client: out of memory");
        return NULL;
    }
    return build(c, volfile, "volfile", err, errlen);
}

/* ---- fetching the volfile (KB_PROC_GETSPEC), on the loop thread ---- */

struct getspec;
struct gs_att { struct getspec *gs; int idx; };

struct getspec {
    kbc_t *c;
    const kbc_spec_t *spec;
    int cur;                     /* server being tried */
    rpc_conn_t *conn;            /* its connection, NULL once closed */
    struct event *timer;         /* bounds one attempt */
    struct gs_att att[KBC_MAX_SERVERS];
    bool finished;               /* loop thread: no more work to do */
    bool done;                   /* (c->mu) the waiter may read and free gs */
    int status;                  /* 0, or -errno with why */
    char *volfile;
    char why[512];
};

static void gs_try(struct getspec *gs);

static void gs_close_conn(struct getspec *gs)
{
    rpc_conn_t *conn = gs->conn;
    gs->conn = NULL;
    if (conn)
        rpc_conn_close(conn);   /* may fail our pending call re-entrantly: ignored */
}

static void gs_release(void *arg)
{
    struct getspec *gs = arg;
    pthread_mutex_lock(&gs->c->mu);
    gs->done = true;             /* after this, gs belongs to the waiter */
    pthread_cond_broadcast(&gs->c->cv);
    pthread_mutex_unlock(&gs->c->mu);
}

/* Loop thread: the end of the fetch, success or not. */
static void gs_finish(struct getspec *gs, int status)
{
    gs->finished = true;
    gs->status = status;
    gs_close_conn(gs);
    if (gs->timer)
        event_free(gs->timer);
    gs->timer = NULL;
    if (status == -EHOSTUNREACH) {
        char list[400];
        snprintf(gs->why, sizeof(gs->why), "cannot reach any server of %s",
                 kbc_spec_servers_str(gs->spec, list, sizeof(list)));
    }
    /* Hand gs to the waiter only once the current callback stack (which may
     * still read gs) has unwound: a queued function runs after it. */
    if (kb_loop_run_in(gs->c->loop, gs_release, gs) < 0)
        gs_release(gs);  /* no memory to queue: the frames above only test gs->finished */
}

static void gs_next(struct getspec *gs)
{
    const kbc_server_t *sv = &gs->spec->servers[gs->cur];
    kb_debug("client", "volfile server %s:%u did not answer; trying the next", sv->host, sv->port);
    gs->cur++;
    gs_close_conn(gs);
    gs_try(gs);
}

static bool gs_stale(struct gs_att *a)
{
    return a->gs->finished || a->idx != a->gs->cur;
}

static void gs_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct getspec *gs = arg;
    if (!gs->finished)
        gs_next(gs);
}

/* The server answered with an error; REASON is its text (may be NULL). */
static void gs_reply_status(struct getspec *gs, int status, const char *reason)
{
    const char *vol = gs->spec->volume;
    if (status == -ENOENT)
        snprintf(gs->why, sizeof(gs->why), "volume '%s' does not exist", vol);
    else if (status == -EAGAIN || status == -ENOTCONN)
        snprintf(gs->why, sizeof(gs->why), "volume '%s' is not started", vol);
    else
        snprintf(gs->why, sizeof(gs->why), "volume '%s': %s", vol,
                 reason && *reason ? reason : strerror(-status));
    gs_finish(gs, status);
}

static void gs_reply(void *cookie, int status, const rpc_msg_t *reply)
{
    struct gs_att *a = cookie;
    struct getspec *gs = a->gs;
    if (gs_stale(a))
        return;
    if (!reply) {                /* transport: this server is no good */
        gs_next(gs);
        return;
    }
    kb_dec_t d;
    kb_dec_init(&d, reply->payload, reply->hdr.plen);
    if (status < 0) {            /* the server answered: authoritative */
        char *reason = NULL;
        kb_dec_str(&d, &reason, 512);
        gs_reply_status(gs, status, d.err ? NULL : reason);
        free(reason);
        return;
    }
    kb_dec_str(&d, &gs->volfile, KB_WIRE_PLEN_MAX);
    if (d.err || !gs->volfile) {
        free(gs->volfile);
        gs->volfile = NULL;
        snprintf(gs->why, sizeof(gs->why), "malformed volfile reply for '%s'", gs->spec->volume);
        gs_finish(gs, -EBADMSG);
        return;
    }
    gs_finish(gs, 0);
}

static void gs_event(void *arg, rpc_conn_t *conn, int event)
{
    struct gs_att *a = arg;
    struct getspec *gs = a->gs;
    if (gs_stale(a) || conn != gs->conn)
        return;
    if (event == RPC_EV_DOWN) {
        gs_next(gs);
        return;
    }
    if (event != RPC_EV_UP)
        return;
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_str(&e, gs->spec->volume);
    if (e.err) {
        kb_enc_free(&e);
        snprintf(gs->why, sizeof(gs->why), "out of memory");
        gs_finish(gs, -ENOMEM);
        return;
    }
    rpc_call(conn, KB_PROC_GETSPEC, e.p, (uint32_t)e.len, NULL, gs_reply, a);
    kb_enc_free(&e);
}

static void gs_try(struct getspec *gs)
{
    while (gs->cur < gs->spec->nservers) {
        const kbc_server_t *sv = &gs->spec->servers[gs->cur];
        struct gs_att *a = &gs->att[gs->cur];
        a->gs = gs;
        a->idx = gs->cur;
        rpc_client_opts_t o = {
            .host = sv->host, .port = sv->port, .reconnect = false,
            .connect_timeout_ms = gs->c->opts.connect_timeout_ms,
            .call_timeout_ms = gs->c->opts.connect_timeout_ms,
            .tls = gs->c->tls,
        };
        gs->conn = rpc_client_new(kb_loop_base(gs->c->loop), &o, gs_event, a);
        if (gs->conn) {
            /* connect + one call: bounded even if the peer never answers */
            uint32_t ms = 2 * gs->c->opts.connect_timeout_ms;
            struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
            evtimer_add(gs->timer, &tv);
            if (rpc_client_connect(gs->conn) == 0 || gs_stale(a))
                return;  /* in progress, or already moved on re-entrantly */
            gs_close_conn(gs);
        }
        gs->cur++;
    }
    gs_finish(gs, -EHOSTUNREACH);
}

static void gs_start(void *arg)
{
    struct getspec *gs = arg;
    gs->timer = evtimer_new(kb_loop_base(gs->c->loop), gs_timeout, gs);
    if (!gs->timer) {
        snprintf(gs->why, sizeof(gs->why), "out of memory");
        gs_finish(gs, -ENOMEM);
        return;
    }
    gs_try(gs);
}

/* Blocks until the loop side finished; returns the volfile (caller frees). */
static char *fetch_volfile(kbc_t *c, const kbc_spec_t *spec, char *err, size_t errlen)
{
    struct getspec *gs = kb_zalloc(sizeof(*gs));
    if (!gs) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    gs->c = c;
    gs->spec = spec;
    if (kb_loop_run_in(c->loop, gs_start, gs) < 0) {
        free(gs);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_lock(&c->mu);
    while (!gs->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    char *vf = gs->volfile;
    if (gs->status < 0)
        set_err(err, errlen, "%s", gs->why);
    free(gs);
    return vf;
}

kbc_t *kbc_new(const char *specstr, const kbc_opts_t *o, char *err, size_t errlen)
{
    kbc_spec_t spec;
    if (kbc_spec_parse(specstr, &spec, err, errlen) < 0)
        return NULL;
    kbc_t *c = kbc_alloc(o, spec.volume);
    if (!c) {
        if (o && o->tls_dir)
            set_err(err, errlen, "cannot load the TLS files (cert.pem, key.pem, ca.pem) of %s", o->tls_dir);
        else
            set_err(err, errlen, "cannot start the client: out of memory");
        kbc_spec_clear(&spec);
        return NULL;
    }
    char *vf = fetch_volfile(c, &spec, err, errlen);
    char what[300];
    snprintf(what, sizeof(what), "volume '%s'", spec.volume);
    kbc_spec_clear(&spec);
    if (!vf) {
        kbc_free(c);
        return NULL;
    }
    c = build(c, vf, what, err, errlen);
    if (c) {
        pthread_mutex_lock(&c->mu);
        c->volfile = vf;         /* what the watch compares against */
        pthread_mutex_unlock(&c->mu);
        if (!(c->spec = strdup(specstr)) || kbc_watch_start(c) < 0)
            kb_warn("client", "volume '%s': cannot watch the volfile; volume changes will need a remount",
                    c->volume);
    } else {
        free(vf);
    }
    return c;
}

void kbc_free(kbc_t *c)
{
    if (!c)
        return;
    kbc_watch_stop(c);
    struct timespec dl;
    int rc = 0;
    kbc_deadline(&dl, KBC_DRAIN_TIMEOUT_MS);
    pthread_mutex_lock(&c->mu);
    while (c->inflight && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cv, &c->mu, &dl);
    unsigned left = c->inflight;
    pthread_mutex_unlock(&c->mu);
    if (left) {
        /* Their callbacks still point into the graph: stop the loop so none
         * runs, and leave the graph allocated rather than free it under them. */
        kb_err("client", "%u calls still in flight at shutdown; leaking the graph", left);
        kb_loop_stop(c->loop);
        return;
    }
    struct loop_job j = { .c = c, .fn = fini_fn };
    job_sync(&j);
    kb_loop_stop(c->loop);
    kb_loop_free(c->loop);
    pthread_cond_destroy(&c->cv);
    pthread_cond_destroy(&c->watch_cv);
    pthread_mutex_destroy(&c->mu);
    free(c->volume);
    free(c->spec);
    free(c->volfile);
    free(c->tls_dir);
    if (c->tls)
        SSL_CTX_free(c->tls);
    free(c);
}

const char *kbc_volume(const kbc_t *c) { return c->volume; }
kb_loop_t *kbc_loop(const kbc_t *c) { return c->loop; }
kb_graph_t *kbc_graph(const kbc_t *c) { return c->graph; }

bool kbc_is_up(const kbc_t *c)
{
    kbc_t *m = (kbc_t *)c;
    pthread_mutex_lock(&m->mu);
    bool up = m->up;
    pthread_mutex_unlock(&m->mu);
    return up;
}

/* ---- credentials ---- */

void kbc_cred_self(kb_cred_t *cred)
{
    memset(cred, 0, sizeof(*cred));
    cred->uid = (uint32_t)geteuid();
    cred->gid = (uint32_t)getegid();
    cred->pid = (uint32_t)getpid();
    gid_t groups[16];
    int n = getgroups(16, groups);
    for (int i = 0; i < n && i < 16; i++)
        cred->groups[i] = (uint32_t)groups[i];
    cred->ngroups = n > 0 ? (uint32_t)n : 0;
    cred->lk_owner = (uint64_t)getpid();
}

void kbc_set_cred(kbc_t *c, const kb_cred_t *cred)
{
    pthread_mutex_lock(&c->mu);
    c->cred = *cred;
    pthread_mutex_unlock(&c->mu);
}

/* ---- async core ---- */

static void sub_release(kbc_t *c)
{
    pthread_mutex_lock(&c->mu);
    if (--c->inflight == 0)
        pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Loop thread only: > 0 while a user callback runs (see kbc_submit). */
static __thread unsigned sub_cbk_depth;

void kbc_sub_done(void *arg, const kb_reply_t *reply)
{
    struct kbc_sub *s = arg;
    kbc_t *c = s->c;
    kb_reply_t out;
    if (kbc_sub_retry_open(s, reply))
        return;
    kbc_sub_unwound(s, reply, &out);
    sub_cbk_depth++;
    s->cbk(s->cookie, &out);
    sub_cbk_depth--;
    kbc_sub_retire(s);
    free(s);
    sub_release(c);
}

void kbc_submit(kbc_t *c, kb_op_t op, const kb_args_t *args, const kb_cred_t *cred,
                kb_cbk_fn cbk, void *cookie)
{
    struct kbc_sub *s = malloc(sizeof(*s));
    if (s) {
        *s = (struct kbc_sub){ .c = c, .op = op, .args = args, .cred = *cred,
                               .cbk = cbk, .cookie = cookie };
        pthread_mutex_lock(&c->mu);
        c->inflight++;
        pthread_mutex_unlock(&c->mu);
        /* On the loop thread (an event handler, e.g. kembar-fuse reading
         * /dev/fuse there) the wind starts at once: no queue, no eventfd
         * wake-up. Not from inside a completion, though: a follow-up fop
         * submitted by a callback would otherwise re-enter translators
         * still unwinding the call that completed; it waits in the queue. */
        if (sub_cbk_depth == 0 && kb_loop_in_thread(c->loop)) {
            kbc_sub_run(s);
            return;
        }
        if (kb_loop_run_in(c->loop, kbc_sub_run, s) == 0)
            return;
        free(s);
        sub_release(c);
    }
    kb_reply_t r = { .status = -ENOMEM };
    cbk(cookie, &r);
}
