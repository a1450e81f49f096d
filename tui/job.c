/* The job runner: worker threads take jobs in order; results travel back to
 * the UI thread as events, so the state is only ever changed there. The UI
 * learns that something is waiting through a byte on a pipe it polls beside
 * the terminal.
 *
 * Two lanes, one thread each: the main lane runs the long jobs (calibration,
 * variants, perplexity, generation, Lua) one after the other; the quick lane
 * runs the small ones a view is waiting for (k-means of one site), so they
 * never queue behind a perplexity over a whole file. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tui.h"

typedef struct tui_event {
    tui_event_fn fn;
    void *data;
    tui_job *job; /* a finished job: its done() runs, then it is freed */
    struct tui_event *next;
} tui_event;

enum { LANE_MAIN = 0, LANE_QUICK = 1, N_LANES = 2 };

typedef struct {
    tui_jobs *q;
    pthread_t thread;
    int started;
    tui_job *head, *tail; /* queued */
    tui_job *running;
    char label[96];
    long done, total;
    double last_poke;
} lane;

struct tui_jobs {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lane lanes[N_LANES];
    tui_event *ev_head, *ev_tail;
    int stop;
    int wake_fd;
    long finished;
};


static void poke(tui_jobs *q) {
    char b = 1;
    /* a full pipe already wakes the UI: a failed write loses nothing */
    ssize_t r = write(q->wake_fd, &b, 1);
    (void)r;
}

static void job_free(tui_job *j) {
    if (!j) return;
    if (j->free_fn) j->free_fn(j);
    free(j);
}

static lane *lane_of(tui_jobs *q, const tui_job *j) { return &q->lanes[j->urgent ? LANE_QUICK : LANE_MAIN]; }

/* with q->mu held */
static void push_event(tui_jobs *q, tui_event *e) {
    e->next = NULL;
    if (q->ev_tail) q->ev_tail->next = e;
    else q->ev_head = e;
    q->ev_tail = e;
}

static void finish(tui_jobs *q, tui_job *j) {
    tui_event *e = calloc(1, sizeof *e);
    pthread_mutex_lock(&q->mu);
    if (e) {
        e->job = j;
        push_event(q, e);
    }
    q->finished++;
    pthread_mutex_unlock(&q->mu);
    if (!e) job_free(j); /* out of memory: the result is lost, not the program */
    poke(q);
}

/* with q->mu held */
static void cancel_running(lane *l) {
    if (l->running && !atomic_exchange(&l->running->cancel, 1) && l->running->on_cancel)
        l->running->on_cancel(l->running);
}

static void *worker(void *arg) {
    lane *l = arg;
    tui_jobs *q = l->q;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->stop && !l->head) pthread_cond_wait(&q->cv, &q->mu);
        if (q->stop) break;
        tui_job *j = l->head;
        l->head = j->next;
        if (!l->head) l->tail = NULL;
        j->next = NULL;
        l->running = j;
        tui_copy(l->label, sizeof l->label, j->label);
        l->done = l->total = 0;
        pthread_mutex_unlock(&q->mu);
        poke(q);

        if (atomic_load(&j->cancel)) j->st = QS_ECANCEL;
        else j->st = j->run(j);
        if (j->st == QS_OK && atomic_load(&j->cancel)) j->st = QS_ECANCEL;

        pthread_mutex_lock(&q->mu);
        l->running = NULL;
        l->label[0] = 0;
        pthread_mutex_unlock(&q->mu);
        finish(q, j);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

tui_jobs *tui_jobs_new(int wake_fd) {
    tui_jobs *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->wake_fd = wake_fd;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    /* signals (resize, Ctrl-C) belong to the UI thread: the workers block them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int ok = 1;
    for (int i = 0; i < N_LANES && ok; i++) {
        q->lanes[i].q = q;
        ok = pthread_create(&q->lanes[i].thread, NULL, worker, &q->lanes[i]) == 0;
        q->lanes[i].started = ok;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!ok) {
        tui_jobs_free(q);
        return NULL;
    }
    return q;
}

void tui_jobs_join(tui_jobs *q) {
    if (!q) return;
    tui_jobs_cancel_all(q);
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < N_LANES; i++)
        if (q->lanes[i].started) {
            pthread_join(q->lanes[i].thread, NULL);
            q->lanes[i].started = 0;
        }
}

void tui_jobs_free(tui_jobs *q) {
    if (!q) return;
    tui_jobs_join(q);
    for (int i = 0; i < N_LANES; i++)
        for (tui_job *j = q->lanes[i].head, *n; j; j = n) {
            n = j->next;
            job_free(j);
        }
    for (tui_event *e = q->ev_head, *n; e; e = n) {
        n = e->next;
        if (e->job) job_free(e->job);
        else free(e->data);
        free(e);
    }
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

void tui_jobs_submit(tui_jobs *q, tui_job *j) {
    j->q = q;
    j->next = NULL;
    tui_job *dropped = NULL;
    pthread_mutex_lock(&q->mu);
    lane *l = lane_of(q, j);
    /* the newest job of a kind wins: older queued ones go, a running one is cancelled */
    if (!j->ordered) {
        for (tui_job **p = &l->head; *p;) {
            if ((*p)->kind == j->kind) {
                tui_job *d = *p;
                *p = d->next;
                d->next = dropped;
                dropped = d;
            } else {
                p = &(*p)->next;
            }
        }
        l->tail = NULL;
        for (tui_job *t = l->head; t; t = t->next) l->tail = t;
        if (l->running && l->running->kind == j->kind) cancel_running(l);
    }
    if (l->tail) l->tail->next = j;
    else l->head = j;
    l->tail = j;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    /* dropped jobs still report, so the state forgets their pending rows */
    while (dropped) {
        tui_job *n = dropped->next;
        dropped->st = QS_ECANCEL;
        finish(q, dropped);
        dropped = n;
    }
}

