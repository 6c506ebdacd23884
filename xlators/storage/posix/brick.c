/*
 * brick.c — brick identity and format (posix.h): stamp, check, upgrade,
 * unstamp.
 *
 * A brick root carries trusted.kembar.volume-id and trusted.kembar.brick-id
 * (16 raw bytes each) plus the root gfid, and holds .kembar/{handles,index,
 * regions}. kembard refuses to serve a directory without the stamps or with
 * another volume's: an unmounted disk shows up as an empty directory on the
 * root filesystem, and healing onto it would copy the whole volume into /.
 *
 * It also carries trusted.kembar.format (posix.h). The format is read
 * before anything else, by every entry point here, so a brick a newer
 * kembar wrote is refused before this one writes a byte on it (lib/version.h
 * has the rule and why).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/xattr.h>
#include "lib/log.h"
#include "xlators/storage/posix/internal.h"

static const char *const internal_dirs[] = { "handles", "index", "regions" };

/* Remove NAME under DFD, recursively (internal trees only: shallow). */
int posix_rmtree_at(int dfd, const char *name, int depth)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    if (depth > 16)
        return -ELOOP;
    int fd = posix_openat(dfd, name, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    int rc = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int r = posix_rmtree_at(dirfd(d), de->d_name, depth + 1);
        if (r && !rc)
            rc = r;
    }
    closedir(d);
    if (unlinkat(dfd, name, AT_REMOVEDIR) && errno != ENOENT && !rc)
        rc = -errno;
    return rc;
}

static int read_id(int fd, const char *key, kb_gfid_t *g)
{
    ssize_t n = fgetxattr(fd, key, g->b, sizeof(g->b));
    if (n < 0)
        return -errno;
    return n == 16 ? 0 : -EINVAL;
}

int posix_brick_format(int fd, uint32_t *format)
{
    uint8_t b[KB_BRICK_FORMAT_BYTES + 1];
    ssize_t n = fgetxattr(fd, KB_XATTR_FORMAT, b, sizeof(b));
    if (n < 0 && errno == ENODATA) {
        *format = 1;                   /* kembar 0.1.0 stamped none */
        return 0;
    }
    if (n < 0)
        return -errno;
    if (n != KB_BRICK_FORMAT_BYTES)
        return -EINVAL;
    *format = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return *format ? 0 : -EINVAL;
}

/* 0 when this build reads the brick at FD, else the reason in err. */
static int format_guard(int fd, const char *path, char *err, size_t errlen)
{
    uint32_t f;
    int rc = posix_brick_format(fd, &f);
    if (rc == -EINVAL) {
        snprintf(err, errlen, "%s: unreadable %s stamp: refusing to touch this brick", path, KB_XATTR_FORMAT);
        return rc;
    }
    if (rc) {
        snprintf(err, errlen, "%s: reading %s: %s", path, KB_XATTR_FORMAT, strerror(-rc));
        return rc;
    }
    if (f > KB_BRICK_FORMAT) {
        snprintf(err, errlen, "brick %s has on-disk format %u; this kembard (%s) knows up to %u: a newer kembard "
                 "wrote it; run that (nothing was changed)", path, f, KB_VERSION, KB_BRICK_FORMAT);
        return -EPROTONOSUPPORT;
    }
    return 0;
}

static int stamp_format(int fd)
{
    uint32_t f = KB_BRICK_FORMAT;
    uint8_t b[KB_BRICK_FORMAT_BYTES] = { (uint8_t)f, (uint8_t)(f >> 8), (uint8_t)(f >> 16), (uint8_t)(f >> 24) };
    return fsetxattr(fd, KB_XATTR_FORMAT, b, sizeof(b), 0) ? -errno : 0;
}

/* Only what the filesystem itself may put in a fresh root counts as empty. */
static int dir_is_empty(int fd)
{
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return -errno;
    }
    int empty = 1;
    for (struct dirent *de; empty && (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "lost+found") &&
            strcmp(de->d_name, KB_INTERNAL_DIR))
            empty = 0;
    closedir(d);
    return empty;
}

