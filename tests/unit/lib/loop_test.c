/*
 * loop_test.c — lib/loop: cross-thread submission order, in_thread, stop.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <unistd.h>
#include <event2/event.h>
#include "lib/loop.h"
#include "lib/common.h"

#define NTHREADS 4
#define PER_THREAD 5000

struct order_state {
    kb_loop_t *loop;
    int next[NTHREADS];    /* next sequence expected from each thread (loop thread only) */
    int bad;
    int total;
    int wrong_thread;
};

struct item { struct order_state *st; int thread, seq; };

static void record(void *arg)
{
    struct item *it = arg;
    struct order_state *st = it->st;
    if (!kb_loop_in_thread(st->loop))
        st->wrong_thread++;
    if (st->next[it->thread] != it->seq)
        st->bad++;
    st->next[it->thread] = it->seq + 1;
    st->total++;
    free(it);
}

struct producer { struct order_state *st; int id; };

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        struct item *it = malloc(sizeof(*it));
        *it = (struct item){ p->st, p->id, i };
        cr_assert_eq(kb_loop_run_in(p->st->loop, record, it), 0);
    }
    return NULL;
}

Test(loop, run_in_from_four_threads_keeps_order)
{
    struct order_state st = { 0 };
    st.loop = kb_loop_new();
    cr_assert_not_null(st.loop);
    cr_assert_eq(kb_loop_start_thread(st.loop), 0);
    cr_assert_not(kb_loop_in_thread(st.loop));

    pthread_t t[NTHREADS];
    struct producer p[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        p[i] = (struct producer){ &st, i };
        pthread_create(&t[i], NULL, produce, &p[i]);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    /* Everything queued before the stop runs before the loop exits. */
    kb_loop_stop(st.loop);
    cr_assert_eq(st.total, NTHREADS * PER_THREAD);
    cr_assert_eq(st.bad, 0);
    cr_assert_eq(st.wrong_thread, 0);
    for (int i = 0; i < NTHREADS; i++)
        cr_assert_eq(st.next[i], PER_THREAD);
    kb_loop_free(st.loop);
}

static void stop_self(void *arg)
{
    kb_loop_stop(arg);
}

static void append_digit(void *arg)
{
    char *s = arg;
    size_t n = strlen(s);
    s[n] = (char)('0' + n);
    s[n + 1] = '\0';
}

Test(loop, run_in_calling_thread_and_stop_from_inside)
{
    kb_loop_t *l = kb_loop_new();
    char s[16] = "";
    kb_loop_run_in(l, append_digit, s);
    kb_loop_run_in(l, append_digit, s);
    kb_loop_run_in(l, stop_self, l);
    cr_assert(kb_loop_in_thread(l), "the creating thread owns a loop not started yet");
    cr_assert_eq(kb_loop_run(l), 0);
    cr_assert_str_eq(s, "01");
    /* It can run again. */
    kb_loop_run_in(l, append_digit, s);
    kb_loop_run_in(l, stop_self, l);
    cr_assert_eq(kb_loop_run(l), 0);
    cr_assert_str_eq(s, "012");
    kb_loop_free(l);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    *(int *)arg = 1;
}

Test(loop, base_is_usable_and_stop_before_work)
{
    kb_loop_t *l = kb_loop_new();
    int fired = 0;
    struct timeval tv = { 0, 1000 };
    struct event *ev = evtimer_new(kb_loop_base(l), on_timer, &fired);
    evtimer_add(ev, &tv);
    cr_assert_eq(kb_loop_start_thread(l), 0);
    for (int i = 0; i < 1000 && !__atomic_load_n(&fired, __ATOMIC_ACQUIRE); i++)
        usleep(1000);
    kb_loop_stop(l);
    cr_assert_eq(fired, 1);
    event_free(ev);
    kb_loop_free(l);
}

Test(loop, stop_twice_and_free_without_run)
{
    kb_loop_t *l = kb_loop_new();
    cr_assert_eq(kb_loop_start_thread(l), 0);
    kb_loop_stop(l);
    kb_loop_stop(l);
    kb_loop_free(l);
    kb_loop_t *l2 = kb_loop_new();
    kb_loop_run_in(l2, append_digit, NULL);   /* dropped, never run */
    kb_loop_free(l2);
}
