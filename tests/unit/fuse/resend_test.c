/*
 * resend_test.c — the answers of requests the kernel sent again after a
 * takeover (fuse/resend.c): which failures may hide the request's own
 * earlier work, and the follow-ups that find it — a duplicate create that
 * finds its own gfid succeeds (and its file is opened again), one that finds
 * another's gets EEXIST; a duplicate rename whose source is gone and target
 * there succeeds; unlink/rmdir ENOENT succeed; RENAME_EXCHANGE is not guessed.
 *
 * kbf_req_submit is mocked: each follow-up fop is answered at once from the
 * script below, as the bricks would.
 */
#include <criterion/criterion.h>
#include <linux/fs.h>
#include <sys/xattr.h>

#include "fuse/resend.c"

/* ---- the mocked bridge ---- */

static kb_op_t seen[8];
static unsigned nseen;
static kb_gfid_t lookup_gfid[2];     /* what a LOOKUP finds: first call, second call */
static int lookup_status[2];
static const char *xattr_value;      /* what a GETXATTR finds (NULL: ENODATA) */

void kbf_req_submit(kbf_req_t *r, kb_op_t op, kbf_done_fn done)
{
    r->done = done;
    r->op = op;
    unsigned k = nseen;
    seen[nseen++] = op;
    kb_reply_t rep = { 0 };
    kb_buf_t *b = NULL;
    switch (op) {
    case KB_FOP_LOOKUP: {
        unsigned i = 0;
        for (unsigned j = 0; j < k; j++)
            i += seen[j] == KB_FOP_LOOKUP;
        rep.status = lookup_status[i];
        rep.attr.gfid = lookup_gfid[i];
        rep.attr.mode = 0100644;
        break;
    }
    case KB_FOP_OPEN:
        rep.status = 0;
        rep.fd = 0x77;
        break;
    case KB_FOP_GETXATTR:
        if (!xattr_value) {
            rep.status = -ENODATA;
            break;
        }
        b = kb_buf_copy(xattr_value, strlen(xattr_value));
        rep.data = b;
        rep.status = (int)strlen(xattr_value);
        break;
    default:
        rep.status = -ENOSYS;
    }
    done(r, &rep);
    kb_buf_unref(b);
}

static kb_reply_t answered;
static bool got_answer;

static void final_done(kbf_req_t *r, const kb_reply_t *rep)
{
    (void)r;
    answered = *rep;
    got_answer = true;
}

static kb_gfid_t g_n(unsigned n)
{
    kb_gfid_t g = { { 0 } };
    g.b[0] = 0x55;
    g.b[15] = (uint8_t)n;
    return g;
}

/* A resent request R of OP that failed with STATUS. */
static kbf_req_t *resent(kb_op_t op, uint32_t flags)
{
    static kbf_req_t r;
    kb_args_clear(&r.a);
    kb_buf_unref(r.rs_value);
    memset(&r, 0, sizeof(r));
    r.req = (fuse_req_t)&r;          /* a request to answer (never dereferenced here) */
    r.unique = 1000 | KBF_UNIQUE_RESEND;
    r.op = op;
    r.done = final_done;
    r.a.gfid = g_n(1);               /* parent */
    r.a.name = strdup("name");
    r.a.newgfid = g_n(42);
    r.a.flags = flags;
    nseen = 0;
    got_answer = false;
    memset(&answered, 0, sizeof(answered));
    lookup_status[0] = lookup_status[1] = 0;
    lookup_gfid[0] = lookup_gfid[1] = g_n(42);
    xattr_value = NULL;
    return &r;
}

static bool recover(kbf_req_t *r, int status)
{
    kb_reply_t rep = { .status = status };
    return kbf_resend_recover(r, &rep);
}

