/*
 * mock_child.c — "test/mock" (mock_child.h). No main(): linked into every
 * unit test binary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <dirent.h>
#include "rpc/wire.h"
#include "tests/unit/mock_child.h"

void mock_res_cbk(void *cookie, const kb_reply_t *r)
{
    mock_res_t *x = cookie;
    x->n++;
    kb_reply_clear(&x->r);
    if (kb_reply_copy(&x->r, r) != 0)
        abort();                  /* out of memory in a unit test */
}

/* ---------------- state ---------------- */

mock_child_t *mock_of(kb_xlator_t *xl)
{
    return xl->priv;
}

kb_cl_matrix_t *mock_cl(mock_child_t *m, const kb_gfid_t *g)
{
    for (size_t i = 0; i < m->ncls; i++)
        if (kb_gfid_eq(&m->cls[i].gfid, g))
            return &m->cls[i].m;
    struct mock_cl *n = realloc(m->cls, (m->ncls + 1) * sizeof(*n));
    if (!n)
        abort();                            /* test helper: out of memory is fatal */
    m->cls = n;
    memset(&n[m->ncls], 0, sizeof(n[0]));
    n[m->ncls].gfid = *g;
    return &n[m->ncls++].m;
}

static struct mock_ent *find_name(mock_child_t *m, const char *name)
{
    for (size_t i = 0; i < m->nents; i++)
        if (!strcmp(m->ents[i].name, name))
            return &m->ents[i];
    return NULL;
}

static struct mock_ent *find_gfid(mock_child_t *m, const kb_gfid_t *g)
{
    for (size_t i = 0; i < m->nents; i++)
        if (kb_gfid_eq(&m->ents[i].gfid, g))
            return &m->ents[i];
    return NULL;
}

void mock_add_entry(mock_child_t *m, const char *name, const kb_gfid_t *g, uint32_t mode)
{
    struct mock_ent *e = find_name(m, name);
    if (!e) {
        struct mock_ent *n = realloc(m->ents, (m->nents + 1) * sizeof(*n));
        if (!n)
            abort();
        m->ents = n;
        e = &n[m->nents++];
        e->name = strdup(name);
    }
    e->gfid = *g;
    e->mode = mode;
}

static void record(mock_child_t *m, kb_op_t op, const kb_args_t *a)
{
    if (m->nrec == m->caprec) {
        m->caprec = m->caprec ? 2 * m->caprec : 64;
        m->rec = realloc(m->rec, m->caprec * sizeof(*m->rec));
        if (!m->rec)
            abort();
    }
    m->rec[m->nrec].op = op;
    if (kb_args_copy(&m->rec[m->nrec].args, a))
        abort();
    m->nrec++;
}

void mock_forget(mock_child_t *m)
{
    for (size_t i = 0; i < m->nrec; i++)
        kb_args_clear(&m->rec[i].args);
    m->nrec = 0;
}

int mock_count(const mock_child_t *m, kb_op_t op)
{
    int n = 0;
    for (size_t i = 0; i < m->nrec; i++)
        n += m->rec[i].op == op;
    return n;
}

int mock_count_xop(const mock_child_t *m, uint32_t flags)
{
    int n = 0;
    for (size_t i = 0; i < m->nrec; i++)
        n += m->rec[i].op == KB_FOP_XATTROP && m->rec[i].args.flags == flags;
    return n;
}

int mock_count_locks(const mock_child_t *m)
{
    int n = 0;
    for (size_t i = 0; i < m->nrec; i++) {
        const mock_rec_t *r = &m->rec[i];
        if (r->op == KB_FOP_INODELK)
            n += r->args.lock.type != KB_LK_UNLCK;
        else if (r->op == KB_FOP_ENTRYLK)
            n += (r->args.flags & 0xff) != KB_ELK_UNLOCK;
    }
    return n;
}

