/*
 * kembar.c — the CLI (DESIGN §2).
 *
 *   kembar [--server HOST[:PORT]] [--json] volume <verb> ...
 *
 * The command runs on the kembard named by --server (default
 * 127.0.0.1:24800), which talks to the other nodes. Exit 0 on success;
 * otherwise a one-line reason on stderr and a non-zero exit.
 */
#include <stdio.h>
#include <unistd.h>
#include "lib/common.h"
#include "rpc/sync.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: kembar [--server HOST[:PORT]] [--json] volume <verb> ...\n"
        "  volume create NAME [replica N [arbiter 1]] HOST[:PORT]:/PATH... [force]\n"
        "  volume start|stop NAME [force]      volume delete NAME\n"
        "  volume info [NAME]   volume list   volume status [NAME]\n"
        "  volume set NAME KEY VALUE   volume set help   volume get NAME [KEY]\n");
}

int main(int argc, char **argv)
{
    const char *server = getenv("KEMBAR_SERVER");
    bool json = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            server = argv[++i];
        } else if (strncmp(argv[i], "--server=", 9) == 0) {
            server = argv[i] + 9;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
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
        else
            av[ac++] = argv[k];
    }
    if (ac < 2 || strcmp(av[0], "volume") != 0) {
        usage(stderr);
        return 2;
    }
    if (json) {
        memmove(av + 1, av, (size_t)ac * sizeof(char *));
        av[0] = "--json";
        ac++;
    }
    char *host = NULL;
    uint16_t port;
    if (kb_parse_hostport(server ? server : "127.0.0.1", &host, &port, KB_DEFAULT_PORT)) {
        fprintf(stderr, "kembar: bad --server '%s'\n", server);
        return 2;
    }
    char *out = NULL, err[512] = "";
    /* create/start talk to every node: allow for slow disks */
    int rc = rpc_sync_argv(host, port, KB_PROC_CLI, ac, av, 120000, &out, err, sizeof(err));
    if (rc == -ENOTCONN || rc == -ECONNREFUSED) {
        fprintf(stderr, "kembar: cannot reach kembard at %s:%u: %s\n", host, port, err);
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
