/*
 * policy_test.c — replicate's pure decisions over tables: quorum,
 * sources/sinks/split-brain from blame matrices, modification gatekeeping,
 * fan-out outcomes, read choice, lookup merge, favourite child.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/stat.h>
#include "xlators/cluster/replicate/policy.h"
#include "lib/common.h"

#define B(i) REPL_BIT(i)
#define NOARB (-1)

static repl_cfg_t cfg(int n, int arb, int qt, int qc)
{
    return (repl_cfg_t){ .n = n, .arbiter = arb, .quorum_type = qt, .quorum_count = qc };
}

/* ---- quorum ---- */
struct q_row { int n, arb, qt, qc; repl_mask_t ok; bool met; };
static const struct q_row q_rows[] = {
    { 1, NOARB, REPL_Q_AUTO, 0, 0x1, true },
    { 1, NOARB, REPL_Q_AUTO, 0, 0x0, false },
    /* replica 2 auto: both or the first */
    { 2, NOARB, REPL_Q_AUTO, 0, 0x3, true },
    { 2, NOARB, REPL_Q_AUTO, 0, 0x1, true },
    { 2, NOARB, REPL_Q_AUTO, 0, 0x2, false },
    { 2, NOARB, REPL_Q_AUTO, 0, 0x0, false },
    /* replica 3 auto: majority */
    { 3, NOARB, REPL_Q_AUTO, 0, 0x7, true },
    { 3, NOARB, REPL_Q_AUTO, 0, 0x3, true },
    { 3, NOARB, REPL_Q_AUTO, 0, 0x5, true },
    { 3, NOARB, REPL_Q_AUTO, 0, 0x6, true },
    { 3, NOARB, REPL_Q_AUTO, 0, 0x1, false },
    { 3, NOARB, REPL_Q_AUTO, 0, 0x4, false },
    /* replica 4: half with child 0 */
    { 4, NOARB, REPL_Q_AUTO, 0, 0x3, true },
    { 4, NOARB, REPL_Q_AUTO, 0, 0xc, false },
    { 4, NOARB, REPL_Q_AUTO, 0, 0xe, true },
    /* none: any one */
    { 2, NOARB, REPL_Q_NONE, 0, 0x2, true },
    { 3, NOARB, REPL_Q_NONE, 0, 0x0, false },
    /* fixed, clamped to 1..n */
    { 3, NOARB, REPL_Q_FIXED, 1, 0x4, true },
    { 3, NOARB, REPL_Q_FIXED, 3, 0x3, false },
    { 3, NOARB, REPL_Q_FIXED, 3, 0x7, true },
    { 3, NOARB, REPL_Q_FIXED, 0, 0x1, true },
    { 3, NOARB, REPL_Q_FIXED, 9, 0x3, false },
    { 2, NOARB, REPL_Q_FIXED, 1, 0x2, true },
    /* arbiter counts toward quorum, but is not enough alone */
    { 3, 2, REPL_Q_AUTO, 0, 0x5, true },
    { 3, 2, REPL_Q_AUTO, 0, 0x6, true },
    { 3, 2, REPL_Q_AUTO, 0, 0x4, false },
    /* bits beyond n are ignored */
    { 2, NOARB, REPL_Q_AUTO, 0, 0x6, false },
};

Test(repl_policy, quorum_table)
{
    for (size_t r = 0; r < KB_ARRAY_SIZE(q_rows); r++) {
        const struct q_row *q = &q_rows[r];
        repl_cfg_t c = cfg(q->n, q->arb, q->qt, q->qc);
        cr_assert_eq(repl_quorum_met(&c, q->ok), q->met, "quorum row %zu", r);
    }
}

/* ---- blame analysis ----
 * blames[j] = the copies j blames in column col; dirty = copies with dirty. */