Test(fuse_resend, which_failures_may_hide_earlier_work)
{
    cr_assert_eq(kbf_resend_kind(KB_FOP_UNLINK, -ENOENT, 0), KBF_RS_DONE);
    cr_assert_eq(kbf_resend_kind(KB_FOP_RMDIR, -ENOENT, 0), KBF_RS_DONE);
    cr_assert_eq(kbf_resend_kind(KB_FOP_RMDIR, -ENOTEMPTY, 0), KBF_RS_ANSWER);
    cr_assert_eq(kbf_resend_kind(KB_FOP_MKDIR, -EEXIST, 0), KBF_RS_FIND_NEW);
    cr_assert_eq(kbf_resend_kind(KB_FOP_CREATE, -EEXIST, 0), KBF_RS_FIND_NEW);
    cr_assert_eq(kbf_resend_kind(KB_FOP_SYMLINK, -EEXIST, 0), KBF_RS_FIND_NEW);
    cr_assert_eq(kbf_resend_kind(KB_FOP_MKNOD, -EEXIST, 0), KBF_RS_FIND_NEW);
    cr_assert_eq(kbf_resend_kind(KB_FOP_LINK, -EEXIST, 0), KBF_RS_FIND_NEW);
    cr_assert_eq(kbf_resend_kind(KB_FOP_MKDIR, -EACCES, 0), KBF_RS_ANSWER);
    cr_assert_eq(kbf_resend_kind(KB_FOP_RENAME, -ENOENT, 0), KBF_RS_FIND_RENAME);
    cr_assert_eq(kbf_resend_kind(KB_FOP_RENAME, -EEXIST, RENAME_NOREPLACE), KBF_RS_FIND_RENAME);
    cr_assert_eq(kbf_resend_kind(KB_FOP_RENAME, -ENOENT, RENAME_EXCHANGE), KBF_RS_ANSWER,
                 "an exchange done twice cannot be told from once");
    cr_assert_eq(kbf_resend_kind(KB_FOP_SETXATTR, -EEXIST, XATTR_CREATE), KBF_RS_FIND_XATTR);
    cr_assert_eq(kbf_resend_kind(KB_FOP_SETXATTR, -ENODATA, XATTR_REPLACE), KBF_RS_ANSWER);
    cr_assert_eq(kbf_resend_kind(KB_FOP_REMOVEXATTR, -ENODATA, 0), KBF_RS_DONE);
    cr_assert_eq(kbf_resend_kind(KB_FOP_WRITE, -EIO, 0), KBF_RS_ANSWER);
    cr_assert_eq(kbf_resend_kind(KB_FOP_LOOKUP, -ENOENT, 0), KBF_RS_ANSWER);
    kb_iatt_t ia = { .gfid = g_n(3) };
    kb_gfid_t want = g_n(3), other = g_n(4);
    cr_assert(kbf_resend_is_ours(&want, 0, &ia));
    cr_assert_not(kbf_resend_is_ours(&other, 0, &ia));
    cr_assert_not(kbf_resend_is_ours(&want, -ENOENT, &ia));
    cr_assert_not(kbf_resend_is_ours(&kb_gfid_null, 0, &(kb_iatt_t){ 0 }));
    cr_assert(kbf_resend_renamed(-ENOENT, 0));
    cr_assert_not(kbf_resend_renamed(0, 0), "source still there: not done");
    cr_assert_not(kbf_resend_renamed(-ENOENT, -ENOENT), "nothing at the target");
}

Test(fuse_resend, a_duplicate_mkdir_finds_its_own_gfid)
{
    kbf_req_t *r = resent(KB_FOP_MKDIR, 0);
    cr_assert(recover(r, -EEXIST));
    cr_assert(got_answer);
    cr_assert_eq(answered.status, 0, "its own directory: success");
    cr_assert(kb_gfid_eq(&answered.attr.gfid, &r->a.newgfid), "the entry is the one it made");
    cr_assert_eq(nseen, 1);
    cr_assert_eq(seen[0], KB_FOP_LOOKUP);
    cr_assert(r->done == final_done, "the request ends in its own completion");
    cr_assert_not(r->unique & KBF_UNIQUE_RESEND, "and is not recovered twice");
}

Test(fuse_resend, a_name_holding_another_gfid_stays_eexist)
{
    kbf_req_t *r = resent(KB_FOP_MKDIR, 0);
    lookup_gfid[0] = g_n(7);
    cr_assert(recover(r, -EEXIST));
    cr_assert_eq(answered.status, -EEXIST);
}

Test(fuse_resend, a_duplicate_create_opens_its_own_file_again)
{
    kbf_req_t *r = resent(KB_FOP_CREATE, O_CREAT | O_EXCL | O_RDWR);
    cr_assert(recover(r, -EEXIST));
    cr_assert_eq(nseen, 2);
    cr_assert_eq(seen[0], KB_FOP_LOOKUP);
    cr_assert_eq(seen[1], KB_FOP_OPEN);
    cr_assert_eq(r->a.flags & (O_CREAT | O_EXCL), 0, "opened, not created again");
    cr_assert(kb_gfid_eq(&r->a.gfid, &r->a.newgfid), "by its gfid");
    cr_assert_eq(answered.status, 0);
    cr_assert_eq(answered.fd, 0x77, "the fd of the new open");
    cr_assert(kb_gfid_eq(&answered.attr.gfid, &r->a.newgfid));
}

