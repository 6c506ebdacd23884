/*
 * kembar.c — the CLI (DESIGN §2).
 *
 *   kembar [--server HOST[:PORT]] [--key-file F] [--json] volume|peer <verb> ...
 *
 * The command runs on the kembard named by --server, which talks to the
 * other nodes. Without --server: this node's kembard through its local
 * socket (/var/lib/kembar/kembard.sock, root's alone), or 127.0.0.1:24800
 * when there is none. A kembard takes commands from root on its own node,
 * and from members of its cluster: to a remote --server the request is
 * signed with the cluster key (--key-file, else /var/lib/kembar/cluster.key
 * when readable; server/trust.c). Exit 0 on success; otherwise a one-line
 * reason on stderr and a non-zero exit.
 */
#include <stdio.h>
#include <unistd.h>
#include "lib/common.h"
#include "rpc/auth.h"
#include "rpc/sync.h"
#include "rpc/tls.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: kembar [--server HOST[:PORT]] [--key-file F] [--tls-dir DIR] [--json] volume|peer <verb> ...\n"
        "  volume create NAME [replica N [arbiter 1]] HOST[:PORT]:/PATH... [force]\n"
        "  volume start|stop NAME [force]      volume delete NAME\n"
        "  volume info [NAME]   volume list   volume status [NAME]\n"
        "  volume set NAME KEY VALUE   volume set help   volume get NAME [KEY]\n"
        "  volume heal NAME [full]   volume heal NAME info [split-brain] [--watch]\n"
        "  volume heal NAME split-brain latest-mtime|bigger-file PATH\n"
        "  volume heal NAME split-brain source-brick HOST:PORT:/BRICK PATH\n"
        "  volume profile NAME [clear]   volume top NAME   volume status NAME detail\n"
        "  volume add-brick NAME HOST[:PORT]:/PATH... [force]\n"
        "  volume rebalance NAME start [force] | status | stop\n"
        "  volume remove-brick NAME BRICK... start|status|stop|commit [force]\n"
        "  volume replace-brick NAME OLD-BRICK NEW-BRICK [force]\n"
        "  peer token   peer probe HOST[:PORT] [TOKEN]   peer detach HOST[:PORT]   peer list\n");
}

#define LOCAL_SOCKET KB_DEFAULT_STATE_DIR "/kembard.sock"
#define DEFAULT_KEY  KB_DEFAULT_STATE_DIR "/cluster.key"

/* Sign requests with the cluster key of FILE (given: it must load), else
 * this node's own when readable (root on a member) and the server is not
 * the local one (LOCAL: root there is trusted as such). */
static int sign_with(const char *file, bool local)
{
    uint8_t key[KB_AUTH_KEY_LEN];
    char err[256] = "";
    if (file) {
        if (kb_auth_key_load(file, key, false, err, sizeof(err))) {
            fprintf(stderr, "kembar: %s\n", err);
            return -1;
        }
    } else if (local || access(DEFAULT_KEY, R_OK) != 0 ||
               kb_auth_key_load(DEFAULT_KEY, key, false, err, sizeof(err))) {
        return 0;
    }
    rpc_sync_set_auth_key(key);
    return 0;
}

static unsigned long long json_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = json ? strstr(json, pat) : NULL;
    return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

/* `volume heal NAME info --watch`: redraw a progress line every second until
 * nothing is left to heal. Rate and ETA come from the bytes left. */
static int heal_watch(const char *host, uint16_t port, const char *vol)
{
    char *av[] = { "--json", "volume", "heal", (char *)vol, "info" };
    unsigned long long first_left = 0, prev_left = 0;
    uint64_t t0 = kb_now_ms(), prev_t = t0;
    double rate = 0;
    bool tty = isatty(1);
    for (int iter = 0;; iter++) {
        char *out = NULL, err[512] = "";
        int rc = rpc_sync_argv(host, port, KB_PROC_CLI, 5, av, 30000, &out, err, sizeof(err));
        if (rc) {
            fprintf(stderr, "kembar: %s\n", err[0] ? err : strerror(-rc));
            return 1;
        }
        unsigned long long entries = json_num(out, "total_entries"), left = json_num(out, "bytes_left");
        unsigned long long split = json_num(out, "split_brain");
        free(out);
        uint64_t now = kb_now_ms();
        if (iter == 0)
            first_left = prev_left = left;
        if (left > first_left)
            first_left = left;
        if (now > prev_t && prev_left >= left && iter > 0) {
            double r = (double)(prev_left - left) * 1000.0 / (double)(now - prev_t);
            rate = rate == 0 ? r : 0.6 * rate + 0.4 * r;
        }
        prev_left = left;
        prev_t = now;
        int width = 30, fill = first_left ? (int)((double)(first_left - left) * width / (double)first_left) : width;
        if (entries == 0)
            fill = width;
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        double eta = rate > 0 ? (double)left / rate : 0;
        printf("%s[%s] %llu entries, %.1f MiB left, %.1f MiB/s, ETA %d:%02d%s%s", tty ? "\r" : "", bar, entries,
               (double)left / 1048576.0, rate / 1048576.0, (int)eta / 60, (int)eta % 60,
               split ? ", split-brain: " : "", split ? "yes" : "");
        if (!tty)
            printf("\n");
        fflush(stdout);
        if (entries == 0 || (split && entries == split)) {
            printf("%sheal of %s done in %.1f s\n", tty ? "\n" : "", vol, (double)(now - t0) / 1000.0);
            return split ? 1 : 0;
        }
        sleep(1);
    }
}

