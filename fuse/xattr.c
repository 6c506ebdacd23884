/*
 * xattr.c — extended attributes: setxattr, getxattr, listxattr and
 * removexattr.
 *
 * Promises, besides the contract in fuse/ops.c:
 *  - security.* (unless -o security_xattrs) and system.posix_acl_* (unless
 *    -o acl) are answered here, without a brick round trip (xattr_local).
 *  - A name or value longer than a brick stores is refused here.
 *  - A get or list with size 0 answers the length only.
 */
#include "fuse/ops.h"

#include <sys/xattr.h>

/*
 * The kernel asks for security.capability before EVERY write to a file (to
 * clear file capabilities), which would cost a brick round trip per write.
 * Like GlusterFS without SELinux, security.* is answered here as absent
 * unless -o security_xattrs; POSIX ACL xattrs likewise unless -o acl (the
 * kernel checks permissions from the mode bits with default_permissions).
 * Returns 0 to pass NAME through, else the -errno to reply.
 */
static int xattr_local(const kbf_t *fs, const char *name, bool set)
{
    if (strlen(name) > KB_XATTR_NAME_MAX)
        return -ERANGE;
    if (!fs->security_xattrs && strncmp(name, "security.", 9) == 0)
        return set ? -EOPNOTSUPP : -ENODATA;
    if (!fs->acl && strncmp(name, "system.posix_acl_", 17) == 0)
        return -EOPNOTSUPP;
    return 0;
}

void kbf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                  size_t size, int flags)
{
    kbf_t *fs = fuse_req_userdata(req);
    int rc = xattr_local(fs, name, true);
    if (rc < 0 || size > KB_XATTR_VALUE_MAX) {
        fuse_reply_err(req, rc < 0 ? -rc : E2BIG);
        return;
    }
    kbf_req_t *r = kbf_req_inode(req, ino, true);
    if (!r || !kbf_arg_str(r, &r->a.name, name))
        return;
    r->a.data = kb_buf_copy(value, size);
    if (!r->a.data) {
        kbf_reply_err(r, -ENOMEM);
        return;
    }
    r->a.flags = (uint32_t)flags;   /* XATTR_CREATE / XATTR_REPLACE */
    kbf_req_submit(r, KB_FOP_SETXATTR, kbf_done_status);
}

/* GETXATTR / LISTXATTR: size 0 asks for the length only. */
static void done_xattr(kbf_req_t *r, const kb_reply_t *rep)
{
    if (rep->status < 0) {
        kbf_reply_err(r, rep->status);
        return;
    }
    if (r->size == 0) {
        fuse_reply_xattr(r->req, (size_t)rep->status);
    } else {
        size_t n = rep->data ? rep->data->len : 0;
        if (n > r->size) {
            kbf_reply_err(r, -ERANGE);
            return;
        }
        fuse_reply_buf(r->req, n ? rep->data->data : NULL, n);
    }
    kbf_req_free(r);
}

void kbf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    kbf_t *fs = fuse_req_userdata(req);
    int rc = xattr_local(fs, name, false);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    kbf_req_t *r = kbf_req_inode(req, ino, true);
    if (!r || !kbf_arg_str(r, &r->a.name, name))
        return;
    r->a.size = r->size = size;
    kbf_req_submit(r, KB_FOP_GETXATTR, done_xattr);
}

void kbf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    kbf_req_t *r = kbf_req_inode(req, ino, true);
    if (!r)
        return;
    r->a.size = r->size = size;
    kbf_req_submit(r, KB_FOP_LISTXATTR, done_xattr);
}

void kbf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    kbf_t *fs = fuse_req_userdata(req);
    int rc = xattr_local(fs, name, true);
    if (rc < 0) {
        fuse_reply_err(req, -rc);
        return;
    }
    kbf_req_t *r = kbf_req_inode(req, ino, true);
    if (r && kbf_arg_str(r, &r->a.name, name))
        kbf_req_submit(r, KB_FOP_REMOVEXATTR, kbf_done_status);
}
