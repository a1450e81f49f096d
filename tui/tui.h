/* tui.h — the workbench: the full-screen program `qscope [MODEL]` opens.
 *
 * Four parts, kept apart as htop keeps them:
 *   state  (tui_state, state.c)  everything the screen shows; changed only on
 *                                the UI thread, by key actions and by the
 *                                results jobs hand back;
 *   jobs   (job.c, work.c)       background threads run calibration,
 *                                clustering, variants, perplexity, generation
 *                                and Lua; results come back as events the UI
 *                                thread applies to the state;
 *   keys   (keys.c)              a table maps each key to an action; an action
 *                                changes the state, may submit a job, and
 *                                returns what to redraw;
 *   drawing (panel.c, view.c, canvas.c, draw.c)  draw the whole frame from the
 *                                state and never compute anything.
 * app.c owns the terminal and the event loop; prompt.c the readline command
 * line and the Lua state; bench.c the key-to-redraw benchmark.
 *
 *     tui_opts o = {.script = "sweep.lua"};
 *     return tui_app_run(model, &o);   // returns the exit status
 */
#ifndef TUI_TUI_H
#define TUI_TUI_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "stats/stats.h"
#include "model/model.h"
#include "methods/methods.h"

enum { TUI_MIN_W = 80, TUI_MIN_H = 24 };

/* ---- views, knobs ---- */

typedef enum {
    TUI_V_CHANNELS = 0,
    TUI_V_OUTLIERS,
    TUI_V_SPECTRUM,
    TUI_V_COMPARE,
    TUI_V_GENERATE,
    TUI_V_LOG,
    TUI_V_PLOT, /* what qs.plot.* drew (key 7) */
    TUI_V_COUNT
} tui_view_id;

typedef enum {
    TUI_K_METHOD = 0,
    TUI_K_G,
    TUI_K_TAU,
    TUI_K_RATIO,
    TUI_K_WBITS,
    TUI_K_ABITS,
    TUI_K_KVBITS,
    TUI_K_COUNT
} tui_knob;

/* The parameter panel: what the next variant is built from. */
typedef struct {
    int method;  /* QS_M_RTN, QS_M_INT8, QS_M_RPTQ or QS_M_SLICE */
    int g;       /* clusters (RPTQ; also colours the Channels view) */
    float tau;   /* outlier magnitude (LLM.int8() threshold, Outliers view); 0: no decomposition, no outliers */
    float ratio; /* SliceGPT: fraction of the width deleted */
    int w_bits, a_bits, kv_bits; /* 16: not quantized */
} tui_knobs;

/* The spec string the knobs describe ("rtn:w=4", "rptq:w=4,a=4,kv=4,g=8"). */
void tui_knobs_spec(const tui_knobs *k, char *buf, size_t cap);
/* Step knob `which` by dir (+1/-1); returns 1 when the value changed. */
int tui_knobs_step(tui_knobs *k, int which, int dir);
/* "rtn", "8", "6.0", "0.25", "4", "16" */
void tui_knobs_value(const tui_knobs *k, int which, char *buf, size_t cap);
const char *tui_knobs_name(int which, int utf8);
/* Whether the current method uses knob `which` (the others are dimmed). */
int tui_knobs_used(const tui_knobs *k, int which);

/* ---- jobs ---- */

typedef struct tui_state tui_state;
typedef struct tui_jobs tui_jobs;
typedef struct tui_job tui_job;

/* Kinds: a new job of a kind replaces a queued one of the same kind and
 * cancels a running one, so holding `+` builds only the last variant. */
typedef enum {
    TUI_JOB_CALIB = 1, /* calibration statistics, outliers, spectra, eval ids */
    TUI_JOB_BASE,      /* the fp32 reference perplexity */
    TUI_JOB_CLUSTERS,  /* k-means of one layer x site */
    TUI_JOB_RESTAT,    /* statistics for another tau */
    TUI_JOB_VARIANT,   /* build the knobs' variant + a quick ppl check */
    TUI_JOB_FULLPPL,   /* ppl over the whole evaluation text */
    TUI_JOB_FULLBASE,  /* fp32 over the whole evaluation text: the full rows' reference */
    TUI_JOB_GEN,       /* two variants generating side by side */
    TUI_JOB_LUA,       /* a Lua command or script (ordered) */
    TUI_JOB_SPECTRUM,  /* SliceGPT's PCA at the knobs' ratio (the Spectrum view) */
    TUI_JOB_EXPORT,    /* a Compare row's variant written out (a .gguf file or a directory) */
} tui_job_kind;

