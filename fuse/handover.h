/*
 * handover.h — the serving process's side of a handover (issue 15;
 * fuse/handover.c): what it takes from the supervisor, what it takes over
 * from a previous serving process, and how it stops for the next one.
 */
#ifndef KB_FUSE_HANDOVER_H
#define KB_FUSE_HANDOVER_H

#include "fuse/kbfuse.h"

/* Receive the shared state from the supervisor on CTL and map it; sets
 * fs->takeover. 0, or -errno with why (FAILED is sent). */
int kbf_ho_start(kbf_t *fs, int ctl, char *why, size_t whylen);
/* Tell the supervisor why this process cannot serve (it exits next). */
void kbf_ho_failed(kbf_t *fs, const char *why);
/*
 * The volume is connected and fs->se made: say so, wait for /dev/fuse, and
 * take the mount over: a previous process's INIT, its handles (reopened, their
 * locks taken again) and the writes it acknowledged early; ask the kernel to
 * resend what it read and never answered; say READY. KILLPRIV_V2: ask for
 * FUSE_HANDLE_KILLPRIV_V2 at INIT (fuse/rawio.c). DAEMON: stdio leaves the
 * terminal once ready (stderr to LOG_PATH if any). 0, or -errno (logged).
 */
int kbf_ho_go(kbf_t *fs, bool killpriv_v2, bool daemon, const char *log_path);
/* An OPEN, CREATE or OPENDIR with UNIQUE answers with handle VALUE: noted
 * just before its reply (fuse/file.c, fuse/dir.c). */
void kbf_ho_opened(kbf_t *fs, uint64_t unique, uint64_t value);
/* An OPEN, CREATE or OPENDIR resent after a takeover: a handle its first try
 * made and never delivered is released. */
void kbf_ho_resent_open(kbf_t *fs, uint64_t unique);

#endif