const kb_args_t *mock_last(const mock_child_t *m, kb_op_t op)
{
    for (size_t i = m->nrec; i-- > 0;)
        if (m->rec[i].op == op)
            return &m->rec[i].args;
    return NULL;
}

/* ---------------- answers ---------------- */

static void fill_attr(mock_child_t *m, kb_iatt_t *a, const kb_gfid_t *g)
{
    struct mock_ent *e = find_gfid(m, g);
    a->gfid = *g;
    a->mode = e ? e->mode : (S_IFREG | 0644);
    a->size = m->size;
    a->nlink = 1;
    a->mtime_sec = 1000 + m->id;
}

/* ---------------- locks (for KB_XOP_ADD_LOCKED) ---------------- */

static ssize_t lk_find(const mock_child_t *m, const kb_gfid_t *g, const kb_cl_cond_t *c)
{
    for (size_t i = 0; i < m->nlks; i++)
        if (kb_gfid_eq(&m->lks[i].gfid, g) && m->lks[i].c.kind == c->kind && m->lks[i].c.owner == c->owner &&
            !strcmp(m->lks[i].c.domain, c->domain) && !strcmp(m->lks[i].c.base, c->base))
            return (ssize_t)i;
    return -1;
}

/* A lock call was answered OK: remember what it holds now. */
static void lk_track(mock_child_t *m, kb_op_t op, const kb_args_t *a, const kb_cred_t *cred)
{
    kb_cl_cond_t c = { .kind = op == KB_FOP_ENTRYLK ? KB_CL_COND_ENTRYLK : KB_CL_COND_INODELK };
    bool unlock;
    if (op == KB_FOP_ENTRYLK) {
        c.owner = cred->lk_owner;
        snprintf(c.base, sizeof(c.base), "%s", a->name2 ? a->name2 : "");
        unlock = (a->flags & 0xff) == KB_ELK_UNLOCK;
    } else {
        c.owner = a->lock.owner;
        unlock = a->lock.type == KB_LK_UNLCK;
    }
    snprintf(c.domain, sizeof(c.domain), "%s", a->name ? a->name : "");
    ssize_t at = lk_find(m, &a->gfid, &c);
    if (unlock && at >= 0) {
        m->lks[at] = m->lks[--m->nlks];
    } else if (!unlock && at < 0) {
        if (!(m->lks = realloc(m->lks, (m->nlks + 1) * sizeof(*m->lks))))
            abort();
        m->lks[m->nlks++] = (struct mock_lk){ a->gfid, c };
    }
}

static int answer_xattrop(mock_child_t *m, const kb_args_t *a, kb_reply_t *r)
{
    kb_cl_matrix_t *cl = mock_cl(m, &a->gfid);
    if (a->flags == KB_XOP_ADD || a->flags == KB_XOP_ADD_LOCKED) {
        kb_cl_matrix_t d;
        if (a->flags == KB_XOP_ADD_LOCKED) {
            kb_cl_cond_t c;
            if (!m->xop_locked || !a->data || kb_cl_cond_parse(a->data->data, a->data->len, &c))
                return -EINVAL;
            if (lk_find(m, &a->gfid, &c) < 0)
                return -ENOLCK;
        } else if (!a->data || a->data->len != KB_CL_MATRIX_BYTES) {
            return -EINVAL;
        }
        kb_cl_decode((const uint8_t *)a->data->data, &d);
        for (int i = 0; i < KB_CL_ROWS; i++)
            for (int c = 0; c < KB_CL_COLS; c++) {
                cl->v[i][c] += d.v[i][c];
                if (cl->v[i][c] < 0)
                    cl->v[i][c] = 0;
            }
    }
    r->data = kb_buf_new(KB_CL_MATRIX_BYTES);
    if (!r->data)
        return -ENOMEM;
    kb_cl_encode(cl, (uint8_t *)r->data->data);
    r->data->len = KB_CL_MATRIX_BYTES;
    return 0;
}

