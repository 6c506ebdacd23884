/*
 * metrics.c — the Prometheus endpoint of kembard (`--metrics ADDR:PORT`).
 *
 * libevent's evhttp on the node's loop thread; GET /metrics answers the text
 * exposition built by store.c (per-brick fop counts, errors, latency
 * histograms, bytes, clients, heal backlog). Nothing here blocks: the text is
 * built from counters in memory and the brick index directory.
 */
#include <stdio.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include "lib/log.h"
#include "server/kembard.h"

char *kbd_metrics_text(kbd_t *d);

static void on_metrics(struct evhttp_request *req, void *arg)
{
    kbd_t *d = arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_send_error(req, 405, "only GET");
        return;
    }
    char *text = kbd_metrics_text(d);
    struct evbuffer *b = evbuffer_new();
    if (!text || !b) {
        free(text);
        if (b)
            evbuffer_free(b);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    free(text);
}

static void on_other(struct evhttp_request *req, void *arg)
{
    evhttp_send_error(req, 404, "see /metrics");
}

int kbd_metrics_start(kbd_t *d, const char *addr, char *err, size_t errlen)
{
    char *host = NULL;
    uint16_t port;
    if (kb_parse_hostport(addr, &host, &port, 9450)) {
        snprintf(err, errlen, "bad --metrics '%s' (ADDR:PORT)", addr);
        return -EINVAL;
    }
    struct evhttp *h = evhttp_new(kb_loop_base(d->loop));
    if (!h || evhttp_bind_socket(h, host, port) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%u for metrics: %s", host, port, strerror(errno));
        if (h)
            evhttp_free(h);
        free(host);
        return -EADDRINUSE;
    }
    evhttp_set_cb(h, "/metrics", on_metrics, d);
    evhttp_set_gencb(h, on_other, d);
    d->metrics = h;
    kb_info("kembard", "metrics on http://%s:%u/metrics", host, port);
    free(host);
    return 0;
}

void kbd_metrics_stop(kbd_t *d)
{
    if (d->metrics)
        evhttp_free(d->metrics);
    d->metrics = NULL;
}