struct tui_job {
    int kind;
    char label[96];                          /* "ppl rtn:w=4", shown with the progress bar */
    qs_status (*run)(tui_job *j);            /* worker thread; the result goes to st */
    void (*done)(tui_state *s, tui_job *j);  /* UI thread, also for jobs cancelled before they ran */
    void (*free_fn)(tui_job *j);             /* frees in/out (may be NULL) */
    void *in, *out;
    int ordered;                             /* never replaces or cancels a job of its kind (Lua) */
    int urgent;                              /* small and awaited by a view: runs on the quick lane */
    void (*on_cancel)(tui_job *j);           /* called (any thread, quickly) when a running job is cancelled */
    qs_status st;                            /* QS_ECANCEL when cancelled */
    char err[512];
    atomic_int cancel;
    tui_jobs *q;
    tui_job *next;
};

/* Start the workers (a main lane for long jobs, a quick lane for urgent
 * ones). wake_fd: a pipe's write end, poked (one byte) whenever an event is
 * waiting or progress moved. Returns NULL on failure. */
tui_jobs *tui_jobs_new(int wake_fd);
/* Cancel everything and join the workers; events stay queued for a last
 * tui_jobs_dispatch. */
void tui_jobs_join(tui_jobs *q);
/* Join if still running, then free; events still queued are discarded. */
void tui_jobs_free(tui_jobs *q);
/* Queue a job (ownership passes to the runner). */
void tui_jobs_submit(tui_jobs *q, tui_job *j);
/* Esc: drop the queued jobs and ask the running one to stop. */
void tui_jobs_cancel_all(tui_jobs *q);
/* A qs_progress_fn for job bodies; ud is the job. Returns non-zero once the
 * job is cancelled. */
