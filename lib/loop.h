/*
 * loop.h — an event loop owned by one thread (STYLE 7).
 *
 * A kb_loop wraps a libevent event_base. Everything attached to it (graphs,
 * connections, timers) is used only from the owning thread. Other threads
 * hand work over with kb_loop_run_in(), which queues a function and wakes the
 * loop through an eventfd; the function then runs on the loop thread, in
 * submission order.
 */
#ifndef KB_LOOP_H
#define KB_LOOP_H

#include <stdbool.h>
#include <pthread.h>

struct event_base;
typedef struct kb_loop kb_loop_t;
typedef void (*kb_loop_fn)(void *arg);

kb_loop_t *kb_loop_new(void);
void kb_loop_free(kb_loop_t *l);              /* after it has stopped */
struct event_base *kb_loop_base(kb_loop_t *l);
/* Run in the calling thread until kb_loop_stop (which may be called from any thread). */
int kb_loop_run(kb_loop_t *l);
/* Start a dedicated thread running the loop. */
int kb_loop_start_thread(kb_loop_t *l);
void kb_loop_stop(kb_loop_t *l);              /* any thread; joins the loop thread if it started one */
bool kb_loop_in_thread(kb_loop_t *l);
/* Queue FN(ARG) to run on the loop thread. Safe from any thread. 0 or -ENOMEM. */
int kb_loop_run_in(kb_loop_t *l, kb_loop_fn fn, void *arg);

#endif
