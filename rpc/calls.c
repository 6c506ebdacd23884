/*
 * calls.c — the calls of a connection that wait for their reply
 * (rpc/conn.h, conn_internal.h).
 *
 * What it promises: every rpc_call's reply_fn runs exactly once — with the
 * reply (conn.c hands it over by xid), or with -ENOTCONN (not up, or the
 * connection died or was closed: rpc_fail_all), -ETIMEDOUT (older than
 * call_timeout_ms), -ENOMEM or -EMSGSIZE. It may run before rpc_call
 * returns.
 *
 * Pending calls live in a hash table keyed by xid (replies come in any
 * order) and on a list in issue order. call_timeout_ms is fixed per
 * connection, so issue order is deadline order: one timer aimed at the
 * oldest call covers them all, and nothing scans the pending set per reply.
 */
#include "rpc/conn_internal.h"
#include "lib/common.h"

#include <event2/event.h>

static int tbl_grow(rpc_conn_t *c)
{
    uint32_t ncap = (c->tbl_mask + 1) * 2;
    struct pcall **nt = calloc(ncap, sizeof(*nt));
    if (!nt)
        return -ENOMEM;
    for (uint32_t i = 0; i <= c->tbl_mask; i++) {
        for (struct pcall *p = c->tbl[i], *next; p; p = next) {
            next = p->hnext;
            p->hnext = nt[p->xid & (ncap - 1)];
            nt[p->xid & (ncap - 1)] = p;
        }
    }
    free(c->tbl);
    c->tbl = nt;
    c->tbl_mask = ncap - 1;
    return 0;
}

static void pcall_insert(rpc_conn_t *c, struct pcall *p)
{
    if (c->ncalls >= c->tbl_mask + 1)
        (void)tbl_grow(c);     /* on failure the chains just get longer */
    struct pcall **head = &c->tbl[p->xid & c->tbl_mask];
    p->hnext = *head;
    *head = p;
    p->next = NULL;
    p->prev = c->newest;
    if (c->newest)
        c->newest->next = p;
    else
        c->oldest = p;
    c->newest = p;
    c->ncalls++;
}

static void pcall_unlink(rpc_conn_t *c, struct pcall *p)
{
    struct pcall **pp = &c->tbl[p->xid & c->tbl_mask];
    while (*pp != p)
        pp = &(*pp)->hnext;
    *pp = p->hnext;
    if (p->prev)
        p->prev->next = p->next;
    else
        c->oldest = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        c->newest = p->prev;
    c->ncalls--;
}

/* Find and unlink the call waiting for XID (NULL: unknown or timed out). */
struct pcall *rpc_pcall_take(rpc_conn_t *c, uint64_t xid)
{
    for (struct pcall *p = c->tbl[xid & c->tbl_mask]; p; p = p->hnext) {
        if (p->xid == xid) {
            pcall_unlink(c, p);
            return p;
        }
    }
    return NULL;
}

/* Complete P with an error and free it. The callback may re-enter. */
void rpc_pcall_fail(struct pcall *p, int err)
{
    rpc_reply_fn fn = p->fn;
    void *cookie = p->cookie;
    free(p);
    fn(cookie, err, NULL);
}

/* Fail every pending call. Callbacks may issue new calls (they fail at once:
 * the caller made sure the state is no longer CS_UP) or close C. */
void rpc_fail_all(rpc_conn_t *c, int err)
{
    evtimer_del(c->call_ev);
    while (c->oldest) {
        struct pcall *p = c->oldest;
        pcall_unlink(c, p);
        rpc_pcall_fail(p, err);
    }
}

static void arm_call_timer(rpc_conn_t *c)
{
    if (!c->oldest || evtimer_pending(c->call_ev, NULL))
        return;
    uint64_t now = kb_now_ms();
    uint64_t ms = c->oldest->deadline_ms > now ? c->oldest->deadline_ms - now : 0;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(c->call_ev, &tv);
}

void rpc_on_call_timer(evutil_socket_t fd, short what, void *arg)
{
    rpc_conn_t *c = arg;
    rpc_conn_hold(c);
    uint64_t now = kb_now_ms();
    while (c->oldest && c->oldest->deadline_ms <= now) {
        struct pcall *p = c->oldest;
        pcall_unlink(c, p);
        kb_debug(LOG_CTX, "call xid %llu to %s timed out", (unsigned long long)p->xid, c->peer);
        rpc_pcall_fail(p, -ETIMEDOUT);
    }
    arm_call_timer(c);
    rpc_conn_release(c);
}

void rpc_call(rpc_conn_t *c, uint32_t proc, const void *payload, uint32_t plen,
              kb_buf_t *bulk, rpc_reply_fn fn, void *cookie)
{
    if (!rpc_conn_is_up(c)) {
        fn(cookie, -ENOTCONN, NULL);
        return;
    }
    struct pcall *p = malloc(sizeof(*p));
    if (!p) {
        fn(cookie, -ENOMEM, NULL);
        return;
    }
    p->xid = ++c->next_xid;
    int rc = rpc_send_frame(c, KB_MSG_CALL, p->xid, proc, 0, payload, plen, bulk);
    if (rc < 0) {
        free(p);
        fn(cookie, rc, NULL);
        return;
    }
    p->fn = fn;
    p->cookie = cookie;
    p->deadline_ms = kb_now_ms() + c->call_timeout_ms;
    pcall_insert(c, p);
    arm_call_timer(c);
}
