/* The program around the workbench: the terminal (set up, resized, always
 * restored, even on a crash), the command line of `qscope [MODEL]`, and the
 * event loop. The loop waits on two things at once, the terminal and a pipe
 * the jobs write to, so a key is answered while a job runs and a finished
 * job is shown without a key; it draws one whole frame after each batch. */
#include <curses.h>
#include <term.h>
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../cli/cli.h"
#include "tui.h"

static volatile sig_atomic_t got_winch, got_quit, got_int;
static int wake_wr = -1;
static int term_active;

static void on_signal(int sig) {
    int saved = errno;
    if (sig == SIGWINCH) got_winch = 1;
    else if (sig == SIGINT) got_int++;
    else got_quit = 1;
    char b = 0;
    if (wake_wr >= 0) {
        ssize_t r = write(wake_wr, &b, 1);
        (void)r;
    }
    errno = saved;
}

/* A crash must not leave the terminal in raw mode: restore it first, then
 * die of the same signal. */
static void on_fatal(int sig) {
    if (term_active) endwin();
    term_active = 0;
    static const char msg[] = "qscope: fatal signal; the terminal was restored\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void restore_at_exit(void) {
    if (term_active) endwin();
    term_active = 0;
}

static tui_jobs *log_jobs;

/* core's log messages (any thread) go to the Log view */
static void log_sink(void *ud, int level, const char *msg) {
    (void)ud;
    if (level == QS_LOG_DEBUG && !getenv("QSCOPE_DEBUG")) return;
    if (log_jobs) tui_jobs_post_log(log_jobs, level, msg, strlen(msg));
}

static void frame(tui_state *s, const tui_opts *o) {
    tui_jobs_status_get(s->jobs, &s->js);
    tui_panel_fit(s);
    tui_panel_frame(s);
    refresh();
    s->frames++;
    if (o->on_frame) o->on_frame(o->ud, s);
}

static void resize(FILE *out) {
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) resize_term(ws.ws_row, ws.ws_col);
    /* what the terminal kept of the old screen is unknown (a shrinking
     * terminal may scroll it up): repaint every cell */
    clearok(curscr, TRUE);
}

/* One key from curses: Alt-x arrives as Esc then x at once; Esc alone after
 * ESCDELAY. Returns TUI_R_*. */
static int key(tui_state *s, int ch) {
    if (ch == KEY_RESIZE) {
        clearok(curscr, TRUE);
        return TUI_R_DRAW;
    }
    if (ch == KEY_MOUSE) {
        MEVENT ev;
        if (getmouse(&ev) != OK || s->prompting || s->rows_n < TUI_MIN_H || s->cols_n < TUI_MIN_W) return TUI_R_NONE;
        return tui_keys_mouse(s, ev.y, ev.x, (unsigned long)ev.bstate);
    }
    int alt = 0;
    if (ch == 27) {
        int next = getch();
        if (next == 27 || next >= KEY_MIN) ungetch(next); /* Esc Esc: two presses, not Alt-Esc */
        else if (next != ERR) {
            alt = 1;
            ch = next;
        }
    }
    if (s->prompting) return tui_prompt_key(s, ch, alt);
    if (alt) return TUI_R_NONE;
    if (s->rows_n < TUI_MIN_H || s->cols_n < TUI_MIN_W) return ch == 'q' ? TUI_R_QUIT : TUI_R_NONE;
    return tui_keys_handle(s, ch);
}

/* Undo a start that failed after the state, the data and the pipe were made. */
static int start_failed(tui_state *s, tui_data *d, int pfd[2]) {
    tui_state_free(s);
    free(s);
    free(d);
    close(pfd[0]);
    close(pfd[1]);
    return EXIT_RUNTIME;
}

