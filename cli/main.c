/* The command line: `qscope <command> ...` runs a shell command; anything
 * else is the workbench's (tui/), which main() opens when cli_main says so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "methods/methods.h"
#include "../lua/qsl.h"
#include "cli.h"

#ifndef QS_VERSION
#define QS_VERSION "0.0.0"
#endif

static const char usage[] =
    "usage: qscope [MODEL] [--script FILE.lua]  open the workbench (default: the bundled opt-mini)\n"
    "              [--data FILE] [--ctx N] [CALIBRATION]   (default: eval.txt, calib.txt beside MODEL)\n"
    "       qscope [MODEL] --ui-bench           time key presses to redraws (a pseudo-terminal)\n"
    "       qscope info [MODEL] [--json]        configuration, sizes and layers\n"
    "       qscope tokenize MODEL FILE [--out IDS.i32] [--no-special]\n"
    "       qscope ppl [MODEL] --data FILE [--variant SPEC] [--ctx N] [--stride N] [--max-windows N]\n"
    "                                           [--llama-cpp] [--json] [CALIBRATION]\n"
    "       qscope compare [MODEL] --data FILE --variants SPEC... [--ctx N] [--max-windows N]\n"
    "                                           [--json|--markdown] [CALIBRATION]\n"
    "       qscope stats [MODEL] [--site S] [--layer L] [--tau T] [--csv|--json] [CALIBRATION]\n"
    "       qscope outliers [MODEL] [--tau T] [--layer-frac F] [--pos-frac F] [--json] [CALIBRATION]\n"
    "       qscope gen MODEL [PROMPT] [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
    "                                           [--variant SPEC] [--no-stop] [--json] [CALIBRATION]\n"
    "       qscope bench [MODEL] [--variant SPEC] [-p N] [-n N] [-r N] [--json]\n"
    "                                           prefill and decode tokens/s, peak memory (llama-bench's way),\n"
    "                                           decode's GB/s against memory's, measured in the same run\n"
    "       qscope export [MODEL] --out PATH [--variant SPEC] [--force] [--weights-only]\n"
    "                                           [--dtype f32|f16|bf16] [--json] [CALIBRATION]\n"
    "                                           write it as a .gguf file llama.cpp runs, or a directory\n"
    "       qscope run FILE.lua [ARGS...]       run a Lua script headless (see qscope-lua(7))\n"
    "       qscope --help | --version | COMMAND --help\n"
    "\n"
    "MODEL is a Hugging Face directory (config.json + model.safetensors), a .gguf file,\n"
    "or a llama2.c .bin checkpoint (with --tokenizer FILE, or tokenizer.bin beside it).\n"
    "SPEC names a variant: fp32, rtn:w=4,group=128,a=8,act=token (wq=gptq: GPTQ weights),\n"
    "int8:threshold=6, rptq:w=4,a=4,g=32 (or rptq:W4A4KV ...; ref=1: the official code's\n"
    "conventions), slice:ratio=0.25; chain with '+'.\n"
    "CALIBRATION: --calib FILE (default calib.txt beside the model) | --calib-ids FILE,\n"
    "--calib-windows N (32), --calib-ctx N (512), --calib-offsets FILE.\n"
    "Every command takes --threads N: the threads of every kernel (default: all cores),\n"
    "--max-memory MB: the memory a variant being built may take (default: MemAvailable),\n"
    "--decode-act q8|f32: activations of decode on weights in ggml's block formats, rounded to\n"
    "8-bit blocks as llama.cpp does (q8, the default) or exact (f32),\n"
    "--prefill-act q8|f32: the same for prefill on Q8_0/Q4_0/Q5_0/IQ4_NL and Q4_K/Q5_K/Q6_K\n"
    "(f32, the default: exact; q8: an int8 GEMM, as llama.cpp multiplies them), and\n"
    "-v: say what loading, calibration and building a variant will hold before they start.\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error, 130 interrupted (Ctrl-C).\n"
    "See qscope(1).\n";

/* The shell commands; `run` is Lua's (qsl_run): `qscope run --help` is
 * answered here, `qscope run FILE --help` is the script's. */
