/*
 * posix.h — storage/posix: a brick directory as a translator (DESIGN §4).
 *
 * Brick root identity: the root directory carries
 *   trusted.kembar.volume-id  16 raw bytes (the volume's uuid)
 *   trusted.kembar.brick-id   16 raw bytes (this brick's uuid)
 * and <brick>/.kembar/ holds internal state (handles/, index/, regions/,
 * unlinked/: one empty file per gfid of an open-unlinked file, orphan.c).
 *
 * On-disk format (lib/version.h has the rule): the brick root carries
 *   trusted.kembar.format     4 bytes, u32 little-endian: the brick format
 * set by prepare and, on a brick that lacks it or carries an older one, by
 * the first kembard able to upgrade it (posix_brick_upgrade, at brick
 * start). Absent = 1 (kembar 0.1.0 stamped none). A brick whose format is
 * above KB_BRICK_FORMAT is refused by check, prepare and upgrade alike,
 * before anything on it is written.
 *   1  kembar 0.1.0 and 0.2: the layout above; replicate's changelog,
 *      index and region maps as xlators/changelog.h describes them; the
 *      distribute layout of xlators/cluster/distribute/layout.h.
 * kembard stamps a brick at `volume create` (posix_brick_prepare) and
 * refuses to serve one whose root lacks the ids or carries another volume's
 * (posix_brick_check; also done by the translator's init when the
 * "volume-id" option is set) — the disk was not mounted; never heal onto
 * an empty directory.
 */
#ifndef KB_POSIX_H
#define KB_POSIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/gfid.h"

#define KB_XATTR_VOLUME_ID "trusted.kembar.volume-id"
#define KB_XATTR_BRICK_ID  "trusted.kembar.brick-id"
#define KB_XATTR_GFID      "trusted.kembar.gfid"
#define KB_INTERNAL_DIR    ".kembar"
#define KB_XATTR_PREFIX    "trusted.kembar."
#define KB_XATTR_FORMAT    "trusted.kembar.format"
#define KB_BRICK_FORMAT    1u          /* this build writes it and reads 1..it */
#define KB_BRICK_FORMAT_BYTES 4

/* A gfid's handle, relative to <brick>/.kembar/handles: "xx/yy/<gfid-string>"
 * (xx, yy: its first two bytes in hex; handle.c). A non-directory's handle
 * is a hard link to it, a directory's a symlink holding its parent record.
 * A client on the brick's host reads files through them
 * (xlators/protocol/client/local_read.c). */
#define POSIX_HANDLE_REL_LEN 43   /* "xx/yy/" + 36 + NUL */
void posix_handle_rel(const kb_gfid_t *g, char out[POSIX_HANDLE_REL_LEN]);

/* Create (if missing) and stamp a brick directory for volume VOLID. Refuses
 * (-EEXIST, reason in err) a directory that already belongs to another
 * volume, or (unless force) a non-empty directory that is not a brick, or a
 * directory on the root filesystem (unless force), like GlusterFS. */
int posix_brick_prepare(const char *path, const kb_gfid_t *volid, const kb_gfid_t *brickid,
                        bool force, char *err, size_t errlen);
/* 0 if PATH is a brick of VOLID, else -ENOENT (missing), -ENODATA (no ids:
 * not a brick, e.g. the disk is not mounted), -EXDEV (another volume's) or
 * -EPROTONOSUPPORT (a newer format; also -EINVAL for an unreadable stamp),
 * with a one-line reason in err. Reads only. */
int posix_brick_check(const char *path, const kb_gfid_t *volid, char *err, size_t errlen);
/* Bring PATH to KB_BRICK_FORMAT: a newer format is refused as by check
 * (nothing written); an older or absent one is upgraded in place and
 * stamped. 0 or -errno with a one-line reason in err. */
int posix_brick_upgrade(const char *path, char *err, size_t errlen);
/* The format stamped on the brick at FD: 0 with *FORMAT (1 when absent),
 * -EINVAL when the stamp is malformed, or -errno. */
int posix_brick_format(int fd, uint32_t *format);
/* Remove the stamps and .kembar/ (volume delete); user data stays. */
int posix_brick_unstamp(const char *path);

#endif