Test(fuse_resend, a_duplicate_link_finds_the_linked_inode)
{
    kbf_req_t *r = resent(KB_FOP_LINK, 0);
    free(r->a.name);
    r->a.name = NULL;
    r->a.gfid = g_n(42);             /* the inode linked */
    r->a.gfid2 = g_n(2);             /* the new parent */
    r->a.name2 = strdup("newname");
    cr_assert(recover(r, -EEXIST));
    cr_assert_eq(answered.status, 0);
    cr_assert_str_eq(r->a.name, "newname", "looked up the new name");
    kb_gfid_t parent2 = g_n(2);
    cr_assert(kb_gfid_eq(&r->a.gfid, &parent2), "in the new parent");
}

Test(fuse_resend, a_duplicate_rename_succeeds_when_source_gone_and_target_there)
{
    kbf_req_t *r = resent(KB_FOP_RENAME, 0);
    r->a.gfid2 = g_n(2);
    r->a.name2 = strdup("to");
    lookup_status[0] = -ENOENT;      /* the source */
    lookup_status[1] = 0;            /* the target */
    cr_assert(recover(r, -ENOENT));
    cr_assert_eq(nseen, 2);
    cr_assert_eq(answered.status, 0);

    r = resent(KB_FOP_RENAME, 0);
    r->a.gfid2 = g_n(2);
    r->a.name2 = strdup("to");
    lookup_status[0] = 0;            /* the source is still there: a real ENOENT elsewhere */
    cr_assert(recover(r, -ENOENT));
    cr_assert_eq(answered.status, -ENOENT);

    r = resent(KB_FOP_RENAME, RENAME_NOREPLACE);
    r->a.gfid2 = g_n(2);
    r->a.name2 = strdup("to");
    lookup_status[0] = -ENOENT;
    lookup_status[1] = 0;
    cr_assert(recover(r, -EEXIST), "NOREPLACE done before: the target exists");
    cr_assert_eq(answered.status, 0);

    r = resent(KB_FOP_RENAME, RENAME_EXCHANGE);
    cr_assert_not(recover(r, -ENOENT));
    cr_assert_eq(nseen, 0);
}

Test(fuse_resend, unlink_and_rmdir_that_find_nothing_succeed)
{
    kbf_req_t *r = resent(KB_FOP_UNLINK, 0);
    cr_assert(recover(r, -ENOENT));
    cr_assert_eq(answered.status, 0);
    cr_assert_eq(nseen, 0);
    r = resent(KB_FOP_RMDIR, 0);
    cr_assert(recover(r, -ENOENT));
    cr_assert_eq(answered.status, 0);
    r = resent(KB_FOP_RMDIR, 0);
    cr_assert_not(recover(r, -ENOTEMPTY), "a real failure is the answer");
}

Test(fuse_resend, xattr_create_done_before_finds_its_value)
{
    kbf_req_t *r = resent(KB_FOP_SETXATTR, XATTR_CREATE);
    r->a.data = kb_buf_copy("v1", 2);
    xattr_value = "v1";
    cr_assert(recover(r, -EEXIST));
    cr_assert_eq(seen[0], KB_FOP_GETXATTR);
    cr_assert_eq(answered.status, 0);
    r = resent(KB_FOP_SETXATTR, XATTR_CREATE);
    r->a.data = kb_buf_copy("v1", 2);
    xattr_value = "other";
    cr_assert(recover(r, -EEXIST));
    cr_assert_eq(answered.status, -EEXIST, "somebody else's value");
    r = resent(KB_FOP_REMOVEXATTR, 0);
    cr_assert(recover(r, -ENODATA));
    cr_assert_eq(answered.status, 0);
}

Test(fuse_resend, internal_requests_and_follow_ups_are_left_alone)
{
    kbf_req_t *r = resent(KB_FOP_UNLINK, 0);
    r->req = NULL;                   /* internal: nobody to answer */
    cr_assert_not(recover(r, -ENOENT));
    r = resent(KB_FOP_LOOKUP, 0);    /* a follow-up's own failure is its answer */
    cr_assert_not(recover(r, -ENOENT));
    kb_args_clear(&r->a);
}
