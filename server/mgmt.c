/*
 * mgmt.c — CLI commands, run on kembard's management thread.
 *
 * A CLI command is a dialogue with several nodes (check, prepare bricks,
 * store the definition, report). It runs here, one command at a time, with
 * blocking PEER calls to every node involved — this node included, over TCP,
 * so there is one code path and the loop thread's state is never shared.
 *
 * "Nothing half-created": create checks every node first, prepares the
 * bricks (rolled back on any failure), and only then stores the definition.
 *
 * This file holds the dispatcher (kbd_cli_run) and the output every verb
 * writes through, the management thread with its queue of commands, and the
 * catch-up with definitions changed while this node was away. The verbs are
 * in mgmt_volume.c, mgmt_report.c and mgmt_bricks.c, the PEER calls in
 * mgmt_peers.c (map in mgmt.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include "lib/log.h"
#include "rpc/sync.h"
#include "server/mgmt.h"

/* ---------------- output buffer ---------------- */

void mgmt_outf(outbuf_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (o->len + (size_t)n + 1 > o->cap) {
        size_t cap = KB_MAX(o->cap * 2, o->len + (size_t)n + 256);
        char *p = realloc(o->p, cap);
        if (!p) {
            free(s);
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, (size_t)n + 1);
    o->len += (size_t)n;
    free(s);
}

/* JSON string (quoted, escaped). */
void mgmt_outj(outbuf_t *o, const char *s)
{
    mgmt_outf(o, "\"");
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            mgmt_outf(o, "\\%c", ch);
        else if (ch < 0x20)
            mgmt_outf(o, "\\u%04x", ch);
        else
            mgmt_outf(o, "%c", ch);
    }
    mgmt_outf(o, "\"");
}

int mgmt_fail(char **out, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(*out);
    if (vasprintf(out, fmt, ap) < 0)
        *out = NULL;
    va_end(ap);
    return rc;
}

void mgmt_human_bytes(unsigned long long b, char *buf, size_t len)
{
    const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double x = (double)b;
    int k = 0;
    while (x >= 1024 && k < 5) {
        x /= 1024;
        k++;
    }
    snprintf(buf, len, "%.1f %s", x, u[k]);
}

/* ---------------- dispatcher ---------------- */

