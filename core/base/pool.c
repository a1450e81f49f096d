#include "base/base.h"

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

/* The job. ctr packs the generation (bits 32-63), the task count (16-31)
 * and the next task index (0-15) into one word: a worker claims a task by a
 * compare-and-swap on that word, so the index it takes, the count it checks
 * it against and the job it belongs to are always of one generation, even
 * for a worker that wakes late while the caller prepares the next job. The
 * fields below are read before the claim; a successful claim proves the job
 * was still running, hence that they were this job's. The caller waits for
 * `done`, the count of finished tasks, not for every worker to check in: a
 * worker the OS has not scheduled yet does not hold up a call it took no
 * task of. Calls with more tasks than a chunk run as several jobs. */
#define CHUNK 0xFFFF
static _Atomic(qs_pool_fn) job_fn;
static _Atomic(void *) job_ud;
static atomic_int job_base; /* task number of index 0 */
static _Atomic uint64_t ctr;
static atomic_int done;
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

/* A forked child has none of the workers: start afresh (bench forks). */
static void atfork_child(void) {
    pthread_mutex_init(&call_mu, NULL);
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&wake_cv, NULL);
    pthread_cond_init(&done_cv, NULL);
    n_running = 0;
    in_task = 0;
}

static void count_threads(void) {
    pthread_atfork(NULL, NULL, atfork_child);
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

static unsigned gen_of(uint64_t v) { return (unsigned)(v >> 32); }
static int count_of(uint64_t v) { return (int)((v >> 16) & CHUNK); }
static int index_of(uint64_t v) { return (int)(v & CHUNK); }

/* Take and run tasks of generation g until none is left. */
static void run_tasks(unsigned g, int id) {
    for (;;) {
        uint64_t v = atomic_load_explicit(&ctr, memory_order_acquire);
        int t = index_of(v), n = count_of(v);
        if (gen_of(v) != g || t >= n) return;
        qs_pool_fn fn = atomic_load_explicit(&job_fn, memory_order_relaxed);
        void *ud = atomic_load_explicit(&job_ud, memory_order_relaxed);
        int base = atomic_load_explicit(&job_base, memory_order_relaxed);
        if (!atomic_compare_exchange_weak_explicit(&ctr, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_relaxed))
            continue;
        fn(ud, base + t, id);
        if (atomic_fetch_add_explicit(&done, 1, memory_order_acq_rel) + 1 == n) {
            pthread_mutex_lock(&mu);
            pthread_cond_signal(&done_cv);
            pthread_mutex_unlock(&mu);
        }
    }
}

static void *worker_main(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned seen = start_gen[id];
    my_id = id;
    for (;;) {
        unsigned g = gen_of(atomic_load_explicit(&ctr, memory_order_acquire));
        if (g == seen) {
            long long t0 = now_ns();
            for (int i = 1; (g = gen_of(atomic_load_explicit(&ctr, memory_order_acquire))) == seen; i++) {
                cpu_relax();
                if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS) break;
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&mu);
            while ((g = gen_of(atomic_load_explicit(&ctr, memory_order_acquire))) == seen)
                pthread_cond_wait(&wake_cv, &mu);
            pthread_mutex_unlock(&mu);
        }
        seen = g;
        if (atomic_load_explicit(&stopping, memory_order_acquire)) return NULL;
        in_task = 1;
        run_tasks(g, id);
        in_task = 0;
    }
}

/* Under call_mu. */
static void start_workers(void) {
    int want = qs_pool_threads() - 1;
    unsigned g = gen_of(atomic_load_explicit(&ctr, memory_order_relaxed));
    while (n_running < want) {
        int id = n_running + 1;
        start_gen[id] = g;
        if (pthread_create(&workers[id], NULL, worker_main, (void *)(intptr_t)id) != 0) break;
        n_running++;
    }
}

