/*
 * state_test.c — what outlives kembar-fuse's serving process (fuse/state.c,
 * fuse/inode.c over shared records): the memfd's header, the node table
 * taken over by a second table on the same records (node ids and counts
 * kept, freed records reused, torn records harmless), handle records and
 * their lock logs round trip (a version torn by a kill leaves the previous
 * one), and the gfids of entry-creating requests.
 *
 * A second mapping of the memfd stands for the next serving process.
 */
#include <criterion/criterion.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuse/inode.c"
#include "fuse/state.c"

static const kbf_st_geom_t small = { .node_cap = 4096, .handle_cap = 64, .journal_size = 1 << 20 };
static const uint8_t inst[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static kb_gfid_t gfid_n(unsigned n)
{
    kb_gfid_t g = { { 0 } };
    g.b[0] = 0xcd;
    g.b[14] = (uint8_t)(n >> 8);
    g.b[15] = (uint8_t)n;
    return g;
}

/* The next process: its own mapping of the same memfd. */
static void remap(const kbf_state_t *a, kbf_state_t *b)
{
    char why[256] = "";
    int fd = dup(a->fd);
    cr_assert_geq(fd, 0);
    cr_assert_eq(kbf_state_map(b, fd, why, sizeof(why)), 0, "%s", why);
}

Test(fuse_state, header_layout_and_a_second_mapping)
{
    kbf_state_t a, b;
    cr_assert_eq(kbf_state_create(&a, &small, inst, false), 0);
    cr_assert_eq(a.hdr->magic, KBF_ST_MAGIC);
    cr_assert_eq(a.hdr->version, KBF_ST_VERSION);
    cr_assert_eq(memcmp(a.hdr->instance, inst, 16), 0);
    cr_assert_eq(a.hdr->node_cap, 4096);
    cr_assert_eq(a.hdr->node_off % 4096, 0);
    cr_assert_geq(a.hdr->handle_off, a.hdr->node_off + 4096 * sizeof(kbf_st_node_t));
    cr_assert_eq(a.hdr->total_size, a.hdr->journal_off + a.hdr->journal_size);
    remap(&a, &b);
    cr_assert_eq(memcmp(b.hdr->salt, a.hdr->salt, 16), 0);
    a.hdr->generation = 7;           /* one memory: what one writes the other reads */
    cr_assert_eq(b.hdr->generation, 7);
    kbf_state_unmap(&b);
    kbf_state_unmap(&a);
}

Test(fuse_state, an_unknown_format_is_refused_with_a_reason)
{
    kbf_state_t a, b;
    char why[256] = "";
    cr_assert_eq(kbf_state_create(&a, &small, inst, false), 0);
    a.hdr->version = KBF_ST_VERSION + 1;
    int fd = dup(a.fd);
    cr_assert_eq(kbf_state_map(&b, fd, why, sizeof(why)), -EPROTO);
    cr_assert(strstr(why, "format"), "why: %s", why);
    a.hdr->version = KBF_ST_VERSION;
    a.hdr->node_off += 4096;         /* a layout this binary would not make */
    cr_assert_eq(kbf_state_map(&b, fd, why, sizeof(why)), -EPROTO);
    close(fd);
    kbf_state_unmap(&a);
}

/* The kernel holds node ids and counts; the next process must find the same. */
Test(fuse_state, node_ids_and_counts_survive_a_takeover)
{
    kbf_state_t a, b;
    cr_assert_eq(kbf_state_create(&a, &small, inst, false), 0);
    kbf_itable_t *t1 = kbf_itable_open(a.nodes, a.hdr->node_cap, &a.hdr->node_hwm);
    uint64_t id[10];
    for (unsigned i = 0; i < 10; i++) {
        kb_gfid_t g = gfid_n(i);
        id[i] = kbf_itable_ref(t1, &g);
        cr_assert_geq(id[i], KBF_NODE_BASE);
    }
    kb_gfid_t g3 = gfid_n(3);
    kbf_itable_ref(t1, &g3);
    kbf_itable_ref(t1, &g3);             /* node 3: count 3 */
    kbf_itable_forget(t1, id[5], 1);     /* freed */
    kbf_itable_forget(t1, id[7], 1);     /* freed */
    kbf_cver_t v = { .size = 9 };
    kbf_itable_cver_swap(t1, id[2], &v);
    kbf_itable_note_mode(t1, id[4], 04755);
    /* The process dies: its table's memory is gone, the records stay. */
    remap(&a, &b);
    kbf_itable_t *t2 = kbf_itable_open(b.nodes, b.hdr->node_cap, &b.hdr->node_hwm);
    cr_assert_eq(kbf_itable_count(t2), 8);
    for (unsigned i = 0; i < 10; i++) {
        kb_gfid_t g = gfid_n(i);
        if (i == 5 || i == 7) {
            cr_assert_eq(kbf_itable_nlookup(t2, &g), 0);
            continue;
        }
        cr_assert(kb_gfid_eq(kbf_itable_gfid(t2, id[i]), &g), "node id %llu maps to its gfid", (unsigned long long)id[i]);
        cr_assert_eq(kbf_itable_nlookup(t2, &g), i == 3 ? 3 : 1);
        cr_assert_eq(kbf_itable_ref(t2, &g), id[i], "a lookup of a known gfid gives the kernel's node id");
    }
    cr_assert(kbf_itable_sxid(t2, id[4]), "the mode seen before");
    cr_assert_eq(kbf_itable_cver_swap(t2, id[2], &v), KBF_CVER_NONE, "the page cache is dropped once");
    /* New entries reuse the freed records, never a live one. */
    kb_gfid_t n1 = gfid_n(100), n2 = gfid_n(101), n3 = gfid_n(102);
    uint64_t a1 = kbf_itable_ref(t2, &n1), a2 = kbf_itable_ref(t2, &n2), a3 = kbf_itable_ref(t2, &n3);
    cr_assert((a1 == id[5] || a1 == id[7]) && (a2 == id[5] || a2 == id[7]) && a1 != a2, "freed records reused");
    cr_assert_eq(a3, id[9] + 1, "then the array grows");
    /* Forgets of the kernel's counts end at zero on the new process. */
    kbf_itable_forget(t2, id[3], 4);     /* 3 held + the one taken above */
    cr_assert_eq(kbf_itable_nlookup(t2, &g3), 0);
    kbf_itable_free(t2);
    kbf_itable_free(t1);
    kbf_state_unmap(&b);
    kbf_state_unmap(&a);
}

/* Killed between writing a new record's gfid and its count: the record is
 * free (the kernel never got that node id). */
Test(fuse_state, a_record_without_its_count_is_free)
{
    kbf_state_t a;
    cr_assert_eq(kbf_state_create(&a, &small, inst, true), 0);
    kbf_itable_t *t1 = kbf_itable_open(a.nodes, a.hdr->node_cap, &a.hdr->node_hwm);
    kb_gfid_t g = gfid_n(1), torn = gfid_n(2);
    uint64_t id = kbf_itable_ref(t1, &g);
    memcpy(a.nodes[1].gfid, torn.b, 16);      /* record 1: gfid, no count */
    a.hdr->node_hwm = 2;
    kbf_itable_t *t2 = kbf_itable_open(a.nodes, a.hdr->node_cap, &a.hdr->node_hwm);
    cr_assert_eq(kbf_itable_count(t2), 1);
    cr_assert_eq(kbf_itable_nlookup(t2, &torn), 0);
    cr_assert_eq(kbf_itable_ref(t2, &torn), 1 + KBF_NODE_BASE, "its record is reused");
    cr_assert_eq(kbf_itable_ref(t2, &g), id);
    kbf_itable_free(t2);
    kbf_itable_free(t1);
    kbf_state_unmap(&a);
}

static kb_lklog_t log_of(unsigned n)
{
    kb_lklog_t l = { .req = calloc(n ? n : 1, sizeof(kb_lkreq_t)), .n = n, .cap = n };
    for (unsigned i = 0; i < n; i++)
        l.req[i] = (kb_lkreq_t){ .owner = 0x100 + i % 3, .type = i % 2 ? KB_LK_RDLCK : KB_LK_WRLCK,
                                 .pid = 40 + i, .start = 100 * i, .len = 10 + i, .flock = i == 1 };
    return l;
}

Test(fuse_state, handle_records_round_trip_with_their_locks)
{
    kbf_state_t a, b;
    cr_assert_eq(kbf_state_create(&a, &small, inst, false), 0);
    kbc_lkown_t own[3] = { { 0x100, false }, { 0x101, true }, { 0x102, false } };
    kb_lklog_t l = log_of(5);
    kbc_handle_info_t h = { .value = (7ull << 32) | 3, .gfid = gfid_n(9), .flags = O_RDWR | O_DIRECT,
                            .nowners = 3, .owners = own, .locks = &l };
    cr_assert(kbf_state_handle_put(&a, &h));
    kbf_state_handle_opener(&a, h.value, 0x4242);
    remap(&a, &b);
    cr_assert_null(kbf_state_handle_get(&b, 0));
    const kbf_st_hver_t *v = kbf_state_handle_get(&b, 2);
    cr_assert_not_null(v);
    cr_assert_eq(v->value, h.value);
    cr_assert_eq(memcmp(v->gfid, h.gfid.b, 16), 0);
    cr_assert_eq(v->flags, (uint32_t)(O_RDWR | O_DIRECT));
    cr_assert_eq(v->nowners, 3);
    cr_assert_eq(v->owners[1], 0x101);
    cr_assert_eq(v->owner_process, 2u, "owner 1 was a process (FLUSH seen)");
    cr_assert_eq(v->nlocks, 5);
    for (unsigned i = 0; i < 5; i++) {
        cr_assert_eq(v->locks[i].owner, l.req[i].owner);
        cr_assert_eq(v->locks[i].type, l.req[i].type);
        cr_assert_eq(v->locks[i].start, l.req[i].start);
        cr_assert_eq(v->locks[i].len, l.req[i].len);
        cr_assert_eq(v->locks[i].pid, l.req[i].pid);
        cr_assert_eq(v->locks[i].flock, l.req[i].flock);
    }
    cr_assert_not(v->incomplete);
    cr_assert_eq(v->opener, 0x4242);
    cr_assert_eq(b.hdr->handle_hwm, 3);
    /* A change (a lock dropped) keeps the opener; a release forgets it all. */
    l.n = 2;
    cr_assert(kbf_state_handle_put(&a, &h));
    v = kbf_state_handle_get(&b, 2);
    cr_assert_eq(v->nlocks, 2);
    cr_assert_eq(v->opener, 0x4242);
    kbf_state_handle_clear(&b, (8ull << 32) | 3);   /* another handle value: not this record */
    cr_assert_not_null(kbf_state_handle_get(&b, 2));
    kbf_state_handle_clear(&b, h.value);
    cr_assert_null(kbf_state_handle_get(&a, 2));
    free(l.req);
    kbf_state_unmap(&b);
    kbf_state_unmap(&a);
}

Test(fuse_state, more_locks_than_fit_mark_the_record_incomplete)
{
    kbf_state_t a;
    cr_assert_eq(kbf_state_create(&a, &small, inst, true), 0);
    kb_lklog_t l = log_of(KBF_ST_LOCKS + 1);
    kbc_handle_info_t h = { .value = (1ull << 32) | 1, .gfid = gfid_n(1), .locks = &l };
    cr_assert(kbf_state_handle_put(&a, &h));
    cr_assert(kbf_state_handle_get(&a, 0)->incomplete, "its locks cannot all be taken again");
    l.n = 1;
    l.incomplete = true;             /* the handle's own log overflowed */
    cr_assert(kbf_state_handle_put(&a, &h));
    cr_assert(kbf_state_handle_get(&a, 0)->incomplete);
    kbc_lkown_t own[KBF_ST_OWNERS + 1] = { { 0 } };
    l.incomplete = false;
    h.owners = own;
    h.nowners = KBF_ST_OWNERS + 1;
    cr_assert(kbf_state_handle_put(&a, &h));
    cr_assert(kbf_state_handle_get(&a, 0)->incomplete, "more owners than fit");
    h.value = (1ull << 32) | (small.handle_cap + 1);
    cr_assert_not(kbf_state_handle_put(&a, &h), "a slot beyond the table");
    free(l.req);
    kbf_state_unmap(&a);
}

/* Killed while writing the next version: the current one still reads whole. */
Test(fuse_state, a_torn_handle_write_leaves_the_previous_version)
{
    kbf_state_t a;
    cr_assert_eq(kbf_state_create(&a, &small, inst, true), 0);
    kb_lklog_t l = log_of(3);
    kbc_handle_info_t h = { .value = (2ull << 32) | 5, .gfid = gfid_n(5), .locks = &l };
    cr_assert(kbf_state_handle_put(&a, &h));
    kbf_st_handle_t *rec = &a.handles[4];
    kbf_st_hver_t *next = &rec->v[rec->cur ^ 1];
    memset(next, 0xee, sizeof(*next));   /* half-written garbage, cur not flipped */
    const kbf_st_hver_t *v = kbf_state_handle_get(&a, 4);
    cr_assert_eq(v->value, h.value);
    cr_assert_eq(v->nlocks, 3);
    cr_assert_eq(v->locks[2].start, 200);
    free(l.req);
    kbf_state_unmap(&a);
}

Test(fuse_state, gfids_of_requests_are_the_same_for_the_same_unique)
{
    uint8_t s1[16] = { 1 }, s2[16] = { 2 };
    kb_gfid_t a, b, c, d;
    kbf_state_gfid_for(s1, 1000, &a);
    kbf_state_gfid_for(s1, 1000, &b);
    kbf_state_gfid_for(s1, 1002, &c);
    kbf_state_gfid_for(s2, 1000, &d);
    cr_assert(kb_gfid_eq(&a, &b), "a resent request chooses the same gfid");
    cr_assert_not(kb_gfid_eq(&a, &c), "another request another");
    cr_assert_not(kb_gfid_eq(&a, &d), "another mount another");
    cr_assert_eq(a.b[6] >> 4, 4, "a version 4 uuid");
    cr_assert_eq(a.b[8] >> 6, 2, "RFC 4122 variant");
    cr_assert_not(kb_gfid_is_null(&a));
    cr_assert_not(kb_gfid_is_root(&a));
}
