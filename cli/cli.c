/* The shell subcommands: thin wrappers over core/. */
#include "kern/kern.h"
#include "cli.h"

#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/run.h"
#include "base/base.h"
#include "methods/methods.h"

void cli_error(const char *fmt, ...) {
    va_list ap;
    if (cli_interrupted()) return;
    fputs("qscope: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

const char *cli_default_model(void) {
    static char path[4200];
    return qs_model_default_path(path, sizeof path);
}

qs_model *cli_load_model(const char *path, const char *tokenizer) {
    if (!path) path = cli_default_model();
    qs_load_opts o = {.tokenizer = tokenizer};
    qs_model *m = NULL;
    if (qs_model_load(path, &o, &m) != QS_OK) {
        cli_error("%s", qs_last_error());
        return NULL;
    }
    return m;
}

int cli_int(const char *opt, const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = val ? strtol(val, &end, 10) : 0;
    if (!val || !*val || *end || errno || v < lo || v > hi) {
        cli_error("%s expects an integer in [%ld, %ld], got '%s'", opt, lo, hi, val ? val : "");
        return 0;
    }
    *out = v;
    return 1;
}

int cli_float(const char *opt, const char *val, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = val ? strtod(val, &end) : 0;
    if (!val || !*val || *end || errno || !(v >= lo && v <= hi)) {
        cli_error("%s expects a number in [%g, %g], got '%s'", opt, lo, hi, val ? val : "");
        return 0;
    }
    *out = v;
    return 1;
}

int cli_progress(void *ud, long done, long total) {
    static int tty = -1;
    if (cli_interrupted()) return 1;
    if (tty < 0) tty = isatty(2);
    if (!tty) return 0;
    int width = 30, fill = total > 0 ? (int)(width * done / total) : 0;
    fprintf(stderr, "\r%s [", ud ? (const char *)ud : "");
    for (int i = 0; i < width; i++) fputs(i < fill ? "#" : ".", stderr);
    fprintf(stderr, "] %ld/%ld", done, total);
    if (done >= total) fputs("\r\033[K", stderr);
    fflush(stderr);
    return 0;
}

/* "--name VALUE" or "--name=VALUE" at argv[*i]: 1 and *val (NULL, after
 * printing why, when the value is missing); 0 when it is another word. */
static int opt_val(int argc, char **argv, int *i, const char *name, const char **val) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != 0) return 0;
    if (*i + 1 >= argc) {
        cli_error("%s needs a value", name);
        *val = NULL;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

static int cli_bad_option(const char *cmd, const char *arg) {
    cli_error("%s: unknown option '%s' (see qscope --help)", cmd, arg);
    return EXIT_USAGE;
}

/* 1 when argv[*i] is option o (consumed); *bad when its value is bad. */
static int take(const cli_opt *o, int argc, char **argv, int *i, int *bad) {
    const char *v;
    long x;
    double f;
    *bad = 0;
    if (o->kind == 'b' || o->kind == 'l') {
        if (strcmp(argv[*i], o->name)) return 0;
        if (o->kind == 'b') *(int *)o->dst = o->flag;
        else
            while (*i + 1 < argc && argv[*i + 1][0] != '-' && *o->count < o->flag)
                ((const char **)o->dst)[(*o->count)++] = argv[++*i];
        return 1;
    }
    if (!opt_val(argc, argv, i, o->name, &v)) return 0;
    if (!v) *bad = 1;
    else if (o->kind == 's') *(const char **)o->dst = v;
    else if (o->kind == 'f') {
        if (cli_float(o->name, v, o->flo, o->fhi, &f)) *(double *)o->dst = f;
        else *bad = 1;
    } else if (cli_int(o->name, v, o->lo, o->hi, &x)) {
        if (o->kind == 'I') *(int *)o->dst = (int)x;
        else *(long *)o->dst = x;
    } else {
        *bad = 1;
    }
    return 1;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, qs_calib_opts *calib, const char **pos,
              int npos, int dash_word, const char *extra) {
    const cli_opt calib_opts[] = {
        CLI_STR("--calib", calib ? &calib->file : NULL),
        CLI_STR("--calib-ids", calib ? &calib->ids_file : NULL),
        CLI_STR("--calib-offsets", calib ? &calib->offsets_file : NULL),
        {.name = "--calib-windows", .kind = 'I', .dst = calib ? &calib->windows : NULL, .lo = 1, .hi = 1 << 20},
        {.name = "--calib-ctx", .kind = 'I', .dst = calib ? &calib->ctx : NULL, .lo = 2, .hi = 1 << 20},
        {0},
    };
    const cli_opt *tables[2] = {calib ? calib_opts : NULL, opts};
    int n_pos = 0;
    for (int i = 0; i < argc; i++) {
        int found = 0, bad = 0;
        for (int t = 0; t < 2 && !found; t++)
            for (const cli_opt *o = tables[t]; o && o->name && !found; o++) found = take(o, argc, argv, &i, &bad);
        if (bad) return EXIT_USAGE;
        if (found) continue;
        if (argv[i][0] == '-' && (argv[i][1] || !dash_word)) return cli_bad_option(cmd, argv[i]);
        if (n_pos == npos) {
            cli_error("%s: unexpected argument '%s'%s", cmd, argv[i], extra ? extra : "");
            return EXIT_USAGE;
        }
        pos[n_pos++] = argv[i];
    }
    return EXIT_OK;
}

void cli_json_print(struct cJSON *o, int pretty) {
    char *s = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    if (s) puts(s);
    free(s);
    cJSON_Delete(o);
}

/* ---- info ---- */

static cJSON *info_json(const qs_model *m) {
    const qs_config *c = &m->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", m->path);
    cJSON_AddStringToObject(o, "format", m->format);
    cJSON_AddStringToObject(o, "dtype", m->dtype);
    cJSON_AddStringToObject(o, "arch", qs_arch_str(c->arch));
    cJSON_AddStringToObject(o, "architecture", c->arch_name);
    cJSON_AddStringToObject(o, "family", c->family);
    char feat[512];
    qs_model_features(m, feat, sizeof feat);
    cJSON_AddStringToObject(o, "features", feat);
    cJSON_AddStringToObject(o, "block", qs_resid_str(c->resid));
    if (c->rope_theta > 0) {
        cJSON_AddStringToObject(o, "rope", qs_rope_kind_str(c->rope.kind));
        cJSON_AddNumberToObject(o, "rope_dim", c->rope.dim);
    }
    if (c->attn_softcap > 0) cJSON_AddNumberToObject(o, "attn_softcap", c->attn_softcap);
    if (c->logit_softcap > 0) cJSON_AddNumberToObject(o, "logit_softcap", c->logit_softcap);
    cJSON_AddNumberToObject(o, "d_model", c->d_model);
    cJSON_AddNumberToObject(o, "n_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "n_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "n_kv_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "d_ff", c->d_ff);
    cJSON_AddNumberToObject(o, "vocab", c->vocab);
    cJSON_AddNumberToObject(o, "max_pos", c->max_pos);
    cJSON_AddStringToObject(o, "act", qs_act_str(c->act));
    cJSON_AddStringToObject(o, "norm", c->norm == QS_NORM_LAYER ? "layernorm" : "rmsnorm");
    cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
    if (c->rope_theta > 0) cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    else cJSON_AddNumberToObject(o, "pos_offset", c->pos_offset);
    if (c->sliding_window) cJSON_AddNumberToObject(o, "sliding_window", c->sliding_window);
    cJSON_AddBoolToObject(o, "tied_head", c->tied_head);
    cJSON_AddNumberToObject(o, "bos_id", c->bos_id);
    cJSON_AddNumberToObject(o, "eos_id", c->eos_id);
    cJSON_AddNumberToObject(o, "params", (double)qs_model_params(m));
    cJSON_AddNumberToObject(o, "weight_bytes_fp32", (double)qs_model_weight_bytes(m));
    cJSON_AddNumberToObject(o, "kv_bytes_per_token", (double)qs_ctx_kv_bytes_per_token(m));
    if (m->tok) cJSON_AddStringToObject(o, "tokenizer", qs_tok_describe(m->tok));
    cJSON_AddStringToObject(o, "blas", qs_blas_describe());
    cJSON_AddStringToObject(o, "stored_weight_kernels", qs_wmat_kernel());
    cJSON_AddStringToObject(o, "decode_activations", qs_wmat_act());
    cJSON_AddStringToObject(o, "prefill_activations", qs_wmat_prefill_act());
    if (getenv("OPENBLAS_CORETYPE")) cJSON_AddStringToObject(o, "openblas_coretype", getenv("OPENBLAS_CORETYPE"));
    const char *note = qs_blas_core_note();
    if (note) cJSON_AddStringToObject(o, "openblas_coretype_note", note);
    return o;
}

static long long lin_n(const qs_linear *l) {
    return qs_linear_has(l) ? (long long)l->n_out * l->n_in + (l->b ? l->n_out : 0) : 0;
}

const char *cli_prefill_kernel(void) {
    static char b[48];
    if (strcmp(qs_wmat_prefill_act(), "q8")) return "";
    snprintf(b, sizeof b, " (%s)", qs_wq8_kernel());
    return b;
}

static void print_info(const qs_model *m) {
    const qs_config *c = &m->cfg;
    long long p = qs_model_params(m);
    printf("model      %s (%s, %s)\n", m->path, m->format, m->dtype);
    printf("arch       %s: %d layers, d_model %d, %d heads", c->arch_name, c->n_layers, c->d_model,
           c->n_heads);
    if (c->n_kv_heads != c->n_heads) printf(" / %d kv heads", c->n_kv_heads);
    printf(" of %d, ffn %d %s, %s\n", c->head_dim, c->d_ff, qs_act_str(c->act),
           c->norm == QS_NORM_LAYER ? "LayerNorm" : "RMSNorm");
    char feat[512];
    qs_model_features(m, feat, sizeof feat);
    printf("family     %s: %s\n", c->family, feat);
    if (c->rope_theta > 0)
        printf("positions  %d, RoPE theta %g%s\n", c->max_pos, c->rope_theta,
               c->sliding_window ? " (sliding window)" : "");
    else
        printf("positions  %d, learned (offset %d)\n", c->max_pos, c->pos_offset);
    printf("vocab      %d, %s head\n", c->vocab, c->tied_head ? "tied" : "separate");
    printf("tokenizer  %s\n", m->tok ? qs_tok_describe(m->tok) : "none (the model takes token ids)");
    printf("params     %lld (%.1f MB as fp32)\n", p, p * 4 / 1e6);
    printf("kv cache   %lld bytes/token (fp32)\n", qs_ctx_kv_bytes_per_token(m));
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("compute    %s; stored-weight kernels %s, decode activations %s, prefill activations %s%s%s%s\n\n",
           qs_blas_describe(), qs_wmat_kernel(), qs_wmat_act(), qs_wmat_prefill_act(), cli_prefill_kernel(),
           core ? "; OPENBLAS_CORETYPE=" : "", core ? core : "");
    const char *note = qs_blas_core_note();
    if (note) printf("note       %s\n\n", note);
    printf("layer  %-11s %-11s %-11s %-11s %-11s %-11s %s\n", "q", "k", "v", "o", "up", "down",
           "params");
    for (int i = 0; i < c->n_layers; i++) {
        const qs_layer *L = &m->w.layers[i];
        char s[6][24];
        const qs_linear *ls[6] = {&L->q, &L->k, &L->v, &L->o, &L->up, &L->down};
        long long lp = 0;
        for (int j = 0; j < 6; j++) {
            snprintf(s[j], sizeof s[j], "%dx%d", ls[j]->n_out, ls[j]->n_in);
            lp += lin_n(ls[j]);
        }
        lp += lin_n(&L->gate) + L->attn_norm.dim * (L->attn_norm.b ? 2 : 1) +
              L->mlp_norm.dim * (L->mlp_norm.b ? 2 : 1);
        printf("%5d  %-11s %-11s %-11s %-11s %-11s %-11s %lld%s\n", i, s[0], s[1], s[2], s[3], s[4],
               s[5], lp, qs_linear_has(&L->gate) ? " (+gate)" : "");
    }
}

int cli_info(int argc, char **argv) {
    const char *path = NULL, *tokp = NULL;
    int json = 0;
    const cli_opt opts[] = {CLI_FLAG("--json", &json, 1), CLI_STR("--tokenizer", &tokp), {0}};
    if (cli_parse("info", argc, argv, opts, NULL, &path, 1, 0, NULL)) return EXIT_USAGE;
    qs_model *m = cli_load_model(path, tokp);
    if (!m) return EXIT_RUNTIME;
    if (json) {
        cJSON *o = info_json(m);
        cli_json_print(o, 1);
    } else {
        print_info(m);
    }
    qs_model_free(m);
    return EXIT_OK;
}

/* ---- tokenize ---- */

static qs_status read_text(const char *path, char **text, size_t *len) {
    if (strcmp(path, "-") == 0) return qs_io_read_all("/dev/stdin", text, len);
    return qs_io_read_all(path, text, len);
}

int cli_text_ids(const qs_model *m, const char *path, int special, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (!m->tok) {
        cli_error("%s: the model has no tokenizer", m->path);
        return EXIT_RUNTIME;
    }
    char *text;
    size_t len;
    if (read_text(path, &text, &len)) {
        cli_error("%s", qs_last_error());
        return EXIT_RUNTIME;
    }
    int rc = EXIT_OK;
    if (len == 0) {
        cli_error("%s: the text is empty", path);
        rc = EXIT_RUNTIME;
    } else if (qs_tok_encode(m->tok, text, len, special, ids, n)) {
        cli_error("%s: %s", path, qs_last_error());
        rc = EXIT_RUNTIME;
    }
    free(text);
    return rc;
}

int cli_tokenize(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL}, *out = NULL, *tokp = NULL;
    int special = 1;
    const cli_opt opts[] = {CLI_STR("--out", &out), CLI_STR("--tokenizer", &tokp), CLI_FLAG("--no-special", &special, 0),
                            {0}};
    if (cli_parse("tokenize", argc, argv, opts, NULL, pos, 2, 1, NULL)) return EXIT_USAGE;
    const char *model = pos[0], *file = pos[1];
    if (!model || !file) {
        cli_error("tokenize: usage: qscope tokenize MODEL FILE [--out IDS.i32] [--no-special]");
        return EXIT_USAGE;
    }
    /* a directory with only a tokenizer in it: no model to load */
    qs_tok *tok = NULL;
    if (qs_tok_dir_only(model) && qs_tok_load_hf(model, &tok)) {
        cli_error("%s", qs_last_error());
        return EXIT_RUNTIME;
    }
    qs_model *m = tok ? NULL : cli_load_model(model, tokp);
    if (!m && !tok) return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    int32_t *ids = NULL;
    size_t n;
    if (m && !m->tok) {
        cli_error("%s: the model has no tokenizer", m->path);
        goto done;
    }
    /* an empty file is tokenized too: what the tokenizer gives for "" */
    if (qs_tok_encode_file(tok ? tok : m->tok, file, special, &ids, &n)) {
        cli_error("%s", qs_last_error());
        goto done;
    }
    if (out) {
        /* int32 little-endian, as the reference id files */
        uint8_t *buf = malloc(n * 4 + 1);
        if (!buf) {
            cli_error("out of memory");
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)ids[i];
            buf[4 * i] = u & 0xff;
            buf[4 * i + 1] = (u >> 8) & 0xff;
            buf[4 * i + 2] = (u >> 16) & 0xff;
            buf[4 * i + 3] = u >> 24;
        }
        qs_status st = qs_io_write_atomic(out, buf, n * 4);
        free(buf);
        if (st) {
            cli_error("%s", qs_last_error());
            goto done;
        }
        fprintf(stderr, "%zu tokens written to %s\n", n, out);
    } else {
        for (size_t i = 0; i < n; i++) printf(i + 1 < n ? "%d " : "%d", ids[i]);
        putchar('\n');
        fprintf(stderr, "%zu tokens\n", n);
    }
    rc = EXIT_OK;
done:
    free(ids);
    qs_model_free(m);
    qs_tok_free(tok);
    return rc;
}

/* ---- ppl ---- */

int cli_ppl(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *tokp = NULL, *spec = "fp32";
    long ctx = 0, stride = 0, maxw = 0;
    int json = 0, lcpp = 0;
    qs_calib_opts co = cli_calib_init();
    const cli_opt opts[] = {CLI_STR("--data", &data),
                            CLI_STR("--variant", &spec),
                            CLI_FLAG("--llama-cpp", &lcpp, 1),
                            CLI_INT("--ctx", &ctx, 2, 1 << 20),
                            CLI_INT("--stride", &stride, 1, 1 << 20),
                            CLI_INT("--max-windows", &maxw, 1, INT_MAX),
                            CLI_STR("--tokenizer", &tokp),
                            CLI_FLAG("--json", &json, 1),
                            {0}};
    if (cli_parse("ppl", argc, argv, opts, &co, &model, 1, 0, NULL)) return EXIT_USAGE;
    if (!data) {
        cli_error("ppl: --data FILE is required (text to score)");
        return EXIT_USAGE;
    }
    int need_cal = cli_spec_needs_calib(spec);
    if (need_cal < 0) return EXIT_USAGE;
    qs_model *m = cli_load_model(model, tokp);
    if (!m) return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    int32_t *ids = NULL;
    size_t n = 0;
    qs_ctx *c = NULL;
    qs_calib cal = {0};
    qs_variant *var = NULL;
    if (ctx > m->cfg.max_pos) {
        cli_error("ppl: --ctx %ld is longer than %s allows (%d positions)", ctx, m->path, m->cfg.max_pos);
        goto done;
    }
    if (lcpp && stride) {
        cli_error("ppl: --llama-cpp scores windows as llama-perplexity does, with no --stride");
        rc = EXIT_USAGE;
        goto done;
    }
    if (stride > (ctx ? ctx : m->cfg.max_pos)) {
        cli_error("ppl: --stride %ld is longer than the window (%ld)", stride, ctx ? ctx : m->cfg.max_pos);
        rc = EXIT_USAGE;
        goto done;
    }
    if (cli_text_ids(m, data, 1, &ids, &n)) goto done;
    if (cli_variant_build(m, spec, need_cal, &co, &cal, &var)) goto done;
    if (qs_ctx_new(m, qs_variant_exec(var), (int)ctx, &c)) {
        cli_error("%s", qs_last_error());
        goto done;
    }
    qs_ppl_opts o = {.ctx = (int)ctx, .stride = (int)stride, .max_windows = (int)maxw, .llama_cpp = lcpp,
                     .bos = m->cfg.bos_id, .progress = cli_progress, .progress_ud = "ppl"};
    qs_ppl_result r;
    if (qs_eval_ppl(c, ids, (long)n, &o, &r)) {
        cli_error("%s: %s", data, qs_last_error());
        goto done;
    }
    double tps = r.seconds > 0 ? r.windows * (double)r.ctx / r.seconds : 0;
    /* LLM.int8(): the most fp32 feature columns any window needed, per layer input */
    int has_i8 = qs_ctx_kernel_counts(c, 0) != NULL;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", m->path);
        cJSON_AddStringToObject(j, "data", data);
        cJSON_AddStringToObject(j, "variant", qs_variant_spec(var));
        cJSON_AddStringToObject(j, "description", qs_variant_describe(var));
        cJSON_AddNumberToObject(j, "ppl", r.ppl);
        cJSON_AddNumberToObject(j, "nll", r.nll);
        cJSON_AddNumberToObject(j, "tokens", (double)r.tokens);
        cJSON_AddNumberToObject(j, "text_tokens", (double)n);
        cJSON_AddNumberToObject(j, "windows", r.windows);
        cJSON_AddNumberToObject(j, "ctx", r.ctx);
        cJSON_AddNumberToObject(j, "stride", (double)stride);
        cJSON_AddStringToObject(j, "protocol", lcpp ? "llama.cpp" : "windows");
        cJSON_AddNumberToObject(j, "seconds", r.seconds);
        cJSON_AddNumberToObject(j, "tokens_per_second", tps);
        cJSON_AddNumberToObject(j, "weight_bytes", (double)qs_variant_weight_bytes(var));
        cJSON_AddNumberToObject(j, "kv_bytes_per_token", (double)qs_variant_kv_bytes_per_token(var));
        cJSON_AddNumberToObject(j, "params", (double)qs_variant_params(var));
        if (need_cal) cJSON_AddStringToObject(j, "calibration", cal.source);
        if (has_i8) {
            cJSON *arr = cJSON_AddArrayToObject(j, "int8_outlier_columns");
            for (int l = 0; l < m->cfg.n_layers; l++) {
                const int *ol = qs_ctx_kernel_counts(c, l);
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "attn_in", ol[0]);
                cJSON_AddNumberToObject(e, "attn_out", ol[1]);
                cJSON_AddNumberToObject(e, "mlp_in", ol[2]);
                cJSON_AddNumberToObject(e, "mlp_mid", ol[3]);
                cJSON_AddItemToArray(arr, e);
            }
        }
        cli_json_print(j, 0);
    } else {
        if (strcmp(qs_variant_spec(var), "fp32")) printf("%s\n", qs_variant_describe(var));
        if (has_i8) {
            printf("fp32 feature columns (most in one window) per layer: attn_in attn_out mlp_in mlp_mid\n");
            for (int l = 0; l < m->cfg.n_layers; l++) {
                const int *ol = qs_ctx_kernel_counts(c, l);
                printf("  layer %2d  %4d %4d %4d %4d\n", l, ol[0], ol[1], ol[2], ol[3]);
            }
        }
        printf("ppl %.4f  (nll %.6f over %ld tokens, %d windows of %d%s, %.2f s, %.0f tok/s)\n", r.ppl, r.nll,
               r.tokens, r.windows, r.ctx, stride ? " strided" : lcpp ? ", second halves as llama-perplexity" : "",
               r.seconds, tps);
    }
    rc = EXIT_OK;
