/*
 * state.c — the shared state of a kembar-fuse mount (fuse/state.h): its
 * memfd, its header, handle records and the gfids of entry-creating
 * requests. Node records belong to fuse/inode.c, journal entries to
 * fuse/journal.c.
 */
#include "fuse/state.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "client/takeover.h"
#include "lib/common.h"

#define PAGE 4096u

static size_t layout(const kbf_st_geom_t *g, kbf_st_hdr_t *h)
{
    size_t off = KBF_ST_HDR_SIZE;
    h->node_off = off;
    h->node_cap = g->node_cap;
    h->node_rec = sizeof(kbf_st_node_t);
    off += KB_ALIGN_UP((size_t)g->node_cap * sizeof(kbf_st_node_t), PAGE);
    h->handle_off = off;
    h->handle_cap = g->handle_cap;
    h->handle_rec = sizeof(kbf_st_handle_t);
    off += KB_ALIGN_UP((size_t)g->handle_cap * sizeof(kbf_st_handle_t), PAGE);
    h->journal_off = off;
    h->journal_size = KB_ALIGN_UP(g->journal_size, PAGE);
    off += h->journal_size;
    h->total_size = off;
    return off;
}

static void point(kbf_state_t *st)
{
    char *base = (char *)st->hdr;
    st->nodes = (kbf_st_node_t *)(base + st->hdr->node_off);
    st->handles = (kbf_st_handle_t *)(base + st->hdr->handle_off);
    st->journal = (uint8_t *)(base + st->hdr->journal_off);
}

int kbf_state_create(kbf_state_t *st, const kbf_st_geom_t *g, const uint8_t instance[16], bool anon)
{
    kbf_st_hdr_t h = { .magic = KBF_ST_MAGIC, .version = KBF_ST_VERSION, .hdr_size = KBF_ST_HDR_SIZE };
    size_t size = layout(g, &h);
    memcpy(h.instance, instance, 16);
    if (getrandom(h.salt, sizeof(h.salt), 0) != (ssize_t)sizeof(h.salt))
        return -errno;
    *st = (kbf_state_t){ .fd = -1 };
    void *m;
    if (anon) {
        m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    } else {
        st->fd = memfd_create("kembar-fuse-state", MFD_CLOEXEC);
        if (st->fd < 0)
            return -errno;
        if (ftruncate(st->fd, (off_t)size) < 0) {
            int e = errno;
            close(st->fd);
            return -e;
        }
        m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, st->fd, 0);
    }
    if (m == MAP_FAILED) {
        int e = errno;
        if (st->fd >= 0)
            close(st->fd);
        st->fd = -1;
        return -e;
    }
    st->hdr = m;
    st->size = size;
    *st->hdr = h;
    point(st);
    return 0;
}

int kbf_state_map(kbf_state_t *st, int fd, char *why, size_t whylen)
{
    *st = (kbf_state_t){ .fd = -1 };
    kbf_st_hdr_t h;
    ssize_t n = pread(fd, &h, sizeof(h), 0);
    if (n != (ssize_t)sizeof(h)) {
        snprintf(why, whylen, "the state is too short (%zd bytes)", n);
        return -EPROTO;
    }
    if (h.magic != KBF_ST_MAGIC || h.version != KBF_ST_VERSION || h.hdr_size != KBF_ST_HDR_SIZE) {
        snprintf(why, whylen, "the state is format %u, this binary knows format %u", h.version, KBF_ST_VERSION);
        return -EPROTO;
    }
    kbf_st_geom_t g = { h.node_cap, h.handle_cap, h.journal_size };
    kbf_st_hdr_t want = h;
    if (layout(&g, &want) != h.total_size || want.node_off != h.node_off || want.handle_off != h.handle_off ||
        want.journal_off != h.journal_off || h.node_rec != sizeof(kbf_st_node_t) ||
        h.handle_rec != sizeof(kbf_st_handle_t)) {
        snprintf(why, whylen, "the state's layout is not format %u's", KBF_ST_VERSION);
        return -EPROTO;
    }
    void *m = mmap(NULL, h.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        snprintf(why, whylen, "cannot map the state: %s", strerror(errno));
        return -errno;
    }
    st->fd = fd;
    st->hdr = m;
    st->size = h.total_size;
    point(st);
    return 0;
}

void kbf_state_unmap(kbf_state_t *st)
{
    if (st->hdr)
        munmap(st->hdr, st->size);
    if (st->fd >= 0)
        close(st->fd);
    *st = (kbf_state_t){ .fd = -1 };
}

/* ---------------- handle records ---------------- */

static uint32_t handle_slot(uint64_t value)
{
    return (uint32_t)value - 1;          /* client/graphs.c: low 32 bits = slot + 1 */
}

