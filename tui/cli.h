/* cli.h — the shell subcommands (`qscope info|tokenize|ppl|gen ...`) and the
 * helpers they share. Each command returns the process exit status:
 * 0 success, 1 runtime error, 2 usage error. */
#ifndef TUI_CLI_H
#define TUI_CLI_H

#include "../core/model.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

int cli_info(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_ppl(int argc, char **argv);
int cli_gen(int argc, char **argv);

/* The bundled model's directory: $QSCOPE_MODEL, ./models/opt-mini, or
 * models/opt-mini beside the executable, or the installed copy. */
const char *cli_default_model(void);

/* Load a model (NULL: the bundled one), printing the error on failure. */
qs_model *cli_load_model(const char *path, const char *tokenizer);

/* Print "qscope: <msg>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parse an integer / float option value; on failure print a usage error
 * naming the option and return 0. */
int cli_int(const char *opt, const char *val, long lo, long hi, long *out);
int cli_float(const char *opt, const char *val, double lo, double hi, double *out);

/* Progress bar on stderr when it is a terminal (a qs_progress_fn). ud is the
 * label ("ppl"). */
int cli_progress(void *ud, long done, long total);

/* Open the minimal full-screen view (tui/view.c). */
int tui_view_run(qs_model *m);

#endif
