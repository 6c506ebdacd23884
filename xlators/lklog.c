/*
 * lklog.c — the log of granted application lock requests of one fd
 * (lklog.h says what it is for and what it keeps).
 */
#include <stdlib.h>
#include "xlators/lklog.h"

static void drop_owner(kb_lklog_t *l, uint64_t owner, bool flock)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < l->n; i++)
        if (l->req[i].owner != owner || l->req[i].flock != flock)
            l->req[k++] = l->req[i];
    l->n = k;
}

bool kb_lklog_note(kb_lklog_t *l, const kb_args_t *a)
{
    uint32_t cmd = a->flags & KB_LK_CMD_MASK;
    if ((cmd != KB_LK_SETLK && cmd != KB_LK_SETLKW) || (a->flags & KB_LK_CANCEL))
        return true;
    bool flock = a->lock.flock;
    if (a->lock.type == KB_LK_UNLCK && a->lock.start == 0 && a->lock.len == 0) {
        drop_owner(l, a->lock.owner, flock);
        return true;
    }
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? 2 * l->cap : 4;
        kb_lkreq_t *n = cap <= KB_LKLOG_MAX ? realloc(l->req, cap * sizeof(*n)) : NULL;
        if (!n) {
            bool was = l->incomplete;
            l->incomplete = true;
            return was;
        }
        l->req = n;
        l->cap = cap;
    }
    l->req[l->n++] = (kb_lkreq_t){ .owner = a->lock.owner, .type = a->lock.type, .pid = a->lock.pid,
                                   .start = a->lock.start, .len = a->lock.len, .flock = flock };
    return true;
}

void kb_lklog_flush(kb_lklog_t *l, uint64_t owner)
{
    drop_owner(l, owner, false);
}

void kb_lklog_free(kb_lklog_t *l)
{
    free(l->req);
    *l = (kb_lklog_t){ 0 };
}

void kb_lklog_args(const kb_lklog_t *l, uint32_t i, kb_args_t *a)
{
    const kb_lkreq_t *r = &l->req[i];
    *a = (kb_args_t){ .flags = KB_LK_SETLK | KB_LK_RECLAIM,
                      .lock = { .type = r->type, .start = r->start, .len = r->len, .owner = r->owner,
                                .pid = r->pid, .flock = r->flock } };
}