static int answer(mock_child_t *m, kb_op_t op, const kb_args_t *a, kb_reply_t *r)
{
    switch (op) {
    case KB_FOP_LOOKUP: {
        struct mock_ent *e = a->name ? find_name(m, a->name) : find_gfid(m, &a->gfid);
        if (a->name && !e)
            return -ENOENT;
        fill_attr(m, &r->attr, e ? &e->gfid : &a->gfid);
        return 0;
    }
    case KB_FOP_MKNOD: case KB_FOP_MKDIR: case KB_FOP_SYMLINK: case KB_FOP_CREATE: {
        if (find_name(m, a->name))
            return -EEXIST;
        uint32_t mode = op == KB_FOP_MKDIR ? S_IFDIR | a->mode : op == KB_FOP_SYMLINK ? S_IFLNK | 0777
                      : op == KB_FOP_CREATE ? S_IFREG | (a->mode & 07777) : a->mode;
        mock_add_entry(m, a->name, &a->newgfid, mode);
        fill_attr(m, &r->attr, &a->newgfid);
        /* As a brick: the parent after it (nlink tells the children apart). */
        fill_attr(m, &r->pattr, &a->gfid);
        r->pattr.mode = S_IFDIR | 0755;
        r->pattr.nlink = 10u + (uint32_t)m->id;
        r->rflags |= KB_RF_PATTR;
        if (op == KB_FOP_CREATE)
            r->fd = 1000u * (uint64_t)m->id + m->next_fd++;
        return 0;
    }
    case KB_FOP_OPEN: case KB_FOP_OPENDIR:
        r->fd = 1000u * (uint64_t)m->id + m->next_fd++;
        return 0;
    case KB_FOP_READ:
        if (!(r->data = kb_buf_new(a->size)))
            return -ENOMEM;
        memset(r->data->data, 'a' + m->id, a->size);
        r->data->len = a->size;
        return (int)a->size;
    case KB_FOP_WRITE:
        fill_attr(m, &r->attr, &a->gfid);
        return a->data ? (int)a->data->len : 0;
    case KB_FOP_READDIR: {
        if (a->off)
            return 0;                      /* end of listing */
        r->dirents = calloc(1, sizeof(kb_dirent_t));
        char name[16];
        snprintf(name, sizeof(name), "m%d", m->id);
        if (!r->dirents || !(r->dirents[0].name = strdup(name)))
            return -ENOMEM;
        r->dirents[0].off = 1;
        r->dirents[0].type = DT_REG;
        r->ndirents = 1;
        return 0;
    }
    case KB_FOP_STATFS:
        r->statfs.blocks = 1000u + (uint64_t)m->id;
        r->statfs.bsize = 4096;
        return 0;
    case KB_FOP_GETXATTR: {
        char v[8];
        int n = snprintf(v, sizeof(v), "v%d", m->id);
        r->data = kb_buf_copy(v, (size_t)n);
        return n;
    }
    case KB_FOP_XATTROP:
        return answer_xattrop(m, a, r);
    default:
        fill_attr(m, &r->attr, &a->gfid);
        return 0;
    }
}

/* Answer CALL: ERR != 0 forces that error, else injected error or normal answer. */
static void respond(mock_child_t *m, kb_call_t *call, int err)
{
    kb_reply_t r = { 0 };
    if (!err && m->err[call->op] && m->err_count[call->op]) {
        err = m->err[call->op];
        if (m->err_count[call->op] > 0)
            m->err_count[call->op]--;
    }
    if (!m->connected)
        err = -ENOTCONN;
    if (err) {
        r.status = err;
    } else if ((r.status = answer(m, call->op, call->args, &r)) < 0) {
        int st = r.status;
        kb_reply_clear(&r);
        r.status = st;
    } else if (call->op == KB_FOP_INODELK || call->op == KB_FOP_ENTRYLK) {
        lk_track(m, call->op, call->args, &call->cred);
    }
    r.rflags |= m->rflags | m->rflags_once;
    m->rflags_once = 0;
    kb_unwind(call, &r);
    kb_reply_clear(&r);
}

