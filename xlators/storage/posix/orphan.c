/*
 * orphan.c — open-unlinked files of storage/posix (issue 14).
 *
 * On ext4 a file unlinked (or renamed over) while it is open lives until
 * its last close. On a brick the open fds keep the inode alive too, but a
 * brick restart (kill -9, upgrade, volume stop/start) closes them all, and
 * the clients then reopen their fds by gfid when they reconnect (replicate
 * at CHILD_UP). So when the last name of a regular file goes while this
 * brick holds it open, its gfid handle stays and a marker
 * .kembar/unlinked/<gfid> (an empty file) records it as an orphan:
 *   - by gfid (nameless lookup, open, stat, xattrs, XATTROP) it is still
 *     found, with nlink 0; LINK refuses it (-ENOENT, as ext4 refuses to
 *     link an unlinked inode), so no heal gives it a name again;
 *   - when the brick's last fd on it is closed by its client (RELEASE), its
 *     index entry and region map, its handle and its marker go;
 *   - when the last fd goes with its client's connection (a network cut, a
 *     kembar-fuse killed and taken over: KB_REL_CONN_GONE, KB_CTL_CLIENT_GONE),
 *     the client may come back and reopen it by gfid: it is kept for
 *     orphan-grace, then removed unless reopened;
 *   - at brick start every marker is a leftover of a crash or a restart,
 *     kept for orphan-grace the same way.
 * orphan-grace defaults to 120 s, the longest lock lease a brick grants: a
 * client back in time to keep its locks also finds its open-unlinked files.
 * While an orphan is kept, a last close removes nothing (it goes when the
 * grace runs out): another client may still be on its way back, and the
 * brick cannot tell who. A file that is not open here when its last name
 * goes loses its handle at once, as before: no marker, no fsync.
 *
 * Crash safety: the marker is created and made durable (fsync of the
 * directory) BEFORE the last name is removed, and the removal goes index +
 * region map, handle, marker. A crash therefore leaves a marker whose object
 * still has a name (a crash before the unlink: start drops the marker), a
 * marker with its handle and no name (an orphan: removed after the grace),
 * or a marker alone (dropped) — never a nameless handle nobody will remove,
 * nor an index entry without its object. The fsync is paid only by the
 * unlink of a file open on the brick, on the loop thread.
 *
 * The held table counts the brick's fds per gfid (regular files; the fd
 * table, posix.c, keeps it), so "is it open here" is a hash lookup, not a
 * scan of the fd table. Entries live while fds hold them or while they are
 * orphans. One timer sweeps the kept orphans, armed for the earliest.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <event2/event.h>
#include "lib/log.h"
#include "xlators/storage/posix/internal.h"

#define HD_MIN_BUCKETS 64

/* ---------------- held table ---------------- */

static size_t hd_slot(const posix_priv_t *p, const kb_gfid_t *g)
{
    return kb_gfid_hash(g) & (p->hd_nb - 1);
}

static posix_held_t *hd_find(const posix_priv_t *p, const kb_gfid_t *g)
{
    if (!p->hd_tab)
        return NULL;
    for (posix_held_t *h = p->hd_tab[hd_slot(p, g)]; h; h = h->next)
        if (kb_gfid_eq(&h->gfid, g))
            return h;
    return NULL;
}

static void hd_grow(posix_priv_t *p)
{
    size_t nb = p->hd_nb * 2;
    posix_held_t **t = calloc(nb, sizeof(*t));
    if (!t)
        return;               /* longer chains, still right */
    posix_held_t **old = p->hd_tab;
    size_t onb = p->hd_nb;
    p->hd_tab = t;
    p->hd_nb = nb;
    for (size_t i = 0; i < onb; i++)
        for (posix_held_t *h = old[i], *n; h; h = n) {
            n = h->next;
            size_t s = hd_slot(p, &h->gfid);
            h->next = t[s];
            t[s] = h;
        }
    free(old);
}

static posix_held_t *hd_add(posix_priv_t *p, const kb_gfid_t *g)
{
    posix_held_t *h = kb_zalloc(sizeof(*h));
    if (!h)
        return NULL;
    h->gfid = *g;
    if (p->hd_count >= 2 * p->hd_nb)
        hd_grow(p);
    size_t s = hd_slot(p, g);
    h->next = p->hd_tab[s];
    p->hd_tab[s] = h;
    p->hd_count++;
    return h;
}