struct b_row {
    int n, arb, col;
    repl_mask_t have, dirty;
    repl_mask_t blames[4];
    repl_mask_t sources, sinks;
    bool sb;
};
static const struct b_row b_rows[] = {
    /* replica 2 */
    { 2, NOARB, KB_CL_DATA, 0x3, 0, { 0, 0 }, 0x3, 0x0, false },           /* clean */
    { 2, NOARB, KB_CL_DATA, 0x3, 0x3, { 0, 0 }, 0x3, 0x0, false },         /* dirty only */
    { 2, NOARB, KB_CL_DATA, 0x3, 0, { B(1), 0 }, 0x1, 0x2, false },        /* 0 blames 1 */
    { 2, NOARB, KB_CL_DATA, 0x3, 0, { 0, B(0) }, 0x2, 0x1, false },        /* 1 blames 0 */
    { 2, NOARB, KB_CL_DATA, 0x3, 0, { B(1), B(0) }, 0x0, 0x3, true },      /* mutual */
    { 2, NOARB, KB_CL_META, 0x3, 0, { B(1), B(0) }, 0x0, 0x3, true },      /* meta mutual */
    { 2, NOARB, KB_CL_DATA, 0x1, 0, { B(1), B(0) }, 0x1, 0x2, false },     /* 1 unknown */
    { 2, NOARB, KB_CL_DATA, 0x2, 0, { B(1), B(0) }, 0x2, 0x1, false },     /* 0 unknown */
    { 2, NOARB, KB_CL_DATA, 0x2, 0, { B(1), 0 }, 0x2, 0x0, false },        /* its blamer unknown */
    { 2, NOARB, KB_CL_DATA, 0x3, 0, { B(0), 0 }, 0x3, 0x0, false },        /* self-blame ignored */
    { 2, NOARB, KB_CL_DATA, 0x0, 0, { B(1), B(0) }, 0x0, 0x0, false },     /* nothing known */
    /* replica 3 */
    { 3, NOARB, KB_CL_DATA, 0x7, 0, { B(1), B(2), 0 }, 0x1, 0x6, false },  /* chain */
    { 3, NOARB, KB_CL_DATA, 0x7, 0, { B(1), B(2), B(0) }, 0x0, 0x7, true },/* cycle */
    { 3, NOARB, KB_CL_DATA, 0x7, 0, { B(2), B(2), 0 }, 0x3, 0x4, false },  /* two blame one */
    { 3, NOARB, KB_CL_DATA, 0x3, 0, { B(1), B(0), 0 }, 0x0, 0x3, false },  /* 2 unknown: maybe good */
    { 3, NOARB, KB_CL_ENTRY, 0x7, 0, { B(1) | B(2), 0, 0 }, 0x1, 0x6, false },
    /* replica 2 + arbiter (child 2) */
    { 3, 2, KB_CL_DATA, 0x7, 0, { 0, B(0), B(0) }, 0x2, 0x1, false },      /* arbiter agrees with 1 */
    { 3, 2, KB_CL_DATA, 0x5, 0, { 0, 0, B(0) }, 0x0, 0x1, false },         /* 1 down: not split-brain */
    { 3, 2, KB_CL_DATA, 0x7, 0, { B(1), B(0), 0 }, 0x0, 0x3, true },       /* data bricks mutual */
    { 3, 2, KB_CL_DATA, 0x7, 0, { 0, 0, 0 }, 0x3, 0x0, false },            /* arbiter no data source */
    { 3, 2, KB_CL_META, 0x7, 0, { 0, 0, 0 }, 0x7, 0x0, false },            /* ...but a meta one */
    { 3, 2, KB_CL_META, 0x7, 0, { B(1), B(0), 0 }, 0x4, 0x3, false },
};

