/*
 * resend.c — the answer a resent request gives when it finds its own earlier
 * work (issue 15).
 *
 * After a takeover the kernel sends again every request the dead serving
 * process read and never answered (FUSE_NOTIFY_RESEND; their unique carries
 * FUSE_UNIQUE_RESEND). Most are idempotent: a read, a write at its offset, a
 * setattr, a truncate, a lock its owner holds already, a flush, an fsync. The
 * ones that change names are not, if the dead process got them to the bricks
 * before it died. Their second try fails with an error that is not the answer
 * the caller should get, because the caller's operation did take effect:
 *
 *   mkdir, mknod, symlink, create  EEXIST. The gfid of an entry-creating request
 *                                  is derived from the request's unique (fuse/
 *                                  state.c), so the second try names the same
 *                                  one: if the name holds it, the entry is ours
 *                                  and the answer is the entry (create: opened
 *                                  again, the fd is new; nothing was written to
 *                                  it). Another gfid: somebody else's, EEXIST.
 *   link                           EEXIST: ours if the new name holds the
 *                                  linked inode.
 *   unlink, rmdir                  ENOENT: answered 0. The kernel sends them only
 *                                  for a name it had looked up, so the name was
 *                                  there; whether we or another client removed
 *                                  it, it is gone as the caller asked.
 *   rename                         ENOENT (source gone) or EEXIST (NOREPLACE,
 *                                  target there): 0 when the source name is gone
 *                                  and the target name exists.
 *   setxattr XATTR_CREATE          EEXIST: 0 when the value there is ours.
 *   removexattr                    ENODATA: 0.
 *
 * Not recognised: RENAME_EXCHANGE done before the crash is done again by the
 * second try (swapping the names back): nothing on the bricks tells one
 * exchange from two. The window is the takeover's: a request read by the
 * dead process, on the bricks, and not answered.
 *
 * A request that was not resent never comes here (fuse/ops.c checks the bit).
 */
#include "fuse/resend.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/xattr.h>

#include "fuse/ops.h"
#include "lib/log.h"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

enum kbf_rs_kind kbf_resend_kind(kb_op_t op, int status, uint32_t flags)
{
    switch (op) {
    case KB_FOP_UNLINK:
    case KB_FOP_RMDIR:
        return status == -ENOENT ? KBF_RS_DONE : KBF_RS_ANSWER;
    case KB_FOP_MKDIR:
    case KB_FOP_MKNOD:
    case KB_FOP_SYMLINK:
    case KB_FOP_LINK:
    case KB_FOP_CREATE:
        return status == -EEXIST ? KBF_RS_FIND_NEW : KBF_RS_ANSWER;
    case KB_FOP_RENAME:
        return (status == -ENOENT || status == -EEXIST) && !(flags & RENAME_EXCHANGE) ? KBF_RS_FIND_RENAME
                                                                                      : KBF_RS_ANSWER;
    case KB_FOP_SETXATTR:
        return status == -EEXIST && (flags & XATTR_CREATE) ? KBF_RS_FIND_XATTR : KBF_RS_ANSWER;
    case KB_FOP_REMOVEXATTR:
        return status == -ENODATA ? KBF_RS_DONE : KBF_RS_ANSWER;
    default:
        return KBF_RS_ANSWER;
    }
}

bool kbf_resend_is_ours(const kb_gfid_t *want, int status, const kb_iatt_t *attr)
{
    return status == 0 && !kb_gfid_is_null(want) && kb_gfid_eq(want, &attr->gfid);
}

bool kbf_resend_renamed(int src_status, int dst_status)
{
    return src_status == -ENOENT && dst_status == 0;
}

/* ---------------- the follow-ups ---------------- */

static void finish(kbf_req_t *r, const kb_reply_t *rep)
{
    kbf_done_fn done = r->rs_done;
    r->rs_done = NULL;
    r->done = done;
    r->unique &= ~KBF_UNIQUE_RESEND;        /* answered: no second recovery */
    done(r, rep);
}

static void fail_as_before(kbf_req_t *r)
{
    kb_reply_t rep = { .status = r->rs_status };
    finish(r, &rep);
}

