/*
 * heal_index_test.c — server/heal_index.c: which heal index entries `heal
 * info` counts. A brick directory is laid out by hand (index entry, gfid
 * handle, changelog xattr) as storage/posix lays it out.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "lib/gfid.h"
#include "server/heal_index.h"
#include "xlators/changelog.h"

static char brick[64];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) { return remove(p); }

static void setup(void)
{
    strcpy(brick, "/var/tmp/kb-hidx-XXXXXX");
    cr_assert_not_null(mkdtemp(brick));
    char p[256];
    snprintf(p, sizeof(p), "%s/.kembar", brick);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/.kembar/index", brick);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/.kembar/handles", brick);
    mkdir(p, 0700);
}

static void teardown(void) { nftw(brick, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* An object with an index entry: a regular file (or a directory's symlink
 * record when DIR) with changelog M (NULL: no xattr). Returns the gfid string. */
static const char *object(const kb_cl_matrix_t *m, bool dir, char gs[KB_GFID_STRLEN])
{
    kb_gfid_t g;
    kb_gfid_generate(&g);
    kb_gfid_str(&g, gs);
    char p[512];
    snprintf(p, sizeof(p), "%s/.kembar/handles/%.2s", brick, gs);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/.kembar/handles/%.2s/%.2s", brick, gs, gs + 2);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/.kembar/handles/%.2s/%.2s/%s", brick, gs, gs + 2, gs);
    if (dir) {
        cr_assert_eq(symlink("00000000-0000-0000-0000-000000000001/d", p), 0);
    } else {
        int fd = open(p, O_CREAT | O_WRONLY, 0644);
        cr_assert_geq(fd, 0);
        close(fd);
        if (m) {
            uint8_t raw[KB_CL_DISK_BYTES] = { 0x4b, 0x42, 0x43, 0x4c, 0, 0, 0, 1 };
            kb_cl_encode(m, raw + 8);
            cr_assert_eq(setxattr(p, KB_CL_XATTR, raw, sizeof(raw), 0), 0, "trusted xattrs need root");
        }
    }
    snprintf(p, sizeof(p), "%s/.kembar/index/%s", brick, gs);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    cr_assert_geq(fd, 0);
    close(fd);
    return gs;
}

Test(heal_index, only_what_needs_heal_counts, .init = setup, .fini = teardown)
{
    char a[KB_GFID_STRLEN], b[KB_GFID_STRLEN], c[KB_GFID_STRLEN], d[KB_GFID_STRLEN], e[KB_GFID_STRLEN];
    kb_cl_matrix_t writing = { 0 }, blamed = { 0 }, zero = { 0 }, meta = { 0 };
    writing.v[KB_CL_DIRTY_ROW][KB_CL_DATA] = 1;        /* a write in flight, nobody blamed */
    blamed.v[KB_CL_DIRTY_ROW][KB_CL_DATA] = 1;         /* ... and a copy missed writes */
    blamed.v[1 + 1][KB_CL_DATA] = 3;
    meta.v[1 + 0][KB_CL_META] = 1;                     /* blames copy 0 for metadata */

    cr_assert_eq(kbd_index_classify(brick, object(&writing, false, a)), KBD_INDEX_WRITING);
    cr_assert_eq(kbd_index_classify(brick, object(&blamed, false, b)), KBD_INDEX_PENDING);
    cr_assert_eq(kbd_index_classify(brick, object(&zero, false, c)), KBD_INDEX_CLEAN);
    cr_assert_eq(kbd_index_classify(brick, object(&meta, false, d)), KBD_INDEX_PENDING);
    cr_assert_eq(kbd_index_classify(brick, object(NULL, true, e)), KBD_INDEX_PENDING,
                 "a directory's marks are entry operations: always counted");
    cr_assert_eq(kbd_index_classify(brick, "00000000-0000-0000-0000-00000000abcd"), KBD_INDEX_PENDING,
                 "an object that cannot be read is counted");
    int w = -1;
    cr_assert_eq(kbd_index_count(brick, &w), 3);
    cr_assert_eq(w, 1);
}

Test(heal_index, a_foreign_xattr_is_counted, .init = setup, .fini = teardown)
{
    char a[KB_GFID_STRLEN], p[512];
    kb_cl_matrix_t writing = { 0 };
    writing.v[KB_CL_DIRTY_ROW][KB_CL_DATA] = 1;
    object(&writing, false, a);
    snprintf(p, sizeof(p), "%s/.kembar/handles/%.2s/%.2s/%s", brick, a, a + 2, a);
    uint8_t raw[KB_CL_DISK_BYTES] = { 'X' };
    cr_assert_eq(setxattr(p, KB_CL_XATTR, raw, sizeof(raw), 0), 0);
    cr_assert_eq(kbd_index_classify(brick, a), KBD_INDEX_PENDING);
    cr_assert_eq(setxattr(p, KB_CL_XATTR, raw, 10, 0), 0);
    cr_assert_eq(kbd_index_classify(brick, a), KBD_INDEX_PENDING);
}
