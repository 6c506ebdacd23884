/*
 * loop.c — an event loop owned by one thread (lib/loop.h, STYLE 7).
 *
 * A kb_loop is a libevent event_base plus a cross-thread queue: other threads
 * append (fn, arg) under a mutex and poke an eventfd; the loop thread takes
 * the whole queue at once and runs it in submission order. The eventfd is
 * written only when the queue goes from empty to non-empty (or on stop), so a
 * burst of submissions costs one wake-up.
 *
 * Stop needs no allocation: it sets a flag under the mutex and pokes the
 * eventfd; the loop thread first runs everything queued before the stop, then
 * breaks out. Functions still queued when the loop is freed are dropped.
 *
 * evthread_use_pthreads() is called once, before the first base is created,
 * so bases are lock-enabled and can be woken from other threads.
 */
#include "lib/loop.h"
#include "lib/common.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct loop_item {
    struct loop_item *next;
    kb_loop_fn fn;
    void *arg;
};

struct kb_loop {
    struct event_base *base;
    struct event *wake_ev;
    int efd;
    pthread_mutex_t mu;
    struct loop_item *head, *tail;   /* guarded by mu */
    bool stopping;                   /* guarded by mu */
    bool poked;                      /* guarded by mu: eventfd written, not yet drained */
    pthread_t owner;                 /* thread running (or last set up) the loop */
    pthread_t thr;
    bool has_thr;                    /* thr started and not yet joined */
};

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;
static int evthread_rc;

static void evthread_init(void)
{
    evthread_rc = evthread_use_pthreads();
}

static void poke(kb_loop_t *l)
{
    uint64_t one = 1;
    ssize_t n = write(l->efd, &one, sizeof(one));
    (void)n;   /* EAGAIN: the counter is saturated, the loop is awake anyway */
}

/* Loop thread: run the queue, then honour a stop. */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    kb_loop_t *l = arg;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
    (void)what;

    pthread_mutex_lock(&l->mu);
    struct loop_item *it = l->head;
    l->head = l->tail = NULL;
    l->poked = false;
    bool stop = l->stopping;
    pthread_mutex_unlock(&l->mu);

    while (it) {
        struct loop_item *next = it->next;
        it->fn(it->arg);
        free(it);
        it = next;
    }
    if (stop)
        event_base_loopbreak(l->base);
}

kb_loop_t *kb_loop_new(void)
{
    pthread_once(&evthread_once, evthread_init);
    if (evthread_rc != 0)
        return NULL;
    kb_loop_t *l = kb_zalloc(sizeof(*l));
    if (!l)
        return NULL;
    l->efd = -1;
    pthread_mutex_init(&l->mu, NULL);
    l->owner = pthread_self();
    l->base = event_base_new();
    if (!l->base)
        goto fail;
    l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->efd < 0)
        goto fail;
    l->wake_ev = event_new(l->base, l->efd, EV_READ | EV_PERSIST, on_wake, l);
    if (!l->wake_ev || event_add(l->wake_ev, NULL) < 0)
        goto fail;
    return l;
fail:
    kb_loop_free(l);
    return NULL;
}

void kb_loop_free(kb_loop_t *l)
{
    if (!l)
        return;
    if (l->has_thr && !pthread_equal(l->thr, pthread_self())) {
        pthread_join(l->thr, NULL);
        l->has_thr = false;
    }
    while (l->head) {
        struct loop_item *next = l->head->next;
        free(l->head);
        l->head = next;
    }
    if (l->wake_ev)
        event_free(l->wake_ev);
    if (l->efd >= 0)
        close(l->efd);
    if (l->base)
        event_base_free(l->base);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

struct event_base *kb_loop_base(kb_loop_t *l)
{
    return l->base;
}

static int loop_run(kb_loop_t *l)
{
    int rc = event_base_loop(l->base, 0);
    pthread_mutex_lock(&l->mu);
    l->stopping = false;        /* the loop may be run again */
    pthread_mutex_unlock(&l->mu);
    return rc < 0 ? -EIO : 0;
}

int kb_loop_run(kb_loop_t *l)
{
    l->owner = pthread_self();
    return loop_run(l);
}

/* owner was set to this thread by kb_loop_start_thread before it started. */
static void *loop_thread(void *arg)
{
    loop_run(arg);
    return NULL;
}

int kb_loop_start_thread(kb_loop_t *l)
{
    if (l->has_thr)
        return -EBUSY;
    /* owner is written through pthread_create's thread-id store, before the
     * thread can run: in_thread is right from its first instruction. */
    int rc = pthread_create(&l->owner, NULL, loop_thread, l);
    if (rc != 0) {
        l->owner = pthread_self();
        return -rc;
    }
    l->thr = l->owner;
    l->has_thr = true;
    return 0;
}

void kb_loop_stop(kb_loop_t *l)
{
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_mutex_unlock(&l->mu);
    poke(l);
    if (l->has_thr && !pthread_equal(l->thr, pthread_self())) {
        pthread_join(l->thr, NULL);
        l->has_thr = false;
    }
}

bool kb_loop_in_thread(kb_loop_t *l)
{
    return pthread_equal(l->owner, pthread_self());
}

int kb_loop_run_in(kb_loop_t *l, kb_loop_fn fn, void *arg)
{
    struct loop_item *it = malloc(sizeof(*it));
    if (!it)
        return -ENOMEM;
    it->next = NULL;
    it->fn = fn;
    it->arg = arg;
    pthread_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    bool need_poke = !l->poked;
    l->poked = true;
    pthread_mutex_unlock(&l->mu);
    if (need_poke)
        poke(l);
    return 0;
}