static void hd_del(posix_priv_t *p, posix_held_t *h)
{
    posix_held_t **pp = &p->hd_tab[hd_slot(p, &h->gfid)];
    while (*pp && *pp != h)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = h->next;
        p->hd_count--;
    }
    if (h->orphan)
        p->orphans--;
    free(h);
}

/* ---------------- markers ---------------- */

static int marker_create(posix_priv_t *p, const kb_gfid_t *g)
{
    char s[KB_GFID_STRLEN];
    int fd = openat(p->unlinked_fd, kb_gfid_str(g, s), O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    return fsync(p->unlinked_fd) ? -errno : 0;
}

static void marker_remove(posix_priv_t *p, const kb_gfid_t *g)
{
    char s[KB_GFID_STRLEN];
    if (unlinkat(p->unlinked_fd, kb_gfid_str(g, s), 0) && errno != ENOENT)
        kb_warn(p->xl->name, "removing orphan marker %s: %s", s, strerror(errno));
}

/* The handle of G when it is the object's only link (a nameless regular
 * file); false when the object has a name again, or no handle. */
static bool nameless(posix_priv_t *p, const kb_gfid_t *g, struct stat *st)
{
    char rel[POSIX_HANDLE_REL_LEN];
    posix_handle_rel(g, rel);
    return fstatat(p->handles_fd, rel, st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st->st_mode) &&
           st->st_nlink == 1;
}

/* Sweep at WHEN (kb_now_ms) at the latest; -1 without an event base. */
static int sweep_arm(posix_priv_t *p, uint64_t when)
{
    if (!p->sweep_ev)
        return -1;
    if (p->sweep_at && p->sweep_at <= when)
        return 0;             /* that sweep arms the next */
    uint64_t now = kb_now_ms(), ms = when > now ? when - now : 0;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    if (evtimer_add(p->sweep_ev, &tv))
        return -1;
    p->sweep_at = when;
    return 0;
}

/* The orphan H is held by nobody: the object goes for good. */
static void orphan_reap(posix_priv_t *p, posix_held_t *h)
{
    struct stat st;
    if (nameless(p, &h->gfid, &st)) {
        posix_cl_forget(p, &h->gfid);   /* first: an index entry never outlives its object */
        posix_handle_unlink(p, &h->gfid, st.st_ino);
    }
    marker_remove(p, &h->gfid);
    hd_del(p, h);
}

/* ---------------- the fd table's side ---------------- */

int posix_held_ref(posix_priv_t *p, const kb_gfid_t *g)
{
    posix_held_t *h = hd_find(p, g);
    if (!h && !(h = hd_add(p, g)))
        return -ENOMEM;
    h->nfds++;
    return 0;
}

void posix_held_unref(posix_priv_t *p, const kb_gfid_t *g, bool conn_gone)
{
    posix_held_t *h = hd_find(p, g);
    if (!h || !h->nfds || --h->nfds > 0)
        return;
    if (!h->orphan) {
        hd_del(p, h);
        return;
    }
    uint64_t now = kb_now_ms();
    if (conn_gone && p->grace_ms)
        h->keep_until = KB_MAX(h->keep_until, now + p->grace_ms);
    if (h->keep_until > now && sweep_arm(p, h->keep_until) == 0)
        return;               /* its client may come back for it */
    orphan_reap(p, h);
}

/* ---------------- entry ops ---------------- */

int posix_orphan_mark(posix_priv_t *p, const kb_gfid_t *g)
{
    posix_held_t *h = hd_find(p, g);
    if (!h || !h->nfds)
        return 0;
    if (h->orphan)
        return 1;
    int rc = marker_create(p, g);
    if (rc) {
        char s[KB_GFID_STRLEN];
        kb_warn(p->xl->name, "orphan marker for %s: %s (its open fds keep working, but not across "
                "a brick restart)", kb_gfid_str(g, s), strerror(-rc));
        marker_remove(p, g);
        return rc;
    }
    h->orphan = true;
    p->orphans++;
    return 1;
}

void posix_orphan_unmark(posix_priv_t *p, const kb_gfid_t *g)
{
    posix_held_t *h = hd_find(p, g);
    if (!h || !h->orphan)
        return;
    marker_remove(p, g);
    h->orphan = false;
    p->orphans--;
    if (!h->nfds)
        hd_del(p, h);
}

bool posix_orphan_is(const posix_priv_t *p, const kb_gfid_t *g)
{
    const posix_held_t *h = hd_find(p, g);
    return h && h->orphan;
}

/* ---------------- kept orphans: start, grace, sweep ---------------- */

/* Remove every orphan no fd holds and no grace keeps; returns how many. */
static unsigned orphan_sweep(posix_priv_t *p)
{
    unsigned n = 0;
    uint64_t now = kb_now_ms(), next = 0;
    for (size_t i = 0; i < p->hd_nb; i++)
        for (posix_held_t *h = p->hd_tab[i], *nx; h; h = nx) {
            nx = h->next;
            if (!h->orphan || h->nfds)
                continue;
            if (h->keep_until <= now) {
                orphan_reap(p, h);
                n++;
            } else if (!next || h->keep_until < next) {
                next = h->keep_until;
            }
        }
    if (next && sweep_arm(p, next))
        kb_warn(p->xl->name, "cannot arm the orphan sweep: kept orphans stay until the next start");
    return n;
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    posix_priv_t *p = arg;
    p->sweep_at = 0;
    unsigned n = orphan_sweep(p);
    if (n)
        kb_info(p->xl->name, "orphan grace over: removed %u open-unlinked file(s) nobody reopened, %zu "
                "still open or kept", n, p->orphans);
}

/* One marker found at start: kept (an orphan), or dropped when its object
 * has a name (a crash before the unlink) or no handle (reaped already). */
static int scan_one(posix_priv_t *p, const char *name)
{
    kb_gfid_t g;
    struct stat st;
    if (kb_gfid_parse(name, &g) || kb_gfid_is_null(&g)) {
        kb_warn(p->xl->name, "%s/%s/unlinked/%s: not a gfid, left alone", p->dir, KB_INTERNAL_DIR, name);
        return 0;
    }
    if (!nameless(p, &g, &st)) {
        marker_remove(p, &g);
        return 0;
    }
    if (hd_find(p, &g))
        return 0;
    posix_held_t *h = hd_add(p, &g);
    if (!h)
        return -ENOMEM;
    h->orphan = true;
    h->keep_until = kb_now_ms() + p->grace_ms;
    p->orphans++;
    return 0;
}

static int scan_markers(posix_priv_t *p)
{
    int fd = openat(p->unlinked_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dh = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dh) {
        int rc = -errno;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    int rc = 0;
    for (struct dirent *de; !rc && (de = readdir(dh));)
        if (de->d_name[0] != '.')
            rc = scan_one(p, de->d_name);
    closedir(dh);
    return rc;
}

int posix_orphan_init(posix_priv_t *p, struct event_base *base, uint64_t grace_ms)
{
    p->hd_nb = HD_MIN_BUCKETS;
    if (!(p->hd_tab = calloc(p->hd_nb, sizeof(*p->hd_tab))))
        return -ENOMEM;
    if (base && !(p->sweep_ev = evtimer_new(base, sweep_cb, p)))
        return -ENOMEM;
    p->grace_ms = p->sweep_ev ? grace_ms : 0;   /* no loop, nobody to sweep later: no grace */
    int rc = scan_markers(p);
    if (rc) {
        kb_err(p->xl->name, "%s: reading %s/unlinked/: %s", p->dir, KB_INTERNAL_DIR, strerror(-rc));
        return rc;
    }
    if (!p->orphans)
        return 0;
    if (!p->grace_ms) {
        unsigned n = orphan_sweep(p);
        kb_info(p->xl->name, "removed %u open-unlinked file(s) left by the previous run", n);
        return 0;
    }
    kb_info(p->xl->name, "%zu open-unlinked file(s) left by the previous run: kept %.3g s for their "
            "clients to reopen", p->orphans, p->grace_ms / 1000.0);
    return sweep_arm(p, kb_now_ms() + p->grace_ms) ? -ENOMEM : 0;
}

void posix_orphan_fini(posix_priv_t *p)
{
    if (p->sweep_ev) {
        event_free(p->sweep_ev);
        p->sweep_ev = NULL;
    }
    if (p->hd_tab) {
        for (size_t i = 0; i < p->hd_nb; i++)
            for (posix_held_t *h = p->hd_tab[i], *n; h; h = n) {
                n = h->next;
                free(h);
            }
        free(p->hd_tab);
        p->hd_tab = NULL;
    }
    p->hd_count = p->orphans = 0;
}