done:
    qs_ctx_free(c);
    qs_variant_free(var);
    qs_calib_free(&cal);
    free(ids);
    qs_model_free(m);
    return rc;
}

/* ---- gen ---- */

/* ud: non-NULL with --json (nothing streamed); stops after Ctrl-C */
static int print_piece(void *ud, int id, const char *text, size_t len) {
    (void)id;
    if (!ud) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return cli_interrupted();
}

int cli_gen(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL}, *tokp = NULL, *spec = "fp32";
    long n = 64, topk = 0, seed = 0;
    double temp = 0, topp = 1;
    int json = 0, stop = 1;
    qs_calib_opts co = cli_calib_init();
    const cli_opt opts[] = {CLI_INT("-n", &n, 1, 1 << 20),
                            CLI_STR("--variant", &spec),
                            CLI_FLOAT("--temp", &temp, 0, 100),
                            CLI_INT("--top-k", &topk, 0, INT_MAX),
                            CLI_FLOAT("--top-p", &topp, 0, 1),
                            CLI_INT("--seed", &seed, 0, LONG_MAX),
                            CLI_STR("--tokenizer", &tokp),
                            CLI_FLAG("--json", &json, 1),
                            CLI_FLAG("--no-stop", &stop, 0),
                            {0}};
    if (cli_parse("gen", argc, argv, opts, &co, pos, 2, 1, " (quote the prompt)")) return EXIT_USAGE;
    const char *model = pos[0], *prompt = pos[1];
    if (!model) {
        cli_error("gen: usage: qscope gen MODEL [PROMPT] [-n N] [--temp T] ...");
        return EXIT_USAGE;
    }
    int need_cal = cli_spec_needs_calib(spec);
    if (need_cal < 0) return EXIT_USAGE;
    qs_model *m = cli_load_model(model, tokp);
    if (!m) return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    char *ptext = NULL;
    int32_t *ids = NULL;
    size_t nids = 0;
    qs_ctx *c = NULL;
    qs_gen_result r = {0};
    qs_calib cal = {0};
    qs_variant *var = NULL;
    if (!m->tok) {
        cli_error("%s: the model has no tokenizer", m->path);
        goto done;
    }
    if (prompt && !strcmp(prompt, "-")) {
        size_t len;
        if (qs_io_read_all("/dev/stdin", &ptext, &len)) {
            cli_error("%s", qs_last_error());
            goto done;
        }
        prompt = ptext;
    }
    if (prompt && *prompt) {
        if (qs_tok_encode(m->tok, prompt, strlen(prompt), 1, &ids, &nids)) {
            cli_error("%s", qs_last_error());
            goto done;
        }
    }
    if (cli_variant_build(m, spec, need_cal, &co, &cal, &var)) goto done;
    if (qs_ctx_new(m, qs_variant_exec(var), 0, &c)) {
        cli_error("%s", qs_last_error());
        goto done;
    }
    qs_gen_opts o = qs_gen_defaults();
    o.n_max = (int)n;
    o.temp = (float)temp;
    o.top_k = (int)topk;
    o.top_p = (float)topp;
    o.seed = (uint64_t)seed;
    o.stop_at_eos = stop;
    o.on_text = print_piece;
    o.ud = json ? "json" : NULL;
    if (!json && prompt) fputs(prompt, stdout);
    if (qs_gen_run(c, m->tok, ids, (int)nids, &o, &r)) {
        cli_error("%s", qs_last_error());
        goto done;
    }
    if (cli_interrupted()) { /* stopped by print_piece: the text so far ends its line */
        if (!json) putchar('\n');
        goto done;
    }
    double dec = r.n > 1 && r.decode_seconds > 0 ? (r.n - 1) / r.decode_seconds : 0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "variant", qs_variant_spec(var));
        if (need_cal) cJSON_AddStringToObject(j, "calibration", cal.source);
        cJSON_AddStringToObject(j, "prompt", prompt ? prompt : "");
        cJSON_AddStringToObject(j, "text", r.text);
        cJSON *a = cJSON_AddArrayToObject(j, "ids");
        for (int i = 0; i < r.n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(r.ids[i]));
        cJSON_AddNumberToObject(j, "prompt_tokens", nids ? (double)nids : 1);
        cJSON_AddNumberToObject(j, "tokens", r.n);
        cJSON_AddStringToObject(j, "stopped_by",
                                (const char *[]){"length", "eos", "callback", "context"}[r.stopped_by]);
        cJSON_AddNumberToObject(j, "prefill_seconds", r.prefill_seconds);
        cJSON_AddNumberToObject(j, "decode_tokens_per_second", dec);
        cli_json_print(j, 0);
    } else {
        putchar('\n');
        if (isatty(2))
            fprintf(stderr, "[%d tokens, %.1f tok/s%s]\n", r.n, dec, r.stopped_by == 1 ? ", stopped at EOS" : "");
    }
    /* fewer tokens than asked for because the context is full: said, whatever the output */
    if (r.stopped_by == 3)
        fprintf(stderr, "qscope: gen: stopped at the context length (%d positions) after %d of %ld tokens\n",
                qs_ctx_capacity(c), r.n, n);
    rc = EXIT_OK;
done:
    qs_gen_result_free(&r);
    qs_ctx_free(c);
    qs_variant_free(var);
    qs_calib_free(&cal);
    free(ids);
    free(ptext);
    qs_model_free(m);
    return rc;
}
