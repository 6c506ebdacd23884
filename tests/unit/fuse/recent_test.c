/*
 * recent_test.c — attributes kept for the next GETATTR (fuse/recent.c):
 * kept only if nothing changed the inode between the read and its reply,
 * used once, only while younger than the limit, never after a change or a
 * removal, and a slot shared by two inodes never answers for the wrong one.
 *
 * fuse/ is a binary, not part of libkembar.a, so the module is compiled in.
 */
#include <criterion/criterion.h>

#include "fuse/recent.c"

#define MS 1000000ull

static const kb_gfid_t G = { { 0x5a, 1, 2, 3 } };   /* every test inode's (attr_n) */

static kb_iatt_t attr_n(uint64_t size)
{
    kb_iatt_t ia;
    memset(&ia, 0, sizeof(ia));
    ia.gfid = G;
    ia.size = size;
    ia.mode = 040755;
    ia.nlink = 3;
    ia.mtime_sec = 1700000000;
    ia.mtime_nsec = (uint32_t)size;
    return ia;
}

static kbf_recent_t *rc;

static void setup(void) { rc = kbf_recent_new(64); cr_assert_not_null(rc); }
static void teardown(void) { kbf_recent_free(rc); }

TestSuite(fuse_recent, .init = setup, .fini = teardown);

/* Keep what a read brought (snap before sending, put at its reply). */
static void keep(uint64_t ino, uint64_t size, uint64_t at_ns)
{
    uint64_t snap = kbf_recent_snap(rc, ino);
    kbf_recent_ep_t ep = kbf_recent_epoch(rc);
    kb_iatt_t ia = attr_n(size);
    kbf_recent_put(rc, ino, snap, ep, &ia, at_ns);
}

Test(fuse_recent, kept_attributes_are_taken_once_with_their_age)
{
    keep(7, 4096, 100 * MS);
    kb_iatt_t out;
    uint64_t age = 0;
    cr_assert(kbf_recent_take(rc, 7, &G, 130 * MS, 1000 * MS, &out, &age));
    cr_assert_eq(out.size, 4096);
    cr_assert_eq(out.mtime_nsec, 4096);
    cr_assert_eq(out.nlink, 3);
    cr_assert_eq(age, 30 * MS);
    cr_assert_not(kbf_recent_take(rc, 7, &G, 131 * MS, 1000 * MS, &out, &age), "taken twice");
}

Test(fuse_recent, too_old_or_zero_limit_is_not_used)
{
    keep(7, 1, 100 * MS);
    kb_iatt_t out;
    uint64_t age;
    cr_assert_not(kbf_recent_take(rc, 7, &G, 1100 * MS, 1000 * MS, &out, &age), "as old as the limit");
    keep(7, 1, 100 * MS);
    cr_assert_not(kbf_recent_take(rc, 7, &G, 100 * MS, 0, &out, &age), "attr_timeout 0 uses nothing");
}

Test(fuse_recent, a_change_sent_or_completed_after_the_read_drops_it)
{
    kb_iatt_t out, ia = attr_n(10);
    uint64_t age;
    /* A write goes out after the read was sent, before its reply: not kept. */
    uint64_t snap = kbf_recent_snap(rc, 7);
    kbf_recent_ep_t ep = kbf_recent_epoch(rc);
    kbf_recent_bump(rc, 7);
    kbf_recent_put(rc, 7, snap, ep, &ia, 1);
    cr_assert_not(kbf_recent_take(rc, 7, &G, 2, 1000 * MS, &out, &age));
    /* A write sent before the read, completed after its reply: dropped. */
    keep(7, 10, 1);
    kbf_recent_bump(rc, 7);
    cr_assert_not(kbf_recent_take(rc, 7, &G, 2, 1000 * MS, &out, &age));
    /* Other inodes are not touched by it. */
    cr_assert_neq(slot_of(rc, 8), slot_of(rc, 9), "test bug: 8 and 9 share a slot");
    keep(8, 20, 1);
    kbf_recent_bump(rc, 9);
    cr_assert(kbf_recent_take(rc, 8, &G, 2, 1000 * MS, &out, &age));
}