int kbd_cli_run(const char *self_host, uint16_t self_port, int argc, char **argv, char **out)
{
    ctx_t c = { .self_host = self_host, .self_port = self_port };
    outbuf_t o = { 0 };
    *out = NULL;
    while (argc > 0 && strcmp(argv[0], "--json") == 0) {
        c.json = true;
        argc--;
        argv++;
    }
    int rc;
    if (argc >= 1 && strcmp(argv[0], "peer") == 0) {
        rc = mgmt_cmd_peer(&c, argc, argv, out, &o);
        goto done;
    }
    if (argc < 2 || strcmp(argv[0], "volume") != 0)
        return mgmt_fail(out, -EINVAL, "usage: kembar volume <create|start|stop|delete|info|status|list|set|get|heal|"
                                  "add-brick|remove-brick|replace-brick|rebalance> ...");
    argc--;
    argv++;
    const char *verb = argv[0];
    if (strcmp(verb, "create") == 0)
        rc = mgmt_cmd_create(&c, argc, argv, out, &o);
    else if (strcmp(verb, "start") == 0)
        rc = mgmt_cmd_state(&c, argc, argv, KBD_VOL_STARTED, out, &o);
    else if (strcmp(verb, "stop") == 0)
        rc = mgmt_cmd_state(&c, argc, argv, KBD_VOL_STOPPED, out, &o);
    else if (strcmp(verb, "delete") == 0)
        rc = mgmt_cmd_delete(&c, argc, argv, out, &o);
    else if (strcmp(verb, "info") == 0)
        rc = mgmt_cmd_info(&c, argc, argv, out, &o, false);
    else if (strcmp(verb, "list") == 0)
        rc = mgmt_cmd_info(&c, argc, argv, out, &o, true);
    else if (strcmp(verb, "status") == 0)
        rc = mgmt_cmd_status(&c, argc, argv, out, &o);
    else if (strcmp(verb, "set") == 0 && argc == 2 && strcmp(argv[1], "help") == 0)
        rc = mgmt_cmd_set_help(&c, &o);
    else if (strcmp(verb, "set") == 0)
        rc = mgmt_cmd_set(&c, argc, argv, out, &o);
    else if (strcmp(verb, "get") == 0)
        rc = mgmt_cmd_get(&c, argc, argv, out, &o);
    else if (strcmp(verb, "heal") == 0)
        rc = mgmt_cmd_heal(&c, argc, argv, out, &o);
    else if (strcmp(verb, "add-brick") == 0)
        rc = mgmt_cmd_add_brick(&c, argc, argv, out, &o);
    else if (strcmp(verb, "rebalance") == 0)
        rc = mgmt_cmd_rebalance(&c, argc, argv, out, &o);
    else if (strcmp(verb, "remove-brick") == 0)
        rc = mgmt_cmd_remove_brick(&c, argc, argv, out, &o);
    else if (strcmp(verb, "replace-brick") == 0)
        rc = mgmt_cmd_replace_brick(&c, argc, argv, out, &o);
    else if (strcmp(verb, "profile") == 0)
        rc = mgmt_cmd_profile(&c, argc, argv, out, &o, false);
    else if (strcmp(verb, "top") == 0)
        rc = mgmt_cmd_profile(&c, argc, argv, out, &o, true);
    else
        rc = mgmt_fail(out, -EINVAL, "unknown command 'volume %s'", verb);
done:
    if (rc) {
        free(o.p);
        if (!*out)
            *out = strdup(strerror(-rc));
        return rc;
    }
    free(*out);
    *out = o.p ? o.p : strdup("");
    return 0;
}

/* ---------------- the management thread ---------------- */

typedef struct job {
    uint64_t conn_id, xid;
    int argc;
    char **argv;
    int status;
    char *out;
    kbd_t *d;
    struct job *next;
} job_t;

/* ---------------- catching up with a missed change ---------------- */

/* A node that was down while a definition changed (replace-brick, remove-brick
 * commit, set, stop) comes back with the old one and would serve a brick
 * that left the volume, or hand out an old volfile. So, at start and every
 * CATCH_UP_MS, each volume this node knows is compared with what the other
 * nodes of the volume hold, and a newer definition of the same volume is
 * stored here (which starts or stops local bricks as it says). */
#define CATCH_UP_MS 15000

static void catch_up_one(const ctx_t *c, const char *name)
{
    char *ignore = NULL;
    kbd_volume_t *v = mgmt_get_volume(c, name, &ignore), *best = NULL;
    free(ignore);
    if (!v)
        return;
    node_t *nodes;
    int n = mgmt_volume_nodes(v, &nodes);
    for (int k = 0; k < n; k++) {
        char *text = NULL, err[256];
        char *argv[] = { "peer", "get", (char *)name };
        /* a short deadline: a hung node must not hold the CLI queue behind us */
        if (mgmt_is_self(c, &nodes[k]) ||
            rpc_sync_argv(nodes[k].host, nodes[k].port, KB_PROC_PEER, 3, argv, 2000, &text, err, sizeof(err))) {
            free(text);
            continue;
        }
        kbd_volume_t *nv = text ? kbd_volume_parse(text, err, sizeof(err)) : NULL;
        free(text);
        if (nv && kb_gfid_eq(&nv->id, &v->id) && nv->version > (best ? best : v)->version) {
            kbd_volume_free(best);
            best = nv;
        } else {
            kbd_volume_free(nv);
        }
    }
    if (best) {
        node_t self = { (char *)c->self_host, c->self_port };
        char csv[1024], *text = kbd_volume_format(best), *reply = NULL;
        mgmt_local_csv(best, &self, csv, sizeof(csv));
        int rc = text ? mgmt_peer(c->self_host, c->self_port, &reply, 4, "peer", "store", csv, text) : -ENOMEM;
        if (rc)
            kb_warn("mgmt", "volume '%s': cannot take the newer definition (version %u): %s", name, best->version,
                    reply ? reply : strerror(-rc));
        else
            kb_info("mgmt", "volume '%s' changed while this node was away: definition version %u -> %u", name,
                    v->version, best->version);
        free(reply);
        free(text);
        kbd_volume_free(best);
    }
    free(nodes);
    kbd_volume_free(v);
}