static void mock_fop(kb_call_t *call)
{
    mock_child_t *m = call->xl->priv;
    record(m, call->op, call->args);
    if (m->connected && m->hold[call->op]) {
        if (m->nheld == m->capheld) {
            m->capheld = m->capheld ? 2 * m->capheld : 16;
            m->held = realloc(m->held, m->capheld * sizeof(*m->held));
            if (!m->held)
                abort();
        }
        m->held[m->nheld++] = call;
        return;
    }
    respond(m, call, 0);
}

size_t mock_nheld(const mock_child_t *m) { return m->nheld; }
kb_op_t mock_held_op(const mock_child_t *m, size_t i) { return m->held[i]->op; }

void mock_complete(mock_child_t *m, size_t i, int err)
{
    if (i >= m->nheld)
        return;
    kb_call_t *c = m->held[i];
    memmove(&m->held[i], &m->held[i + 1], (m->nheld - i - 1) * sizeof(*m->held));
    m->nheld--;
    respond(m, c, err);
}

size_t mock_complete_all(mock_child_t *m, bool newest_first)
{
    size_t n = 0;
    while (m->nheld) {
        mock_complete(m, newest_first ? m->nheld - 1 : 0, 0);
        n++;
    }
    return n;
}

void mock_fail(mock_child_t *m, kb_op_t op, int err, int count)
{
    m->err[op] = err;
    m->err_count[op] = count;
}

void mock_up(mock_child_t *m)
{
    m->connected = true;
    kb_notify_parents(m->xl, KB_EV_CHILD_UP);
}

void mock_down(mock_child_t *m)
{
    m->connected = false;
    m->nlks = 0;                  /* its locks die with the connection */
    while (m->nheld)
        mock_complete(m, 0, -ENOTCONN);
    kb_notify_parents(m->xl, KB_EV_CHILD_DOWN);
}

/* ---------------- type + graph ---------------- */

static int mock_init(kb_xlator_t *xl)
{
    mock_child_t *m = kb_zalloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->xl = xl;
    m->id = xl->name[0] == 'c' ? atoi(xl->name + 1) : 0;
    m->size = 1 << 20;
    xl->priv = m;
    return 0;
}

static void mock_fini(kb_xlator_t *xl)
{
    mock_child_t *m = xl->priv;
    if (!m)
        return;
    mock_forget(m);
    free(m->rec);
    free(m->held);
    free(m->cls);
    free(m->lks);
    for (size_t i = 0; i < m->nents; i++)
        free(m->ents[i].name);
    free(m->ents);
    free(m);
    xl->priv = NULL;
}

static void mock_notify(kb_xlator_t *xl, int event, kb_xlator_t *child) { }

static int mock_ctl(kb_xlator_t *xl, int code, void *arg)
{
    mock_child_t *m = xl->priv;
    if (code == KB_CTL_LOCAL) {
        *(bool *)arg = m->connected && m->local;
        return 0;
    }
    if (code != KB_CTL_FEATURES)
        return -ENOSYS;
    *(uint64_t *)arg = m->connected && m->xop_locked ? KB_FEAT_XOP_LOCKED : 0;
    return 0;
}

#define FOP(NAME, name, A, R, C) [KB_FOP_##NAME] = mock_fop,
const kb_xlator_type_t mock_xl_type = {
    .name = "test/mock",
    .ops = {
#include "xlators/fops.def"
    },
    .init = mock_init,
    .fini = mock_fini,
    .notify = mock_notify,
    .ctl = mock_ctl,
};
#undef FOP

static kb_xlator_t *new_xl(kb_graph_t *g, const char *name, const kb_xlator_type_t *type)
{
    kb_xlator_t *xl = kb_zalloc(sizeof(*xl));
    kb_xlator_t **all = realloc(g->all, (size_t)(g->nall + 1) * sizeof(*all));
    if (!xl || !all)
        abort();
    g->all = all;
    xl->name = strdup(name);
    xl->type = type;
    xl->graph = g;
    xl->opts = kb_opts_new();
    all[g->nall++] = xl;
    return xl;
}

