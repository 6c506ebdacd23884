/*
 * fop_test.c — the fop list and its codec: every op's arguments and reply
 * survive a round trip; truncated or padded input is refused; limits are
 * enforced before allocation; copy/clear keep buffer references right.
 */
#include <criterion/criterion.h>
#include <sys/stat.h>
#include "xlators/fop.h"

static kb_args_t sample_args(void)
{
    kb_args_t a = { 0 };
    kb_gfid_generate(&a.gfid);
    kb_gfid_generate(&a.gfid2);
    kb_gfid_generate(&a.newgfid);
    a.name = "file.img";
    a.name2 = "other";
    a.fd = 0x1234;
    a.fd_valid = 1;
    a.off = 1ull << 40;
    a.size = 4096;
    a.flags = 0x8002;
    a.mode = 0100644;
    a.rdev = 77;
    a.attr.mode = 0755;
    a.attr.uid = 1000;
    a.attr.mtime_sec = 1700000000;
    a.lock = (kb_lock_t){ .type = KB_LK_WRLCK, .start = 10, .len = 20, .owner = 99, .pid = 5 };
    return a;
}

Test(fop, every_op_args_round_trip)
{
    kb_args_t a = sample_args();
    kb_buf_t *data = kb_buf_copy("payload", 7);
    a.data = data;
    for (int op = 0; op < KB_FOP_MAX; op++) {
        kb_enc_t e;
        kb_enc_init(&e);
        kb_args_encode(&e, (kb_op_t)op, &a);
        cr_assert_eq(e.err, 0);
        uint32_t m = kb_fop_info[op].args;
        kb_args_t b;
        kb_dec_t d;
        kb_dec_init(&d, e.p, e.len);
        int rc = kb_args_decode(&d, (kb_op_t)op, &b, (m & KB_A_DATA) ? data : NULL);
        cr_assert_eq(rc, 0, "op %s: %d", kb_fop_name((kb_op_t)op), rc);
        if (m & KB_A_GFID) cr_assert(kb_gfid_eq(&a.gfid, &b.gfid));
        if (m & KB_A_NAME) cr_assert_str_eq(b.name, a.name);
        if (m & KB_A_NAME2) cr_assert_str_eq(b.name2, a.name2);
        if (m & KB_A_NEWGFID) cr_assert(kb_gfid_eq(&a.newgfid, &b.newgfid));
        if (m & KB_A_FD) cr_assert_eq(b.fd, a.fd);
        if (m & KB_A_OFF) cr_assert_eq(b.off, a.off);
        if (m & KB_A_FLAGS) cr_assert_eq(b.flags, a.flags);
        if (m & KB_A_ATTR) cr_assert_eq(b.attr.mtime_sec, a.attr.mtime_sec);
        if (m & KB_A_LOCK) cr_assert_eq(b.lock.len, 20);
        if (m & KB_A_DATA) cr_assert_eq(b.data, data);
        /* every strict prefix is refused */
        for (size_t cut = 0; cut < e.len; cut++) {
            kb_args_t c;
            kb_dec_init(&d, e.p, cut);
            cr_assert_neq(kb_args_decode(&d, (kb_op_t)op, &c, NULL), 0, "op %d cut %zu", op, cut);
        }
        /* trailing garbage is refused */
        kb_enc_u8(&e, 0);
        kb_args_t c;
        kb_dec_init(&d, e.p, e.len);
        cr_assert_neq(kb_args_decode(&d, (kb_op_t)op, &c, NULL), 0);
        kb_args_clear(&b);
        kb_enc_free(&e);
    }
    kb_buf_unref(data);
}

Test(fop, name_limits_enforced)
{
    kb_args_t a = { 0 };
    char longname[300];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[299] = 0;
    a.name = longname;
    kb_enc_t e;
    kb_enc_init(&e);
    kb_args_encode(&e, KB_FOP_LOOKUP, &a);
    kb_dec_t d;
    kb_args_t b;
    kb_dec_init(&d, e.p, e.len);
    cr_assert_neq(kb_args_decode(&d, KB_FOP_LOOKUP, &b, NULL), 0, "a 299-byte name must be refused");
    kb_enc_free(&e);
}

Test(fop, oversized_read_refused)
{
    kb_args_t a = { .size = 1ull << 40, .fd = 1 };
    kb_enc_t e;
    kb_enc_init(&e);
    kb_args_encode(&e, KB_FOP_READ, &a);
    kb_dec_t d;
    kb_args_t b;
    kb_dec_init(&d, e.p, e.len);
    cr_assert_eq(kb_args_decode(&d, KB_FOP_READ, &b, NULL), -EMSGSIZE);
    kb_enc_free(&e);
}

Test(fop, unknown_op_refused)
{
    kb_dec_t d;
    kb_args_t b;
    kb_dec_init(&d, "", 0);
    cr_assert_neq(kb_args_decode(&d, (kb_op_t)KB_FOP_MAX, &b, NULL), 0);
}

