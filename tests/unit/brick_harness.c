/*
 * brick_harness.c — synchronous driver of a translator graph for unit tests
 * (see brick_harness.h).
 *
 * The test thread owns the loop: bh_call winds from it, then runs
 * event_base_loop(EVLOOP_ONCE) until the callback has fired, with a timer
 * as a guard so a lost reply fails the test instead of hanging it.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>
#include <event2/event.h>
#include "tests/unit/brick_harness.h"

char *bh_tmpdir(const char *tag)
{
    static unsigned n;
    char *path = NULL;
    if (asprintf(&path, "/var/tmp/kb-%s-%d-%u", tag, (int)getpid(), n++) < 0)
        return NULL;
    bh_rmrf(path);
    if (mkdir(path, 0755)) {
        free(path);
        return NULL;
    }
    return path;
}

static int rmrf_at(int dfd, const char *name)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            rmrf_at(dirfd(d), de->d_name);
    closedir(d);
    return unlinkat(dfd, name, AT_REMOVEDIR) && errno != ENOENT ? -errno : 0;
}

int bh_rmrf(const char *path)
{
    return rmrf_at(AT_FDCWD, path);
}

bh_t *bh_posix_start(const char *dir, const char *extra, char *err, size_t errlen)
{
    char vol[1024];
    snprintf(vol, sizeof(vol), "volume b-posix\n  type storage/posix\n  option directory %s\n%send-volume\n", dir,
             extra ? extra : "");
    return bh_start(vol, err, errlen);
}

bh_t *bh_start(const char *volfile, char *err, size_t errlen)
{
    bh_t *h = kb_zalloc(sizeof(*h));
    if (!h || !(h->loop = kb_loop_new())) {
        snprintf(err, errlen, "out of memory");
        free(h);
        return NULL;
    }
    h->graph = kb_graph_parse(volfile, err, errlen);
    if (!h->graph || kb_graph_init(h->graph, kb_loop_base(h->loop), err, errlen)) {
        /* init already fini'd what it started; translators' fini must
         * accept an instance whose init never ran (priv == NULL). */
        kb_graph_fini(h->graph);
        kb_loop_free(h->loop);
        free(h);
        return NULL;
    }
    h->graph->loop = h->loop;
    h->cred = (kb_cred_t){ .uid = 0, .gid = 0, .pid = 1, .client_id = 1 };
    return h;
}

void bh_stop(bh_t *h)
{
    if (!h)
        return;
    kb_graph_fini(h->graph);
    kb_loop_free(h->loop);
    free(h);
}

kb_xlator_t *bh_xl(bh_t *h, const char *name)
{
    return name ? kb_graph_find(h->graph, name) : h->graph->top;
}

/* ---------------- calls ---------------- */

static void pending_cbk(void *cookie, const kb_reply_t *reply)
{
    bh_pending_t *p = cookie;
    if (kb_reply_copy(&p->reply, reply))
        p->reply = (kb_reply_t){ .status = -ENOMEM };
    p->done = true;
}

