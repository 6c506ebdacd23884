/*
 * xlator.c — calls, notify and the graph built from a volfile.
 *
 * Promises (xlator.h): every wind completes exactly once, through the
 * winder's callback; an allocation failure completes with -ENOMEM; the call
 * and its local block are freed right after the winder's callback returns.
 * Debug builds assert the exactly-once rule.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <event2/event.h>
#include "lib/log.h"
#include "xlators/xlator.h"

/* ---------------- calls ---------------- */

#define CALL_HDR_SIZE KB_ALIGN_UP(sizeof(kb_call_t), (size_t)16)

static void inflight_add(kb_graph_t *g, kb_call_t *c)
{
    kb_call_t *head = &g->inflight;
    if (!head->inflight_next)
        head->inflight_next = head->inflight_prev = head;
    c->inflight_next = head;
    c->inflight_prev = head->inflight_prev;
    head->inflight_prev->inflight_next = c;
    head->inflight_prev = c;
    g->ninflight++;
}

static void inflight_del(kb_graph_t *g, kb_call_t *c)
{
    if (!c->inflight_next)
        return;
    c->inflight_prev->inflight_next = c->inflight_next;
    c->inflight_next->inflight_prev = c->inflight_prev;
    g->ninflight--;
}

void kb_wind(kb_xlator_t *child, kb_op_t op, const kb_args_t *args, const kb_cred_t *cred,
             uint64_t req_id, kb_cbk_fn cbk, void *cookie)
{
    size_t local = child->type->local_size;
    kb_call_t *c = calloc(1, CALL_HDR_SIZE + local);
    if (!c) {
        kb_reply_t r = { .status = -ENOMEM };
        cbk(cookie, &r);
        return;
    }
    c->xl = child;
    c->op = op;
    c->args = args;
    if (cred)
        c->cred = *cred;
    c->req_id = req_id;
    c->start_ns = kb_now_ns();
    c->cbk = cbk;
    c->cookie = cookie;
    c->local = local ? (char *)c + CALL_HDR_SIZE : NULL;
    if (child->graph)
        inflight_add(child->graph, c);
    kb_fop_fn fn = (unsigned)op < KB_FOP_MAX ? child->type->ops[op] : NULL;
    if ((unsigned)op >= KB_FOP_MAX) {
        kb_unwind_err(c, -ENOSYS);
        return;
    }
    (fn ? fn : kb_pass)(c);
}

void kb_unwind(kb_call_t *call, const kb_reply_t *reply)
{
#ifndef NDEBUG
    assert(!call->completed && "a call completed twice");
    call->completed = 1;
#endif
    if (reply->status < 0 && reply->status != -ENOENT && kb_log_level >= KB_LOG_TRACE)
        kb_log_write(KB_LOG_TRACE, call->xl->name, call->req_id, "%s -> %s",
                     kb_fop_name(call->op), strerror(-reply->status));
    if (call->xl->graph)
        inflight_del(call->xl->graph, call);
    call->cbk(call->cookie, reply);
    free(call);
}

void kb_unwind_err(kb_call_t *call, int err)
{
    kb_reply_t r = { .status = err < 0 ? err : -EIO };
    kb_unwind(call, &r);
}

static void pass_cbk(void *cookie, const kb_reply_t *reply)
{
    kb_unwind((kb_call_t *)cookie, reply);
}

void kb_pass(kb_call_t *call)
{
    if (call->xl->nchildren < 1) {
        kb_unwind_err(call, -ENOSYS);
        return;
    }
    kb_wind_from(call, call->xl->children[0], call->args, pass_cbk, call);
}

/* ---------------- notify ---------------- */

int kb_xlator_child_index(const kb_xlator_t *xl, const kb_xlator_t *child)
{
    for (int i = 0; i < xl->nchildren; i++)
        if (xl->children[i] == child)
            return i;
    return -1;
}

void kb_notify_parents(kb_xlator_t *xl, int event)
{
    if (event == KB_EV_CHILD_UP)
        xl->up = true;
    else if (event == KB_EV_CHILD_DOWN)
        xl->up = false;
    if (xl->nparents == 0) {
        if (xl->graph && xl->graph->on_event)
            xl->graph->on_event(xl->graph, event);
        return;
    }
    for (int i = 0; i < xl->nparents; i++) {
        kb_xlator_t *p = xl->parents[i];
        if (p->type->notify)
            p->type->notify(p, event, xl);
        else
            kb_notify_default(p, event, xl);
    }
}

/* Default: a translator is up while any child is up. */
void kb_notify_default(kb_xlator_t *xl, int event, kb_xlator_t *child)
{
    if (!child)
        return;              /* PARENT_UP/DOWN: nothing to do by default */
    bool any = false;
    for (int i = 0; i < xl->nchildren; i++)
        any |= xl->children[i]->up;
    if (any && !xl->up)
        kb_notify_parents(xl, KB_EV_CHILD_UP);
    else if (!any && xl->up)
        kb_notify_parents(xl, KB_EV_CHILD_DOWN);
    else if (event == KB_EV_CHILD_CONNECTING)
        kb_notify_parents(xl, event);
}