void tui_jobs_cancel_all(tui_jobs *q) {
    tui_job *lists[N_LANES];
    pthread_mutex_lock(&q->mu);
    for (int i = 0; i < N_LANES; i++) {
        lists[i] = q->lanes[i].head;
        q->lanes[i].head = q->lanes[i].tail = NULL;
        cancel_running(&q->lanes[i]);
    }
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < N_LANES; i++)
        for (tui_job *j = lists[i], *n; j; j = n) {
            n = j->next;
            j->st = QS_ECANCEL;
            finish(q, j);
        }
}

int tui_jobs_progress(void *ud, long done, long total) {
    tui_job *j = ud;
    tui_jobs *q = j->q;
    int wake = 0;
    pthread_mutex_lock(&q->mu);
    lane *l = lane_of(q, j);
    if (l->running == j) {
        l->done = done;
        l->total = total;
        double t = qs_io_clock();
        /* a redraw per ~30 ms is smooth enough and costs the UI little */
        if (t - l->last_poke > 0.03 || done >= total) {
            l->last_poke = t;
            wake = 1;
        }
    }
    pthread_mutex_unlock(&q->mu);
    if (wake) poke(q);
    return atomic_load(&j->cancel);
}

void tui_jobs_set_label(tui_job *j, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->label, sizeof j->label, fmt, ap);
    va_end(ap);
    tui_jobs *q = j->q;
    pthread_mutex_lock(&q->mu);
    lane *l = lane_of(q, j);
    if (l->running == j) {
        tui_copy(l->label, sizeof l->label, j->label);
        l->done = l->total = 0;
    }
    pthread_mutex_unlock(&q->mu);
    poke(q);
}

void tui_jobs_post(tui_jobs *q, tui_event_fn fn, void *data) {
    tui_event *e = calloc(1, sizeof *e);
    if (!e) {
        free(data);
        return;
    }
    e->fn = fn;
    e->data = data;
    pthread_mutex_lock(&q->mu);
    push_event(q, e);
    pthread_mutex_unlock(&q->mu);
    poke(q);
}

int tui_jobs_dispatch(tui_jobs *q, tui_state *s) {
    pthread_mutex_lock(&q->mu);
    tui_event *list = q->ev_head;
    q->ev_head = q->ev_tail = NULL;
    pthread_mutex_unlock(&q->mu);
    int n = 0;
    while (list) {
        tui_event *e = list;
        list = e->next;
        if (e->job) {
            if (e->job->done) e->job->done(s, e->job);
            job_free(e->job);
        } else {
            e->fn(s, e->data);
        }
        free(e);
        n++;
    }
    return n;
}

void tui_jobs_status_get(tui_jobs *q, tui_jobs_status *out) {
    pthread_mutex_lock(&q->mu);
    /* the main lane's job is the one worth a progress bar; the quick lane
     * shows only when the main one is idle */
    const lane *l = q->lanes[LANE_MAIN].running || !q->lanes[LANE_QUICK].running ? &q->lanes[LANE_MAIN]
                                                                                  : &q->lanes[LANE_QUICK];
    out->busy = q->lanes[LANE_MAIN].running || q->lanes[LANE_QUICK].running;
    out->queued = 0;
    for (int i = 0; i < N_LANES; i++)
        for (tui_job *j = q->lanes[i].head; j; j = j->next) out->queued++;
    tui_copy(out->label, sizeof out->label, l->label);
    out->done = l->done;
    out->total = l->total;
    out->finished = q->finished;
    pthread_mutex_unlock(&q->mu);
}

typedef struct {
    int level;
    char text[];
} log_event;

static void apply_log(tui_state *s, void *data) {
    log_event *e = data;
    size_t len = strlen(e->text);
    if (len && e->text[len - 1] == '\n') e->text[len - 1] = 0;
    tui_state_log(s, e->level, "%s", e->text);
    free(e);
}

void tui_jobs_post_log(tui_jobs *q, int level, const char *text, size_t len) {
    log_event *e = malloc(sizeof *e + len + 1);
    if (!e) return;
    e->level = level;
    memcpy(e->text, text, len);
    e->text[len] = 0;
    tui_jobs_post(q, apply_log, e);
}