void bh_start_call(bh_t *h, kb_xlator_t *xl, kb_op_t op, const kb_args_t *args, const kb_cred_t *cred,
                   bh_pending_t *p)
{
    memset(p, 0, sizeof(*p));
    if (kb_args_copy(&p->args, args)) {
        p->reply.status = -ENOMEM;
        p->done = true;
        return;
    }
    kb_wind(xl, op, &p->args, cred ? cred : &h->cred, kb_graph_next_req_id(h->graph), pending_cbk, p);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

int bh_wait(bh_t *h, bh_pending_t *p, int timeout_ms)
{
    struct event_base *base = kb_loop_base(h->loop);
    bool expired = false;
    struct event *t = evtimer_new(base, on_timeout, &expired);
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    evtimer_add(t, &tv);
    while (!p->done && !expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
    return p->done ? 0 : -ETIMEDOUT;
}

void bh_pending_clear(bh_pending_t *p)
{
    kb_args_clear(&p->args);
    kb_reply_clear(&p->reply);
}

void bh_pump(bh_t *h, int ms)
{
    bh_pending_t never = { 0 };
    bh_wait(h, &never, ms);
}

int bh_call_xl(bh_t *h, kb_xlator_t *xl, kb_op_t op, const kb_args_t *args, const kb_cred_t *cred,
               kb_reply_t *out)
{
    bh_pending_t p;
    bh_start_call(h, xl, op, args, cred, &p);
    if (bh_wait(h, &p, 10000)) {
        /* The call is still in flight and owns p: leak it rather than let
         * a late callback write into a dead stack frame. */
        bh_pending_t *leak = malloc(sizeof(*leak));
        if (leak)
            *leak = p;
        return -ETIMEDOUT;
    }
    int rc = p.reply.status;
    kb_args_clear(&p.args);
    if (out)
        *out = p.reply;
    else
        kb_reply_clear(&p.reply);
    return rc;
}

int bh_call(bh_t *h, kb_op_t op, const kb_args_t *args, kb_reply_t *out)
{
    return bh_call_xl(h, h->graph->top, op, args, NULL, out);
}

/* ---------------- helpers ---------------- */

int bh_lookup(bh_t *h, const kb_gfid_t *parent, const char *name, kb_iatt_t *attr)
{
    kb_args_t a = { .gfid = *parent, .name = (char *)name };
    kb_reply_t r;
    int rc = bh_call(h, KB_FOP_LOOKUP, &a, &r);
    if (attr)
        *attr = r.attr;
    kb_reply_clear(&r);
    return rc;
}

int bh_mkdir(bh_t *h, const kb_gfid_t *parent, const char *name, uint32_t mode, kb_gfid_t *out)
{
    kb_args_t a = { .gfid = *parent, .name = (char *)name, .mode = mode };
    kb_gfid_generate(&a.newgfid);
    if (out)
        *out = a.newgfid;
    return bh_call(h, KB_FOP_MKDIR, &a, NULL);
}

int bh_create(bh_t *h, const kb_gfid_t *parent, const char *name, uint32_t mode, uint32_t flags,
              kb_gfid_t *out, uint64_t *fd)
{
    kb_args_t a = { .gfid = *parent, .name = (char *)name, .mode = mode, .flags = flags };
    kb_gfid_generate(&a.newgfid);
    if (out)
        *out = a.newgfid;
    kb_reply_t r;
    int rc = bh_call(h, KB_FOP_CREATE, &a, &r);
    if (fd)
        *fd = r.fd;
    kb_reply_clear(&r);
    return rc;
}

int bh_open(bh_t *h, const kb_gfid_t *g, uint32_t flags, uint64_t *fd)
{
    kb_args_t a = { .gfid = *g, .flags = flags };
    kb_reply_t r;
    int rc = bh_call(h, KB_FOP_OPEN, &a, &r);
    if (fd)
        *fd = r.fd;
    kb_reply_clear(&r);
    return rc;
}

int bh_release(bh_t *h, const kb_gfid_t *g, uint64_t fd)
{
    kb_args_t a = { .gfid = *g, .fd = fd };
    return bh_call(h, KB_FOP_RELEASE, &a, NULL);
}

int bh_write(bh_t *h, const kb_gfid_t *g, uint64_t fd, uint64_t off, const void *data, size_t len,
             uint32_t flags)
{
    kb_args_t a = { .gfid = *g, .fd = fd, .off = off, .flags = flags, .data = kb_buf_copy(data, len) };
    if (!a.data)
        return -ENOMEM;
    int rc = bh_call(h, KB_FOP_WRITE, &a, NULL);
    kb_buf_unref(a.data);
    return rc;
}

int bh_read(bh_t *h, const kb_gfid_t *g, uint64_t fd, uint64_t off, size_t size, void *buf)
{
    kb_args_t a = { .gfid = *g, .fd = fd, .off = off, .size = size };
    kb_reply_t r;
    int rc = bh_call(h, KB_FOP_READ, &a, &r);
    if (rc >= 0 && r.data)
        memcpy(buf, r.data->data, KB_MIN(r.data->len, size));
    if (rc >= 0 && (!r.data || (size_t)rc != r.data->len))
        rc = rc == 0 && !r.data ? 0 : -EBADMSG;   /* status and payload must agree */
    kb_reply_clear(&r);
    return rc;
}
