/*
 * volume_test.c — volume definitions: brick specs, text round trip,
 * refusal of inconsistent definitions, generated volfiles.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include "lib/version.h"
#include "server/kembard.h"

static kbd_volume_t *make(int nbricks, int replica, int arbiter)
{
    kbd_volume_t *v = calloc(1, sizeof(*v));
    v->name = strdup("vm");
    kb_gfid_generate(&v->id);
    v->version = 3;
    v->status = KBD_VOL_STARTED;
    v->replica = replica;
    v->arbiter = arbiter;
    v->opts = kb_opts_new();
    v->bricks = calloc((size_t)nbricks, sizeof(kbd_brick_t));
    for (int i = 0; i < nbricks; i++) {
        char spec[64], err[128];
        snprintf(spec, sizeof(spec), "127.0.0.1:%d:/var/tmp/b%d", 24900 + i, i);
        cr_assert_eq(kbd_brick_parse(spec, &v->bricks[i], err, sizeof(err)), 0, "%s", err);
        kb_gfid_generate(&v->bricks[i].id);
        v->nbricks++;
    }
    return v;
}

Test(volume, brick_spec_parsing)
{
    kbd_brick_t b;
    char err[256];
    cr_assert_eq(kbd_brick_parse("node1:/data/brick/", &b, err, sizeof(err)), 0);
    cr_assert_str_eq(b.host, "node1");
    cr_assert_eq(b.port, KB_DEFAULT_PORT);
    cr_assert_str_eq(b.path, "/data/brick");
    char *s = kbd_brick_str(&b);
    cr_assert_str_eq(s, "node1:24800:/data/brick");
    free(s);
    free(b.host);
    free(b.path);
    cr_assert_eq(kbd_brick_parse("[::1]:2500:/b", &b, err, sizeof(err)), 0);
    cr_assert_str_eq(b.host, "::1");
    cr_assert_eq(b.port, 2500);
    free(b.host);
    free(b.path);
    const char *bad[] = { "node1", "node1:relative", ":/x", "h:/", "h:99999:/x", "h:/a/../b" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_neq(kbd_brick_parse(bad[i], &b, err, sizeof(err)), 0, "'%s' accepted", bad[i]);
}

Test(volume, names)
{
    cr_assert(kbd_volname_ok("vmstore"));
    cr_assert(kbd_volname_ok("vm_store-2"));
    cr_assert_not(kbd_volname_ok(""));
    cr_assert_not(kbd_volname_ok("a/b"));
    cr_assert_not(kbd_volname_ok("-x"));
    cr_assert_not(kbd_volname_ok("with space"));
}

Test(volume, text_round_trip)
{
    kbd_volume_t *v = make(4, 2, 0);
    kb_opts_set(v->opts, "network.ping-timeout", "3");
    char *text = kbd_volume_format(v), err[256];
    kbd_volume_t *w = kbd_volume_parse(text, err, sizeof(err));
    cr_assert_not_null(w, "%s", err);
    cr_assert_str_eq(w->name, "vm");
    cr_assert(kb_gfid_eq(&w->id, &v->id));
    cr_assert_eq(w->version, 3);
    cr_assert_eq(w->status, KBD_VOL_STARTED);
    cr_assert_eq(w->nbricks, 4);
    cr_assert_eq(w->replica, 2);
    cr_assert_str_eq(w->bricks[3].path, "/var/tmp/b3");
    cr_assert(kb_gfid_eq(&w->bricks[2].id, &v->bricks[2].id));
    cr_assert_str_eq(kb_opts_raw(w->opts, "network.ping-timeout"), "3");
    char *again = kbd_volume_format(w);
    cr_assert_str_eq(text, again);
    free(text);
    free(again);
    kbd_volume_free(v);
    kbd_volume_free(w);
}

Test(volume, inconsistent_definitions_refused)
{
    char err[256];
    cr_assert_null(kbd_volume_parse("name=x\n", err, sizeof(err)));
    kbd_volume_t *v = make(3, 2, 0);   /* 3 bricks in sets of 2 */
    char *text = kbd_volume_format(v);
    cr_assert_null(kbd_volume_parse(text, err, sizeof(err)));
    free(text);
    kbd_volume_free(v);
}