Test(repl_policy, blame_table)
{
    for (size_t r = 0; r < KB_ARRAY_SIZE(b_rows); r++) {
        const struct b_row *t = &b_rows[r];
        repl_cfg_t c = cfg(t->n, t->arb, REPL_Q_AUTO, 0);
        kb_cl_matrix_t m[4];
        memset(m, 0, sizeof(m));
        for (int j = 0; j < t->n; j++) {
            m[j].v[0][t->col] = (t->dirty & B(j)) ? 1 : 0;
            for (int i = 0; i < t->n; i++)
                if (t->blames[j] & B(i))
                    m[j].v[1 + i][t->col] = 3;
            /* noise in another column must not matter */
            m[j].v[1 + (j + 1) % t->n][(t->col + 1) % KB_CL_COLS] = 7;
        }
        repl_blame_t b;
        repl_blame_analyze(&c, m, t->have, t->col, &b);
        cr_assert_eq(b.sources, t->sources, "row %zu sources %#x", r, b.sources);
        cr_assert_eq(b.sinks, t->sinks, "row %zu sinks %#x", r, b.sinks);
        cr_assert_eq(b.split_brain, t->sb, "row %zu split-brain", r);
        cr_assert_eq(b.dirty, t->dirty & t->have, "row %zu dirty", r);
        for (int i = 0; i < t->n; i++) {
            repl_mask_t who = 0;
            for (int j = 0; j < t->n; j++)
                if (j != i && (t->have & B(j)) && (t->blames[j] & B(i)))
                    who |= B(j);
            cr_assert_eq(b.blamers[i], who, "row %zu blamers of %d", r, i);
        }
    }
}

Test(repl_policy, delta_layout)
{
    kb_cl_matrix_t d;
    repl_cl_delta(&d, REPL_COL(KB_CL_DATA) | REPL_COL(KB_CL_ENTRY), -1, B(0) | B(2));
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int col = 0; col < KB_CL_COLS; col++) {
            int want = 0;
            if (col != KB_CL_META) {
                if (r == 0)
                    want = -1;
                else if (r == 1 || r == 3)
                    want = 1;
            }
            cr_assert_eq(d.v[r][col], want, "cell %d,%d", r, col);
        }
}

/* ---- gatekeeping ---- */
struct m_row { int n, arb, qt, col; repl_mask_t up; bool known; repl_mask_t blames[3]; int want; };
static const struct m_row m_rows[] = {
    { 2, NOARB, REPL_Q_AUTO, KB_CL_DATA, 0x3, false, { 0 }, 0 },
    { 2, NOARB, REPL_Q_AUTO, KB_CL_DATA, 0x2, false, { 0 }, -EROFS },          /* first down */
    { 2, NOARB, REPL_Q_AUTO, KB_CL_DATA, 0x1, false, { 0 }, 0 },
    { 2, NOARB, REPL_Q_NONE, KB_CL_DATA, 0x2, false, { 0 }, 0 },
    { 2, NOARB, REPL_Q_AUTO, KB_CL_DATA, 0x3, true, { B(1), B(0) }, -EIO },    /* split-brain */
    { 2, NOARB, REPL_Q_AUTO, KB_CL_META, 0x3, true, { B(1), B(0) }, -EIO },
    { 2, NOARB, REPL_Q_AUTO, KB_CL_DATA, 0x3, true, { B(1), 0 }, 0 },          /* heal pending */
    { 3, NOARB, REPL_Q_AUTO, KB_CL_DATA, 0x1, false, { 0 }, -EROFS },          /* two down */
    { 3, NOARB, REPL_Q_AUTO, KB_CL_DATA, 0x3, true, { 0, 0, B(0) | B(1) }, -ENOTCONN }, /* good one down */
    { 3, NOARB, REPL_Q_AUTO, KB_CL_DATA, 0x7, true, { 0, 0, B(0) | B(1) }, 0 },
    /* arbiter: the only data brick up is the one the arbiter blames */
    { 3, 2, REPL_Q_AUTO, KB_CL_DATA, 0x6, true, { B(1), 0, B(1) }, -ENOTCONN },
    { 3, 2, REPL_Q_AUTO, KB_CL_DATA, 0x5, true, { 0, 0, B(1) }, 0 },
    { 3, 2, REPL_Q_AUTO, KB_CL_META, 0x6, true, { 0, 0, B(1) }, 0 },           /* arbiter is a meta copy */
    { 3, 2, REPL_Q_NONE, KB_CL_DATA, 0x4, false, { 0 }, -ENOTCONN },           /* arbiter alone holds no data */
};

