/*
 * orphan_test.c — open-unlinked files of storage/posix (orphan.c) on real
 * bricks under /var/tmp: a file unlinked or renamed over while open stays
 * reachable by gfid (nlink 0) until the brick's last fd is closed, then its
 * handle, marker and index entry go; one whose last fd went with its
 * client's connection, and the leftovers of a restart, wait for the grace,
 * the reopened ones stay until their last close; crash leftovers (marker
 * with a name, marker alone) are settled at start.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>
#include "tests/unit/brick_harness.h"
#include "xlators/storage/posix/internal.h"

#define BRICK_FIXTURE_TAG "orphan"
#include "tests/unit/xlators/storage/posix/brick_fixture.h"

static bool brick_has(const char *what, const kb_gfid_t *g)
{
    char rel[256], s[KB_GFID_STRLEN];
    struct stat st;
    if (strcmp(what, "handle") == 0)
        handle_rel(g, rel, sizeof(rel));
    else
        snprintf(rel, sizeof(rel), ".kembar/%s/%s", what, kb_gfid_str(g, s));   /* unlinked, index */
    return brick_stat(rel, &st) == 0;
}

static void make_marker(const kb_gfid_t *g)
{
    char path[4096], s[KB_GFID_STRLEN];
    snprintf(path, sizeof(path), "%s/.kembar/unlinked/%s", dir, kb_gfid_str(g, s));
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    close(fd);
}

static int unlink_name(const char *name)
{
    kb_args_t u = { .gfid = kb_gfid_root, .name = (char *)name };
    return bh_call(h, KB_FOP_UNLINK, &u, NULL);
}

static int nameless(const kb_gfid_t *g, kb_iatt_t *ia)
{
    kb_args_t a = { .gfid = *g };
    kb_reply_t r;
    int rc = bh_call(h, KB_FOP_LOOKUP, &a, &r);
    if (rc == 0 && ia)
        *ia = r.attr;
    kb_reply_clear(&r);
    return rc;
}

static void status_says(const char *want)
{
    struct kb_ctl_status st = { 0 };
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_STATUS, &st), 0);
    cr_assert(st.text && strstr(st.text, want), "status '%s' lacks '%s'", st.text, want);
    free(st.text);
}

/* A file that is open and written, with CONTENT, then unlinked: its fd. */
static uint64_t open_unlinked(const char *name, kb_gfid_t *g, const char *content)
{
    uint64_t fd;
    cr_assert_eq(bh_create(h, ROOT, name, 0644, O_RDWR, g, &fd), 0);
    cr_assert_eq(bh_write(h, g, fd, 0, content, strlen(content), 0), (int)strlen(content));
    cr_assert_eq(unlink_name(name), 0);
    return fd;
}

TestSuite(orphan, .init = setup, .fini = teardown, .timeout = 60);

