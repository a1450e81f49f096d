/* The shell commands that measure and compress: stats, outliers, compare,
 * and the calibration options they share with `ppl --variant`. */
#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stats/stats.h"
#include "run/run.h"
#include "base/base.h"
#include "methods/methods.h"
#include "cli.h"

#ifndef QS_VERSION
#define QS_VERSION "0.0.0"
#endif

/* ---- calibration options ---- */

qs_calib_opts cli_calib_init(void) {
    qs_calib_opts o = qs_calib_opts_defaults();
    o.how_text = "--calib FILE (or --calib-ids FILE)";
    o.how_ids = "--calib-ids";
    return o;
}

int cli_calib_load(const qs_model *m, const qs_calib_opts *o, qs_calib *cal) {
    if (o->ctx > m->cfg.max_pos) {
        memset(cal, 0, sizeof *cal);
        cli_error("--calib-ctx %d is longer than %s allows (%d positions)", o->ctx, m->path, m->cfg.max_pos);
        return EXIT_RUNTIME;
    }
    if (qs_calib_load(m, o, cal)) {
        cli_error("%s", qs_last_error());
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

/* ---- stats ---- */

int cli_spec_needs_calib(const char *spec) {
    int need = qs_variant_needs_calib(spec);
    if (need < 0) cli_error("%s", qs_last_error());
    return need;
}

int cli_variant_build(const qs_model *m, const char *spec, int need_cal, const qs_calib_opts *co, qs_calib *cal,
                      qs_variant **var) {
    if (need_cal && cli_calib_load(m, co, cal)) return EXIT_RUNTIME;
    qs_variant_opts vo = {.calib = need_cal ? cal : NULL, .progress = cli_progress, .progress_ud = "calibrating"};
    if (qs_variant_new(m, spec, &vo, var)) {
        cli_error("%s", qs_last_error());
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

static int collect(qs_model *m, const qs_calib_opts *co, float tau, qs_calib *cal, qs_stats **st) {
    int rc = cli_calib_load(m, co, cal);
    if (rc) return rc;
    qs_stats_opts o = qs_stats_defaults();
    o.tau = tau;
    if (qs_stats_collect(m, NULL, cal, &o, cli_progress, "calibrating", st)) {
        cli_error("%s", qs_last_error());
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}

static const qs_site linear_sites[] = {QS_SITE_ATTN_IN, QS_SITE_Q, QS_SITE_K, QS_SITE_V, QS_SITE_ATTN_OUT,
                                       QS_SITE_MLP_IN, QS_SITE_MLP_MID, QS_SITE_RESID};

typedef struct {
    float lo, hi, amax, tok_mean;
    int arg, n_over_ch;
} site_summary;

static site_summary summarize(const qs_site_stats *s, float tau) {
    site_summary r = {s->min[0], s->max[0], 0, 0, 0, 0};
    for (int c = 0; c < s->dim; c++) {
        r.lo = fminf(r.lo, s->min[c]);
        r.hi = fmaxf(r.hi, s->max[c]);
        if (s->absmax[c] > r.amax) {
            r.amax = s->absmax[c];
            r.arg = c;
        }
        r.n_over_ch += s->absmax[c] >= tau;
    }
    if (s->tok_absmax && s->tokens) {
        double t = 0;
        for (long i = 0; i < s->tokens; i++) t += s->tok_absmax[i];
        r.tok_mean = (float)(t / s->tokens);
    }
    return r;
}

int cli_stats(int argc, char **argv) {
    const char *model = NULL, *site_name = NULL;
    long layer = -1;
    double tau = 6;
    int csv = 0, json = 0;
    qs_calib_opts co = cli_calib_init();
    const cli_opt opts[] = {CLI_STR("--site", &site_name), CLI_INT("--layer", &layer, 0, 1 << 16),
                            CLI_FLOAT("--tau", &tau, 0, 1e9), CLI_FLAG("--csv", &csv, 1),
                            CLI_FLAG("--json", &json, 1), {0}};
    if (cli_parse("stats", argc, argv, opts, &co, &model, 1, 0, NULL)) return EXIT_USAGE;
    int site = -1;
    if (site_name && (site = qs_site_parse(site_name)) < 0) {
        cli_error("stats: unknown site '%s' (attn_in, q, k, v, attn_out, mlp_in, mlp_mid, head_in, resid, resid_mid, embed)",
                  site_name);
        return EXIT_USAGE;
    }
    qs_model *m = cli_load_model(model, NULL);
    if (!m) return EXIT_RUNTIME;
    if (layer > m->cfg.n_layers || (layer == m->cfg.n_layers && site != QS_SITE_HEAD_IN)) {
        cli_error("stats: --layer %ld: %s has layers 0..%d", layer, m->path, m->cfg.n_layers - 1);
        qs_model_free(m);
        return EXIT_USAGE;
    }
    qs_calib cal;
    qs_stats *st = NULL;
    int rc = collect(m, &co, (float)tau, &cal, &st);
    if (rc) {
        qs_calib_free(&cal);
        qs_model_free(m);
        return rc;
    }
    cJSON *root = json ? cJSON_CreateObject() : NULL;
    if (root) {
        cJSON_AddStringToObject(root, "model", m->path);
        cJSON_AddStringToObject(root, "calibration", cal.source);
        cJSON_AddNumberToObject(root, "tokens", (double)st->tokens);
        cJSON_AddNumberToObject(root, "tau", tau);
    }
    if (site >= 0 && layer >= 0) {
        /* one site: every channel */
        int l = site == QS_SITE_HEAD_IN ? m->cfg.n_layers : (int)layer;
        const qs_site_stats *s = qs_stats_site(st, l, site);
        if (!s) {
            cli_error("stats: no statistics for layer %d %s", l, qs_site_name(site));
            rc = EXIT_RUNTIME;
        } else if (root) {
            cJSON_AddNumberToObject(root, "layer", l);
            cJSON_AddStringToObject(root, "site", qs_site_name(site));
            cJSON *arr = cJSON_AddArrayToObject(root, "channels");
            for (int c = 0; c < s->dim; c++) {
                cJSON *o = cJSON_CreateObject();
                double mean = s->sum[c] / s->tokens, ms = s->sumsq[c] / s->tokens;
                cJSON_AddNumberToObject(o, "channel", c);
                cJSON_AddNumberToObject(o, "min", s->min[c]);
                cJSON_AddNumberToObject(o, "max", s->max[c]);
                cJSON_AddNumberToObject(o, "absmax", s->absmax[c]);
                cJSON_AddNumberToObject(o, "mean", mean);
                cJSON_AddNumberToObject(o, "mean_sq", ms);
                cJSON_AddNumberToObject(o, "frac_over_tau", (double)s->n_over[c] / s->tokens);
                cJSON_AddItemToArray(arr, o);
            }
        } else {
            if (csv) puts("layer,site,channel,min,max,absmax,mean,std,frac_over_tau");
            else printf("layer %d %s: %d channels over %ld tokens (%s)\n%7s %10s %10s %10s %10s %10s %8s\n", l,
                        qs_site_name(site), s->dim, s->tokens, cal.source, "channel", "min", "max", "absmax", "mean",
                        "std", "|x|>=tau");
            for (int c = 0; c < s->dim; c++) {
                double mean = s->sum[c] / s->tokens, var = s->sumsq[c] / s->tokens - mean * mean;
                double sd = var > 0 ? sqrt(var) : 0, frac = (double)s->n_over[c] / s->tokens;
                if (csv) printf("%d,%s,%d,%.7g,%.7g,%.7g,%.7g,%.7g,%.7g\n", l, qs_site_name(site), c, s->min[c], s->max[c],
                                s->absmax[c], mean, sd, frac);
                else printf("%7d %10.4f %10.4f %10.4f %10.4f %10.4f %7.2f%%%s\n", c, s->min[c], s->max[c], s->absmax[c],
                            mean, sd, 100 * frac, s->absmax[c] >= tau ? "  *" : "");
            }
        }
    } else {
        /* a summary row per layer x site */
        if (csv) puts("layer,site,dim,min,max,absmax,argmax_channel,channels_over_tau,mean_token_absmax");
        else if (!root)
            printf("%s: %ld calibration tokens (%s); channels with |x| >= %g marked\n%5s %-9s %5s %10s %10s %9s %7s %6s %9s\n",
                   m->path, st->tokens, cal.source, tau, "layer", "site", "dim", "min", "max", "absmax", "at ch", ">=tau",
                   "tok amax");
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "sites") : NULL;
        for (int l = 0; l <= m->cfg.n_layers; l++) {
            if (layer >= 0 && l != layer) continue;
            for (size_t k = 0; k < sizeof linear_sites / sizeof linear_sites[0] + 1; k++) {
                qs_site s_id = k < sizeof linear_sites / sizeof linear_sites[0] ? linear_sites[k] : QS_SITE_HEAD_IN;
                if (site >= 0 && (int)s_id != site) continue;
                if ((l == m->cfg.n_layers) != (s_id == QS_SITE_HEAD_IN)) continue;
                const qs_site_stats *s = qs_stats_site(st, l, s_id);
                if (!s) continue;
                site_summary r = summarize(s, (float)tau);
                if (arr) {
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddNumberToObject(o, "layer", l);
                    cJSON_AddStringToObject(o, "site", qs_site_name(s_id));
                    cJSON_AddNumberToObject(o, "dim", s->dim);
                    cJSON_AddNumberToObject(o, "min", r.lo);
                    cJSON_AddNumberToObject(o, "max", r.hi);
                    cJSON_AddNumberToObject(o, "absmax", r.amax);
                    cJSON_AddNumberToObject(o, "argmax_channel", r.arg);
                    cJSON_AddNumberToObject(o, "channels_over_tau", r.n_over_ch);
                    cJSON_AddNumberToObject(o, "mean_token_absmax", r.tok_mean);
                    cJSON_AddItemToArray(arr, o);
                } else if (csv) {
                    printf("%d,%s,%d,%.7g,%.7g,%.7g,%d,%d,%.7g\n", l, qs_site_name(s_id), s->dim, r.lo, r.hi, r.amax, r.arg,
                           r.n_over_ch, r.tok_mean);
                } else {
                    printf("%5d %-9s %5d %10.3f %10.3f %9.3f %7d %6d %9.3f\n", l, qs_site_name(s_id), s->dim, r.lo, r.hi,
                           r.amax, r.arg, r.n_over_ch, r.tok_mean);
                }
            }
        }
    }
    if (root) {
        cli_json_print(root, 1);
    }
    qs_stats_free(st);
    qs_calib_free(&cal);
    qs_model_free(m);
    return rc;
}

/* ---- outliers ---- */

int cli_outliers(int argc, char **argv) {
    const char *model = NULL;
    double tau = 6, lf = 0.25, pf = 0.06;
    int json = 0;
    qs_calib_opts co = cli_calib_init();
    const cli_opt opts[] = {CLI_FLOAT("--tau", &tau, 0, 1e9), CLI_FLOAT("--layer-frac", &lf, 0, 1),
                            CLI_FLOAT("--pos-frac", &pf, 0, 1), CLI_FLAG("--json", &json, 1), {0}};
    if (cli_parse("outliers", argc, argv, opts, &co, &model, 1, 0, NULL)) return EXIT_USAGE;
    qs_model *m = cli_load_model(model, NULL);
    if (!m) return EXIT_RUNTIME;
    qs_calib cal;
    qs_stats *st = NULL;
    int rc = collect(m, &co, (float)tau, &cal, &st);
    qs_outlier *o = NULL;
    int n = 0;
    if (!rc && qs_stats_outliers(st, (float)tau, lf, pf, &o, &n)) {
        cli_error("%s", qs_last_error());
        rc = EXIT_RUNTIME;
    }
    if (!rc) {
        int L = m->cfg.n_layers;
        if (json) {
            cJSON *root = cJSON_CreateObject();
            cJSON_AddStringToObject(root, "model", m->path);
            cJSON_AddNumberToObject(root, "tau", tau);
            cJSON_AddNumberToObject(root, "layer_frac", lf);
            cJSON_AddNumberToObject(root, "pos_frac", pf);
            cJSON_AddNumberToObject(root, "tokens", (double)st->tokens);
            cJSON *arr = cJSON_AddArrayToObject(root, "outliers");
            for (int i = 0; i < n; i++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "dim", o[i].dim);
                cJSON_AddNumberToObject(e, "inputs", o[i].n_inputs);
                cJSON_AddNumberToObject(e, "layer_frac", o[i].layer_frac);
                cJSON_AddNumberToObject(e, "pos_frac", o[i].pos_frac);
                cJSON_AddNumberToObject(e, "absmax", o[i].absmax);
                cJSON *ls = cJSON_AddArrayToObject(e, "layers");
                for (int l = 0; l < L && l < 64; l++)
                    if (o[i].layer_mask >> l & 1) cJSON_AddItemToArray(ls, cJSON_CreateNumber(l));
                cJSON_AddItemToArray(arr, e);
            }
            cli_json_print(root, 1);
        } else {
            printf("LLM.int8() outlier dimensions of %s: |x| >= %g in >= %.0f%% of the %d layer inputs "
                   "(attn_in, mlp_in) at >= %.0f%% of positions; %ld calibration tokens\n",
                   m->path, tau, 100 * lf, 2 * L, 100 * pf, st->tokens);
            if (!n) puts("none");
            else printf("%6s %8s %10s %9s  %s\n", "dim", "inputs", "positions", "max |x|", "layers");
            for (int i = 0; i < n; i++) {
                char ls[512] = "";
                size_t k = 0;
                for (int l = 0; l < L && l < 64 && k < sizeof ls - 8; l++)
                    if (o[i].layer_mask >> l & 1) k += (size_t)snprintf(ls + k, sizeof ls - k, "%s%d", k ? " " : "", l);
                printf("%6d %4d/%-3d %9.1f%% %9.2f  %s\n", o[i].dim, o[i].n_inputs, 2 * L, 100 * o[i].pos_frac, o[i].absmax,
                       ls);
            }
        }
    }
    free(o);
    qs_stats_free(st);
    qs_calib_free(&cal);
    qs_model_free(m);
    return rc;
}

/* ---- compare ---- */

/* the bar's label: the spec being scored, else "calibrating" */
static int compare_progress(void *ud, const char *what, long done, long total) {
    return cli_progress((void *)(what ? what : "calibrating"), done, total);
}

static int compare_stop(void *ud) { return cli_interrupted(); }

int cli_compare(int argc, char **argv) {
    const char *model = NULL, *data = NULL;
    const char *specs[64];
    int n_specs = 0, json = 0, markdown = 0;
    long ctx = 0, maxw = 0;
    qs_calib_opts co = cli_calib_init();
    const cli_opt opts[] = {CLI_STR("--data", &data),
                            CLI_INT("--ctx", &ctx, 2, 1 << 20),
                            CLI_INT("--max-windows", &maxw, 1, INT_MAX),
                            CLI_LIST("--variants", specs, &n_specs, 64),
                            CLI_LIST("--variant", specs, &n_specs, 64),
                            CLI_FLAG("--json", &json, 1),
                            CLI_FLAG("--markdown", &markdown, 1),
                            {0}};
    if (cli_parse("compare", argc, argv, opts, &co, &model, 1, 0, " (variants follow --variants)")) return EXIT_USAGE;
    if (!data) {
        cli_error("compare: --data FILE is required");
        return EXIT_USAGE;
    }
    if (!n_specs) {
        cli_error("compare: give the variants to compare after --variants (e.g. --variants int8 rptq:W4A4 slice:ratio=0.25)");
        return EXIT_USAGE;
    }
    int need_cal = 0;
    for (int i = 0; i < n_specs; i++) {
        int nc = qs_variant_needs_calib(specs[i]);
        if (nc < 0) {
            cli_error("%s", qs_last_error());
            return EXIT_USAGE;
        }
        need_cal |= nc;
    }
    qs_model *m = cli_load_model(model, NULL);
    if (!m) return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    int32_t *ids = NULL;
    size_t n = 0;
    qs_calib cal = {0};
    int total = n_specs + 1;
    qs_compare_row *rows = calloc((size_t)total, sizeof *rows);
    if (!rows) {
        cli_error("out of memory");
        goto done;
    }
    if (ctx > m->cfg.max_pos) {
        cli_error("compare: --ctx %ld is longer than %s allows (%d positions)", ctx, m->path, m->cfg.max_pos);
        goto done;
    }
    if (cli_text_ids(m, data, 1, &ids, &n)) goto done;
    if (need_cal && cli_calib_load(m, &co, &cal)) goto done;
    qs_compare_opts copts = {.calib = need_cal ? &cal : NULL, .ctx = (int)ctx, .max_windows = (int)maxw,
                             .progress = compare_progress, .stop = compare_stop};
    if (qs_compare_run(m, specs, n_specs, ids, (long)n, &copts, rows)) {
        cli_error("%s", qs_last_error());
        goto done;
    }
    if (!json)
        for (int i = 0; i < total; i++)
            if (!rows[i].ok && rows[i].err[0]) cli_error("%s", rows[i].err);
    double ref = rows[0].ok ? rows[0].ppl : NAN;
    if (json) {
        /* the protocol first: what a reader needs to measure the same way again */
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "qscope_version", QS_VERSION);
        cJSON_AddStringToObject(root, "model", m->path);
        cJSON_AddStringToObject(root, "data", data);
        cJSON_AddNumberToObject(root, "text_tokens", (double)n);
        cJSON_AddNumberToObject(root, "ctx", rows[0].ok ? rows[0].ctx : (double)ctx);
        cJSON_AddNumberToObject(root, "windows", rows[0].ok ? rows[0].windows : 0);
        if (maxw) cJSON_AddNumberToObject(root, "max_windows", (double)maxw);
        else cJSON_AddNullToObject(root, "max_windows");
        cJSON_AddNumberToObject(root, "stride", 0);
        if (need_cal) cJSON_AddStringToObject(root, "calibration", cal.source);
        else cJSON_AddNullToObject(root, "calibration");
        cJSON *arr = cJSON_AddArrayToObject(root, "variants");
        for (int i = 0; i < total; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "variant", rows[i].spec);
            if (rows[i].ok) {
                cJSON_AddStringToObject(o, "description", rows[i].desc);
                cJSON_AddNumberToObject(o, "ppl", rows[i].ppl);
                cJSON_AddNumberToObject(o, "delta_ppl", rows[i].ppl - ref);
                cJSON_AddNumberToObject(o, "nll", rows[i].nll);
                cJSON_AddNumberToObject(o, "tokens", (double)rows[i].tokens);
                cJSON_AddNumberToObject(o, "windows", rows[i].windows);
                cJSON_AddNumberToObject(o, "ctx", rows[i].ctx);
                cJSON_AddNumberToObject(o, "seconds", rows[i].seconds);
                cJSON_AddNumberToObject(o, "weight_bytes", (double)rows[i].weight_bytes);
                cJSON_AddNumberToObject(o, "kv_bytes_per_token", (double)rows[i].kv_bytes_per_token);
                cJSON_AddNumberToObject(o, "params", (double)rows[i].params);
                cJSON_AddNumberToObject(o, "tokens_per_second", rows[i].tokens_per_s);
            } else {
                cJSON_AddStringToObject(o, "error", rows[i].err);
            }
            cJSON_AddItemToArray(arr, o);
        }
        cli_json_print(root, 1);
    } else if (markdown) {
        printf("| variant | ppl | Δppl | weight MB | KV bytes/token | params | tokens/s |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < total; i++) {
            if (!rows[i].ok) {
                printf("| `%s` | error: %s | | | | | |\n", rows[i].spec, rows[i].err);
                continue;
            }
            printf("| `%s` | %.3f | %+.3f | %.2f | %lld | %lld | %.0f |\n", rows[i].spec, rows[i].ppl, rows[i].ppl - ref,
                   rows[i].weight_bytes / 1e6, rows[i].kv_bytes_per_token, rows[i].params, rows[i].tokens_per_s);
        }
    } else {
        printf("%-36s %10s %9s %9s %9s %9s\n", "variant", "ppl", "Δppl", "weight MB", "KV B/tok", "tok/s");
        for (int i = 0; i < total; i++) {
            if (!rows[i].ok) {
                printf("%-36s  error: %s\n", rows[i].spec, rows[i].err);
                continue;
            }
            printf("%-36s %10.4f %+9.4f %9.3f %9lld %9.0f\n", rows[i].spec, rows[i].ppl, rows[i].ppl - ref,
                   rows[i].weight_bytes / 1e6, rows[i].kv_bytes_per_token, rows[i].tokens_per_s);
        }
    }
    rc = EXIT_OK;
    for (int i = 0; i < total; i++)
        if (!rows[i].ok) rc = EXIT_RUNTIME;
done:
    free(rows);
    qs_calib_free(&cal);
    free(ids);
    qs_model_free(m);
    return rc;
}
