/*
 * store.h — the node's table of volumes and running bricks as store.c
 * keeps it, shared with the heal peer operations (store_heal.c); private
 * to those two files. Loop thread only.
 */
#ifndef KB_STORE_H
#define KB_STORE_H

#include "server/kembard.h"
#include "server/stats.h"

struct kbd_brick_rt {
    kbd_t *d;
    char *volume;
    int idx;
    char *path;
    kb_graph_t *graph;
    int nconns;
    char error[512];      /* why it is not online, for status */
    kbd_stats_t stats;    /* fops served (serve.c records, profile/metrics read) */
};

struct kbd_vol_entry {
    kbd_volume_t *v;
    bool *local;                 /* [nbricks] */
    kbd_brick_rt_t **rt;         /* [nbricks], running local bricks */
    kb_graph_t **shd;            /* [nsets], heal daemon graph of each set with a local brick */
    struct kbd_vol_entry *next;
};

/* store.c */
struct kbd_vol_entry *kbd_vol_find(kbd_t *d, const char *name);
/* *OUT = the formatted text (the answer, or why not); returns RC. */
int kbd_reply_text(char **out, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* store_heal.c: peer heal / heal-info, heal-resolve / heal-resolve-status */
int kbd_peer_heal(kbd_t *d, int argc, char **argv, char **out);
int kbd_peer_heal_resolve(kbd_t *d, int argc, char **argv, char **out);

#endif