Test(repl_policy, modify_check_table)
{
    for (size_t r = 0; r < KB_ARRAY_SIZE(m_rows); r++) {
        const struct m_row *t = &m_rows[r];
        repl_cfg_t c = cfg(t->n, t->arb, t->qt, 0);
        kb_cl_matrix_t m[3];
        memset(m, 0, sizeof(m));
        for (int j = 0; j < t->n; j++)
            for (int i = 0; i < t->n; i++)
                if (t->blames[j] & B(i))
                    m[j].v[1 + i][t->col] = 1;
        repl_blame_t b;
        /* matrices of down children stay known (cached before they left) */
        repl_blame_analyze(&c, m, repl_all(&c), t->col, &b);
        cr_assert_eq(repl_modify_check(&c, t->col, t->up, t->known ? &b : NULL), t->want,
                     "row %zu", r);
    }
}

/* ---- fan-out outcome ---- */
struct o_row {
    int n, arb, qt;
    repl_mask_t expected, sent, extra;
    int32_t st[3];
    int want_status, want_idx;
    repl_mask_t want_ok, want_blame;
};
#define NC (-ENOTCONN)
static const struct o_row o_rows[] = {
    { 2, NOARB, REPL_Q_AUTO, 0x3, 0x3, 0, { 4096, 4096 }, 4096, 0, 0x3, 0 },
    { 2, NOARB, REPL_Q_AUTO, 0x3, 0x3, 0, { 4096, NC }, 4096, 0, 0x1, 0x2 },     /* failover */
    { 2, NOARB, REPL_Q_AUTO, 0x3, 0x1, 0, { 4096, 0 }, 4096, 0, 0x1, 0x2 },      /* 1 was down */
    { 2, NOARB, REPL_Q_AUTO, 0x3, 0x3, 0, { NC, 4096 }, -EROFS, -1, 0x2, 0x1 },  /* first lost */
    { 2, NOARB, REPL_Q_NONE, 0x3, 0x3, 0, { NC, 4096 }, 4096, 1, 0x2, 0x1 },
    { 2, NOARB, REPL_Q_AUTO, 0x3, 0x3, 0, { -EEXIST, -EEXIST }, -EEXIST, -1, 0, 0 }, /* agreed */
    { 2, NOARB, REPL_Q_AUTO, 0x3, 0x3, 0, { NC, NC }, NC, -1, 0, 0 },
    { 2, NOARB, REPL_Q_AUTO, 0x3, 0x3, 0, { -ENOSPC, 4096 }, -ENOSPC, -1, 0x2, 0x1 },
    { 2, NOARB, REPL_Q_AUTO, 0x3, 0x0, 0, { 0, 0 }, NC, -1, 0, 0 },              /* nothing sent */
    { 3, NOARB, REPL_Q_AUTO, 0x7, 0x3, 0, { 0, 0, 0 }, 0, 0, 0x3, 0x4 },
    { 3, NOARB, REPL_Q_AUTO, 0x7, 0x7, 0, { 0, -ENOSPC, -ENOSPC }, -ENOSPC, -1, 0x1, 0x6 },
    { 3, NOARB, REPL_Q_AUTO, 0x7, 0x7, 0, { -ENOENT, NC, -ENOENT }, -ENOENT, -1, 0, 0 },
    { 3, NOARB, REPL_Q_AUTO, 0x7, 0x7, 0, { NC, 7, 7 }, 7, 1, 0x6, 0x1 },
    /* arbiter: data not sent to it, it counts toward quorum through extra */
    { 3, 2, REPL_Q_AUTO, 0x3, 0x1, 0x4, { 512, 0, 0 }, 512, 0, 0x1, 0x2 },
    { 3, 2, REPL_Q_AUTO, 0x3, 0x1, 0x0, { 512, 0, 0 }, -EROFS, -1, 0x1, 0x2 },
    { 3, 2, REPL_Q_AUTO, 0x3, 0x3, 0x4, { 512, 512, 0 }, 512, 0, 0x3, 0 },
};

Test(repl_policy, outcome_table)
{
    for (size_t r = 0; r < KB_ARRAY_SIZE(o_rows); r++) {
        const struct o_row *t = &o_rows[r];
        repl_cfg_t c = cfg(t->n, t->arb, t->qt, 0);
        repl_outcome_t o;
        repl_fanout_outcome(&c, t->expected, t->sent, t->st, t->extra, &o);
        cr_assert_eq(o.status, t->want_status, "row %zu status %d", r, o.status);
        cr_assert_eq(o.reply_idx, t->want_idx, "row %zu idx %d", r, o.reply_idx);
        cr_assert_eq(o.ok, t->want_ok, "row %zu ok %#x", r, o.ok);
        cr_assert_eq(o.blame, t->want_blame, "row %zu blame %#x", r, o.blame);
    }
}