Test(orphan, unlinked_while_open_stays_by_gfid_until_the_last_close)
{
    kb_gfid_t g;
    uint64_t f1, f2, f3;
    char buf[32];
    cr_assert_eq(bh_create(h, ROOT, "f", 0644, O_RDWR, &g, &f1), 0);
    cr_assert_eq(bh_write(h, &g, f1, 0, "hello", 5, 0), 5);
    cr_assert_eq(bh_open(h, &g, O_RDONLY, &f2), 0);
    cr_assert_eq(unlink_name("f"), 0);
    cr_assert(brick_has("handle", &g) && brick_has("unlinked", &g), "handle kept, marker made");
    cr_assert_eq(bh_lookup(h, ROOT, "f", NULL), -ENOENT, "the name is gone");
    status_says("1 open-unlinked");

    /* by gfid: found, nameless, nlink 0, as fstat shows it on ext4 */
    kb_iatt_t ia;
    cr_assert_eq(nameless(&g, &ia), 0);
    cr_assert_eq(ia.nlink, 0);
    cr_assert_eq(ia.size, 5);
    kb_args_t sa = { .gfid = g };
    kb_reply_t r;
    cr_assert_eq(bh_call(h, KB_FOP_STAT, &sa, &r), 0);
    cr_assert_eq(r.attr.nlink, 0);
    kb_reply_clear(&r);
    cr_assert_eq(bh_open(h, &g, O_RDWR, &f3), 0, "a client reopens it by gfid");
    cr_assert_eq(bh_write(h, &g, f3, 5, " world", 6, 0), 6);
    cr_assert_eq(bh_read(h, &g, f2, 0, sizeof(buf), buf), 11);
    cr_assert(memcmp(buf, "hello world", 11) == 0);
    kb_args_t ta = { .gfid = g, .fd = f1, .fd_valid = 1, .off = 8 };
    cr_assert_eq(bh_call(h, KB_FOP_TRUNCATE, &ta, &r), 0);
    cr_assert_eq(r.attr.size, 8);
    cr_assert_eq(r.attr.nlink, 0);
    kb_reply_clear(&r);

    /* no name comes back: LINK by gfid is refused, as ext4 refuses it */
    kb_args_t la = { .gfid = g, .gfid2 = kb_gfid_root, .name2 = "back" };
    cr_assert_eq(bh_call(h, KB_FOP_LINK, &la, NULL), -ENOENT);
    cr_assert_eq(bh_lookup(h, ROOT, "back", NULL), -ENOENT);
    /* the name is free for a new file */
    kb_gfid_t g2;
    uint64_t f4;
    cr_assert_eq(bh_create(h, ROOT, "f", 0644, O_RDWR, &g2, &f4), 0);
    cr_assert_eq(bh_release(h, &g2, f4), 0);

    cr_assert_eq(bh_release(h, &g, f1), 0);
    cr_assert_eq(bh_release(h, &g, f3), 0);
    cr_assert(brick_has("handle", &g) && brick_has("unlinked", &g), "one fd still holds it");
    cr_assert_eq(bh_read(h, &g, f2, 0, sizeof(buf), buf), 8);
    cr_assert(memcmp(buf, "hello wo", 8) == 0, "truncated to 8 bytes");
    cr_assert_eq(bh_release(h, &g, f2), 0);
    cr_assert(!brick_has("handle", &g), "the last close removes the handle");
    cr_assert(!brick_has("unlinked", &g), "... and the marker");
    cr_assert_eq(nameless(&g, NULL), -ENOENT);
    cr_assert_eq(bh_open(h, &g, O_RDONLY, NULL), -ENOENT);
    status_says("0 open-unlinked");
    cr_assert(brick_has("handle", &g2), "the new file is untouched");
}

Test(orphan, not_open_or_still_named_is_no_orphan)
{
    kb_gfid_t g, g2;
    uint64_t fd;
    /* closed before the unlink: goes at once, no marker */
    cr_assert_eq(bh_create(h, ROOT, "c", 0644, O_RDWR, &g, &fd), 0);
    cr_assert_eq(bh_release(h, &g, fd), 0);
    cr_assert_eq(unlink_name("c"), 0);
    cr_assert(!brick_has("handle", &g) && !brick_has("unlinked", &g));
    /* open, but another name remains: nothing to keep */
    cr_assert_eq(bh_create(h, ROOT, "a", 0644, O_RDWR, &g2, &fd), 0);
    kb_args_t la = { .gfid = g2, .gfid2 = kb_gfid_root, .name2 = "b" };
    cr_assert_eq(bh_call(h, KB_FOP_LINK, &la, NULL), 0);
    cr_assert_eq(unlink_name("a"), 0);
    cr_assert(brick_has("handle", &g2) && !brick_has("unlinked", &g2));
    cr_assert_eq(bh_release(h, &g2, fd), 0);
    cr_assert(brick_has("handle", &g2), "closed, still named b");
    cr_assert_eq(bh_lookup(h, ROOT, "b", NULL), 0);
    /* an unlink that fails leaves no marker */
    cr_assert_eq(unlink_name("nope"), -ENOENT);
    status_says("0 open-unlinked");
}

Test(orphan, renamed_over_while_open)
{
    kb_gfid_t ga, gb;
    uint64_t fa, fb;
    char buf[8];
    cr_assert_eq(bh_create(h, ROOT, "a", 0644, O_RDWR, &ga, &fa), 0);
    cr_assert_eq(bh_write(h, &ga, fa, 0, "old", 3, 0), 3);
    cr_assert_eq(bh_create(h, ROOT, "b", 0644, O_RDWR, &gb, &fb), 0);
    cr_assert_eq(bh_release(h, &gb, fb), 0);
    /* RENAME_NOREPLACE onto it fails: no marker */
    kb_args_t ra = { .gfid = kb_gfid_root, .name = "b", .gfid2 = kb_gfid_root, .name2 = "a", .flags = 1 };
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &ra, NULL), -EEXIST);
    cr_assert(!brick_has("unlinked", &ga));
    ra.flags = 0;
    cr_assert_eq(bh_call(h, KB_FOP_RENAME, &ra, NULL), 0);
    kb_iatt_t ia;
    cr_assert_eq(bh_lookup(h, ROOT, "a", &ia), 0);
    cr_assert(kb_gfid_eq(&ia.gfid, &gb), "the name holds the new file");
    cr_assert(brick_has("handle", &ga) && brick_has("unlinked", &ga), "the replaced open file is an orphan");
    cr_assert_eq(nameless(&ga, &ia), 0);
    cr_assert_eq(ia.nlink, 0);
    cr_assert_eq(bh_read(h, &ga, fa, 0, sizeof(buf), buf), 3);
    cr_assert(memcmp(buf, "old", 3) == 0, "the replaced file's content");
    cr_assert_eq(bh_release(h, &ga, fa), 0);
    cr_assert(!brick_has("handle", &ga) && !brick_has("unlinked", &ga));
    cr_assert(brick_has("handle", &gb));
}