static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"info", cli_info},   {"tokenize", cli_tokenize}, {"ppl", cli_ppl},         {"gen", cli_gen},
    {"stats", cli_stats}, {"outliers", cli_outliers}, {"compare", cli_compare}, {"bench", cli_bench},
    {"export", cli_export},
};

static int verbose; /* -v: what loading, calibration and a variant will hold */

static void log_to_stderr(void *ud, int level, const char *msg) {
    (void)ud;
    if (level >= QS_LOG_WARN) fprintf(stderr, "qscope: warning: %s\n", msg);
    else if ((verbose && level >= QS_LOG_INFO) || getenv("QSCOPE_DEBUG")) fprintf(stderr, "qscope: %s\n", msg);
}

/* -v / --verbose, which every command takes; removed from argv. Returns the
 * arguments left. */
static int take_verbose(int argc, char **argv) {
    int out = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) verbose = 1;
        else argv[out++] = argv[i];
    }
    return out;
}

/* The keyword a note paragraph of the usage text is about ("MODEL is ...",
 * "SPEC names ...", "CALIBRATION: ..."): its first word, when in capitals. */
static int note_word(const char *l, char *w, size_t cap) {
    size_t n = 0;
    while (l[n] >= 'A' && l[n] <= 'Z' && n + 1 < cap) n++;
    if (n < 2 || (l[n] != ' ' && l[n] != ':')) return 0;
    memcpy(w, l, n);
    w[n] = 0;
    return 1;
}

/* `qscope CMD --help`: the usage lines of CMD, then the notes about the words
 * those lines use (MODEL, SPEC, CALIBRATION) and the exit status. */
static void command_help(const char *cmd) {
    char head[64], lines[2048] = "";
    snprintf(head, sizeof head, "qscope %s ", cmd);
    size_t used = 0;
    int in_cmd = 0;
    const char *l = usage;
    for (; *l;) {
        const char *e = strchr(l, '\n');
        int n = (int)(e - l);
        if (n == 0) break;
        const char *q = strstr(l, "qscope ");
        if (q && q < e && q - l <= 7) {
            in_cmd = !strncmp(q, head, strlen(head));
            if (in_cmd) used += (size_t)snprintf(lines + used, sizeof lines - used, "usage: %.*s\n", (int)(e - q), q);
        } else if (in_cmd) {
            used += (size_t)snprintf(lines + used, sizeof lines - used, "%.*s\n", n, l);
        }
        if (used >= sizeof lines) used = sizeof lines - 1;
        l = e + 1;
    }
    fputs(lines, stdout);
    putchar('\n');
    /* the notes: a paragraph starts at a word in capitals, or "Exit status" */
    int show = 0;
    for (l = *l ? l + 1 : l; *l;) {
        const char *e = strchr(l, '\n');
        char w[32];
        if (!strncmp(l, "Exit status", 11)) show = 1;
        else if (note_word(l, w, sizeof w)) show = strstr(lines, w) != NULL;
        if (show) printf("%.*s\n", (int)(e - l), l);
        l = e + 1;
    }
}

static int wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

/* A global option NAME V (or NAME=V) that every command takes, removed from
 * argv; *val is the last value given (left as it was when none is). `unit`
 * names the value in an error. Returns the arguments left, or -1 after a
 * usage error. */
static int take_option(int argc, char **argv, const char *name, const char *unit, const char **val) {
    int out = 0;
    size_t len = strlen(name);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], name)) {
            if (i + 1 >= argc) {
                cli_error("%s needs a value%s", name, unit);
                return -1;
            }
            *val = argv[++i];
        } else if (!strncmp(argv[i], name, len) && argv[i][len] == '=') {
            *val = argv[i] + len + 1;
        } else {
            argv[out++] = argv[i];
        }
    }
    return out;
}