/* ---- reads ---- */
/* Children every quorum includes: no acknowledged write can miss them. */
struct aw_row { int n, arb, qt, qc; repl_mask_t always; };
static const struct aw_row aw_rows[] = {
    { 1, NOARB, REPL_Q_AUTO, 0, 0x1 },
    { 2, NOARB, REPL_Q_AUTO, 0, 0x1 },    /* both or the first */
    { 3, NOARB, REPL_Q_AUTO, 0, 0x0 },    /* any two */
    { 4, NOARB, REPL_Q_AUTO, 0, 0x0 },    /* {1,2,3} is a quorum without child 0 */
    { 3, 2, REPL_Q_AUTO, 0, 0x0 },        /* arbiter: {1, arbiter} writes without 0 */
    { 2, NOARB, REPL_Q_NONE, 0, 0x0 },
    { 3, NOARB, REPL_Q_NONE, 0, 0x0 },
    { 2, NOARB, REPL_Q_FIXED, 1, 0x0 },
    { 2, NOARB, REPL_Q_FIXED, 2, 0x3 },
    { 3, NOARB, REPL_Q_FIXED, 3, 0x7 },
    { 3, NOARB, REPL_Q_FIXED, 2, 0x0 },
};

Test(repl_policy, always_written_table)
{
    for (size_t r = 0; r < sizeof(aw_rows) / sizeof(aw_rows[0]); r++) {
        const struct aw_row *a = &aw_rows[r];
        repl_cfg_t c = cfg(a->n, a->arb, a->qt, a->qc);
        repl_mask_t got = repl_always_written(&c);
        cr_assert_eq(got, a->always, "row %zu: 0x%x, expected 0x%x", r, got, a->always);
        /* the definition, checked by brute force: i is in it iff no quorum leaves i out */
        for (int i = 0; i < a->n && a->n > 1; i++) {
            bool some = false;
            for (repl_mask_t ok = 1; ok < REPL_BIT(a->n); ok++)
                if (!(ok & REPL_BIT(i)) && repl_quorum_met(&c, ok))
                    some = true;
            cr_assert_eq(!some, !!(got & REPL_BIT(i)), "row %zu child %d", r, i);
        }
    }
}

Test(repl_policy, read_prefers_local_then_unchecked)
{
    /* no local copy: every readable one stays, for the hash to spread over */
    cr_assert_eq(repl_read_prefer(0x3, 0x0, 0x1), 0x3);
    cr_assert_eq(repl_read_prefer(0x7, 0x0, 0x0), 0x7);
    /* one local copy: it, whether or not it needs a check */
    cr_assert_eq(repl_read_prefer(0x3, 0x2, 0x1), 0x2);
    cr_assert_eq(repl_read_prefer(0x3, 0x1, 0x1), 0x1);
    /* several local ones (a volume on one host): the one read without a check */
    cr_assert_eq(repl_read_prefer(0x3, 0x3, 0x1), 0x1);
    cr_assert_eq(repl_read_prefer(0x7, 0x6, 0x0), 0x6);
    /* the local copies are not readable (blamed, down): the others */
    cr_assert_eq(repl_read_prefer(0x2, 0x1, 0x1), 0x2);
    cr_assert_eq(repl_read_prefer(0x0, 0x3, 0x1), 0x0);
    /* the unchecked copy is local but not readable: the other local ones */
    cr_assert_eq(repl_read_prefer(0x6, 0x7, 0x1), 0x6);
}