Test(fuse_recent, a_change_bumps_both_inodes_and_clears_in_one_call)
{
    kb_iatt_t out, file = attr_n(1);
    uint64_t age, s1, s2;
    kbf_recent_ep_t ep;
    file.mode = 0100644;
    cr_assert_neq(slot_of(rc, 7), slot_of(rc, 100), "test bug: 7 and 100 share a slot");
    keep(7, 1, 1);
    keep(100, 1, 1);
    kbf_recent_change(rc, 7, 0, 0, &s1, &s2, &ep);
    cr_assert_eq(s1, kbf_recent_snap(rc, 7));
    cr_assert_eq(s2, 0, "no second inode: no generation");
    cr_assert_not(kbf_recent_take(rc, 7, &G, 2, 1000 * MS, &out, &age), "the changed inode");
    cr_assert(kbf_recent_take(rc, 100, &G, 2, 1000 * MS, &out, &age), "another inode, no clear");
    /* Both inodes, and a clear of non-directories (an unlink). */
    keep(7, 1, 1);
    kbf_recent_put(rc, 100, kbf_recent_snap(rc, 100), kbf_recent_epoch(rc), &file, 1);
    keep(3, 1, 1);
    kbf_recent_change(rc, 7, 3, KBF_RECENT_OTHERS, NULL, NULL, &ep);
    cr_assert_eq(ep.other, kbf_recent_epoch(rc).other, "the epoch after its own clear");
    cr_assert_not(kbf_recent_take(rc, 7, &G, 2, 1000 * MS, &out, &age));
    cr_assert_not(kbf_recent_take(rc, 3, &G, 2, 1000 * MS, &out, &age));
    cr_assert_not(kbf_recent_take(rc, 100, &G, 2, 1000 * MS, &out, &age), "a file after the clear");
    kbf_recent_change(NULL, 7, 3, KBF_RECENT_DIRS, NULL, NULL, NULL);
}

Test(fuse_recent, an_entry_op_keeps_the_parent_it_brought_unless_another_change_came_between)
{
    kb_iatt_t out, pa = attr_n(99);
    uint64_t age;
    /* The create bumps its parent when sent; its reply's parent is kept. */
    uint64_t snap = kbf_recent_bump(rc, 1);
    kbf_recent_ep_t ep = kbf_recent_epoch(rc);
    kbf_recent_settle(rc, 1, snap, ep, 0, &pa, 5);
    cr_assert(kbf_recent_take(rc, 1, &G, 6, 1000 * MS, &out, &age));
    cr_assert_eq(out.size, 99);
    /* Two creates in one directory at once: the bricks may have run them in
     * either order, so neither reply is the last word, whichever comes first. */
    for (int first = 0; first < 2; first++) {
        uint64_t s[2];
        s[0] = kbf_recent_bump(rc, 1);
        s[1] = kbf_recent_bump(rc, 1);
        kbf_recent_settle(rc, 1, s[first], ep, 0, &pa, 5);
        kbf_recent_settle(rc, 1, s[!first], ep, 0, &pa, 5);
        cr_assert_not(kbf_recent_take(rc, 1, &G, 6, 1000 * MS, &out, &age), "create %d replied first", first);
    }
    /* Afterwards the next one is kept again. */
    snap = kbf_recent_bump(rc, 1);
    kbf_recent_settle(rc, 1, snap, ep, 0, &pa, 5);
    cr_assert(kbf_recent_take(rc, 1, &G, 6, 1000 * MS, &out, &age));
}

Test(fuse_recent, a_removed_name_forgets_every_inode_of_its_kind)
{
    kb_iatt_t out, file = attr_n(1);
    uint64_t age;
    file.mode = 0100644;
    keep(7, 1, 1);                 /* a directory (attr_n) */
    uint64_t snap = kbf_recent_snap(rc, 100);
    kbf_recent_put(rc, 100, snap, kbf_recent_epoch(rc), &file, 1);
    /* An unlink: any non-directory may have lost a link; directories not. */
    kbf_recent_ep_t ep = kbf_recent_epoch(rc);
    kbf_recent_change(rc, 0, 0, KBF_RECENT_OTHERS, NULL, NULL, NULL);
    cr_assert_not(kbf_recent_take(rc, 100, &G, 2, 1000 * MS, &out, &age), "a file after an unlink");
    cr_assert(kbf_recent_take(rc, 7, &G, 2, 1000 * MS, &out, &age), "a directory after an unlink");
    /* A file read before the unlink is not kept after it; a directory is. */
    snap = kbf_recent_snap(rc, 100);
    kbf_recent_put(rc, 100, snap, ep, &file, 1);
    cr_assert_not(kbf_recent_take(rc, 100, &G, 2, 1000 * MS, &out, &age));
    kb_iatt_t dir = attr_n(5);
    kbf_recent_put(rc, 7, kbf_recent_snap(rc, 7), ep, &dir, 1);
    cr_assert(kbf_recent_take(rc, 7, &G, 2, 1000 * MS, &out, &age));
    /* An rmdir: directories go; a rename: both. */
    keep(7, 1, 1);
    kbf_recent_change(rc, 0, 0, KBF_RECENT_DIRS, NULL, NULL, NULL);
    cr_assert_not(kbf_recent_take(rc, 7, &G, 2, 1000 * MS, &out, &age), "a directory after an rmdir");
    keep(7, 1, 1);
    kbf_recent_put(rc, 100, kbf_recent_snap(rc, 100), kbf_recent_epoch(rc), &file, 1);
    kbf_recent_change(rc, 0, 0, KBF_RECENT_DIRS | KBF_RECENT_OTHERS, NULL, NULL, NULL);
    cr_assert_not(kbf_recent_take(rc, 7, &G, 2, 1000 * MS, &out, &age));
    cr_assert_not(kbf_recent_take(rc, 100, &G, 2, 1000 * MS, &out, &age));
}

