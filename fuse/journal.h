/*
 * journal.h — buffered writes acknowledged before they reached the bricks,
 * kept in the mount's shared state until they did (issue 15;
 * fuse/journal.c says why and how).
 */
#ifndef KB_FUSE_JOURNAL_H
#define KB_FUSE_JOURNAL_H

#include "fuse/kbfuse.h"

/* Attach to the state's ring (kbf_ho_go, before any request). */
void kbf_journal_init(kbf_t *fs);
/* Whether a write through an fd opened with FLAGS may be acknowledged early
 * (performance/write-behind's rule): such writes are journaled. */
bool kbf_journal_wants(const kbf_t *fs, int flags);
/*
 * Submit the buffered WRITE of R (args filled, R->a.data its payload) after
 * keeping a copy of it in the journal. When the journal is full it goes
 * synchronous instead (the O_DIRECT bit in args.flags keeps write-behind from
 * acknowledging it early). Same contract as kbf_req_submit.
 */
struct kbf_req;
void kbf_journal_submit_write(struct kbf_req *r, void (*done)(struct kbf_req *, const kb_reply_t *));
/* Taken by kbf_req_submit around its kbc_submit when the journal is on: the
 * journal's sequence number at the submission, in submission order. */
uint64_t kbf_journal_enter(kbf_t *fs);
void kbf_journal_leave(kbf_t *fs);
/* A call on gfid G, submitted when the sequence was SEQ, completed: write-
 * behind ordered it after every write of G acknowledged before, so journal
 * entries of G up to SEQ reached the bricks. Cheap when nothing is kept. */
void kbf_journal_barrier(kbf_t *fs, const kb_gfid_t *g, uint64_t seq);
/* A takeover: write the entries the previous process left again, and wait
 * for them (before the resend; logged). */
void kbf_journal_replay(kbf_t *fs);
/* Stopping for the next process: a STAT of every gfid with entries kept
 * (each waits for its writes); CBK(ARG) once each completed; *COUNT counts
 * those in flight. Loop thread. */
void kbf_journal_barriers(kbf_t *fs, kb_cbk_fn cbk, void *arg, unsigned *count, const kb_cred_t *cred);

#endif