Test(repl_policy, read_pick_spreads_and_avoids)
{
    repl_cfg_t c3 = cfg(3, NOARB, REPL_Q_AUTO, 0);
    int hits[3] = { 0 }, hits2[2] = { 0 };
    for (uint32_t k = 0; k < 300; k++) {
        kb_gfid_t g = { { 0 } };
        g.b[15] = (uint8_t)k;          /* gfids differing in one byte, even-only too */
        g.b[14] = (uint8_t)(k >> 8);
        g.b[3] = (uint8_t)(2 * k);
        uint32_t h = kb_gfid_hash(&g);
        hits[repl_read_pick(repl_readable(&c3, KB_CL_DATA, 0x7, NULL), h, 1)]++;
        hits2[repl_read_pick(0x5, h, 1) / 2]++;
    }
    for (int i = 0; i < 3; i++)
        cr_assert_gt(hits[i], 60, "child %d: %d of 300", i, hits[i]);
    cr_assert_gt(hits2[0], 100);
    cr_assert_gt(hits2[1], 100);
    cr_assert_eq(repl_read_pick(0x6, 12345, 0), 1);
    cr_assert_eq(repl_read_pick(0, 1, 1), -1);
    for (uint32_t h = 0; h < 50; h++) {
        int p = repl_read_pick(0x5, h * 0x9e3779b9u, 1);
        cr_assert(p == 0 || p == 2);
    }

    /* a blamed copy is not readable; the arbiter never is */
    kb_cl_matrix_t m[3];
    memset(m, 0, sizeof(m));
    m[0].v[1 + 1][KB_CL_DATA] = 1;
    repl_blame_t b;
    repl_blame_analyze(&c3, m, 0x7, KB_CL_DATA, &b);
    cr_assert_eq(repl_readable(&c3, KB_CL_DATA, 0x7, &b), 0x5);
    cr_assert_eq(repl_readable(&c3, KB_CL_DATA, 0x6, &b), 0x4);
    repl_cfg_t ca = cfg(3, 2, REPL_Q_AUTO, 0);
    cr_assert_eq(repl_readable(&ca, KB_CL_DATA, 0x7, NULL), 0x3);
    cr_assert_eq(repl_readable(&ca, KB_CL_META, 0x4, NULL), 0x0);
    memset(m, 0, sizeof(m));
    repl_blame_analyze(&ca, m, 0x7, KB_CL_META, &b);
    cr_assert_eq(repl_readable(&ca, KB_CL_META, 0x7, &b), 0x3);

    /* split-brain: nothing readable, and EIO; unknown: ENOTCONN */
    memset(m, 0, sizeof(m));
    m[0].v[2][KB_CL_DATA] = 1;
    m[1].v[1][KB_CL_DATA] = 1;
    repl_cfg_t c2 = cfg(2, NOARB, REPL_Q_AUTO, 0);
    repl_blame_analyze(&c2, m, 0x3, KB_CL_DATA, &b);
    cr_assert_eq(repl_readable(&c2, KB_CL_DATA, 0x3, &b), 0);
    cr_assert_eq(repl_unreadable_err(&b), -EIO);
    cr_assert_eq(repl_unreadable_err(NULL), -ENOTCONN);

    cr_assert(repl_read_retryable(-ENOTCONN));
    cr_assert(repl_read_retryable(-EIO));
    cr_assert(!repl_read_retryable(-ENOENT));
    cr_assert(!repl_read_retryable(-EINVAL));
}