/* A client whose connection went (a network cut, a kembar-fuse killed and
 * taken over) may come back and reopen: its orphans wait for the grace. */
Test(orphan, connection_gone_keeps_them_for_the_grace)
{
    restart("  option orphan-grace 0.4\n");
    kb_gfid_t g, g2;
    uint64_t cfd;
    cr_assert_eq(bh_create(h, ROOT, "f", 0644, O_RDWR, &g, &cfd), 0);
    cr_assert_eq(bh_release(h, &g, cfd), 0);
    kb_cred_t c7 = { .client_id = 7 };
    kb_args_t o = { .gfid = g, .flags = O_RDWR };
    kb_reply_t r;
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_OPEN, &o, &c7, &r), 0);
    uint64_t f7 = r.fd;
    kb_reply_clear(&r);
    cr_assert_eq(unlink_name("f"), 0);
    cr_assert(brick_has("handle", &g) && brick_has("unlinked", &g));
    /* the server releases a gone connection's fds, saying so */
    kb_args_t rel = { .gfid = g, .fd = f7, .flags = KB_REL_CONN_GONE };
    cr_assert_eq(bh_call(h, KB_FOP_RELEASE, &rel, NULL), 0);
    cr_assert(brick_has("handle", &g) && brick_has("unlinked", &g), "kept: its client may come back");
    uint64_t again;
    cr_assert_eq(bh_open(h, &g, O_RDWR, &again), 0, "it did, and reopened it by gfid");
    bh_pump(h, 600);
    cr_assert(brick_has("handle", &g), "held again: past the grace too");
    cr_assert_eq(bh_release(h, &g, again), 0);
    cr_assert(!brick_has("handle", &g) && !brick_has("unlinked", &g), "closed by its client: gone at once");

    /* the fds the server did not release go at KB_CTL_CLIENT_GONE, the same way */
    cr_assert_eq(bh_create(h, ROOT, "f2", 0644, O_RDWR, &g2, &cfd), 0);
    cr_assert_eq(bh_release(h, &g2, cfd), 0);
    o.gfid = g2;
    cr_assert_eq(bh_call_xl(h, bh_xl(h, NULL), KB_FOP_OPEN, &o, &c7, &r), 0);
    kb_reply_clear(&r);
    cr_assert_eq(unlink_name("f2"), 0);
    uint64_t id = 7;
    cr_assert_eq(kb_graph_ctl(h->graph, KB_CTL_CLIENT_GONE, &id), 0);
    cr_assert(brick_has("handle", &g2) && brick_has("unlinked", &g2), "kept for the grace");
    bh_pump(h, 600);
    cr_assert(!brick_has("handle", &g2) && !brick_has("unlinked", &g2), "nobody came back: gone");
    status_says("0 open-unlinked");
}

Test(orphan, index_entry_and_region_map_go_with_it)
{
    kb_gfid_t g;
    uint64_t fd = open_unlinked("f", &g, "data");
    /* marks made while it is open and nameless (a copy missed a write) */
    kb_cl_matrix_t d = { 0 };
    d.v[2][KB_CL_DATA] = 1;
    kb_args_t x = { .gfid = g, .name = KB_CL_XATTR, .flags = KB_XOP_ADD, .data = kb_buf_new(KB_CL_MATRIX_BYTES) };
    kb_cl_encode(&d, (uint8_t *)x.data->data);
    x.data->len = KB_CL_MATRIX_BYTES;
    cr_assert_eq(bh_call(h, KB_FOP_XATTROP, &x, NULL), 0);
    kb_buf_unref(x.data);
    cr_assert_eq(bh_write(h, &g, fd, 0, "DATA", 4, KB_WF_TRACK_REGIONS), 4);
    cr_assert(brick_has("index", &g), "indexed: heal finds it by gfid while it is open");
    cr_assert(brick_has("regions", &g));
    cr_assert_eq(bh_release(h, &g, fd), 0);
    cr_assert(!brick_has("index", &g), "an index entry never outlives its object");
    cr_assert(!brick_has("regions", &g));
    cr_assert(!brick_has("handle", &g) && !brick_has("unlinked", &g));
}

