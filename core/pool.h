/* pool.h — a small persistent thread pool for the compute kernels.
 *
 * The int8 GEMM (and anything else that wants to split a loop over the
 * cores) hands the pool n_tasks numbered tasks; the pool's workers and the
 * calling thread take them in turn until none is left, and the call returns
 * when every task has run. Workers are created on the first call (one per
 * CPU the process may run on, at most QS_POOL_MAX, or $QSCOPE_THREADS), live
 * until qs_pool_shutdown() or process exit, spin for a few microseconds
 * after a job (so back-to-back calls start quickly) and then sleep on a
 * condition variable.
 *
 *     static void row_task(void *ud, int task, int thread) { ... rows of `task` ... }
 *     qs_pool_run(n_chunks, row_task, &args);   // returns when all chunks are done
 *
 * Threading contract: qs_pool_run may be called from any thread, but calls
 * are serialised (a mutex); a call made from inside a task runs its tasks
 * inline on the calling worker, so nesting is safe but not parallel. The
 * `thread` argument is 0 for the caller and 1..qs_pool_threads()-1 for the
 * workers, so a task may index per-thread scratch with it.
 */
#ifndef QS_POOL_H
#define QS_POOL_H

enum { QS_POOL_MAX = 16 };

typedef void (*qs_pool_fn)(void *ud, int task, int thread);

/* Run fn(ud, t, thread) for every t in [0, n_tasks), in any order and on any
 * of the pool's threads, each exactly once; returns when all are done.
 * n_tasks <= 0 does nothing. If the workers cannot be started the tasks run
 * on the calling thread (the result is the same, only slower). */
void qs_pool_run(int n_tasks, qs_pool_fn fn, void *ud);

/* Threads that run tasks, the caller included (>= 1). Reads $QSCOPE_THREADS
 * (1..QS_POOL_MAX) the first time; it does not start the workers. */
int qs_pool_threads(void);

/* Stop and join the workers (a later qs_pool_run starts them again). For
 * tests and clean shutdown; must not race with qs_pool_run. */
void qs_pool_shutdown(void);

#endif