/* ---- lookup merge ---- */
struct l_row {
    int n;
    repl_mask_t sent;
    int32_t st[3];
    uint8_t g[3];          /* gfid last byte per child */
    uint32_t type[3];
    int parent;            /* -1 unknown, else blames[] below applies */
    repl_mask_t pblames[3];
    int want;
    repl_mask_t want_found;
    bool want_need;
};
#define F S_IFREG
#define D S_IFDIR
static const struct l_row l_rows[] = {
    { 2, 0x3, { 0, 0 }, { 1, 1 }, { F, F }, -1, { 0 }, 0, 0x3, false },
    { 2, 0x3, { 0, 0 }, { 1, 2 }, { F, F }, -1, { 0 }, -EIO, 0, false },       /* gfid mismatch */
    { 2, 0x3, { 0, 0 }, { 1, 1 }, { F, D }, -1, { 0 }, -EIO, 0, false },       /* type mismatch */
    { 2, 0x3, { -ENOENT, -ENOENT }, { 0 }, { 0 }, -1, { 0 }, -ENOENT, 0, false },
    { 2, 0x3, { 0, NC }, { 1, 0 }, { F, 0 }, -1, { 0 }, 0, 0x1, false },
    { 2, 0x3, { NC, NC }, { 0 }, { 0 }, -1, { 0 }, NC, 0, false },
    { 2, 0x3, { -EACCES, -EACCES }, { 0 }, { 0 }, -1, { 0 }, -EACCES, 0, false },
    { 2, 0x3, { 0, -ENOENT }, { 1, 0 }, { F, 0 }, -1, { 0 }, -EAGAIN, 0, true }, /* ask parent */
    { 2, 0x3, { 0, -ENOENT }, { 1, 0 }, { F, 0 }, 1, { B(1), 0 }, 0, 0x1, false }, /* 1 lags */
    { 2, 0x3, { 0, -ENOENT }, { 1, 0 }, { F, 0 }, 1, { 0, B(0) }, -ENOENT, 0, false }, /* 0 lags */
    { 2, 0x3, { 0, -ENOENT }, { 1, 0 }, { F, 0 }, 1, { B(1), B(0) }, -EIO, 0, false }, /* entry sb */
    { 2, 0x3, { 0, -ENOENT }, { 1, 0 }, { F, 0 }, 1, { 0, 0 }, 0, 0x1, false },  /* in flight */
    { 3, 0x7, { 0, 0, -ENOENT }, { 4, 4, 0 }, { D, D, 0 }, 1, { B(2), 0, 0 }, 0, 0x3, false },
};

Test(repl_policy, lookup_merge_table)
{
    for (size_t r = 0; r < KB_ARRAY_SIZE(l_rows); r++) {
        const struct l_row *t = &l_rows[r];
        repl_cfg_t c = cfg(t->n, NOARB, REPL_Q_AUTO, 0);
        kb_gfid_t g[3];
        memset(g, 0, sizeof(g));
        for (int i = 0; i < 3; i++)
            g[i].b[15] = t->g[i];
        repl_blame_t pb;
        if (t->parent >= 0) {
            kb_cl_matrix_t m[3];
            memset(m, 0, sizeof(m));
            for (int j = 0; j < t->n; j++)
                for (int i = 0; i < t->n; i++)
                    if (t->pblames[j] & B(i))
                        m[j].v[1 + i][KB_CL_ENTRY] = 1;
            repl_blame_analyze(&c, m, repl_all(&c), KB_CL_ENTRY, &pb);
        }
        repl_mask_t found = 0xff;
        bool need = true;
        int st = repl_lookup_merge(&c, t->sent, t->st, g, t->type, t->parent >= 0 ? &pb : NULL,
                                   &found, &need);
        cr_assert_eq(st, t->want, "row %zu status %d", r, st);
        cr_assert_eq(found, t->want_found, "row %zu found %#x", r, found);
        cr_assert_eq(need, t->want_need, "row %zu need", r);
    }
}

/* ---- favourite child ---- */
Test(repl_policy, favorite_child)
{
    repl_fav_attr_t a[3] = { { 100, 10, 5 }, { 200, 10, 4 }, { 100, 9, 0 } };
    cr_assert_eq(repl_favorite_child(REPL_FAV_MTIME, 0x7, a), 0);
    cr_assert_eq(repl_favorite_child(REPL_FAV_SIZE, 0x7, a), 1);
    cr_assert_eq(repl_favorite_child(REPL_FAV_SIZE, 0x5, a), -1);      /* tie */
    cr_assert_eq(repl_favorite_child(REPL_FAV_NONE, 0x7, a), -1);
    cr_assert_eq(repl_favorite_child(REPL_FAV_MAJORITY, 0x7, a), -1);  /* all differ */
    a[2] = a[0];
    cr_assert_eq(repl_favorite_child(REPL_FAV_MAJORITY, 0x7, a), 0);
    cr_assert_eq(repl_favorite_child(REPL_FAV_MAJORITY, 0x3, a), -1);  /* 1 of 2 is no majority */
    cr_assert_eq(repl_favorite_child(REPL_FAV_MTIME, 0x2, a), 1);
}
