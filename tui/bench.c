/* `qscope --ui-bench`: how long the workbench takes from a key press to the
 * finished redraw. The real event loop runs on a pseudo-terminal (100x30,
 * xterm-256color); a driver thread writes key sequences into the terminal's
 * other end, exactly as a terminal emulator would, and times each one until
 * the frame that answered it has been written out. It measures once with the
 * machine idle and once while a perplexity job runs over all of eval.txt in
 * the background. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../cli/cli.h"
#include "tui.h"

enum { BENCH_ROWS = 30, BENCH_COLS = 100, MAX_SAMPLES = 512 };
#define TARGET_MS 50.0

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* what the UI thread reports after each frame */
    long frames, keys;
    double frame_t;
    int ready;         /* calibration done and no job queued */
    int busy;
    char label[96];
    long done, total;
    int finished;      /* the app returned */
    /* the driver's results */
    double idle[MAX_SAMPLES], loaded[MAX_SAMPLES];
    int n_idle, n_loaded, timeouts;
    double job_from, job_to;
    int master;
    volatile int stop_drain;
} bench;


static void on_frame(void *ud, tui_state *s) {
    bench *b = ud;
    pthread_mutex_lock(&b->mu);
    b->frames = s->frames;
    b->keys = s->keys;
    b->frame_t = qs_io_clock() * 1e3;
    b->ready = s->data_ready && !s->js.busy && !s->js.queued;
    b->busy = s->js.busy;
    tui_copy(b->label, sizeof b->label, s->js.label);
    b->done = s->js.done;
    b->total = s->js.total;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* everything the program writes to the terminal is read and dropped */
static void *drain(void *arg) {
    bench *b = arg;
    char buf[65536];
    while (!b->stop_drain) {
        struct pollfd p = {b->master, POLLIN, 0};
        if (poll(&p, 1, 50) > 0) {
            ssize_t n = read(b->master, buf, sizeof buf);
            if (n <= 0 && errno != EAGAIN && errno != EINTR) break;
        }
    }
    return NULL;
}

static int wait_until(bench *b, int (*ok)(bench *b, long arg), long arg, double timeout_ms) {
    double end = qs_io_clock() * 1e3 + timeout_ms;
    pthread_mutex_lock(&b->mu);
    while (!ok(b, arg) && !b->finished) {
        double left = end - qs_io_clock() * 1e3;
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)(fmin(left, 100) * 1e6);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    int r = ok(b, arg);
    pthread_mutex_unlock(&b->mu);
    return r;
}

static int is_ready(bench *b, long arg) {
    (void)arg;
    return b->ready;
}

static int keys_at_least(bench *b, long arg) { return b->keys >= arg; }

static int job_running(bench *b, long arg) {
    (void)arg;
    return b->busy && strstr(b->label, "full ppl") != NULL;
}

static void send_key(bench *b, const char *k) {
    ssize_t r = write(b->master, k, strlen(k));
    (void)r;
}

/* Press one key and time it to the frame that handled it. */
static double press(bench *b, const char *k) {
    pthread_mutex_lock(&b->mu);
    long want = b->keys + 1;
    pthread_mutex_unlock(&b->mu);
    double t0 = qs_io_clock() * 1e3;
    send_key(b, k);
    if (!wait_until(b, keys_at_least, want, 5000)) {
        b->timeouts++;
        return -1;
    }
    pthread_mutex_lock(&b->mu);
    double t = b->frame_t - t0;
    pthread_mutex_unlock(&b->mu);
    return t;
}

/* keys that move around every view without starting heavy work */
static const char *const tour[] = {
    "l", "l", "l", "h", "\033[C", "\033[D", "s", "S", "2", "l", "l", "j", "m", "m", "3", "j", "k", "m", "m",
    "4", "j", "k", "6", "k", "j", "5", "7", "1", "n", "N", "?", "j", "?", "\t", "j", "k", "\t", "l", "h",
};
enum { N_TOUR = sizeof tour / sizeof tour[0] };

static void *driver(void *arg) {
    bench *b = arg;
    /* the startup jobs (calibration, fp32 ppl, the first variant) first */
    if (!wait_until(b, is_ready, 0, 120000)) {
        fprintf(stderr, "qscope: ui-bench: the workbench did not become ready\n");
        send_key(b, "q");
        return NULL;
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N_TOUR && b->n_idle < MAX_SAMPLES; i++) {
            double t = press(b, tour[i]);
            if (t >= 0) b->idle[b->n_idle++] = t;
            wait_until(b, is_ready, 0, 2000); /* let a clustering job finish: this phase is the quiet one */
        }
    /* a full-data perplexity job in the background: Compare, select fp32, p */
    press(b, "4");
    for (int i = 0; i < 8; i++) press(b, "k");
    b->job_from = -1;
    for (int round = 0; round < 4 && b->n_loaded < 120; round++) {
        /* start the job (again, should it have finished) and keep pressing keys while it runs */
        press(b, "4");
        press(b, "p");
        if (!wait_until(b, job_running, 0, 5000)) break;
        for (int i = 0; b->n_loaded < 120; i = (i + 1) % N_TOUR) {
            pthread_mutex_lock(&b->mu);
            int running = b->busy && strstr(b->label, "full ppl");
            double f = b->total > 0 ? (double)b->done / b->total : 0;
            pthread_mutex_unlock(&b->mu);
            if (!running) break;
            if (b->job_from < 0) b->job_from = f;
            double t = press(b, tour[i]);
            pthread_mutex_lock(&b->mu);
            running = b->busy && strstr(b->label, "full ppl");
            f = b->total > 0 ? (double)b->done / b->total : 0;
            pthread_mutex_unlock(&b->mu);
            /* only keys answered while the job was still running count */
            if (t >= 0 && running) {
                b->loaded[b->n_loaded++] = t;
                b->job_to = f;
            }
            /* spread the presses over the job, as a person would */
            struct timespec ts = {0, 15 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    send_key(b, "\033");
    wait_until(b, is_ready, 0, 5000);
    send_key(b, "q");
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n, double *median) {
    if (!n) {
        printf("  %-34s no samples\n", what);
        *median = NAN;
        return;
    }
    qsort(v, (size_t)n, sizeof *v, cmp);
    double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    int i95 = (int)ceil(0.95 * n) - 1;
    printf("  %-34s n=%-4d median %7.2f ms   p95 %7.2f ms   max %7.2f ms\n", what, n, med, v[i95 < 0 ? 0 : i95],
           v[n - 1]);
    *median = med;
}

int tui_bench_run(const qs_model *m) {
    bench *b = calloc(1, sizeof *b);
    if (!b) return EXIT_RUNTIME;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) {
        cli_error("ui-bench: cannot open a pseudo-terminal: %s", strerror(errno));
        free(b);
        return EXIT_RUNTIME;
    }
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    if (slave < 0) {
        cli_error("ui-bench: cannot open %s: %s", ptsname(master), strerror(errno));
        close(master);
        free(b);
        return EXIT_RUNTIME;
    }
    struct winsize ws = {.ws_row = BENCH_ROWS, .ws_col = BENCH_COLS};
    ioctl(slave, TIOCSWINSZ, &ws);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    b->master = master;
    FILE *fin = fdopen(slave, "r"), *fout = fdopen(dup(slave), "w");
    if (!fin || !fout) {
        cli_error("ui-bench: %s", strerror(errno));
        close(master);
        free(b);
        return EXIT_RUNTIME;
    }
    /* the pseudo-terminal has no size in the environment to contradict */
    unsetenv("LINES");
    unsetenv("COLUMNS");
    pthread_t td, tk;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int have_d = pthread_create(&td, NULL, drain, b) == 0;
    int have_k = pthread_create(&tk, NULL, driver, b) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    double t0 = qs_io_clock() * 1e3;
    tui_opts o = {.in = fin, .out = fout, .term = "xterm-256color", .on_frame = on_frame, .ud = b, .no_signals = 1};
    int rc = have_d && have_k ? tui_app_run(m, &o) : EXIT_RUNTIME;
    pthread_mutex_lock(&b->mu);
    b->finished = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (have_k) pthread_join(tk, NULL);
    b->stop_drain = 1;
    if (have_d) pthread_join(td, NULL);
    fclose(fin);
    fclose(fout);
    close(master);
    if (rc != EXIT_OK) {
        free(b);
        return rc;
    }
    printf("qscope --ui-bench: %s, %dx%d pseudo-terminal, %.1f s\n", m->path, BENCH_COLS, BENCH_ROWS,
           qs_io_clock() - t0 / 1e3);
    printf("key press to finished redraw (written to the terminal):\n");
    double med_idle, med_loaded;
    report("idle", b->idle, b->n_idle, &med_idle);
    char what[96];
    snprintf(what, sizeof what, "while a ppl job runs (%.0f%%-%.0f%%)", 100 * b->job_from, 100 * b->job_to);
    report(what, b->loaded, b->n_loaded, &med_loaded);
    if (b->timeouts) printf("  %d key presses got no answer within 5 s\n", b->timeouts);
    int ok = b->n_idle && b->n_loaded && !b->timeouts && med_idle <= TARGET_MS && med_loaded <= TARGET_MS;
    printf("target: median <= %.0f ms: %s\n", TARGET_MS, ok ? "met" : "NOT met");
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
    return ok ? EXIT_OK : EXIT_RUNTIME;
}