int main(int argc, char **argv)
{
    const char *server = getenv("KEMBAR_SERVER"), *tlsdir = getenv("KEMBAR_TLS_DIR");
    const char *keyfile = getenv("KEMBAR_KEY_FILE");
    bool json = false, watch = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            server = argv[++i];
        } else if (strncmp(argv[i], "--server=", 9) == 0) {
            server = argv[i] + 9;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--tls-dir") == 0 && i + 1 < argc) {
            tlsdir = argv[++i];
        } else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc) {
            keyfile = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("kembar %s\n", KB_VERSION);
            return 0;
        } else {
            fprintf(stderr, "kembar: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    /* --json may also come after the verb */
    char **av = calloc((size_t)(argc + 2), sizeof(char *));
    int ac = 0;
    if (!av)
        return 1;
    for (int k = i; k < argc; k++) {
        if (strcmp(argv[k], "--json") == 0)
            json = true;
        else if (strcmp(argv[k], "--watch") == 0)
            watch = true;
        else
            av[ac++] = argv[k];
    }
    if (ac < 2 || (strcmp(av[0], "volume") != 0 && strcmp(av[0], "peer") != 0)) {
        usage(stderr);
        return 2;
    }
    if (json) {
        memmove(av + 1, av, (size_t)ac * sizeof(char *));
        av[0] = "--json";
        ac++;
    }
    if (tlsdir) {
        char err[256] = "";
        struct ssl_ctx_st *ctx = rpc_tls_ctx_from_dir(false, tlsdir, err, sizeof(err));
        if (!ctx) {
            fprintf(stderr, "kembar: TLS: %s\n", err);
            return 2;
        }
        rpc_sync_set_tls(ctx);
    }
    if (sign_with(keyfile, !server || strncmp(server, "unix:", 5) == 0))
        return 2;
    char *host = NULL;
    uint16_t port = 0;
    if (server && strncmp(server, "unix:", 5) == 0) {
        host = strdup(server);
    } else if (!server && access(LOCAL_SOCKET, F_OK) == 0) {
        host = strdup("unix:" LOCAL_SOCKET);
    } else if (kb_parse_hostport(server ? server : "127.0.0.1", &host, &port, KB_DEFAULT_PORT)) {
        fprintf(stderr, "kembar: bad --server '%s'\n", server);
        return 2;
    }
    if (watch) {
        if (ac < 4 || strcmp(av[1], "heal") != 0 || strcmp(av[3], "info") != 0) {
            fprintf(stderr, "kembar: --watch goes with 'volume heal NAME info'\n");
            return 2;
        }
        return heal_watch(host, port, av[2]);
    }
    char *out = NULL, err[512] = "";
    /* create/start talk to every node: allow for slow disks */
    int rc = rpc_sync_argv(host, port, KB_PROC_CLI, ac, av, 120000, &out, err, sizeof(err));
    if (rc == -ENOTCONN || rc == -ECONNREFUSED) {
        if (port)
            fprintf(stderr, "kembar: cannot reach kembard at %s:%u: %s\n", host, port, err);
        else
            fprintf(stderr, "kembar: cannot reach kembard at %s: %s\n", host + 5, err);
        return 1;
    }
    if (rc) {
        fprintf(stderr, "kembar: %s\n", err[0] ? err : strerror(-rc));
        return 1;
    }
    if (out && out[0]) {
        /* warnings travel as leading "warning:" lines: send them to stderr */
        char *p = out;
        while (strncmp(p, "warning: ", 9) == 0) {
            char *nl = strchr(p, '\n');
            fprintf(stderr, "kembar: %.*s\n", nl ? (int)(nl - p) : (int)strlen(p), p);
            p = nl ? nl + 1 : p + strlen(p);
        }
        fputs(p, stdout);
    }
    free(out);
    free(host);
    free(av);
    return 0;
}