static void log_recovered(const kbf_req_t *r, const char *what)
{
    kb_info("fuse", "resent %s (unique %#llx) had taken effect before the takeover: %s",
            kb_fop_name(r->rs_op), (unsigned long long)(r->unique & ~KBF_UNIQUE_RESEND), what);
}

/* create: the file is ours; it was opened again. */
static void new_opened(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        fail_as_before(r);
        return;
    }
    kb_reply_t out = { .status = 0, .fd = rep->fd, .attr = r->rs_attr };
    log_recovered(r, "its file, opened again");
    finish(r, &out);
}

static void new_found(kbf_req_t *r, const kb_reply_t *rep)
{
    if (!kbf_resend_is_ours(&r->rs_want, rep->status, &rep->attr)) {
        fail_as_before(r);
        return;
    }
    r->rs_attr = rep->attr;
    if (r->rs_op != KB_FOP_CREATE) {
        kb_reply_t out = { .status = 0, .attr = rep->attr };
        log_recovered(r, "its entry");
        finish(r, &out);
        return;
    }
    free(r->a.name);
    r->a.name = NULL;
    r->a.gfid = rep->attr.gfid;
    r->a.flags &= ~(uint32_t)(O_CREAT | O_EXCL | O_TRUNC);
    kbf_req_submit(r, KB_FOP_OPEN, new_opened);
}

static void dst_found(kbf_req_t *r, const kb_reply_t *rep)
{
    if (!kbf_resend_renamed(r->rs_src_status, rep->status)) {
        fail_as_before(r);
        return;
    }
    kb_reply_t out = { .status = 0 };
    log_recovered(r, "source gone, target there");
    finish(r, &out);
}

static void src_found(kbf_req_t *r, const kb_reply_t *rep)
{
    r->rs_src_status = rep->status < 0 ? rep->status : 0;
    if (r->rs_src_status != -ENOENT) {
        fail_as_before(r);
        return;
    }
    free(r->a.name);             /* now the target: name2 in gfid2 */
    r->a.name = r->a.name2;
    r->a.name2 = NULL;
    r->a.gfid = r->a.gfid2;
    kbf_req_submit(r, KB_FOP_LOOKUP, dst_found);
}

static void xattr_found(kbf_req_t *r, const kb_reply_t *rep)
{
    const kb_buf_t *want = r->rs_value;
    bool same = rep->status >= 0 && rep->data && want && (size_t)rep->status == want->len &&
                rep->data->len >= want->len && memcmp(rep->data->data, want->data, want->len) == 0;
    kb_buf_unref(r->rs_value);
    r->rs_value = NULL;
    if (!same) {
        fail_as_before(r);
        return;
    }
    kb_reply_t out = { .status = 0 };
    log_recovered(r, "its value");
    finish(r, &out);
}

bool kbf_resend_recover(kbf_req_t *r, const kb_reply_t *rep)
{
    if (r->rs_done || !r->req)
        return false;            /* a follow-up of ours, or internal */
    enum kbf_rs_kind k = kbf_resend_kind(r->op, rep->status, r->a.flags);
    if (k == KBF_RS_ANSWER)
        return false;
    r->rs_done = r->done;
    r->rs_op = r->op;
    r->rs_status = rep->status;
    switch (k) {
    case KBF_RS_DONE: {
        kb_reply_t out = { .status = 0 };
        log_recovered(r, "its work is done");
        finish(r, &out);
        return true;
    }
    case KBF_RS_FIND_NEW:
        r->rs_want = r->a.newgfid;
        if (r->op == KB_FOP_LINK) {  /* the new name is name2 in gfid2 */
            free(r->a.name);
            r->a.name = r->a.name2;
            r->a.name2 = NULL;
            r->a.gfid = r->a.gfid2;
        }
        kbf_req_submit(r, KB_FOP_LOOKUP, new_found);
        return true;
    case KBF_RS_FIND_RENAME:
        kbf_req_submit(r, KB_FOP_LOOKUP, src_found);
        return true;
    case KBF_RS_FIND_XATTR:
        r->rs_value = r->a.data;
        r->a.data = NULL;
        r->a.size = r->rs_value ? r->rs_value->len : 0;
        r->a.flags = 0;
        kbf_req_submit(r, KB_FOP_GETXATTR, xattr_found);
        return true;
    default:
        return false;
    }
}