bool kbf_state_handle_put(kbf_state_t *st, const kbc_handle_info_t *h)
{
    uint32_t i = handle_slot(h->value);
    if ((uint32_t)h->value == 0 || i >= st->hdr->handle_cap)
        return false;
    kbf_st_handle_t *rec = &st->handles[i];
    uint32_t cur = __atomic_load_n(&rec->cur, __ATOMIC_RELAXED) & 1;
    kbf_st_hver_t *v = &rec->v[cur ^ 1];
    uint64_t opener = rec->v[cur].value == h->value ? rec->v[cur].opener : 0;
    memset(v, 0, sizeof(*v));
    v->value = h->value;
    v->opener = opener;
    memcpy(v->gfid, h->gfid.b, 16);
    v->flags = h->flags;
    v->is_dir = h->is_dir;
    v->lk_lost = h->lk_lost;
    bool incomplete = h->locks && h->locks->incomplete;
    for (uint32_t k = 0; k < h->nowners; k++) {
        if (k >= KBF_ST_OWNERS) {
            incomplete = true;
            break;
        }
        v->owners[k] = h->owners[k].owner;
        if (h->owners[k].process)
            v->owner_process |= 1u << k;
        v->nowners = (uint8_t)(k + 1);
    }
    for (uint32_t k = 0; h->locks && k < h->locks->n; k++) {
        if (k >= KBF_ST_LOCKS) {
            incomplete = true;
            break;
        }
        const kb_lkreq_t *r = &h->locks->req[k];
        v->locks[k] = (kbf_st_lock_t){ .owner = r->owner, .start = r->start, .len = r->len,
                                       .type = r->type, .pid = r->pid, .flock = r->flock };
        v->nlocks = (uint8_t)(k + 1);
    }
    v->incomplete = incomplete;
    __atomic_store_n(&rec->cur, cur ^ 1, __ATOMIC_RELEASE);
    uint32_t hwm = __atomic_load_n(&st->hdr->handle_hwm, __ATOMIC_RELAXED);
    if (i + 1 > hwm)
        __atomic_store_n(&st->hdr->handle_hwm, i + 1, __ATOMIC_RELEASE);
    return true;
}

void kbf_state_handle_opener(kbf_state_t *st, uint64_t value, uint64_t unique)
{
    uint32_t i = handle_slot(value);
    if ((uint32_t)value == 0 || i >= st->hdr->handle_cap)
        return;
    kbf_st_handle_t *rec = &st->handles[i];
    kbf_st_hver_t *v = &rec->v[__atomic_load_n(&rec->cur, __ATOMIC_ACQUIRE) & 1];
    if (v->value == value)
        __atomic_store_n(&v->opener, unique, __ATOMIC_RELEASE);
}

void kbf_state_handle_clear(kbf_state_t *st, uint64_t value)
{
    uint32_t i = handle_slot(value);
    if ((uint32_t)value == 0 || i >= st->hdr->handle_cap)
        return;
    kbf_st_handle_t *rec = &st->handles[i];
    uint32_t cur = __atomic_load_n(&rec->cur, __ATOMIC_RELAXED) & 1;
    if (rec->v[cur].value != value)
        return;                  /* not this handle's record (it was never recorded) */
    memset(&rec->v[cur ^ 1], 0, sizeof(rec->v[0]));
    __atomic_store_n(&rec->cur, cur ^ 1, __ATOMIC_RELEASE);
}

const kbf_st_hver_t *kbf_state_handle_get(const kbf_state_t *st, uint32_t i)
{
    if (i >= st->hdr->handle_cap)
        return NULL;
    const kbf_st_handle_t *rec = &st->handles[i];
    const kbf_st_hver_t *v = &rec->v[__atomic_load_n(&rec->cur, __ATOMIC_ACQUIRE) & 1];
    return v->value ? v : NULL;
}

/* ---------------- gfids of entry-creating requests ---------------- */

void kbf_state_gfid_for(const uint8_t salt[16], uint64_t unique, kb_gfid_t *out)
{
    uint8_t in[24], md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    memcpy(in, salt, 16);
    for (int i = 0; i < 8; i++)
        in[16 + i] = (uint8_t)(unique >> (8 * i));
    if (!EVP_Digest(in, sizeof(in), md, &mdlen, EVP_sha256(), NULL) || mdlen < 16) {
        kb_gfid_generate(out);   /* no digest: a random one (a resend then answers EEXIST) */
        return;
    }
    memcpy(out->b, md, 16);
    out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x40);   /* RFC 4122 version 4 ... */
    out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80);   /* ... variant 1 */
}
