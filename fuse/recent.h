/*
 * recent.h — attributes a reply just brought, kept to answer the kernel's
 * next GETATTR of that inode without a round trip to the bricks.
 *
 * Why: the kernel drops its cached attributes of a directory after every
 * create or unlink in it, and of a file after every write; with
 * default_permissions the next path walk through the directory, and the
 * next read or append of the file, asks for them again (FUSE_GETATTR), one
 * round trip each. The bricks already sent them: an entry op's reply
 * carries its parent's attributes after the op (KB_RF_PATTR), and an OPEN
 * runs a STAT next to it (fuse/file.c).
 *
 * What it promises:
 *  - Never older than the kernel's own cache may be: an entry is used only
 *    while younger than attr_timeout, and the kernel is told to keep it only
 *    for what is left of that (fuse/attr.c). With attr_timeout 0 nothing is
 *    ever used.
 *  - Never older than this client's own changes: every modification of an
 *    inode sent through this mount bumps that inode's generation when it is
 *    sent and when it completes, and attributes are kept only if nothing
 *    bumped it between their request and their reply, and used only if
 *    nothing bumped it since. An op that removes a name (unlink, rmdir,
 *    rename) changes the link count of an inode the request does not name:
 *    it forgets what was kept of every inode of the kind it may have
 *    removed (kbf_recent_change's WHAT): unlink the non-directories, rmdir the
 *    directories, rename both.
 *  - Reads count as changes too (READ, READDIR, READLINK): a brick may
 *    move the atime (relatime), and the kernel asks again after a read.
 *  - Used once: taking an entry removes it, so the kernel's following
 *    GETATTRs of the inode reach the bricks as before.
 *  - Known: a directory kept from an entry op's reply has the ctime it had
 *    right after the op; replicate's post-op, a changelog xattr written on
 *    it just after, moves the bricks' ctime once more. A later STAT then
 *    shows a ctime a little newer, never one older than the op itself.
 *
 * A fixed table, one entry per slot (node id hash): a collision only loses
 * an entry, or makes a bump reach an unrelated inode (a miss, never a stale
 * answer). Thread-safe (libfuse's workers with -o threads).
 */
#ifndef KB_FUSE_RECENT_H
#define KB_FUSE_RECENT_H

#include <stdbool.h>
#include <stdint.h>

#include "xlators/fop.h"

typedef struct kbf_recent kbf_recent_t;
/* How many clears each kind has seen (kbf_recent_epoch): what was read
 * before a clear of its kind is not kept after it. */
typedef struct kbf_recent_ep { uint64_t dir, other; } kbf_recent_ep_t;
enum { KBF_RECENT_DIRS = 1, KBF_RECENT_OTHERS = 2 };

/* SLOTS: a power of two. NULL on ENOMEM (the mount then works without). */
kbf_recent_t *kbf_recent_new(unsigned slots);
void kbf_recent_free(kbf_recent_t *rc);             /* NULL-safe */

/* A modification of INO is being sent, or came back: what is kept of it is
 * stale. Returns the generation after the bump (the snapshot its reply
 * compares). Every function takes rc NULL and ino 0 as "nothing". */
uint64_t kbf_recent_bump(kbf_recent_t *rc, uint64_t ino);
/* A change of INO and INO2 (0: none) is being sent, or came back, and it
 * may remove a name of the kinds in WHAT (KBF_RECENT_*): what is kept of
 * every inode of those kinds is forgotten, then INO and INO2 are bumped,
 * under one lock (every read and write does this twice). INO and INO2 0,
 * WHAT alone: only the forgetting.
 * SNAP, SNAP2 and EP, when not NULL, get what its reply compares. */
void kbf_recent_change(kbf_recent_t *rc, uint64_t ino, uint64_t ino2, unsigned what, uint64_t *snap,
                       uint64_t *snap2, kbf_recent_ep_t *ep);
/* The generation of INO now (before sending a read of its attributes). */
uint64_t kbf_recent_snap(kbf_recent_t *rc, uint64_t ino);
/* Keep IA as INO's attributes, fetched at NOW_NS, if INO's generation is
 * still SNAP and nothing of IA's kind was forgotten since EP. */
void kbf_recent_put(kbf_recent_t *rc, uint64_t ino, uint64_t snap, kbf_recent_ep_t ep,
                    const kb_iatt_t *ia, uint64_t now_ns);
/* A modification of INO that brought INO's attributes after it (an entry
 * op's parent) completed, and clears the kinds in WHAT (its own removal,
 * as kbf_recent_change): keep IA as kbf_recent_put would, checking EP
 * before that clear; when it cannot (another change of INO, or a clear of
 * IA's kind, since it went out, which IA may or may not include), bump INO
 * instead, so nothing kept meanwhile is used either. All under one lock. */
void kbf_recent_settle(kbf_recent_t *rc, uint64_t ino, uint64_t snap, kbf_recent_ep_t ep, unsigned what,
                       const kb_iatt_t *ia, uint64_t now_ns);
/* Take INO's kept attributes when they are GFID's (a node id is reused for
 * another inode once the kernel forgot it) and younger than MAX_AGE_NS at
 * NOW_NS: true with *OUT and *AGE_NS set, and the entry gone. */
bool kbf_recent_take(kbf_recent_t *rc, uint64_t ino, const kb_gfid_t *gfid, uint64_t now_ns,
                     uint64_t max_age_ns, kb_iatt_t *out, uint64_t *age_ns);
kbf_recent_ep_t kbf_recent_epoch(kbf_recent_t *rc);

#endif
