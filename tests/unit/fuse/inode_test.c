/*
 * inode_test.c — kembar-fuse's inode table (fuse/inode.c): lookup
 * counts, forget, the root, gfid reuse, growth and concurrent use.
 *
 * fuse/ is a binary, not part of libkembar.a, so the module is compiled in.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "fuse/inode.c"

static kb_gfid_t gfid_n(unsigned n)
{
    kb_gfid_t g = { { 0 } };
    g.b[0] = 0xab;
    g.b[12] = (uint8_t)(n >> 24);
    g.b[13] = (uint8_t)(n >> 16);
    g.b[14] = (uint8_t)(n >> 8);
    g.b[15] = (uint8_t)n;
    return g;
}

Test(fuse_inode, root_is_node_one_and_never_freed)
{
    kbf_itable_t *t = kbf_itable_new();
    cr_assert_not_null(t);
    cr_assert_eq(kbf_itable_ref(t, &kb_gfid_root), KBF_ROOT_ID);
    cr_assert(kb_gfid_is_root(kbf_itable_gfid(t, KBF_ROOT_ID)));
    kbf_itable_forget(t, KBF_ROOT_ID, 1000);
    cr_assert(kb_gfid_is_root(kbf_itable_gfid(t, KBF_ROOT_ID)));
    cr_assert_eq(kbf_itable_count(t), 0);
    kbf_itable_free(t);
}

Test(fuse_inode, same_gfid_same_node_and_counts)
{
    kbf_itable_t *t = kbf_itable_new();
    kb_gfid_t a = gfid_n(1), b = gfid_n(2);
    uint64_t ia = kbf_itable_ref(t, &a);
    uint64_t ib = kbf_itable_ref(t, &b);
    cr_assert_neq(ia, 0);
    cr_assert_neq(ia, KBF_ROOT_ID);
    cr_assert_neq(ia, ib);
    cr_assert_eq(kbf_itable_ref(t, &a), ia, "a second lookup must return the same node id");
    cr_assert_eq(kbf_itable_ref(t, &a), ia);
    cr_assert_eq(kbf_itable_nlookup(t, &a), 3);
    cr_assert_eq(kbf_itable_nlookup(t, &b), 1);
    cr_assert(kb_gfid_eq(kbf_itable_gfid(t, ia), &a));
    cr_assert(kb_gfid_eq(kbf_itable_gfid(t, ib), &b));
    cr_assert_eq(kbf_itable_count(t), 2);

    kbf_itable_forget(t, ia, 2);
    cr_assert_eq(kbf_itable_nlookup(t, &a), 1, "forget(2) of 3 leaves 1");
    cr_assert(kb_gfid_eq(kbf_itable_gfid(t, ia), &a));
    kbf_itable_forget(t, ia, 1);
    cr_assert_eq(kbf_itable_nlookup(t, &a), 0, "freed at zero");
    cr_assert_eq(kbf_itable_count(t), 1);
    cr_assert_eq(kbf_itable_nlookup(t, &b), 1, "other entries untouched");
    kbf_itable_free(t);
}

Test(fuse_inode, forget_more_than_held_frees_once)
{
    kbf_itable_t *t = kbf_itable_new();
    kb_gfid_t a = gfid_n(7);
    uint64_t id = kbf_itable_ref(t, &a);
    kbf_itable_ref(t, &a);
    kbf_itable_forget(t, id, 5);   /* forget_multi with a larger count: clamp, free */
    cr_assert_eq(kbf_itable_count(t), 0);
    cr_assert_eq(kbf_itable_nlookup(t, &a), 0);
    kbf_itable_free(t);
}

Test(fuse_inode, gfid_reused_after_forget_gets_a_fresh_entry)
{
    kbf_itable_t *t = kbf_itable_new();
    kb_gfid_t a = gfid_n(42);
    uint64_t id1 = kbf_itable_ref(t, &a);
    kbf_itable_forget(t, id1, 1);
    cr_assert_eq(kbf_itable_count(t), 0);
    uint64_t id2 = kbf_itable_ref(t, &a);     /* looked up again later */
    cr_assert_neq(id2, 0);
    cr_assert_eq(kbf_itable_nlookup(t, &a), 1, "count restarts at one");
    cr_assert(kb_gfid_eq(kbf_itable_gfid(t, id2), &a));
    kbf_itable_forget(t, id2, 1);
    cr_assert_eq(kbf_itable_count(t), 0);
    kbf_itable_free(t);
}

/* keep_cache at open: the cache is kept only when the recorded content
 * version equals the new one; any change (size, mtime, ctime, a nanosecond
 * apart) or a forgotten record drops it; a fresh entry has no record. */