int tui_app_run(const qs_model *m, const tui_opts *o) {
    setlocale(LC_ALL, "");
    tui_state *s = calloc(1, sizeof *s);
    tui_data *d = calloc(1, sizeof *d);
    int pfd[2] = {-1, -1};
    if (!s || !d || pipe(pfd) != 0) {
        cli_error("out of memory or file descriptors");
        free(s);
        free(d);
        return EXIT_RUNTIME;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(pfd[i], F_SETFL, fcntl(pfd[i], F_GETFL) | O_NONBLOCK);
        fcntl(pfd[i], F_SETFD, FD_CLOEXEC);
    }
    tui_state_init(s, m);
    s->data = d;
    const char *cs = nl_langinfo(CODESET);
    s->utf8 = cs && (!strcmp(cs, "UTF-8") || !strcmp(cs, "utf8"));

    FILE *in = o->in ? o->in : stdin, *out = o->out ? o->out : stdout;
    SCREEN *scr = newterm(o->term, out, in);
    if (!scr) {
        cli_error("cannot use the terminal (TERM=%s)", o->term ? o->term : getenv("TERM") ? getenv("TERM") : "");
        return start_failed(s, d, pfd);
    }
    set_term(scr);
    term_active = 1;
    static int registered;
    if (!registered) registered = !atexit(restore_at_exit);
    cbreak();
    noecho();
    nonl();
    intrflush(stdscr, FALSE);
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    /* the mouse only where the terminal says how it reports it (kmous), and
     * not with QSCOPE_NO_MOUSE: then the terminal keeps its own selection */
    const char *kmous = tigetstr("kmous");
    if (kmous && kmous != (char *)-1 && *kmous && !getenv("QSCOPE_NO_MOUSE")) {
        mmask_t want = BUTTON1_PRESSED | BUTTON4_PRESSED;
#ifdef BUTTON5_PRESSED
        want |= BUTTON5_PRESSED;
#endif
        mousemask(want, NULL);
        mouseinterval(0);
    }
    tui_draw_init(s);

    struct sigaction sa, old_winch, old_int, old_term, old_fatal[5];
    static const int fatal[5] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    wake_wr = pfd[1];
    got_winch = got_quit = 0;
    if (!o->no_signals) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGWINCH, &sa, &old_winch);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        sa.sa_handler = on_fatal;
        sa.sa_flags = SA_RESETHAND;
        for (int i = 0; i < 5; i++) sigaction(fatal[i], &sa, &old_fatal[i]);
    }

    /* the worker starts after the signal handlers so that it blocks them */
    s->jobs = tui_jobs_new(pfd[1]);
    if (!s->jobs) {
        endwin();
        term_active = 0;
        delscreen(scr);
        cli_error("cannot start the job thread");
        return start_failed(s, d, pfd);
    }
    log_jobs = s->jobs;
    qs_log_set(log_sink, NULL);
    tui_prompt_init(s);
    tui_state_log(s, QS_LOG_INFO, "%s: %s, %lld parameters; press ? for help", m->path, m->cfg.arch_name,
                  qs_model_params(m));
    s->src = o->src ? *o->src : tui_sources_defaults();
    tui_work_calibrate(s->jobs, m, d, &s->src);
    tui_state_measure(s, "fp32", 0); /* the reference comes first in Compare */
    tui_state_retune(s, -1);
    if (o->script) tui_prompt_run_file(s, o->script);

    int in_fd = fileno(in), dirty = 1;
    double last_int = -1e9;
    while (!s->quit) {
        if (dirty) {
            frame(s, o);
            dirty = 0;
        }
        struct pollfd p[2] = {{in_fd, POLLIN, 0}, {pfd[0], POLLIN, 0}};
        int n = poll(p, 2, -1);
        if (n < 0 && errno != EINTR) break;
        if (got_quit) break;
        if (got_int) {
            /* Ctrl-C cancels the running job; a second one (within 3 s, or with
             * nothing running) quits */
            int presses = got_int;
            got_int = 0;
            double now = qs_io_clock();
            tui_jobs_status_get(s->jobs, &s->js);
            if (presses > 1 || now - last_int < 3 || (!s->js.busy && !s->js.queued)) {
                got_quit = 1;
                break;
            }
            last_int = now;
            tui_jobs_cancel_all(s->jobs);
            tui_state_log(s, QS_LOG_WARN, "cancelled (Ctrl-C again quits)");
            dirty = 1;
        }
        if (got_winch) {
            got_winch = 0;
            resize(out);
            dirty = 1;
        }
        if (n > 0 && p[1].revents) {
            char buf[256];
            while (read(pfd[0], buf, sizeof buf) > 0) {
            }
            tui_jobs_dispatch(s->jobs, s);
            dirty = 1;
        }
        if (n > 0 && (p[0].revents & (POLLHUP | POLLERR)) && !(p[0].revents & POLLIN)) break; /* the terminal went away */
        /* every key waiting, then one frame */
        for (int ch; (ch = getch()) != ERR;) {
            int r = key(s, ch);
            if (r & TUI_R_QUIT) {
                s->quit = 1;
                break;
            }
            /* a key that changed nothing still gets its frame: the answer to a
             * press is always a fresh screen */
            (void)r;
            dirty = 1;
        }
    }

    /* stop the jobs first: they may hold references into the state */
    tui_jobs_join(s->jobs);
    tui_jobs_dispatch(s->jobs, s);
    log_jobs = NULL;
    qs_log_set(NULL, NULL);
    tui_prompt_shutdown(s);
    endwin();
    term_active = 0;
    delscreen(scr);
    if (!o->no_signals) {
        sigaction(SIGWINCH, &old_winch, NULL);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        for (int i = 0; i < 5; i++) sigaction(fatal[i], &old_fatal[i], NULL);
    }
    wake_wr = -1;
    tui_jobs_free(s->jobs);
    s->jobs = NULL;
    /* the data last: the state pointed into them (d is the current one or a retired one) */
    int n_data = s->n_retired + 2;
    tui_data **datas = calloc((size_t)n_data, sizeof *datas);
    if (datas) {
        datas[0] = s->data;
        datas[1] = s->data_next;
        for (int i = 0; i < s->n_retired; i++) datas[2 + i] = s->retired[i];
    }
    tui_state_free(s);
    free(s);
    for (int i = 0; datas && i < n_data; i++)
        if (datas[i]) {
            tui_data_clear(datas[i]);
            free(datas[i]);
        }
    free(datas);
    close(pfd[0]);
    close(pfd[1]);
    return got_quit ? 130 : EXIT_OK;
}