Test(orphan, restart_keeps_them_for_the_grace_then_sweeps_the_unheld)
{
    kb_gfid_t ga, gb, gc;
    open_unlinked("a", &ga, "kept by a client");
    open_unlinked("b", &gb, "nobody comes back");
    open_unlinked("c", &gc, "closed in the grace");
    restart("  option orphan-grace 0.5\n");
    for (int i = 0; i < 3; i++) {
        const kb_gfid_t *g = i == 0 ? &ga : i == 1 ? &gb : &gc;
        cr_assert(brick_has("handle", g) && brick_has("unlinked", g), "orphan %d kept at start", i);
    }
    status_says("3 open-unlinked");
    /* a client reconnects and reopens a by gfid; another opens c and closes it */
    uint64_t fa, fc;
    char buf[64];
    cr_assert_eq(bh_open(h, &ga, O_RDWR, &fa), 0);
    cr_assert_eq(bh_read(h, &ga, fa, 0, sizeof(buf), buf), 16);
    cr_assert(memcmp(buf, "kept by a client", 16) == 0);
    cr_assert_eq(bh_open(h, &gc, O_RDONLY, &fc), 0);
    cr_assert_eq(bh_release(h, &gc, fc), 0);
    cr_assert(brick_has("handle", &gc), "in the grace a last close removes nothing: others may come back");
    bh_pump(h, 800);
    cr_assert(!brick_has("handle", &gb) && !brick_has("unlinked", &gb), "unheld after the grace: gone");
    cr_assert(!brick_has("handle", &gc) && !brick_has("unlinked", &gc));
    cr_assert(brick_has("handle", &ga) && brick_has("unlinked", &ga), "reopened: kept");
    status_says("1 open-unlinked");
    cr_assert_eq(bh_write(h, &ga, fa, 16, "!", 1, 0), 1);
    cr_assert_eq(bh_read(h, &ga, fa, 0, sizeof(buf), buf), 17);
    cr_assert(memcmp(buf, "kept by a client!", 17) == 0);
    cr_assert_eq(bh_release(h, &ga, fa), 0);
    cr_assert(!brick_has("handle", &ga) && !brick_has("unlinked", &ga), "its last close removes it");
}

Test(orphan, crash_leftovers_are_settled_at_start)
{
    kb_gfid_t named, lone, nameless_g;
    uint64_t fd;
    /* a crash between the marker and the unlink: the name is still there */
    cr_assert_eq(bh_create(h, ROOT, "named", 0644, O_RDWR, &named, &fd), 0);
    cr_assert_eq(bh_release(h, &named, fd), 0);
    make_marker(&named);
    /* a crash between the handle's removal and the marker's */
    kb_gfid_generate(&lone);
    make_marker(&lone);
    /* a crash after the unlink: marker, handle, no name */
    open_unlinked("gone", &nameless_g, "x");
    char junk[4096];
    snprintf(junk, sizeof(junk), "%s/.kembar/unlinked/not-a-gfid", dir);
    cr_assert_eq(close(open(junk, O_CREAT | O_WRONLY, 0600)), 0);

    restart("  option orphan-grace 0.3\n");
    cr_assert(!brick_has("unlinked", &named), "named: the marker goes at once");
    cr_assert(brick_has("handle", &named));
    cr_assert_eq(bh_lookup(h, ROOT, "named", NULL), 0, "and the file stays");
    cr_assert(!brick_has("unlinked", &lone), "a marker alone goes at once");
    cr_assert(brick_has("handle", &nameless_g) && brick_has("unlinked", &nameless_g), "waits for the grace");
    status_says("1 open-unlinked");
    bh_pump(h, 600);
    cr_assert(!brick_has("handle", &nameless_g) && !brick_has("unlinked", &nameless_g));
    cr_assert_eq(access(junk, F_OK), 0, "not a gfid: left alone");
    cr_assert_eq(bh_lookup(h, ROOT, "named", NULL), 0);
}

Test(orphan, grace_zero_sweeps_at_start_and_stop_keeps_them)
{
    kb_gfid_t g;
    open_unlinked("f", &g, "x");
    restart(NULL);            /* a clean stop keeps it too: fini is not its last close */
    cr_assert(brick_has("handle", &g) && brick_has("unlinked", &g));
    restart("  option orphan-grace 0\n");
    cr_assert(!brick_has("handle", &g) && !brick_has("unlinked", &g));
}