Test(volume, client_volfile_shapes)
{
    kbd_volume_t *v = make(4, 2, 0);
    kb_opts_set(v->opts, "network.ping-timeout", "2");
    char *vf = kbd_volgen_client(v);
    cr_assert(strstr(vf, "volume vm-client-3\n"));
    cr_assert(strstr(vf, "subvolumes vm-client-0 vm-client-1\n"));
    cr_assert(strstr(vf, "subvolumes vm-client-2 vm-client-3\n"));
    cr_assert(strstr(vf, "type cluster/distribute"));
    cr_assert(strstr(vf, "subvolumes vm-replicate-0 vm-replicate-1\n"));
    cr_assert(strstr(vf, "option ping-timeout 2\n"), "volume set option must reach protocol/client:\n%s", vf);
    char want[64];
    snprintf(want, sizeof(want), "option volume-version %u\n", v->version);
    cr_assert(strstr(vf, want), "every protocol/client carries the definition version:\n%s", vf);
    free(vf);
    kbd_volume_free(v);

    v = make(3, 2, 1);
    vf = kbd_volgen_client(v);
    cr_assert(strstr(vf, "option arbiter-count 1"));
    cr_assert_null(strstr(vf, "distribute"));
    free(vf);
    kbd_volume_free(v);

    v = make(1, 1, 0);
    vf = kbd_volgen_client(v);
    char err[256];
    kb_graph_t *g = kb_graph_parse(vf, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    cr_assert_str_eq(g->top->name, "vm-write-behind");
    cr_assert_eq(g->top->nchildren, 1);
    cr_assert_str_eq(g->top->children[0]->name, "vm-client-0");
    kb_graph_fini(g);
    free(vf);
    kbd_volume_free(v);
}

/* performance/write-behind tops every client graph, over whatever was the
 * top; `volume set` options reach it, "off" included. */
Test(volume, client_volfile_write_behind)
{
    const struct { int nbricks, replica; const char *below; } shapes[] = {
        { 1, 1, "vm-client-0" }, { 2, 2, "vm-replicate-0" }, { 4, 2, "vm-dht" }, { 2, 1, "vm-dht" },
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        kbd_volume_t *v = make(shapes[i].nbricks, shapes[i].replica, 0);
        char *vf = kbd_volgen_client(v), err[256];
        kb_graph_t *g = kb_graph_parse(vf, err, sizeof(err));
        cr_assert_not_null(g, "%s\n%s", err, vf);
        cr_assert_str_eq(g->top->name, "vm-write-behind", "%s", vf);
        cr_assert_str_eq(g->top->type->name, "performance/write-behind");
        cr_assert_eq(g->top->nchildren, 1);
        cr_assert_str_eq(g->top->children[0]->name, shapes[i].below, "%s", vf);
        kb_graph_fini(g);
        free(vf);

        kb_opts_set(v->opts, "performance.write-behind-window-size", "1MiB");
        vf = kbd_volgen_client(v);
        const char *wb = strstr(vf, "type performance/write-behind\n");
        cr_assert_not_null(wb, "%s", vf);
        cr_assert(strstr(wb, "  option window-size 1MiB\n"), "%s", vf);
        free(vf);

        kb_opts_set(v->opts, "performance.write-behind", "off");
        vf = kbd_volgen_client(v);
        wb = strstr(vf, "type performance/write-behind\n");
        cr_assert_not_null(wb, "off: the stanza stays (it orders a switching client)\n%s", vf);
        cr_assert(strstr(wb, "  option write-behind off\n"), "%s", vf);
        g = kb_graph_parse(vf, err, sizeof(err));
        cr_assert_not_null(g, "%s", err);
        cr_assert_str_eq(g->top->name, "vm-write-behind");
        kb_graph_fini(g);
        free(vf);
        kbd_volume_free(v);
    }
}

Test(volume, brick_volfile)
{
    kbd_volume_t *v = make(2, 2, 0);
    char *vf = kbd_volgen_brick(v, 1), id[KB_GFID_STRLEN];
    cr_assert(strstr(vf, "option directory /var/tmp/b1\n"));
    cr_assert(strstr(vf, kb_gfid_str(&v->id, id)));
    cr_assert(strstr(vf, "type features/locks"));
    free(vf);
    kbd_volume_free(v);
}

Test(volume, option_lookup)
{
    const char *type;
    cr_assert_not_null(kbd_option_find("network.ping-timeout", &type));
    cr_assert_str_eq(type, "protocol/client");
    cr_assert_not_null(kbd_option_find("auth.allow", &type));
    cr_assert_null(kbd_option_find("no.such-option", &type));
}

/* The op-version line (lib/version.h): absent in kembar 0.1.0's
 * definitions (= 1), written by every later one, kept through a round trip,
 * a future one parsed (the node refuses it, not the parser), junk refused. */
Test(volume, op_version_line)
{
    char err[256];
    kbd_volume_t *v = make(3, 2, 1);
    char *text = kbd_volume_format(v);
    cr_assert(strstr(text, "\nop-version=1\n"), "%s", text);
    /* a 0.1.0 definition: no op-version line */
    char *old = strdup(text), *l = strstr(old, "op-version=1\n");
    memmove(l, l + strlen("op-version=1\n"), strlen(l + strlen("op-version=1\n")) + 1);
    kbd_volume_t *w = kbd_volume_parse(old, err, sizeof(err));
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(w->op_version, 1);
    kbd_volume_free(w);
    v->op_version = 2;
    free(text);
    text = kbd_volume_format(v);
    w = kbd_volume_parse(text, err, sizeof(err));
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(w->op_version, 2);
    char *again = kbd_volume_format(w);
    cr_assert_str_eq(text, again);
    kbd_volume_free(w);
    free(again);
    const char *bad[] = { "op-version=0", "op-version=x", "op-version=", "op-version=-1", "op-version=99999999999" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *t = NULL;
        cr_assert_gt(asprintf(&t, "%s%s\n", old, bad[i]), 0);
        cr_assert_null(kbd_volume_parse(t, err, sizeof(err)), "%s accepted", bad[i]);
        free(t);
    }
    char *future = NULL;
    cr_assert_gt(asprintf(&future, "%sop-version=7\n", old), 0);
    w = kbd_volume_parse(future, err, sizeof(err));
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(w->op_version, 7);
    kbd_volume_free(w);
    free(future);
    free(old);
    free(text);
    kbd_volume_free(v);
}

/* What a volume's settings need: the newest option's op-version. */
Test(volume, settings_need)
{
    kbd_volume_t *v = make(2, 2, 0);
    cr_assert_eq(kbd_volume_needs(v), 1);
    kb_opts_set(v->opts, "network.ping-timeout", "3");
    cr_assert_eq(kbd_volume_needs(v), 1, "an option of the first release");
    kb_opts_set(v->opts, "network.lock-lease", "30");
    cr_assert_eq(kbd_volume_needs(v), 2, "network.lock-lease came with 0.2");
    kbd_volume_free(v);
    const char *type;
    cr_assert_not_null(kbd_option_find(KBD_OP_VERSION_KEY, &type));
    cr_assert_str_eq(type, "volume");
}

/* Every `volume set` key kembar 0.1.0 had. A key not in this list was added
 * later and must say which op-version introduced it (xlators/options.c),
 * or an older node or client would be handed a setting it cannot honour. */
Test(volume, new_options_declare_their_op_version)
{
    static const char *const first_release[] = {
        "storage.flush-behind", "network.ping-timeout", "network.frame-timeout", "transport.tls",
        "cluster.quorum-type", "cluster.quorum-count", "cluster.eager-lock", "cluster.eager-lock-idle",
        "cluster.favorite-child-policy", "cluster.read-hash-mode", "cluster.heal-interval",
        "cluster.heal-parallel", "performance.write-behind", "performance.write-behind-window-size",
        "performance.aggregate-size", "auth.allow", "auth.reject",
    };
    int seen = 0;
    for (size_t i = 0; i <= kb_xlator_ntypes; i++) {
        const kb_option_def_t *d = i < kb_xlator_ntypes ? (kb_xlator_types[i] ? kb_xlator_types[i]->options : NULL)
                                                        : kbd_volume_options();
        for (; d && d->key; d++) {
            if (!d->volume_key || strcmp(d->volume_key, KBD_OP_VERSION_KEY) == 0)
                continue;          /* the definition's own field, not an option a node must honour */
            bool old = false;
            for (size_t k = 0; k < sizeof(first_release) / sizeof(first_release[0]); k++)
                old |= strcmp(first_release[k], d->volume_key) == 0;
            seen += old;
            if (old)
                cr_assert_eq(kb_opt_since(d->volume_key), 1, "%s is from the first release", d->volume_key);
            else
                cr_assert_gt(kb_opt_since(d->volume_key), 1, "%s is new since kembar 0.1: declare the op-version "
                             "that introduced it in xlators/options.c", d->volume_key);
            cr_assert_leq(kb_opt_since(d->volume_key), KB_OP_VERSION, "%s", d->volume_key);
        }
    }
    cr_assert_eq(seen, (int)(sizeof(first_release) / sizeof(first_release[0])), "an option of 0.1 went missing");
}

/* Found by fuzz_volume: what the definition or the volfile cannot carry is
 * refused at the door (a '#' made the volfile serve another directory). */
Test(volume, unsafe_bricks_and_counts_refused)
{
    kbd_brick_t b;
    char err[256];
    const char *bad[] = { "a:1:/data/brick#1", "a:1:/with space", "a:1:/tab\there", "0::1]:24802:/arb",
                          "ho$t:/x", "[zz::1]:1:/x" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_neq(kbd_brick_parse(bad[i], &b, err, sizeof(err)), 0, "'%s' accepted", bad[i]);
    cr_assert_eq(kbd_brick_parse("[fd00::1]:24800:/ok/path-1_2.x", &b, err, sizeof(err)), 0, "%s", err);
    free(b.host);
    free(b.path);
    const char *defs[] = {
        "name=x\nid=3e1f0c8a-9d2b-4c6e-8f7a-1b2c3d4e5f61\nreplica=2147483647\narbiter=1\n"
        "brick=a:1:/x 11111111-2222-4333-8444-555555555557\n",
        "name=x\nid=3e1f0c8a-9d2b-4c6e-8f7a-1b2c3d4e5f61\nreplica=99999999999999999999\n"
        "brick=a:1:/x 11111111-2222-4333-8444-555555555557\n",
        "name=bad/name\nid=3e1f0c8a-9d2b-4c6e-8f7a-1b2c3d4e5f61\nreplica=1\n"
        "brick=a:1:/x 11111111-2222-4333-8444-555555555557\n",
    };
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
        cr_assert_null(kbd_volume_parse(defs[i], err, sizeof(err)), "definition %zu accepted", i);
}

/* A volume has at most KBD_MAX_SETS replica sets: distribute takes one
 * subvolume per set. One more (from a state file or a peer) is refused
 * when read, not turned into a volfile no client can parse; the most is
 * accepted, and its client volfile parses (found by the long fuzz run). */
Test(volume, set_count_limit)
{
    char err[256];
    kbd_volume_t *v = make(KBD_MAX_SETS + 1, 1, 0);
    char *text = kbd_volume_format(v);
    cr_assert_null(kbd_volume_parse(text, err, sizeof(err)), "%d sets accepted", KBD_MAX_SETS + 1);
    cr_assert(strstr(err, "inconsistent"), "%s", err);
    free(text);
    kbd_volume_free(v);

    v = make(2 * KBD_MAX_SETS, 2, 0);
    text = kbd_volume_format(v);
    kbd_volume_t *back = kbd_volume_parse(text, err, sizeof(err));
    cr_assert_not_null(back, "%s", err);
    cr_assert_eq(kbd_nsets(back), KBD_MAX_SETS);
    char *vf = kbd_volgen_client(back);
    kb_graph_t *g = kb_graph_parse(vf, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    cr_assert_eq(g->top->children[0]->nchildren, KBD_MAX_SETS, "distribute over every set");
    kb_graph_fini(g);
    free(vf);
    free(text);
    kbd_volume_free(back);
    kbd_volume_free(v);
}

/* remove-brick's drain= field (issue 6): set indices, round trip, refused
 * when it names a set the volume lacks or every set. */
Test(volume, set_masks)
{
    char buf[64];
    uint64_t m = 0;
    kbd_mask_csv(0, buf, sizeof(buf));
    cr_assert_str_eq(buf, "");
    kbd_mask_csv((1ull << 1) | (1ull << 3) | (1ull << 63), buf, sizeof(buf));
    cr_assert_str_eq(buf, "1,3,63");
    cr_assert_eq(kbd_mask_parse("1,3,63", &m), 0);
    cr_assert_eq(m, (1ull << 1) | (1ull << 3) | (1ull << 63));
    cr_assert_eq(kbd_mask_parse("0", &m), 0);
    cr_assert_eq(m, 1);
    const char *bad[] = { "", ",", "1,", ",1", "1,,2", "64", "-1", "x", "1 2", "99999999999999999999" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_neq(kbd_mask_parse(bad[i], &m), 0, "'%s' accepted", bad[i]);
}

Test(volume, drain_round_trip_and_refusals)
{
    kbd_volume_t *v = make(6, 2, 0);     /* 3 sets */
    char *text = kbd_volume_format(v), err[256];
    cr_assert_null(strstr(text, "drain="), "no drain line when nothing drains:\n%s", text);
    free(text);
    v->drain = 1ull << 1;
    text = kbd_volume_format(v);
    cr_assert(strstr(text, "\ndrain=1\n"), "%s", text);
    kbd_volume_t *w = kbd_volume_parse(text, err, sizeof(err));
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(w->drain, 1ull << 1);
    char *again = kbd_volume_format(w);
    cr_assert_str_eq(text, again);
    free(again);
    free(text);
    kbd_volume_free(w);
    const char *refused[] = { "drain=3", "drain=0,1,2", "drain=x", "drain=1," };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        v->drain = 0;
        char *base = kbd_volume_format(v), *bad = NULL;
        cr_assert_gt(asprintf(&bad, "%s%s\n", base, refused[i]), 0);
        cr_assert_null(kbd_volume_parse(bad, err, sizeof(err)), "'%s' accepted", refused[i]);
        free(base);
        free(bad);
    }
    kbd_volume_free(v);
}

/* The distribute stanza names the drained sets (option drain-sets) when this
 * build's distribute knows that option; the bricks' volfiles do not change. */
Test(volume, volgen_drain_sets)
{
    kbd_volume_t *v = make(6, 2, 0);
    char *b0 = kbd_volgen_brick(v, 2);
    char *vf = kbd_volgen_client(v);
    cr_assert_null(strstr(vf, "drain-sets"));
    free(vf);
    v->drain = (1ull << 0) | (1ull << 2);
    vf = kbd_volgen_client(v);
    const kb_xlator_type_t *t = kb_xlator_type_find("cluster/distribute");
    bool knows = false;
    for (const kb_option_def_t *d = t ? t->options : NULL; d && d->key; d++)
        knows |= strcmp(d->key, "drain-sets") == 0;
    const char *dht = strstr(vf, "type cluster/distribute\n");
    cr_assert_not_null(dht, "%s", vf);
    if (knows)
        cr_assert(strstr(dht, "  option drain-sets 0,2\n"), "%s", vf);
    else
        cr_assert_null(strstr(vf, "drain-sets"), "%s", vf);
    char err[256];
    kb_graph_t *g = kb_graph_parse(vf, err, sizeof(err));
    cr_assert_not_null(g, "%s", err);
    kb_graph_fini(g);
    char *b1 = kbd_volgen_brick(v, 2);
    cr_assert_str_eq(b0, b1, "draining must not restart bricks");
    free(b0);
    free(b1);
    free(vf);
    kbd_volume_free(v);
}