/* ---- `qscope [MODEL] [--script FILE.lua] [--ui-bench] [--data FILE] [--ctx N] [CALIBRATION]` ---- */

typedef struct {
    const char *model, *script, *tokenizer;
    int bench;
    long ctx;
    tui_sources src;
} tui_args;

static int parse(int argc, char **argv, tui_args *a) {
    memset(a, 0, sizeof *a);
    a->src = tui_sources_defaults();
    const cli_opt opts[] = {CLI_STR("--script", &a->script),
                            CLI_FLAG("--ui-bench", &a->bench, 1),
                            CLI_STR("--data", &a->src.data),
                            CLI_INT("--ctx", &a->ctx, 2, 1 << 20),
                            CLI_STR("--tokenizer", &a->tokenizer),
                            {0}};
    return cli_parse("workbench", argc, argv, opts, &a->src.calib, &a->model, 1, 0, NULL) == EXIT_OK;
}

/* The workbench's command line, not a command: it starts with an option, or
 * its first word names a file (a path), or it is one word. A bare word and
 * more ("qscope frobnicate x") is an unknown command. */
int tui_main_accepts(int argc, char **argv) {
    if (argc < 1) return 1;
    const char *w = argv[0];
    return argc == 1 || w[0] == '-' || strchr(w, '/') || strchr(w, '.') || access(w, F_OK) == 0;
}

int tui_main(int argc, char **argv) {
    tui_args a;
    if (!parse(argc, argv, &a)) return EXIT_USAGE;
    if (a.script && access(a.script, R_OK) != 0) {
        cli_error("%s: cannot read the script: %s", a.script, strerror(errno));
        return EXIT_RUNTIME;
    }
    qs_model *m = cli_load_model(a.model, a.tokenizer);
    if (!m) return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    a.src.ctx = (int)a.ctx;
    if (a.ctx > m->cfg.max_pos) {
        cli_error("--ctx %ld is longer than %s allows (%d positions)", a.ctx, m->path, m->cfg.max_pos);
        goto done;
    }
    if (a.src.calib.ctx > m->cfg.max_pos) {
        cli_error("--calib-ctx %d is longer than %s allows (%d positions)", a.src.calib.ctx, m->path, m->cfg.max_pos);
        goto done;
    }
    if (a.src.calib.file && a.src.calib.ids_file) {
        cli_error("give one of --calib and --calib-ids");
        rc = EXIT_USAGE;
        goto done;
    }
    if (a.bench) {
        rc = tui_bench_run(m);
    } else {
        tui_opts o = {.script = a.script, .src = &a.src};
        rc = tui_app_run(m, &o);
    }
done:
    qs_model_free(m);
    return rc;
}