static void catch_up(kbd_t *d)
{
    ctx_t c = { .self_host = d->self_host, .self_port = d->port };
    char *list = NULL, *save = NULL;
    if (mgmt_peer(c.self_host, c.self_port, &list, 2, "peer", "list") == 0 && list)
        for (char *name = strtok_r(list, "\n", &save); name; name = strtok_r(NULL, "\n", &save))
            catch_up_one(&c, name);
    free(list);
}

struct kbd_mgmt {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_t *head, *tail;
    int queued;
    bool stop, started;
};

static void job_reply(void *arg)
{
    job_t *j = arg;
    kbd_conn_reply_text(j->d, j->conn_id, j->xid, KB_PROC_CLI, j->status, j->out);
    for (int i = 0; i < j->argc; i++)
        free(j->argv[i]);
    free(j->argv);
    free(j->out);
    free(j);
}

static void *mgmt_main(void *arg)
{
    kbd_t *d = arg;
    struct kbd_mgmt *m = d->mgmt;
    uint64_t next_catch_up = kb_now_ms() + 1000;     /* once the node is serving */
    pthread_mutex_lock(&m->lock);
    while (!m->stop) {
        job_t *j = m->head;
        if (!j && kb_now_ms() >= next_catch_up) {
            pthread_mutex_unlock(&m->lock);
            catch_up(d);
            next_catch_up = kb_now_ms() + CATCH_UP_MS;
            pthread_mutex_lock(&m->lock);
            continue;
        }
        if (!j) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ms = next_catch_up - KB_MIN(kb_now_ms(), next_catch_up);
            ts.tv_sec += (time_t)(ms / 1000);
            ts.tv_nsec += (long)(ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&m->cond, &m->lock, &ts);
            continue;
        }
        m->head = j->next;
        if (!m->head)
            m->tail = NULL;
        m->queued--;
        pthread_mutex_unlock(&m->lock);
        j->status = kbd_cli_run(d->self_host, d->port, j->argc, j->argv, &j->out);
        if (kb_loop_run_in(d->loop, job_reply, j))
            kb_err("mgmt", "cannot post a reply");
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

int kbd_mgmt_start(kbd_t *d)
{
    struct kbd_mgmt *m = kb_zalloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    d->mgmt = m;
    if (pthread_create(&m->thread, NULL, mgmt_main, d))
        return -errno;
    m->started = true;
    return 0;
}

void kbd_mgmt_stop(kbd_t *d)
{
    struct kbd_mgmt *m = d->mgmt;
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->stop = true;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (m->started)
        pthread_join(m->thread, NULL);
    kbd_rebal_shutdown(d);
    while (m->head) {
        job_t *j = m->head;
        m->head = j->next;
        for (int i = 0; i < j->argc; i++)
            free(j->argv[i]);
        free(j->argv);
        free(j);
    }
    free(m);
    d->mgmt = NULL;
}

int kbd_mgmt_submit(kbd_t *d, uint64_t conn_id, uint64_t xid, int argc, char **argv)
{
    struct kbd_mgmt *m = d->mgmt;
    job_t *j = kb_zalloc(sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->conn_id = conn_id;
    j->xid = xid;
    j->argc = argc;
    j->argv = argv;
    j->d = d;
    pthread_mutex_lock(&m->lock);
    if (m->queued >= 64) {
        pthread_mutex_unlock(&m->lock);
        free(j);
        return -EBUSY;
    }
    if (m->tail)
        m->tail->next = j;
    else
        m->head = j;
    m->tail = j;
    m->queued++;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return 0;
}