/* ---------------- ctl ---------------- */

void kb_ctl_printf(struct kb_ctl_status *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[1024];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    n = KB_MIN(n, (int)sizeof(tmp) - 1);
    if (st->len + (size_t)n + 1 > st->cap) {
        size_t cap = KB_MAX(st->cap * 2, st->len + (size_t)n + 256);
        char *t = realloc(st->text, cap);
        if (!t)
            return;
        st->text = t;
        st->cap = cap;
    }
    memcpy(st->text + st->len, tmp, (size_t)n);
    st->len += (size_t)n;
    st->text[st->len] = 0;
}

int kb_graph_ctl(kb_graph_t *g, int code, void *arg)
{
    int first = 0;
    for (int i = 0; i < g->nall; i++) {
        kb_xlator_t *xl = g->all[i];
        if (xl->type->ctl) {
            int rc = xl->type->ctl(xl, code, arg);
            if (rc && rc != -ENOSYS && !first)
                first = rc;
        }
    }
    return first;
}

uint64_t kb_xlator_features(kb_xlator_t *xl)
{
    uint64_t f = 0;
    if (!xl->type->ctl || xl->type->ctl(xl, KB_CTL_FEATURES, &f))
        return 0;
    return f;
}

bool kb_xlator_is_local(kb_xlator_t *xl)
{
    bool local = false;
    if (!xl->type->ctl || xl->type->ctl(xl, KB_CTL_LOCAL, &local))
        return false;
    return local;
}

/* ---------------- volfile ---------------- */

static void xl_free(kb_xlator_t *xl)
{
    if (!xl)
        return;
    free(xl->name);
    free(xl->children);
    free(xl->parents);
    kb_opts_free(xl->opts);
    free(xl);
}

static int add_ptr(kb_xlator_t ***arr, int *n, kb_xlator_t *p)
{
    kb_xlator_t **a = realloc(*arr, (size_t)(*n + 1) * sizeof(*a));
    if (!a)
        return -ENOMEM;
    a[(*n)++] = p;
    *arr = a;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    return s;
}

static void graph_free_partial(kb_graph_t *g)
{
    for (int i = 0; i < g->nall; i++)
        xl_free(g->all[i]);
    free(g->all);
    free(g);
}

/* One line of a stanza. Returns 0, or -EINVAL with a reason. */
static int parse_stanza_line(kb_graph_t *g, kb_xlator_t *cur, char *line, int lineno,
                             char *err, size_t errlen)
{
    char *kw = line, *rest = line;
    while (*rest && !isspace((unsigned char)*rest))
        rest++;
    if (*rest)
        *rest++ = 0;
    rest = trim(rest);
    if (strcmp(kw, "type") == 0) {
        cur->type = kb_xlator_type_find(rest);
        if (!cur->type) {
            snprintf(err, errlen, "line %d: unknown translator type '%s'", lineno, rest);
            return -EINVAL;
        }
    } else if (strcmp(kw, "option") == 0) {
        char *val = rest;
        while (*val && !isspace((unsigned char)*val))
            val++;
        if (*val)
            *val++ = 0;
        if (!*rest || kb_opts_set(cur->opts, rest, trim(val))) {
            snprintf(err, errlen, "line %d: bad option line", lineno);
            return -EINVAL;
        }
    } else if (strcmp(kw, "subvolumes") == 0) {
        for (char *save = NULL, *tok = strtok_r(rest, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
            kb_xlator_t *child = kb_graph_find(g, tok);
            if (!child) {
                snprintf(err, errlen, "line %d: subvolume '%s' is not defined before '%s'", lineno, tok, cur->name);
                return -EINVAL;
            }
            if (cur->nchildren >= KB_MAX_CHILDREN || add_ptr(&cur->children, &cur->nchildren, child) ||
                add_ptr(&child->parents, &child->nparents, cur)) {
                snprintf(err, errlen, "line %d: too many subvolumes", lineno);
                return -EINVAL;
            }
            if (child->nparents == 1)
                child->child_index_in_parent = cur->nchildren - 1;
        }
    } else {
        snprintf(err, errlen, "line %d: unexpected '%s'", lineno, kw);
        return -EINVAL;
    }
    return 0;
}

kb_graph_t *kb_graph_parse(const char *text, char *err, size_t errlen)
{
    kb_graph_t *g = kb_zalloc(sizeof(*g));
    char *copy = strdup(text ? text : "");
    if (!g || !copy) {
        snprintf(err, errlen, "out of memory");
        free(g);
        free(copy);
        return NULL;
    }
    kb_xlator_t *cur = NULL;
    int lineno = 0, rc = 0;
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        line = trim(line);
        if (!*line)
            continue;
        if (strncmp(line, "volume ", 7) == 0 && !cur) {
            char *name = trim(line + 7);
            if (!*name || kb_graph_find(g, name)) {
                snprintf(err, errlen, "line %d: %s volume name '%s'", lineno, *name ? "duplicate" : "empty", name);
                rc = -EINVAL;
                break;
            }
            cur = kb_zalloc(sizeof(*cur));
            if (!cur || !(cur->name = strdup(name)) || !(cur->opts = kb_opts_new()) ||
                add_ptr(&g->all, &g->nall, cur)) {
                xl_free(cur);
                snprintf(err, errlen, "out of memory");
                rc = -ENOMEM;
                break;
            }
            cur->graph = g;
        } else if (strcmp(line, "end-volume") == 0 && cur) {
            if (!cur->type) {
                snprintf(err, errlen, "line %d: volume '%s' has no type", lineno, cur->name);
                rc = -EINVAL;
            }
            cur = NULL;
        } else if (cur) {
            rc = parse_stanza_line(g, cur, line, lineno, err, errlen);
        } else {
            snprintf(err, errlen, "line %d: expected 'volume NAME'", lineno);
            rc = -EINVAL;
        }
    }
    free(copy);
    if (!rc && cur) {
        snprintf(err, errlen, "volume '%s' is missing end-volume", cur->name);
        rc = -EINVAL;
    }
    if (!rc && g->nall == 0) {
        snprintf(err, errlen, "empty volfile");
        rc = -EINVAL;
    }
    if (rc) {
        graph_free_partial(g);
        return NULL;
    }
    g->top = g->all[g->nall - 1];
    for (int i = 0; i < g->nall - 1; i++)
        if (g->all[i]->nparents == 0) {
            snprintf(err, errlen, "volume '%s' is not used by any other", g->all[i]->name);
            graph_free_partial(g);
            return NULL;
        }
    return g;
}

