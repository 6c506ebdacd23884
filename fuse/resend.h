/*
 * resend.h — the right answer for a request the kernel sent again after a
 * takeover, when it may have taken effect before (issue 15; fuse/resend.c).
 */
#ifndef KB_FUSE_RESEND_H
#define KB_FUSE_RESEND_H

#include "xlators/fop.h"

/* What a resent request that failed with STATUS needs (FLAGS: its args.flags). */
enum kbf_rs_kind {
    KBF_RS_ANSWER,               /* the failure is the answer */
    KBF_RS_DONE,                 /* its own effect: success (unlink/rmdir ENOENT, removexattr ENODATA) */
    KBF_RS_FIND_NEW,             /* EEXIST of an entry it makes: is the name its own gfid? */
    KBF_RS_FIND_RENAME,          /* ENOENT/EEXIST of a rename: source gone and target there? */
    KBF_RS_FIND_XATTR,           /* EEXIST of XATTR_CREATE: the same value there? */
};
enum kbf_rs_kind kbf_resend_kind(kb_op_t op, int status, uint32_t flags);

/* Whether a LOOKUP (status, attr) of the name finds the object it would have
 * made, gfid WANT. */
bool kbf_resend_is_ours(const kb_gfid_t *want, int status, const kb_iatt_t *attr);
/* Whether a rename took effect: its source name is gone, its target there. */
bool kbf_resend_renamed(int src_status, int dst_status);

struct kbf_req;
/* In the request's completion (fuse/ops.c): true when R, resent, failed with
 * REP but may have done its work before; R then finishes later through its
 * own completion with the answer the first time would have had. */
bool kbf_resend_recover(struct kbf_req *r, const kb_reply_t *rep);

#endif
