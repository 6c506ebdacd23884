/*
 * posix.h — storage/posix: a brick directory as a translator (DESIGN §4).
 *
 * Brick root identity: the root directory carries
 *   trusted.kembar.volume-id  16 raw bytes (the volume's uuid)
 *   trusted.kembar.brick-id   16 raw bytes (this brick's uuid)
 * and <brick>/.kembar/ holds internal state (handles/, index/, regions/).
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
#include "lib/gfid.h"

#define KB_XATTR_VOLUME_ID "trusted.kembar.volume-id"
#define KB_XATTR_BRICK_ID  "trusted.kembar.brick-id"
#define KB_XATTR_GFID      "trusted.kembar.gfid"
#define KB_INTERNAL_DIR    ".kembar"
#define KB_XATTR_PREFIX    "trusted.kembar."

/* Create (if missing) and stamp a brick directory for volume VOLID. Refuses
 * (-EEXIST, reason in err) a directory that already belongs to another
 * volume, or (unless force) a non-empty directory that is not a brick, or a
 * directory on the root filesystem (unless force), like GlusterFS. */
int posix_brick_prepare(const char *path, const kb_gfid_t *volid, const kb_gfid_t *brickid,
                        bool force, char *err, size_t errlen);
/* 0 if PATH is a brick of VOLID, else -ENOENT (missing), -ENODATA (no ids:
 * not a brick, e.g. the disk is not mounted) or -EXDEV (another volume's),
 * with a one-line reason in err. */
int posix_brick_check(const char *path, const kb_gfid_t *volid, char *err, size_t errlen);
/* Remove the stamps and .kembar/ (volume delete); user data stays. */
int posix_brick_unstamp(const char *path);

#endif