static int make_layout(int fd)
{
    if (mkdirat(fd, KB_INTERNAL_DIR, 0700) && errno != EEXIST)
        return -errno;
    int ifd = posix_openat(fd, KB_INTERNAL_DIR, O_RDONLY | O_DIRECTORY, 0);
    if (ifd < 0)
        return ifd;
    int rc = 0;
    for (size_t i = 0; i < KB_ARRAY_SIZE(internal_dirs) && !rc; i++)
        if (mkdirat(ifd, internal_dirs[i], 0700) && errno != EEXIST)
            rc = -errno;
    if (!rc && fsync(ifd))
        rc = -errno;
    close(ifd);
    return rc;
}

/* Refusals of prepare for a directory that is not (yet) ours. */
static int prepare_guard(int fd, const char *path, bool force, char *err, size_t errlen)
{
    if (force)
        return 0;
    struct stat st, rst;
    if (fstat(fd, &st) == 0 && stat("/", &rst) == 0 && st.st_dev == rst.st_dev) {
        snprintf(err, errlen, "%s is on the root filesystem (use force to allow it)", path);
        return -EEXIST;
    }
    int e = dir_is_empty(fd);
    if (e < 0) {
        snprintf(err, errlen, "%s: cannot list: %s", path, strerror(-e));
        return e;
    }
    if (!e) {
        snprintf(err, errlen, "%s is not empty and is not a brick (use force to allow it)", path);
        return -EEXIST;
    }
    return 0;
}

/* Already stamped: fine when it is exactly this brick, else refuse. */
static int prepare_existing(int fd, const char *path, const kb_gfid_t *have, const kb_gfid_t *volid,
                            const kb_gfid_t *brickid, char *err, size_t errlen)
{
    char s1[KB_GFID_STRLEN], s2[KB_GFID_STRLEN];
    if (!kb_gfid_eq(have, volid)) {
        snprintf(err, errlen, "%s is already a brick of volume %s", path, kb_gfid_str(have, s1));
        return -EEXIST;
    }
    kb_gfid_t b;
    if (read_id(fd, KB_XATTR_BRICK_ID, &b) == 0 && !kb_gfid_eq(&b, brickid)) {
        snprintf(err, errlen, "%s is already brick %s of this volume, not %s", path, kb_gfid_str(&b, s1),
                 kb_gfid_str(brickid, s2));
        return -EEXIST;
    }
    return 0;
}

static int stamp(int fd, const kb_gfid_t *volid, const kb_gfid_t *brickid)
{
    kb_gfid_t g;
    if (read_id(fd, KB_XATTR_GFID, &g) != 0 && fsetxattr(fd, KB_XATTR_GFID, kb_gfid_root.b, 16, 0))
        return -errno;
    if (fsetxattr(fd, KB_XATTR_BRICK_ID, brickid->b, 16, 0))
        return -errno;
    int rc = stamp_format(fd);
    if (rc)
        return rc;
    if (fsetxattr(fd, KB_XATTR_VOLUME_ID, volid->b, 16, 0))   /* volume-id last: it means "done" */
        return -errno;
    return 0;
}

int posix_brick_prepare(const char *path, const kb_gfid_t *volid, const kb_gfid_t *brickid,
                        bool force, char *err, size_t errlen)
{
    if (!path || path[0] != '/') {
        snprintf(err, errlen, "brick path must be absolute");
        return -EINVAL;
    }
    int rc = kb_mkdir_p(path, 0755);
    if (rc) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(-rc));
        return rc;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(-rc));
        return rc;
    }
    kb_gfid_t have;
    if ((rc = format_guard(fd, path, err, errlen)))
        ;
    else if (read_id(fd, KB_XATTR_VOLUME_ID, &have) == 0)
        rc = prepare_existing(fd, path, &have, volid, brickid, err, errlen);
    else
        rc = prepare_guard(fd, path, force, err, errlen);
    if (!rc && (rc = stamp(fd, volid, brickid)))
        snprintf(err, errlen, "%s: cannot set brick xattrs: %s", path, strerror(-rc));
    if (!rc && (rc = make_layout(fd)))
        snprintf(err, errlen, "%s: cannot create %s/: %s", path, KB_INTERNAL_DIR, strerror(-rc));
    if (!rc && fsync(fd))
        rc = -errno;
    close(fd);
    return rc;
}

