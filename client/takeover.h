/*
 * takeover.h — libkembar's handles as data, for a process that hands its
 * users' open files over to another process (kembar-fuse's serving process,
 * issue 15; client/graphs.c implements it).
 *
 * A handle is what users hold as an fd (FUSE's fi->fh): a value naming a file
 * opened by gfid, with the lock owners seen through it and the log of its
 * granted lock requests (client/hlocks.c). The kernel keeps holding those
 * values when the process that made them dies; a new process that restores
 * the same values with the same facts serves the kernel's fds as if nothing
 * happened: each restored handle is reopened by gfid on its graph and its
 * locks are taken again before any call on it runs. The locks themselves
 * stay held on the bricks meanwhile: they belong to the client instance
 * (lib/common.h kb_instance_id), which the new process shares, for the lock
 * lease after the old process's connections went.
 *
 * Not part of the public API (client/kembar.h does not include it).
 */
#ifndef KB_CLIENT_TAKEOVER_H
#define KB_CLIENT_TAKEOVER_H

#include "client/kembar.h"
#include "xlators/lklog.h"

/* An owner that was granted a record lock through a handle (hlocks.c). */
typedef struct kbc_lkown {
    uint64_t owner;
    bool process;                /* seen in a FLUSH of the handle: a POSIX (process) owner */
} kbc_lkown_t;

typedef struct kbc_handle_info {
    uint64_t value;              /* the handle, as users hold it */
    kb_gfid_t gfid;
    uint32_t flags;              /* open flags */
    bool is_dir;
    int lk_lost;                 /* 0, or -errno: its calls fail (a lock could not be kept) */
    uint32_t nowners;
    const kbc_lkown_t *owners;
    const kb_lklog_t *locks;     /* granted lock requests, in order */
} kbc_handle_info_t;

/*
 * Watch: PUT(ARG, H) runs on the loop thread whenever a handle is made or
 * what it holds changes (a lock granted or dropped, a FLUSH, a lock lost),
 * BEFORE the reply of the call that changed it reaches the user; CLOSED(ARG,
 * VALUE) runs once the handle's RELEASE completed, before its reply. Set it
 * before the first open (no handle exists yet).
 */
typedef void (*kbc_handle_put_fn)(void *arg, const kbc_handle_info_t *h);
typedef void (*kbc_handle_closed_fn)(void *arg, uint64_t value);
void kbc_handles_watch(kbc_t *c, kbc_handle_put_fn put, kbc_handle_closed_fn closed, void *arg);

/*
 * Restore N handles with their values (values C does not use: call it before
 * any open). Each is reopened by gfid (its flags) on the current graph and
 * its locks are taken again; calls on it wait meanwhile. A handle whose
 * reopen fails, whose lock log is incomplete, or one of whose locks another
 * client holds now, fails every call but its release with -EBADFD (never
 * silently unlocked). DONE(ARG, FAILED) runs on the loop thread once every
 * one is settled (at once when N is 0). Any thread but the loop's; 0 or
 * -ENOMEM / -EEXIST (two handles with one value).
 */
int kbc_handles_restore(kbc_t *c, const kbc_handle_info_t *hs, uint32_t n,
                        void (*done)(void *arg, unsigned failed), void *arg);

#endif