Test(fuse_recent, a_removal_keeps_its_parent_unless_its_kind_was_cleared_meanwhile)
{
    kb_iatt_t out, pa = attr_n(7);
    uint64_t age;
    /* An rmdir: it clears directories when sent, and again when it completes;
     * its own clears do not stop its parent being kept. */
    kbf_recent_change(rc, 0, 0, KBF_RECENT_DIRS, NULL, NULL, NULL);
    uint64_t snap = kbf_recent_bump(rc, 1);
    kbf_recent_ep_t ep = kbf_recent_epoch(rc);
    kbf_recent_settle(rc, 1, snap, ep, KBF_RECENT_DIRS, &pa, 5);
    cr_assert(kbf_recent_take(rc, 1, &G, 6, 1000 * MS, &out, &age));
    /* A rename of some directory completed while it was out: not kept. */
    kbf_recent_change(rc, 0, 0, KBF_RECENT_DIRS, NULL, NULL, NULL);
    snap = kbf_recent_bump(rc, 1);
    ep = kbf_recent_epoch(rc);
    kbf_recent_change(rc, 0, 0, KBF_RECENT_DIRS | KBF_RECENT_OTHERS, NULL, NULL, NULL);
    kbf_recent_settle(rc, 1, snap, ep, KBF_RECENT_DIRS, &pa, 5);
    cr_assert_not(kbf_recent_take(rc, 1, &G, 6, 1000 * MS, &out, &age));
    /* An unlink's own clear (non-directories) leaves its parent kept. */
    snap = kbf_recent_bump(rc, 1);
    ep = kbf_recent_epoch(rc);
    kbf_recent_settle(rc, 1, snap, ep, KBF_RECENT_OTHERS, &pa, 5);
    cr_assert(kbf_recent_take(rc, 1, &G, 6, 1000 * MS, &out, &age));
}

Test(fuse_recent, a_shared_slot_never_answers_for_another_inode)
{
    /* 64 slots: among 65 inodes two share one. */
    uint64_t a = 0, b = 0;
    for (uint64_t i = 2; i < 67 && !b; i++)
        for (uint64_t j = 2; j < i; j++)
            if (slot_of(rc, i) == slot_of(rc, j)) {
                a = j;
                b = i;
                break;
            }
    cr_assert(b, "no two inodes share a slot among 65");
    keep(a, 1, 1);
    keep(b, 2, 1);                 /* replaces a's entry */
    kb_iatt_t out;
    uint64_t age;
    cr_assert_not(kbf_recent_take(rc, a, &G, 2, 1000 * MS, &out, &age));
    cr_assert(kbf_recent_take(rc, b, &G, 2, 1000 * MS, &out, &age));
    cr_assert_eq(out.size, 2);
}

Test(fuse_recent, a_node_id_reused_for_another_inode_gets_nothing)
{
    keep(7, 1, 1);
    kb_gfid_t other = G;
    other.b[15] = 9;
    kb_iatt_t out;
    uint64_t age;
    cr_assert_not(kbf_recent_take(rc, 7, &other, 2, 1000 * MS, &out, &age));
    cr_assert_not(kbf_recent_take(rc, 7, &G, 2, 1000 * MS, &out, &age), "gone after the miss too");
}

Test(fuse_recent, null_table_and_node_zero_are_nothing)
{
    kb_iatt_t out, ia = attr_n(1);
    uint64_t age;
    kbf_recent_ep_t ep = { 0, 0 };
    cr_assert_eq(kbf_recent_bump(NULL, 7), 0);
    kbf_recent_put(NULL, 7, 0, ep, &ia, 1);
    cr_assert_not(kbf_recent_take(NULL, 7, &G, 1, 1000 * MS, &out, &age));
    kbf_recent_change(NULL, 0, 0, KBF_RECENT_DIRS, NULL, NULL, NULL);
    kbf_recent_put(rc, 0, 0, kbf_recent_epoch(rc), &ia, 1);
    cr_assert_not(kbf_recent_take(rc, 0, &G, 1, 1000 * MS, &out, &age));
    cr_assert_null(kbf_recent_new(0));
    cr_assert_null(kbf_recent_new(48), "not a power of two");
}