int posix_brick_check(const char *path, const kb_gfid_t *volid, char *err, size_t errlen)
{
    char s1[KB_GFID_STRLEN], s2[KB_GFID_STRLEN];
    int fd = path ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0) {
        int rc = path ? -errno : -EINVAL;
        snprintf(err, errlen, "brick directory %s: %s", path ? path : "(none)", strerror(-rc));
        return rc;
    }
    kb_gfid_t have, b;
    int rc = format_guard(fd, path, err, errlen);
    if (rc) {
        close(fd);
        return rc;
    }
    rc = read_id(fd, KB_XATTR_VOLUME_ID, &have);
    if (rc == 0)
        rc = read_id(fd, KB_XATTR_BRICK_ID, &b);
    close(fd);
    if (rc == -ENODATA || rc == -EINVAL) {
        snprintf(err, errlen, "%s is not a brick (no volume id): is its disk mounted?", path);
        return -ENODATA;
    }
    if (rc) {
        snprintf(err, errlen, "%s: reading brick xattrs: %s", path, strerror(-rc));
        return rc;
    }
    if (!kb_gfid_eq(&have, volid)) {
        snprintf(err, errlen, "%s belongs to volume %s, not %s", path, kb_gfid_str(&have, s1),
                 kb_gfid_str(volid, s2));
        return -EXDEV;
    }
    return 0;
}

int posix_brick_upgrade(const char *path, char *err, size_t errlen)
{
    int fd = path ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0) {
        int rc = path ? -errno : -EINVAL;
        snprintf(err, errlen, "brick directory %s: %s", path ? path : "(none)", strerror(-rc));
        return rc;
    }
    uint32_t f = 0;
    int rc = format_guard(fd, path, err, errlen);
    if (!rc)
        rc = posix_brick_format(fd, &f);
    bool stamped = false;
    if (!rc) {
        char probe[KB_BRICK_FORMAT_BYTES];
        stamped = fgetxattr(fd, KB_XATTR_FORMAT, probe, sizeof(probe)) == KB_BRICK_FORMAT_BYTES;
    }
    /* Older: the steps from each format to the next would run here, each
     * safe to run twice (a crash before the stamp repeats them). None yet:
     * format 1 is the first. */
    if (!rc && (!stamped || f < KB_BRICK_FORMAT)) {
        if ((rc = stamp_format(fd)) == 0 && fsync(fd))
            rc = -errno;
        if (rc)
            snprintf(err, errlen, "%s: cannot stamp format %u: %s", path, KB_BRICK_FORMAT, strerror(-rc));
        else
            kb_info("posix", "brick %s: on-disk format %u stamped (was %s%u)", path, KB_BRICK_FORMAT,
                    stamped ? "" : "none: ", f);
    }
    close(fd);
    return rc;
}

int posix_brick_unstamp(const char *path)
{
    int fd = path ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd < 0)
        return path ? -errno : -EINVAL;
    char why[512];
    int rc = format_guard(fd, path, why, sizeof(why));
    if (rc) {                            /* a newer kembar's brick: not ours to undo */
        kb_err("posix", "not unstamping: %s", why);
        close(fd);
        return rc;
    }
    const char *keys[] = { KB_XATTR_VOLUME_ID, KB_XATTR_BRICK_ID, KB_XATTR_FORMAT };
    for (size_t i = 0; i < KB_ARRAY_SIZE(keys); i++)
        if (fremovexattr(fd, keys[i]) && errno != ENODATA && !rc)
            rc = -errno;
    int r = posix_rmtree_at(fd, KB_INTERNAL_DIR, 0);
    close(fd);
    return rc ? rc : r;
}