kb_xlator_t *kb_graph_find(kb_graph_t *g, const char *name)
{
    for (int i = 0; i < g->nall; i++)
        if (strcmp(g->all[i]->name, name) == 0)
            return g->all[i];
    return NULL;
}

uint64_t kb_graph_next_req_id(kb_graph_t *g) { return ++g->next_req_id; }

static void xlator_fini(kb_xlator_t *xl)
{
    if (xl->inited && xl->type->fini)
        xl->type->fini(xl);
    xl->inited = false;
}

int kb_graph_init(kb_graph_t *g, struct event_base *base, char *err, size_t errlen)
{
    g->base = base;
    int i, rc = 0;
    for (i = 0; i < g->nall; i++) {
        kb_xlator_t *xl = g->all[i];
        char why[256] = "";
        if ((rc = kb_opts_validate(xl->opts, xl->type->options, why, sizeof(why)))) {
            snprintf(err, errlen, "%s (%s): %s", xl->name, xl->type->name, why);
            break;
        }
        if (xl->type->init && (rc = xl->type->init(xl))) {
            snprintf(err, errlen, "%s (%s): init failed: %s", xl->name, xl->type->name, strerror(-rc));
            /* a failed init may have left partial state: its fini cleans it */
            if (xl->type->fini)
                xl->type->fini(xl);
            break;
        }
        xl->inited = true;
    }
    if (rc) {
        while (--i >= 0)
            xlator_fini(g->all[i]);
        return rc;
    }
    /* PARENT_UP top-down: protocol/client starts connecting on it. */
    for (i = g->nall - 1; i >= 0; i--)
        if (g->all[i]->type->notify)
            g->all[i]->type->notify(g->all[i], KB_EV_PARENT_UP, NULL);
    return 0;
}

/* Teardown runs in two phases. PARENT_DOWN first, top-down, while every
 * translator is still alive: protocol/client closes its connection, which
 * fails its calls in flight, and their completions travel up through
 * translators that can still take them (a completion that winds again, e.g.
 * an unlock, meets a closed client and fails at once). Only then fini, so no
 * callback ever reaches freed state. */
void kb_graph_fini(kb_graph_t *g)
{
    if (!g)
        return;
    for (int i = g->nall - 1; i >= 0; i--)
        if (g->all[i]->inited && g->all[i]->type->notify)
            g->all[i]->type->notify(g->all[i], KB_EV_PARENT_DOWN, NULL);
    if (g->ninflight)
        kb_warn("graph", "%u calls still in flight at teardown", g->ninflight);
    for (int i = g->nall - 1; i >= 0; i--)
        xlator_fini(g->all[i]);
    graph_free_partial(g);
}

void kb_graph_dump_inflight(kb_graph_t *g)
{
    kb_call_t *head = &g->inflight;
    uint64_t now = kb_now_ns();
    kb_info("graph", "%u calls in flight", g->ninflight);
    if (!head->inflight_next)
        return;
    for (kb_call_t *c = head->inflight_next; c != head; c = c->inflight_next)
        kb_log_write(KB_LOG_INFO, c->xl->name, c->req_id, "in flight: %s for %.3f s",
                     kb_fop_name(c->op), (double)(now - c->start_ns) / 1e9);
}