kb_graph_t *mock_graph_new(const kb_xlator_type_t *top_type, int n, const char *const *opts,
                           struct event_base *base)
{
    if (n < 1 || n > KB_MAX_CHILDREN)
        return NULL;
    kb_graph_t *g = kb_zalloc(sizeof(*g));
    if (!g)
        abort();
    kb_xlator_t *kids[KB_MAX_CHILDREN];
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        kids[i] = new_xl(g, name, &mock_xl_type);
    }
    kb_xlator_t *top = new_xl(g, "top", top_type);
    top->children = calloc((size_t)n, sizeof(*top->children));
    for (int i = 0; i < n; i++) {
        top->children[i] = kids[i];
        kids[i]->parents = calloc(1, sizeof(*kids[i]->parents));
        kids[i]->parents[0] = top;
        kids[i]->nparents = 1;
        kids[i]->child_index_in_parent = i;
    }
    top->nchildren = n;
    for (const char *const *o = opts; o && o[0]; o += 2)
        kb_opts_set(top->opts, o[0], o[1]);
    g->top = top;
    char err[256];
    if (kb_graph_init(g, base, err, sizeof(err))) {
        fprintf(stderr, "mock_graph_new: %s\n", err);
        kb_graph_fini(g);
        return NULL;
    }
    return g;
}

/* ---------------- volfiles with test types ---------------- */

static void top_notify(kb_xlator_t *xl, int event, kb_xlator_t *child) { }
static const kb_xlator_type_t mock_top_type = { .name = "test/top", .notify = top_notify };

kb_graph_t *mock_graph_parse(const char *volfile, struct event_base *base, char *err, size_t errlen)
{
    /* Swap test types for a registered one while parsing, remembering which
     * stanza had which; put them back before init. */
    const char *placeholder = NULL;
    for (size_t i = 0; i < kb_xlator_ntypes && !placeholder; i++)
        if (kb_xlator_types[i])
            placeholder = kb_xlator_types[i]->name;
    char *text = strdup(volfile), *names[KB_MAX_CHILDREN * 2];
    const kb_xlator_type_t *types[KB_MAX_CHILDREN * 2];
    int nfix = 0;
    size_t cap = strlen(volfile) * 2 + 64, len = 0;
    char *out = malloc(cap);
    if (!text || !out || !placeholder)
        abort();
    char *cur = NULL, *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *l = line;
        while (*l == ' ' || *l == '\t')
            l++;
        if (!strncmp(l, "volume ", 7))
            cur = l + 7;
        const kb_xlator_type_t *t = !strncmp(l, "type test/mock", 14) ? &mock_xl_type
                                  : !strncmp(l, "type test/top", 13) ? &mock_top_type : NULL;
        if (t && cur && nfix < (int)KB_ARRAY_SIZE(names)) {
            names[nfix] = strdup(cur);
            for (char *e = names[nfix] + strlen(names[nfix]); e > names[nfix] && (e[-1] == ' ' || e[-1] == '\t');)
                *--e = 0;
            types[nfix++] = t;
            len += (size_t)snprintf(out + len, cap - len, "type %s\n", placeholder);
        } else {
            len += (size_t)snprintf(out + len, cap - len, "%s\n", line);
        }
    }
    kb_graph_t *g = kb_graph_parse(out, err, errlen);
    for (int i = 0; i < nfix; i++) {
        kb_xlator_t *xl = g ? kb_graph_find(g, names[i]) : NULL;
        if (xl)
            xl->type = types[i];
        free(names[i]);
    }
    free(text);
    free(out);
    if (g && kb_graph_init(g, base, err, errlen)) {
        kb_graph_fini(g);
        return NULL;
    }
    return g;
}
