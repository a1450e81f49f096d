#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* How long an idle worker (or the caller waiting for the workers) polls
 * before it sleeps: long enough to bridge the serial code between the
 * pool calls of one layer, short enough not to steal a core from BLAS. */
#define SPIN_NS 20000

/* call_mu serialises qs_pool_run, start-up and shutdown; mu + the two
 * condition variables carry the sleep/wake hand-off. */
static pthread_mutex_t call_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;

static pthread_once_t count_once = PTHREAD_ONCE_INIT;
static int n_threads = 1; /* set once by count_threads */

static pthread_t workers[QS_POOL_MAX];
static unsigned start_gen[QS_POOL_MAX];
static int n_running; /* workers started (under call_mu) */

/* The job: written by the caller before it publishes a new generation
 * (release), read by the workers after they see it (acquire). */
static qs_pool_fn job_fn;
static void *job_ud;
static int job_n;
static atomic_uint gen;
static atomic_int next_task;
static atomic_int pending; /* workers not yet done with the current job */
static atomic_int stopping;

/* Set while a thread is running tasks, so a nested call runs inline. */
static _Thread_local int in_task;
static _Thread_local int my_id;

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void count_threads(void) {
    int n = 0;
    const char *env = getenv("QSCOPE_THREADS");
    if (env && *env) n = atoi(env);
    if (n <= 0) {
#ifdef CPU_COUNT
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
        if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    }
    if (n < 1) n = 1;
    if (n > QS_POOL_MAX) n = QS_POOL_MAX;
    n_threads = n;
}

int qs_pool_threads(void) {
    pthread_once(&count_once, count_threads);
    return n_threads;
}

static void run_tasks(int id) {
    qs_pool_fn fn = job_fn;
    void *ud = job_ud;
    int n = job_n;
    for (;;) {
        int t = atomic_fetch_add_explicit(&next_task, 1, memory_order_relaxed);
        if (t >= n) break;
        fn(ud, t, id);
    }
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned seen = start_gen[id];
    my_id = id;
    for (;;) {
        unsigned g = atomic_load_explicit(&gen, memory_order_acquire);
        if (g == seen) {
            long long t0 = now_ns();
            for (int i = 1; (g = atomic_load_explicit(&gen, memory_order_acquire)) == seen; i++) {
                cpu_relax();
                if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS) break;
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&mu);
            while ((g = atomic_load_explicit(&gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&wake_cv, &mu);
            pthread_mutex_unlock(&mu);
        }
        seen = g;
        if (atomic_load_explicit(&stopping, memory_order_acquire)) return NULL;
        in_task = 1;
        run_tasks(id);
        in_task = 0;
        if (atomic_fetch_sub_explicit(&pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&mu);
            pthread_cond_signal(&done_cv);
            pthread_mutex_unlock(&mu);
        }
    }
}

/* Under call_mu. */
static void start_workers(void) {
    int want = qs_pool_threads() - 1;
    unsigned g = atomic_load_explicit(&gen, memory_order_relaxed);
    while (n_running < want) {
        int id = n_running + 1;
        start_gen[id] = g;
        if (pthread_create(&workers[id], NULL, worker_main, (void *)(intptr_t)id) != 0) break;
        n_running++;
    }
}

static void publish(void) {
    pthread_mutex_lock(&mu);
    atomic_fetch_add_explicit(&gen, 1, memory_order_release);
    pthread_cond_broadcast(&wake_cv);
    pthread_mutex_unlock(&mu);
}

void qs_pool_run(int n_tasks, qs_pool_fn fn, void *ud) {
    if (n_tasks <= 0) return;
    if (in_task || n_tasks == 1 || qs_pool_threads() == 1) {
        /* nested, trivial or single-threaded: run here */
        int was = in_task;
        in_task = 1;
        for (int t = 0; t < n_tasks; t++) fn(ud, t, my_id);
        in_task = was;
        return;
    }
    pthread_mutex_lock(&call_mu);
    start_workers();
    if (n_running == 0) {
        in_task = 1;
        for (int t = 0; t < n_tasks; t++) fn(ud, t, 0);
        in_task = 0;
        pthread_mutex_unlock(&call_mu);
        return;
    }
    job_fn = fn;
    job_ud = ud;
    job_n = n_tasks;
    atomic_store_explicit(&next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&pending, n_running, memory_order_relaxed);
    publish();

    in_task = 1;
    run_tasks(0);
    in_task = 0;

    if (atomic_load_explicit(&pending, memory_order_acquire) != 0) {
        long long t0 = now_ns();
        for (int i = 1; atomic_load_explicit(&pending, memory_order_acquire) != 0; i++) {
            cpu_relax();
            if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS) break;
        }
        pthread_mutex_lock(&mu);
        while (atomic_load_explicit(&pending, memory_order_acquire) != 0)
            pthread_cond_wait(&done_cv, &mu);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_unlock(&call_mu);
}

void qs_pool_shutdown(void) {
    pthread_mutex_lock(&call_mu);
    if (n_running > 0) {
        atomic_store_explicit(&stopping, 1, memory_order_release);
        publish();
        for (int id = 1; id <= n_running; id++) pthread_join(workers[id], NULL);
        n_running = 0;
        atomic_store_explicit(&stopping, 0, memory_order_release);
    }
    pthread_mutex_unlock(&call_mu);
}