int tui_jobs_progress(void *ud, long done, long total);
void tui_jobs_set_label(tui_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hand fn(state, data) to the UI thread (any thread may call it); fn owns data. */
typedef void (*tui_event_fn)(tui_state *s, void *data);
void tui_jobs_post(tui_jobs *q, tui_event_fn fn, void *data);
/* Post a line (len bytes, a trailing newline dropped) for the Log from any
 * thread. level as tui_state_log. */
void tui_jobs_post_log(tui_jobs *q, int level, const char *text, size_t len);
/* UI thread: apply every waiting event and finished job; returns how many. */
int tui_jobs_dispatch(tui_jobs *q, tui_state *s);

typedef struct {
    int busy;        /* a job is running */
    int queued;      /* jobs waiting */
    char label[96];
    long done, total;
    long finished;   /* jobs completed since start */
} tui_jobs_status;
void tui_jobs_status_get(tui_jobs *q, tui_jobs_status *out);

/* ---- what the jobs compute (work.c) ---- */

/* Where the workbench's data come from: what the command line gave, else
 * calib.txt and eval.txt beside the model. */
typedef struct {
    qs_calib_opts calib;   /* --calib FILE | --calib-ids FILE, --calib-windows, --calib-ctx,
                            * --calib-offsets (file and ids_file NULL: calib.txt beside the model) */
    const char *data;      /* --data FILE: the evaluation text (NULL: eval.txt beside the model) */
    int ctx;               /* --ctx N: the perplexity window (0: min(512, the model's positions)) */
} tui_sources;
/* The defaults: calib.txt and eval.txt beside the model, the usual windows. */
tui_sources tui_sources_defaults(void);

/* The measured data of the model, filled once by the calibration job on the
 * worker and read-only afterwards (the UI reads it after the job's event). */
typedef struct {
    qs_calib cal;
    int have_cal;
    qs_stats *stats;      /* base statistics (tau 6, every site, X^T X of the residual stream) */
    qs_outlier *outl;     /* LLM.int8() outlier dimensions at tau 6 */
    int n_outl;
    int32_t *eval_ids;    /* the evaluation text (--data, or eval.txt beside the model), tokenized once */
    long n_eval;
    int ctx;              /* the perplexity window */
    int missing;          /* calib.txt or eval.txt was looked for beside the model and is not there */
    int have_cov;         /* the residual stream's X^T X was gathered (SliceGPT's PCA can run) */
    char calib_path[1100], eval_path[1100];
    char note[256];       /* why the statistics are missing */
    char eval_note[256];  /* why perplexity cannot be measured */
} tui_data;

/* Free what d holds and zero it (d itself stays). */
void tui_data_clear(tui_data *d);

/* A built variant shared by the UI and jobs (generation borrows it). */
typedef struct {
    qs_variant *v;
    atomic_int refs;
} tui_var;
tui_var *tui_var_ref(tui_var *v);
void tui_var_unref(tui_var *v);

/* Fill d from the sources src (copied; the strings it points to must outlive the job). */
void tui_work_calibrate(tui_jobs *q, const qs_model *m, tui_data *d, const tui_sources *src);
void tui_work_clusters(tui_jobs *q, tui_data *d, int layer, int site, int g);
void tui_work_restat(tui_jobs *q, const qs_model *m, tui_data *d, float tau);
/* full: every window of eval.txt instead of the quick check */
void tui_work_variant(tui_jobs *q, const qs_model *m, tui_data *d, const char *spec, int full);
/* Build spec and write it to path (qs_export: a .gguf file or a directory);
 * force: replace what is there. The Log says where, or why not. */
void tui_work_export(tui_jobs *q, const qs_model *m, tui_data *d, const char *spec, const char *path, int force);
/* SliceGPT's PCA for the Spectrum view: builds slice:ratio=<ratio> and, when
 * done, replaces s->spectrum. */
void tui_work_spectrum(tui_jobs *q, const qs_model *m, tui_data *d, float ratio);
/* Generation settings of the Generate view. */
typedef struct {
    int n_tokens;   /* at most this many tokens a side */
    float temp;     /* 0: greedy */
    float top_p;    /* 1: off */
    int seed;       /* the same on both sides, so samples compare */
} tui_gen_opts;
/* Two sides generate the prompt: spec[i] names side i's variant; v[i] is it
 * when already built (borrowed with a reference), else the job builds it
 * (calibrated from d when its method needs it). */
void tui_work_generate(tui_jobs *q, const qs_model *m, tui_data *d, const char *prompt, const char *const spec[2],
                       tui_var *const v[2], const tui_gen_opts *o);

/* ---- state ---- */

/* The Spectrum view's numbers: the eigenvalues SliceGPT computes, read from
 * the slice variant built at `ratio` (qs_variant_eigenvalues), with the
 * fraction of each layer's variance the kept width holds. */
typedef struct {
    tui_var *var;       /* slice:ratio=<ratio>, or NULL before the first one */
    char spec[48];
    float ratio;
    int dim, kept;      /* eigenvalues a layer; width kept */
    double *frac[2];    /* (n_layers): variance kept; [0] block input, [1] MLP input */
    char err[256];      /* why the last build failed */
} tui_spectrum;
/* Release what a spectrum holds and zero it. */
void tui_spectrum_free(tui_spectrum *sp);

enum { TUI_MAX_ROWS = 48, TUI_LOG_LINES = 2000, TUI_LOG_TEXT = 1024 };
enum { TUI_QUICK_WINDOWS = 4 }; /* a Compare row's quick perplexity: the first windows of the text */

typedef struct {
    char spec[160];
    char desc[256];
    char err[256];
    int status;       /* 0 running, 1 done, -1 failed */
    int pending;      /* jobs submitted for this row and not yet reported */
    int full;         /* ppl over all of eval.txt */
    double ppl, tok_s;
    long long wbytes, kvbytes, params;
    int windows;
} tui_row;

typedef struct {
    int level;        /* QS_LOG_* ; 3: error; 4: Lua output */
    char text[TUI_LOG_TEXT];
} tui_logline;

typedef struct {
    char spec[160];
    char *text;       /* streamed so far */
    size_t len, cap;
    int tokens;
    double seconds;
    int running;
    int ctx_full;     /* stopped at the context length (ctx positions) before n tokens */
    int ctx;
    char err[200];
} tui_gen_side;

/* A plot handed over by qs.plot.* (prompt.c copies it from the Lua module's
 * description; the Plot view draws it). Kinds follow qsl_plot_kind. */
enum { TUI_PLOT_SCATTER = 1, TUI_PLOT_LINE = 2, TUI_PLOT_BARS = 3, TUI_PLOT_HEATMAP = 4 };
enum { TUI_PLOT_SERIES = 8, TUI_PLOT_GROUPS = 16 };
typedef struct {
    int kind;         /* 0: nothing plotted yet */
    char title[160], xlabel[64], ylabel[64];
    int n_series;
    struct {
        char name[64];
        int n;
        double *x, *y; /* (n) */
        int *group;    /* (n) or NULL */
    } s[TUI_PLOT_SERIES];
    int n_groups;
    char group_names[TUI_PLOT_GROUPS][32];
    char (*labels)[24]; /* bars: (s[0].n) or NULL */
    int rows, cols;
    double *z;          /* heatmap (rows, cols) */
    char (*row_labels)[24];
    double x0, y0;
    int logy;
    double xmin, xmax, ymin, ymax; /* NaN: from the data */
    double vline, hline;           /* NaN: none */
} tui_plot;
/* Free what a plot owns and zero it. */
void tui_plot_clear(tui_plot *p);

struct tui_state {
    const qs_model *m;
    char model_name[160];
    tui_data *data;     /* published by the calibration job */
    tui_data *data_next;/* a calibration on other files (o, O, qscope.ui) until its job reports */
    tui_data **retired; /* data replaced while jobs may still read them: freed at exit */
    int n_retired;
    char open_path[2][1100]; /* the files o (calibration) and O (evaluation) opened */
    tui_sources src;    /* where the data come from (the command line) */
    int data_ready;     /* its event arrived */
    qs_stats *tstats;   /* statistics at tstats_tau (the base ones at 6); owned when != data->stats */
    float tstats_tau;
    qs_outlier *outl;   /* outlier dimensions at tstats_tau (owned when != data->outl) */
    int n_outl;

    /* Channels: k-means labels of (cl_layer, cl_site) for cl_g */
    int *labels;
    int n_labels, n_clusters, cl_layer, cl_site, cl_g;
    int cl_req_layer, cl_req_site, cl_req_g; /* the last clustering asked for */

    tui_knobs knobs;
    char spec[160];     /* the knobs' spec */
    tui_var *cur;       /* the last variant built from the knobs, or NULL */
    tui_spectrum spectrum; /* SliceGPT's PCA at spectrum_req (Spectrum view) */
    float spectrum_req; /* the ratio last asked for; 0: none */
    tui_row rows[TUI_MAX_ROWS];
    int n_rows;

    char prompt_text[512];  /* Generate */
    tui_gen_side gen[2];
    tui_gen_opts gen_opts;
    char gen_pick[2][160];  /* the sides' variants; "": fp32 (side A), the knobs' variant (side B) */

    tui_logline *log;   /* ring of TUI_LOG_LINES */
    long log_n;         /* lines ever appended */
    char last_msg[TUI_LOG_TEXT];
    int last_level;

    tui_plot plot;

    /* what is on screen */
    int view, focus;    /* focus 0: main pane, 1: parameter panel */
    int knob;           /* selected knob */
    int help;           /* the ? overlay is open */
    int help_top;
    int ch_layer, ch_site, ch_cursor, ch_user; /* ch_user: moved by the user */
    int ol_row, ol_col, ol_freq;
    int ol_site;        /* Outliers: -1 the linear layers' inputs (attn_in, mlp_in), else one qs_site */
    int sp_layer, sp_which;
    int cmp_sel;
    long log_back;      /* lines scrolled back from the end */
    int quit;

    /* the command line (prompt.c) */
    int prompting;      /* 0 off, 1 Lua, 2 generation prompt, 3 find (/), 4 open calibration, 5 open evaluation text */
    char line[1024], line_prompt[32];
    int line_point;
    char hint[4096];    /* completions, two spaces apart */

    tui_jobs_status js; /* snapshot for the status line */
    tui_jobs *jobs;

    int utf8, colors;   /* terminal: UTF-8 locale; 0 (none/NO_COLOR), 8 or 256 colours */
    int rows_n, cols_n; /* terminal size at the last frame */
    long frames, keys;  /* counters for the bench */
};

/* Copy src into dst (cap bytes), truncated and always NUL-terminated. */
void tui_copy(char *dst, size_t cap, const char *src);

void tui_state_init(tui_state *s, const qs_model *m);
void tui_state_free(tui_state *s);
/* Append a line to the Log (UI thread). level: QS_LOG_*, 3 error, 4 Lua output. */
void tui_state_log(tui_state *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The log line i lines back from the newest (0 = newest), or NULL. */
const tui_logline *tui_state_log_line(const tui_state *s, long back);
/* The row for spec (created running when absent; NULL when the table is full). */
tui_row *tui_state_row(tui_state *s, const char *spec, int full);
/* Measure spec (a row, then the job that fills it). A row that has numbers
 * keeps them while it is measured again, and a cancelled job removes only a
 * row that never finished and that no other job is filling: a knob passing
 * over a value does not lose that value's row. */
void tui_state_measure(tui_state *s, const char *spec, int full);
/* A job for spec reported (cancelled when cancelled): the row it filled, or
 * NULL when the row went or was never made. */
tui_row *tui_state_row_reported(tui_state *s, const char *spec, int full, int cancelled);
/* The row of fp32, or NULL. */
const tui_row *tui_state_base_row(const tui_state *s);
/* The fp32 row measured the same way as a row with this `full` flag: a
 * full-text row's change is taken against fp32 over the full text too. */
const tui_row *tui_state_base_row_full(const tui_state *s, int full);
/* Calibrate and evaluate on another file (which 0: the calibration text,
 * 1: the evaluation text), as --calib / --data would: the running jobs are
 * cancelled, and when the new data arrive they replace the old (the rows of
 * Compare are measured again). 0, or -1 when path cannot be read (said in
 * the Log). */
int tui_state_open(tui_state *s, int which, const char *path);
/* The calibration job's data arrived: make d the workbench's data (UI thread). */
void tui_state_adopt(tui_state *s, tui_data *d);
/* Keep d until exit (jobs may still read it); NULL is ignored. */
void tui_state_retire(tui_state *s, tui_data *d);
/* Submit the jobs a knob change needs (which: the knob, -1: everything). */
void tui_state_retune(tui_state *s, int which);
/* Submit the clustering of the Channels view's layer x site when stale. */
void tui_state_want_clusters(tui_state *s);
/* Submit SliceGPT's PCA at the knobs' ratio when it is stale and the Spectrum view shows. */
void tui_state_want_spectrum(tui_state *s);
/* Start generating prompt_text with the two sides' variants. */
void tui_state_generate(tui_state *s);
/* The spec side (0 A, 1 B) generates with: its pick, else fp32 / the knobs' spec. */
const char *tui_state_gen_spec(const tui_state *s, int side);
/* Step side's pick through fp32, the measured rows of Compare and (side B)
 * the knobs' variant; dir +1 / -1. */
void tui_state_gen_pick(tui_state *s, int side, int dir);
/* The Outliers view's rows: with ol_site -1, attn_in and mlp_in of every
 * layer in turn; else ol_site's rows (one for head_in and embed). */
int tui_state_ol_rows(const tui_state *s);
/* Row r of the Outliers view: its layer and site. */
void tui_state_ol_row(const tui_state *s, int r, int *layer, int *site);
/* What the Outliers view steps through with s/S: -1 (the linear layers'
 * inputs), then every site. */
extern const int tui_outlier_sites[];
extern const int tui_n_outlier_sites;
/* The sites the Channels view steps through. */
extern const int tui_channel_sites[];
extern const int tui_n_channel_sites;

/* ---- drawing (draw.c, canvas.c, panel.c, view.c) ---- */

typedef enum {
    TUI_C_NORMAL = 0,
    TUI_C_STATUS, TUI_C_TAB, TUI_C_TAB_ON, TUI_C_HELPLINE, TUI_C_TITLE, TUI_C_DIM, TUI_C_ERR,
    TUI_C_WARN, TUI_C_OK, TUI_C_ACCENT, TUI_C_AXIS, TUI_C_CURSOR, TUI_C_OUTLIER, TUI_C_BAR,
    TUI_C_BAR2, TUI_C_SELECT, TUI_C_LUA,
    TUI_C_CLUSTER0, /* TUI_N_CLUSTER_COLORS of them */
    TUI_C_HEAT0 = TUI_C_CLUSTER0 + 16, /* TUI_N_HEAT of them */
    TUI_C_COUNT = TUI_C_HEAT0 + 10
} tui_role;
enum { TUI_N_HEAT = 10 };

/* Decide the colour depth (NO_COLOR, has_colors, COLORS) and make the pairs. */
void tui_draw_init(tui_state *s);
int tui_draw_n_cluster_colors(const tui_state *s);
/* The attribute of a role (colour pair, or bold/reverse without colours). */
int tui_attr(const tui_state *s, int role);
/* Text at (y, x) clipped to w columns; UTF-8 aware (non-ASCII shown as '?'
 * when the locale is not UTF-8). Returns the columns used. */
int tui_text(const tui_state *s, int y, int x, int w, int role, const char *str);
int tui_textf(const tui_state *s, int y, int x, int w, int role, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Columns str takes. */
int tui_text_width(const tui_state *s, const char *str);
/* A glyph by name with its ASCII fallback: "hline", "vline", "block", "shade", "dot", ... */
const char *tui_glyph(const tui_state *s, const char *name);
/* A horizontal bar of frac (0..1) over w cells (eighth blocks in UTF-8). */
void tui_bar(const tui_state *s, int y, int x, int w, double frac, int role);
/* A box outline with a title. */
void tui_box(const tui_state *s, int y, int x, int h, int w, const char *title, int role);
/* Fill a rectangle with spaces in role's attribute. */
void tui_fill(const tui_state *s, int y, int x, int h, int w, int role);
/* Nice tick values in [lo, hi]: up to max_ticks, returns how many. */
int tui_ticks(double lo, double hi, int max_ticks, double *ticks);
/* Format a tick label ("0.5", "-12", "1e-3"). */
void tui_fmt_num(double v, char *buf, size_t cap);
/* Wrap str into lines of width w; calls line(ud, text, len) per line (line
 * may be NULL: only count); returns the count. */
int tui_wrap(const char *str, int w, void (*line)(void *ud, const char *t, int len), void *ud);

/* A plotting surface of w x h cells: braille (2x4 dots per cell) in UTF-8,
 * one glyph per cell otherwise. */
enum { TUI_CANVAS_MAX_W = 400, TUI_CANVAS_MAX_H = 200 };
typedef struct {
    int w, h, braille;
    int dw, dh;       /* dots: w*2 x h*4 (braille) or w x h */
    uint8_t bits[TUI_CANVAS_MAX_H][TUI_CANVAS_MAX_W];
    uint8_t role[TUI_CANVAS_MAX_H][TUI_CANVAS_MAX_W];
    uint8_t prio[TUI_CANVAS_MAX_H][TUI_CANVAS_MAX_W];
    char glyph[TUI_CANVAS_MAX_H][TUI_CANVAS_MAX_W];
    double x0, x1, y0, y1; /* data range mapped to the dots */
    int logy;
} tui_canvas;
void tui_canvas_init(tui_canvas *c, int w, int h, int braille, double x0, double x1, double y0, double y1, int logy);
/* A point in data coordinates; ascii_glyph is used without braille. prio:
 * a cell keeps the role of its highest-priority point. */
void tui_canvas_point(tui_canvas *c, double x, double y, int role, int prio, char ascii_glyph);
void tui_canvas_dot(tui_canvas *c, int dx, int dy, int role, int prio, char ascii_glyph);
void tui_canvas_line(tui_canvas *c, double x0, double y0, double x1, double y1, int role, int prio, char ascii_glyph);
/* Dots of a data point, for lines drawn in dot space; -1 when outside. */
int tui_canvas_map_x(const tui_canvas *c, double x);
int tui_canvas_map_y(const tui_canvas *c, double y);
void tui_canvas_render(const tui_state *s, const tui_canvas *c, int y, int x);
/* Axes around a canvas placed at (y, x): tick labels on the left (lw columns)
 * and below. */
void tui_canvas_axes(const tui_state *s, const tui_canvas *c, int y, int x, int lw, const char *xlabel,
                     const char *ylabel);

/* The frame (panel.c): status line, tabs, parameter panel, message/prompt
 * line, help line and the help overlay around the current view. */
void tui_panel_frame(tui_state *s);
/* The layout step before a frame: the screen's size into the state, and the
 * scroll offsets (Log, help) brought within what the panes show, so that
 * drawing only reads the state. */
void tui_panel_fit(tui_state *s);
/* The views (view.c): draw view v into the rectangle. */
void tui_view_draw(tui_state *s, int v, int y, int x, int h, int w);
const char *tui_view_title(int v);
/* The channel of the Channels scatter nearest the cell (y, x) as last drawn
 * (within two cells), or -1. */
int tui_view_channel_at(const tui_state *s, int y, int x);
/* The Log view's lines: an entry wrapped at the pane's width w takes this
 * many screen rows (the Log wraps rather than cuts long lines). */
int tui_view_log_rows(const char *text, int w);
/* The teaching text of a view for the ? overlay. */
const char *tui_view_explain(int v);

/* ---- keys (keys.c) ---- */

enum { TUI_R_NONE = 0, TUI_R_DRAW = 1, TUI_R_QUIT = 2 };
/* Handle one key (a curses key code); returns TUI_R_*. */
int tui_keys_handle(tui_state *s, int key);
/* A mouse event at (y, x) with curses' button state; returns TUI_R_*. */
int tui_keys_mouse(tui_state *s, int y, int x, unsigned long bstate);
/* What the find line (/) typed: a channel, a layer or (Compare) a variant. */
void tui_keys_find(tui_state *s, const char *text);
/* The hints for the help line of the current view and focus. */
void tui_keys_hints(const tui_state *s, char *buf, size_t cap, int width);
/* Every binding that applies to view v, for the overlay: calls fn per line. */
void tui_keys_list(const tui_state *s, int v, void (*fn)(void *ud, const char *keys, const char *what), void *ud);

/* ---- export (export.c) ---- */

/* Write len bytes to path through a temporary file in the same directory
 * and a rename over path (an existing file is replaced only by the rename).
 * Returns 0, or -1 with a message naming path in err. */
int tui_export_write(const char *path, const char *data, size_t len, char *err, size_t cap);
/* The Compare table into qscope-compare.md (the columns of `qscope compare
 * --markdown`) and qscope-compare.json (the fields of `qscope compare
 * --json`) in the current directory; msg says where (or why not). 0 or -1. */
int tui_export_compare(const tui_state *s, char *msg, size_t cap);
/* The Log, oldest line first, into qscope-log.txt in the current directory. */
int tui_export_log(const tui_state *s, char *msg, size_t cap);

/* ---- the command line and Lua (prompt.c) ---- */

/* Set up readline (callback mode, history file) and the Lua state. */
void tui_prompt_init(tui_state *s);
void tui_prompt_shutdown(tui_state *s);
/* Open the line: mode 1 Lua (":"), 2 the generation prompt, 3 find ("/"),
 * 4 and 5 a calibration / evaluation file ("o", "O": Tab completes paths). */
void tui_prompt_open(tui_state *s, int mode);
/* Feed one key while the line is open; returns TUI_R_*. */
int tui_prompt_key(tui_state *s, int key, int alt);
/* Run a Lua file (--script); errors go to the Log. */
void tui_prompt_run_file(tui_state *s, const char *path);

/* ---- the program (app.c, bench.c) ---- */

typedef struct {
    const char *script;     /* --script FILE.lua, run once the screen is up */
    const tui_sources *src; /* --calib, --data, ... (NULL: the files beside the model) */
    FILE *in, *out;         /* terminal streams (NULL: stdin/stdout) */
    const char *term;       /* terminal type for newterm (NULL: $TERM) */
    /* bench hooks: called on the UI thread after every finished frame */
    void (*on_frame)(void *ud, tui_state *s);
    void *ud;
    int no_signals;         /* leave signal handlers alone (the bench) */
} tui_opts;

int tui_app_run(const qs_model *m, const tui_opts *o);
/* `qscope [MODEL] [--script FILE.lua] [--ui-bench]`: 1 when argv (after the
 * program name) is such a command line. */
int tui_main_accepts(int argc, char **argv);
int tui_main(int argc, char **argv);
/* --ui-bench: synthetic keys through a pseudo-terminal; prints the timings. */
int tui_bench_run(const qs_model *m);

#endif