Test(fop, reply_round_trip_with_dirents)
{
    kb_reply_t r = { .status = 0, .rflags = KB_RF_CONTENDED };
    kb_gfid_generate(&r.attr.gfid);
    r.attr.size = 12345;
    r.ndirents = 3;
    r.dirents = calloc(3, sizeof(kb_dirent_t));
    for (int i = 0; i < 3; i++) {
        r.dirents[i].name = strdup(i == 0 ? "a" : i == 1 ? "bb" : "ccc");
        r.dirents[i].off = (uint64_t)i + 100;
        r.dirents[i].has_attr = i == 1;
        r.dirents[i].attr.size = 42;
    }
    kb_enc_t e;
    kb_enc_init(&e);
    kb_reply_encode(&e, KB_FOP_READDIR, &r);
    kb_reply_t b = { .status = 0 };
    kb_dec_t d;
    kb_dec_init(&d, e.p, e.len);
    cr_assert_eq(kb_reply_decode(&d, KB_FOP_READDIR, &b, NULL), 0);
    cr_assert_eq(b.ndirents, 3);
    cr_assert_eq(b.rflags, KB_RF_CONTENDED);
    cr_assert_str_eq(b.dirents[2].name, "ccc");
    cr_assert_eq(b.dirents[1].attr.size, 42);
    cr_assert_eq(b.dirents[2].off, 102);
    /* copy keeps an independent copy */
    kb_reply_t c;
    cr_assert_eq(kb_reply_copy(&c, &b), 0);
    kb_reply_clear(&b);
    cr_assert_str_eq(c.dirents[1].name, "bb");
    kb_reply_clear(&c);
    kb_reply_clear(&r);
    kb_enc_free(&e);
}

Test(fop, dirent_count_bomb_refused)
{
    kb_enc_t e;
    kb_enc_init(&e);
    kb_enc_u32(&e, 0);            /* rflags */
    kb_enc_u32(&e, 60000);        /* claims 60000 entries, carries none */
    kb_reply_t b = { .status = 0 };
    kb_dec_t d;
    kb_dec_init(&d, e.p, e.len);
    cr_assert_neq(kb_reply_decode(&d, KB_FOP_READDIR, &b, NULL), 0);
    cr_assert_null(b.dirents);
    kb_enc_free(&e);
}

Test(fop, parent_attributes_travel_only_when_flagged)
{
    kb_reply_t r = { .status = 0, .fd = 77, .rflags = KB_RF_PATTR };
    r.attr.size = 5;
    kb_gfid_generate(&r.pattr.gfid);
    r.pattr.mode = S_IFDIR | 0755;
    r.pattr.nlink = 3;
    r.pattr.mtime_sec = 1700000000;
    r.pattr.mtime_nsec = 123;
    kb_enc_t e;
    kb_enc_init(&e);
    kb_reply_encode(&e, KB_FOP_CREATE, &r);
    size_t with = e.len;
    kb_reply_t b = { .status = 0 };
    kb_dec_t d;
    kb_dec_init(&d, e.p, e.len);
    cr_assert_eq(kb_reply_decode(&d, KB_FOP_CREATE, &b, NULL), 0);
    cr_assert(b.rflags & KB_RF_PATTR);
    cr_assert_eq(memcmp(&b.pattr, &r.pattr, sizeof(r.pattr)), 0);
    cr_assert_eq(b.attr.size, 5);
    cr_assert_eq(b.fd, 77);
    kb_enc_free(&e);

    /* Without the flag: the reply as before (an older client decodes it). */
    r.rflags = 0;
    kb_enc_init(&e);
    kb_reply_encode(&e, KB_FOP_CREATE, &r);
    cr_assert_lt(e.len, with);
    kb_dec_init(&d, e.p, e.len);
    cr_assert_eq(kb_reply_decode(&d, KB_FOP_CREATE, &b, NULL), 0);
    cr_assert_not(b.rflags & KB_RF_PATTR);
    kb_iatt_t zero;
    memset(&zero, 0, sizeof(zero));
    cr_assert_eq(memcmp(&b.pattr, &zero, sizeof(zero)), 0);
    kb_enc_free(&e);

    /* The flag with the attributes missing is refused, not read past. */
    kb_enc_init(&e);
    kb_reply_encode(&e, KB_FOP_UNLINK, &r);     /* rflags only */
    kb_put_le32(e.p, KB_RF_PATTR);              /* rflags: the first u32 */
    kb_dec_init(&d, e.p, e.len);
    cr_assert_neq(kb_reply_decode(&d, KB_FOP_UNLINK, &b, NULL), 0);
    kb_enc_free(&e);
}

Test(fop, error_reply_carries_no_fields)
{
    kb_reply_t r = { .status = -ENOENT };
    kb_enc_t e;
    kb_enc_init(&e);
    kb_reply_encode(&e, KB_FOP_LOOKUP, &r);
    cr_assert_eq(e.len, 4);
    kb_reply_t b = { .status = -ENOENT };
    kb_dec_t d;
    kb_dec_init(&d, e.p, e.len);
    cr_assert_eq(kb_reply_decode(&d, KB_FOP_LOOKUP, &b, NULL), 0);
    cr_assert_eq(b.status, -ENOENT);
    kb_enc_free(&e);
}

Test(fop, iatt_stat_conversion_and_ino)
{
    struct stat st = { .st_mode = S_IFREG | 0640, .st_nlink = 2, .st_size = 999, .st_uid = 7 };
    kb_gfid_t g;
    kb_gfid_generate(&g);
    kb_iatt_t ia;
    kb_iatt_from_stat(&ia, &st, &g);
    struct stat back;
    kb_iatt_to_stat(&ia, &back);
    cr_assert_eq(back.st_size, 999);
    cr_assert_eq(back.st_mode, S_IFREG | 0640);
    cr_assert_eq(back.st_ino, kb_gfid_to_ino(&g));
    cr_assert_eq(kb_gfid_to_ino(&kb_gfid_root), 1);
    cr_assert_gt(kb_gfid_to_ino(&g), 1);
}

Test(fop, uses_fd_rule)
{
    kb_args_t a = { 0 };
    cr_assert(kb_args_uses_fd(KB_FOP_WRITE, &a));
    cr_assert_not(kb_args_uses_fd(KB_FOP_STAT, &a));
    a.fd_valid = 1;
    cr_assert(kb_args_uses_fd(KB_FOP_STAT, &a));
    cr_assert_not(kb_args_uses_fd(KB_FOP_LOOKUP, &a));
}