/* Under call_mu: start generation g+1 with n tasks. */
static unsigned publish(int n) {
    unsigned g = gen_of(atomic_load_explicit(&ctr, memory_order_relaxed)) + 1;
    pthread_mutex_lock(&mu);
    atomic_store_explicit(&ctr, (uint64_t)g << 32 | (uint64_t)n << 16, memory_order_release);
    pthread_cond_broadcast(&wake_cv);
    pthread_mutex_unlock(&mu);
    return g;
}

static void run_inline(int n_tasks, qs_pool_fn fn, void *ud, int id) {
    int was = in_task;
    in_task = 1;
    for (int t = 0; t < n_tasks; t++) fn(ud, t, id);
    in_task = was;
}

void qs_pool_run(int n_tasks, qs_pool_fn fn, void *ud) {
    if (n_tasks <= 0) return;
    if (in_task || n_tasks == 1 || qs_pool_threads() == 1) {
        run_inline(n_tasks, fn, ud, my_id); /* nested, trivial or single-threaded */
        return;
    }
    pthread_mutex_lock(&call_mu);
    start_workers();
    if (n_running == 0) {
        run_inline(n_tasks, fn, ud, 0);
        pthread_mutex_unlock(&call_mu);
        return;
    }
    for (int base = 0; base < n_tasks; base += CHUNK) {
        int n = n_tasks - base < CHUNK ? n_tasks - base : CHUNK;
        atomic_store_explicit(&job_fn, fn, memory_order_relaxed);
        atomic_store_explicit(&job_ud, ud, memory_order_relaxed);
        atomic_store_explicit(&job_base, base, memory_order_relaxed);
        atomic_store_explicit(&done, 0, memory_order_relaxed);
        unsigned g = publish(n);

        in_task = 1;
        run_tasks(g, 0);
        in_task = 0;

        if (atomic_load_explicit(&done, memory_order_acquire) != n) {
            long long t0 = now_ns();
            for (int i = 1; atomic_load_explicit(&done, memory_order_acquire) != n; i++) {
                cpu_relax();
                if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS) break;
            }
            pthread_mutex_lock(&mu);
            while (atomic_load_explicit(&done, memory_order_acquire) != n)
                pthread_cond_wait(&done_cv, &mu);
            pthread_mutex_unlock(&mu);
        }
    }
    pthread_mutex_unlock(&call_mu);
}

void qs_pool_shutdown(void) {
    pthread_mutex_lock(&call_mu);
    if (n_running > 0) {
        atomic_store_explicit(&stopping, 1, memory_order_release);
        publish(0);
        for (int id = 1; id <= n_running; id++) pthread_join(workers[id], NULL);
        n_running = 0;
        atomic_store_explicit(&stopping, 0, memory_order_release);
    }
    pthread_mutex_unlock(&call_mu);
}

/* ---- scratch: a thread's workspaces, behind one thread-specific key
 * whose destructor frees them when the thread exits ---- */

typedef struct {
    void *p[QS_SCRATCH_SLOTS];
    size_t n[QS_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_free(void *v) {
    scratch_set *s = v;
    for (int i = 0; i < QS_SCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}

static void scratch_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0; }

void *qs_scratch(int slot, size_t n) {
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_key_ok || slot < 0 || slot >= QS_SCRATCH_SLOTS) {
        qs_fail(QS_EARG, "scratch: slot %d unavailable", slot);
        return NULL;
    }
    scratch_set *s = pthread_getspecific(scratch_key);
    if (!s) {
        if (!(s = calloc(1, sizeof *s)) || pthread_setspecific(scratch_key, s)) {
            free(s);
            qs_fail(QS_ENOMEM, "out of memory");
            return NULL;
        }
    }
    if (s->n[slot] < n) {
        size_t want = n + n / 4; /* some room, so a slowly growing size does not reallocate every call */
        void *p = NULL;
        if (posix_memalign(&p, 64, want ? want : 64)) {
            qs_fail(QS_ENOMEM, "out of memory for a %zu-byte workspace", n);
            return NULL;
        }
        free(s->p[slot]);
        s->p[slot] = p, s->n[slot] = want;
    }
    return s->p[slot];
}