/* the same, an integer in [lo, hi] */
static int take_int_option(int argc, char **argv, const char *name, const char *unit, long lo, long hi, long *val) {
    const char *v = NULL;
    int out = take_option(argc, argv, name, unit, &v);
    return out >= 0 && v && !cli_int(name, v, lo, hi, val) ? -1 : out;
}

/* --threads N: the threads of qscope's kernels and of the BLAS, set before
 * either starts; --max-memory MB: the memory a heavy step may plan on
 * instead of MemAvailable (core reads it as QSCOPE_MAX_MEMORY_MB);
 * --decode-act q8|f32: the activations of few-row products of 4- and 8-bit
 * blocks (QSCOPE_DECODE_ACT, for the Lua states too); --prefill-act q8|f32:
 * those of many-row products (QSCOPE_PREFILL_ACT). All are removed from
 * argv; returns the arguments left, or -1 after a usage error. */
static int take_globals(int argc, char **argv) {
    long threads = 0, mb = 0;
    char buf[24];
    int n = take_int_option(argc, argv, "--threads", "", 1, 256, &threads);
    if (n >= 0) n = take_int_option(n, argv, "--max-memory", " (MB)", 1, 1L << 30, &mb);
    const char *act = NULL, *pact = NULL;
    if (n >= 0) n = take_option(n, argv, "--decode-act", " (q8 or f32)", &act);
    if (n >= 0) n = take_option(n, argv, "--prefill-act", " (q8 or f32)", &pact);
    if (n < 0) return -1;
    if (act) {
        if (!qs_wmat_set_act(act)) {
            cli_error("--decode-act must be q8 or f32, not '%s'", act);
            return -1;
        }
        setenv("QSCOPE_DECODE_ACT", act, 1);
    }
    if (pact) {
        if (!qs_wmat_set_prefill_act(pact)) {
            cli_error("--prefill-act must be q8 or f32, not '%s'", pact);
            return -1;
        }
        setenv("QSCOPE_PREFILL_ACT", pact, 1);
    }
    if (threads) {
        snprintf(buf, sizeof buf, "%ld", threads);
        setenv("QSCOPE_THREADS", buf, 1);
        qs_blas_set_threads((int)threads);
    }
    if (mb) {
        snprintf(buf, sizeof buf, "%ld", mb);
        setenv("QSCOPE_MAX_MEMORY_MB", buf, 1);
    }
    return take_verbose(n, argv);
}

int cli_main(int argc, char **argv, int (*workbench_accepts)(int argc, char **argv)) {
    qs_log_set(log_to_stderr, NULL);
    if (argc < 2) return CLI_WORKBENCH;
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        char methods[8192];
        qs_methods_help(methods, sizeof methods);
        printf("\nMETHODS (SPEC is METHOD:KEY=VALUE,...; keys, ranges and defaults):\n%s", methods);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("qscope %s (%s)\n", QS_VERSION, qs_blas_describe());
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (strcmp(cmd, commands[i].name)) continue;
        if (wants_help(argc - 2, argv + 2)) {
            command_help(cmd);
            return EXIT_OK;
        }
        int n = take_globals(argc - 2, argv + 2);
        if (n < 0) return EXIT_USAGE;
        cli_interrupt_install();
        int rc = commands[i].fn(n, argv + 2);
        if (!cli_interrupted()) return rc;
        fputs("qscope: interrupted\n", stderr);
        return EXIT_INTERRUPTED;
    }
    if (!strcmp(cmd, "run")) {
        if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
            command_help(cmd);
            return EXIT_OK;
        }
        return qsl_run(argc - 2, argv + 2);
    }
    if (workbench_accepts && workbench_accepts(argc - 1, argv + 1)) return CLI_WORKBENCH;
    if (cmd[0] == '-') {
        fprintf(stderr, "qscope: unknown option '%s'\n%s", cmd, usage);
        return EXIT_USAGE;
    }
    if (argc > 2) {
        fprintf(stderr, "qscope: unknown command '%s'\n%s", cmd, usage);
        return EXIT_USAGE;
    }
    return CLI_WORKBENCH;
}