Test(fuse_inode, content_version_kept_only_when_unchanged)
{
    kbf_itable_t *t = kbf_itable_new();
    kb_gfid_t a = gfid_n(7);
    uint64_t ia = kbf_itable_ref(t, &a);
    kbf_cver_t v1 = { .size = 100, .mtime_sec = 5, .mtime_nsec = 1, .ctime_sec = 6, .ctime_nsec = 2 };
    kbf_cver_t v2 = v1;
    v2.ctime_nsec = 3;
    cr_assert_eq(kbf_itable_cver_swap(t, ia, &v1), KBF_CVER_NONE, "no record yet");
    cr_assert_eq(kbf_itable_cver_swap(t, ia, &v1), KBF_CVER_SAME, "unchanged");
    cr_assert_eq(kbf_itable_cver_swap(t, ia, &v1), KBF_CVER_SAME, "still unchanged");
    cr_assert_eq(kbf_itable_cver_swap(t, ia, &v2), KBF_CVER_CHANGED, "ctime moved");
    cr_assert_eq(kbf_itable_cver_swap(t, ia, &v2), KBF_CVER_SAME, "v2 recorded");
    kbf_cver_t v3 = v2;
    v3.size = 101;
    cr_assert_eq(kbf_itable_cver_swap(t, ia, &v3), KBF_CVER_CHANGED, "size changed");
    cr_assert_eq(kbf_itable_cver_swap(t, ia, NULL), KBF_CVER_CHANGED, "failed STAT never keeps");
    cr_assert_eq(kbf_itable_cver_swap(t, ia, &v3), KBF_CVER_NONE, "record was forgotten");
    kbf_itable_forget(t, ia, 1);
    uint64_t ib = kbf_itable_ref(t, &a);
    cr_assert_eq(kbf_itable_cver_swap(t, ib, &v3), KBF_CVER_NONE, "a new entry has no record");
    kbf_itable_forget(t, ib, 1);
    kbf_itable_free(t);
}

Test(fuse_inode, many_entries_grow_and_stay_findable)
{
    kbf_itable_t *t = kbf_itable_new();
    enum { N = 20000 };
    static uint64_t ids[N];
    for (unsigned i = 0; i < N; i++) {
        kb_gfid_t g = gfid_n(i + 100);
        ids[i] = kbf_itable_ref(t, &g);
        cr_assert_neq(ids[i], 0);
    }
    cr_assert_eq(kbf_itable_count(t), N);
    for (unsigned i = 0; i < N; i++) {
        kb_gfid_t g = gfid_n(i + 100);
        cr_assert(kb_gfid_eq(kbf_itable_gfid(t, ids[i]), &g));
        cr_assert_eq(kbf_itable_ref(t, &g), ids[i]);
    }
    for (unsigned i = 0; i < N; i += 2)
        kbf_itable_forget(t, ids[i], 2);
    cr_assert_eq(kbf_itable_count(t), N / 2);
    for (unsigned i = 1; i < N; i += 2) {
        kb_gfid_t g = gfid_n(i + 100);
        cr_assert_eq(kbf_itable_nlookup(t, &g), 2);
    }
    kbf_itable_free(t);   /* frees the live half: ASan checks for leaks */
}

/* FUSE worker threads look up and forget concurrently: counts must add up. */
struct worker { kbf_itable_t *t; unsigned seed; };

static void *worker(void *arg)
{
    struct worker *w = arg;
    for (unsigned i = 0; i < 20000; i++) {
        kb_gfid_t g = gfid_n((w->seed * 7919u + i) % 64);
        uint64_t id = kbf_itable_ref(w->t, &g);
        if (!kb_gfid_eq(kbf_itable_gfid(w->t, id), &g))
            return (void *)1;
        kbf_itable_forget(w->t, id, 1);
    }
    return NULL;
}

Test(fuse_inode, concurrent_ref_and_forget_balance)
{
    kbf_itable_t *t = kbf_itable_new();
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){ t, (unsigned)i + 1 };
        pthread_create(&th[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        cr_assert_null(rv, "a node id mapped to the wrong gfid");
    }
    cr_assert_eq(kbf_itable_count(t), 0, "every ref was forgotten: nothing may remain");
    kbf_itable_free(t);
}

/* The last mode seen says whether setuid/setgid may need clearing. */
Test(fuse_inode, sxid_follows_the_last_mode)
{
    kbf_itable_t *t = kbf_itable_new();
    kb_gfid_t g = gfid_n(77);
    uint64_t id = kbf_itable_ref(t, &g);
    cr_assert_not(kbf_itable_sxid(t, id), "nothing seen yet");
    kbf_itable_note_mode(t, id, S_IFREG | 04755);
    cr_assert(kbf_itable_sxid(t, id));
    kbf_itable_note_mode(t, id, S_IFREG | 0755);
    cr_assert_not(kbf_itable_sxid(t, id));
    kbf_itable_note_mode(t, id, S_IFREG | 02644);
    cr_assert(kbf_itable_sxid(t, id));
    kbf_itable_note_mode(t, KBF_ROOT_ID, S_IFDIR | 02775);
    cr_assert(kbf_itable_sxid(t, KBF_ROOT_ID));
    kbf_itable_forget(t, id, 1);
    kbf_itable_free(t);
}
