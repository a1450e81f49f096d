/* cli.h — the command line: the shell subcommands (`qscope info|tokenize|ppl|
 * gen|stats|outliers|compare ...`), thin wrappers over core/ and lua/, and the
 * helpers they share. Each command returns the process exit status:
 * 0 success, 1 runtime error, 2 usage error, 130 interrupted (Ctrl-C).
 *
 *     int main(int argc, char **argv) {
 *         int rc = cli_main(argc, argv, tui_main_accepts);
 *         return rc == CLI_WORKBENCH ? tui_main(argc - 1, argv + 1) : rc;
 *     }
 */
#ifndef QS_CLI_H
#define QS_CLI_H

#include "stats/stats.h"
#include "model/model.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/* Run `qscope ARGS`: --help, --version, a shell command (or `COMMAND --help`),
 * or `run FILE.lua`. Installs the stderr logger. Returns the exit status, or
 * CLI_WORKBENCH when argv is the workbench's: no command, or arguments that
 * workbench_accepts(argc - 1, argv + 1) takes (NULL: none but a lone MODEL);
 * an unknown command or option is a usage error. */
#define CLI_WORKBENCH (-1)
int cli_main(int argc, char **argv, int (*workbench_accepts)(int argc, char **argv));

int cli_info(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_ppl(int argc, char **argv);
int cli_gen(int argc, char **argv);
int cli_stats(int argc, char **argv);
int cli_outliers(int argc, char **argv);
int cli_compare(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_export(int argc, char **argv);

/* The bundled model's directory: $QSCOPE_MODEL, ./models/opt-mini, or
 * models/opt-mini beside the executable, or the installed copy. */
const char *cli_default_model(void);

/* Load a model (NULL: the bundled one), printing the error on failure. */
qs_model *cli_load_model(const char *path, const char *tokenizer);

/* Print a JSON document on stdout (pretty: indented, else one line) and
 * free it. */
struct cJSON;
void cli_json_print(struct cJSON *o, int pretty);

/* Print "qscope: <msg>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse an integer / float option value; on failure print a usage error
 * naming the option and return 0. */
int cli_int(const char *opt, const char *val, long lo, long hi, long *out);
int cli_float(const char *opt, const char *val, double lo, double hi, double *out);

/* One command's options, for cli_parse: "--ctx N" or "--ctx=N".
 *     long ctx = 0; int json = 0; const char *data = NULL, *model = NULL;
 *     const cli_opt opts[] = {CLI_STR("--data", &data), CLI_INT("--ctx", &ctx, 2, 1 << 20),
 *                             CLI_FLAG("--json", &json, 1), {0}};
 *     if (cli_parse("ppl", argc, argv, opts, &calib, &model, 1, 0, NULL)) return EXIT_USAGE; */
typedef struct {
    const char *name;
    char kind;          /* 's' const char *, 'i' long, 'I' int, 'f' double in [lo, hi],
                         * 'b' flag (stores flag), 'l' list: the words that follow */
    void *dst;
    long lo, hi;        /* 'i', 'I' */
    double flo, fhi;    /* 'f' */
    int flag;           /* 'b': the value stored; 'l': capacity */
    int *count;         /* 'l': words stored */
} cli_opt;
#define CLI_STR(n, p) {.name = (n), .kind = 's', .dst = (p)}
#define CLI_INT(n, p, l, h) {.name = (n), .kind = 'i', .dst = (p), .lo = (l), .hi = (h)}
#define CLI_FLOAT(n, p, l, h) {.name = (n), .kind = 'f', .dst = (p), .flo = (l), .fhi = (h)}
#define CLI_FLAG(n, p, v) {.name = (n), .kind = 'b', .dst = (p), .flag = (v)}
#define CLI_LIST(n, p, cnt, cap) {.name = (n), .kind = 'l', .dst = (p), .count = (cnt), .flag = (cap)}

/* Parse the arguments of command cmd: the options in opts (ended by a zero
 * entry), the calibration options into *calib when not NULL, and up to npos
 * words into pos[0..npos-1] in order (a lone "-" is a word when dash_word).
 * An unknown option, a bad value or an extra word (the message ends with
 * extra, e.g. " (quote the prompt)") prints why and returns EXIT_USAGE. */
int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, qs_calib_opts *calib, const char **pos,
              int npos, int dash_word, const char *extra);

/* Calibration options shared by stats, outliers, compare and ppl --variant:
 * --calib FILE, --calib-ids FILE, --calib-offsets FILE, --calib-windows N,
 * --calib-ctx N, over the core's defaults (qs_calib_opts_defaults: calib.txt
 * beside the model, 32 windows of min(512, the model's positions)). */
qs_calib_opts cli_calib_init(void);
/* Build the calibration set, printing the error; returns an exit status. */
int cli_calib_load(const qs_model *m, const qs_calib_opts *o, qs_calib *cal);
/* Whether spec needs calibration rows (1, 0); a malformed spec prints why and
 * gives -1 (a usage error). */
int cli_spec_needs_calib(const char *spec);
/* Build variant spec of m, reading the calibration rows into *cal first when
 * need_cal; prints the error and returns EXIT_RUNTIME on failure. */
struct qs_variant;
int cli_variant_build(const qs_model *m, const char *spec, int need_cal, const qs_calib_opts *co, qs_calib *cal,
                      struct qs_variant **var);

/* Token ids (default specials when `special`) of the text in path ("-":
 * stdin), printing why on failure (no tokenizer, unreadable or empty text).
 * Returns an exit status; *ids is the caller's. */
int cli_text_ids(const qs_model *m, const char *path, int special, int32_t **ids, size_t *n);

/* Progress bar on stderr when it is a terminal (a qs_progress_fn). ud is the
 * label ("ppl"). Returns non-zero (cancel) after Ctrl-C. */
int cli_progress(void *ud, long done, long total);

/* Ctrl-C (cli_signal.c): install the SIGINT handler; whether it fired. A
 * command's long loop stops through cli_progress; cli_main then prints
 * "qscope: interrupted" and returns EXIT_INTERRUPTED, and cli_error prints
 * nothing once it fired (the cancelled call's error is that line). */
void cli_interrupt_install(void);
int cli_interrupted(void);

/* " (K)", the 8-bit prefill kernel, to follow "prefill activations q8"; "" when they are f32 */
const char *cli_prefill_kernel(void);

#endif
