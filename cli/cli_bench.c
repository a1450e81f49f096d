/* qscope bench — prefill (pp) and decode (tg) tokens/s and peak memory of
 * any model file, the way llama-bench reports them, so the two can be held
 * side by side on the same file. */
#include <cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/base.h"
#include "kern/kern.h"
#include "methods/methods.h"
#include "read/read.h"
#include "run/run.h"
#include "cli.h"

/* kB of a /proc/self/status field, or -1 */
static long status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return v;
}

/* the buffer the memory read rate is measured on: well past any cache */
enum { READ_PROBE_MB = 512 };

/* no bar while timing: only Ctrl-C is checked */
static int bench_stop(void *ud, long done, long total) { return cli_interrupted(); }

/* the first type (its name) among the model's matrices that --prefill-act q8 would multiply by 8-bit
 * activations, or NULL */
static const char *q8_prefill_type(const qs_model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        qs_linear *lin[QS_LAYER_LINEARS];
        int k = qs_layer_linears(&m->w.layers[l], 0, lin);
        for (int i = 0; i < k; i++)
            if (lin[i]->wq && !lin[i]->kern && qs_wq8_supported(lin[i]->wtype, lin[i]->n_in)) return qs_gguf_type_name(lin[i]->wtype);
    }
    return NULL;
}

int cli_bench(int argc, char **argv) {
    const char *model = NULL, *spec = "fp32", *tokp = NULL;
    long p = 512, n = 128, reps = 3;
    int json = 0;
    qs_calib_opts co = cli_calib_init();
    const cli_opt opts[] = {CLI_STR("--variant", &spec),       CLI_INT("-p", &p, 0, 1 << 20),
                            CLI_INT("-n", &n, 0, 1 << 20),       CLI_INT("-r", &reps, 1, QS_PERF_MAX_REPS),
                            CLI_STR("--tokenizer", &tokp),
                            CLI_FLAG("--json", &json, 1),        {0}};
    if (cli_parse("bench", argc, argv, opts, &co, &model, 1, 0, NULL)) return EXIT_USAGE;
    int need_cal = cli_spec_needs_calib(spec);
    if (need_cal < 0) return EXIT_USAGE;
    qs_model *m = cli_load_model(model, tokp);
    if (!m) return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    qs_calib cal = {0};
    qs_variant *var = NULL;
    if (cli_variant_build(m, spec, need_cal, &co, &cal, &var)) goto done;
    qs_perf_opts po = {(int)p, (int)n, (int)reps, .progress = bench_stop};
    qs_perf_result r = {0};
    if (qs_perf_run(m, qs_variant_exec(var), &po, &r)) {
        cli_error("%s", qs_last_error());
        goto done;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak_mb = ru.ru_maxrss / 1024.0, anon_mb = status_kb("RssAnon") / 1024.0;
    double size_gib = qs_variant_weight_bytes(var) / (1024.0 * 1024 * 1024), params_b = qs_variant_params(var) / 1e9;
    int nthreads = qs_pool_threads();
    const char *core = getenv("OPENBLAS_CORETYPE"), *core_note = qs_blas_core_note();
    /* what decode reads a token against what the same threads read from memory in this run (after
     * the peak above, so the probe's buffer is not in it) */
    double tok_gb = qs_variant_token_bytes(var) / 1e9, tg_gbs = r.tg_tok_s * tok_gb, mem_gbs = 0;
    long long avail = qs_mem_available();
    size_t probe = (size_t)READ_PROBE_MB << 20;
    int probe_fits = avail < 0 || avail >= 2 * (long long)probe; /* leave as much again to the rest */
    if (n && probe_fits && !cli_interrupted()) {
        uint8_t *buf = malloc(probe);
        if (buf) {
            memset(buf, 1, probe); /* its pages made, so no fault is timed */
            mem_gbs = qs_read_rate(buf, probe, 5) / 1e9;
            free(buf);
        }
    }
    if (cli_interrupted()) goto done; /* Ctrl-C after the timing (in the probe): no figures, only the interruption */
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", m->path);
        cJSON_AddStringToObject(o, "family", m->cfg.family);
        cJSON_AddStringToObject(o, "dtype", m->dtype);
        cJSON_AddStringToObject(o, "variant", qs_variant_spec(var));
        cJSON_AddNumberToObject(o, "weight_bytes", (double)qs_variant_weight_bytes(var));
        cJSON_AddNumberToObject(o, "params", (double)qs_variant_params(var));
        cJSON_AddNumberToObject(o, "threads", nthreads);
        cJSON_AddStringToObject(o, "blas", qs_blas_describe());
        if (core) cJSON_AddStringToObject(o, "openblas_coretype", core);
        if (core_note) cJSON_AddStringToObject(o, "openblas_coretype_note", core_note);
        cJSON_AddStringToObject(o, "stored_weight_kernels", qs_wmat_kernel());
        cJSON_AddStringToObject(o, "decode_activations", qs_wmat_act());
        cJSON_AddStringToObject(o, "prefill_activations", qs_wmat_prefill_act());
        if (!strcmp(qs_wmat_prefill_act(), "q8")) cJSON_AddStringToObject(o, "prefill_q8_kernel", qs_wq8_kernel());
        cJSON_AddNumberToObject(o, "n_prompt", (double)p);
        cJSON_AddNumberToObject(o, "n_gen", (double)n);
        cJSON_AddNumberToObject(o, "repetitions", (double)reps);
        if (p) cJSON_AddNumberToObject(o, "pp_tokens_per_second", r.pp_tok_s), cJSON_AddNumberToObject(o, "pp_sd", r.pp_sd);
        if (n) cJSON_AddNumberToObject(o, "tg_tokens_per_second", r.tg_tok_s), cJSON_AddNumberToObject(o, "tg_sd", r.tg_sd);
        if (n) {
            cJSON_AddNumberToObject(o, "tg_bytes_per_token", tok_gb * 1e9);
            cJSON_AddNumberToObject(o, "tg_read_gb_per_second", tg_gbs);
            if (mem_gbs > 0) cJSON_AddNumberToObject(o, "memory_read_gb_per_second", mem_gbs);
        }
        cJSON_AddNumberToObject(o, "peak_rss_mb", peak_mb);
        cJSON_AddNumberToObject(o, "rss_anon_mb", anon_mb);
        cli_json_print(o, 1);
    } else {
        char label[96];
        char pl[24];
        if (params_b >= 1) snprintf(pl, sizeof pl, "%.2fB", params_b);
        else snprintf(pl, sizeof pl, "%.0fM", params_b * 1e3);
        snprintf(label, sizeof label, "%s %s %s%s%s", m->cfg.family, pl, m->dtype,
                 strcmp(qs_variant_spec(var), "fp32") ? " " : "", strcmp(qs_variant_spec(var), "fp32") ? qs_variant_spec(var) : "");
        printf("| %-32s | %9s | %7s | %7s | %6s | %16s |\n", "model", "size", "params", "threads", "test", "t/s");
        printf("| %.32s | %.9s | %.7s | %.7s | %.6s | %.16s |\n", "--------------------------------", "---------",
               "-------", "-------", "------", "----------------");
        char sz[32], pr[32], t[16];
        snprintf(sz, sizeof sz, "%.2f GiB", size_gib);
        if (params_b >= 1) snprintf(pr, sizeof pr, "%.2f B", params_b);
        else snprintf(pr, sizeof pr, "%.1f M", params_b * 1e3);
        if (p) {
            snprintf(t, sizeof t, "pp%ld", p);
            printf("| %-32s | %9s | %7s | %7d | %6s | %8.2f ± %5.2f |\n", label, sz, pr, nthreads, t, r.pp_tok_s, r.pp_sd);
        }
        if (n) {
            snprintf(t, sizeof t, "tg%ld", n);
            printf("| %-32s | %9s | %7s | %7d | %6s | %8.2f ± %5.2f |\n", label, sz, pr, nthreads, t, r.tg_tok_s, r.tg_sd);
        }
        if (n && mem_gbs > 0) {
            long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
            printf("decode reads %.3g GB of weights a token: %.1f GB/s, %.0f%% of the %.1f GB/s that %d thread%s read from "
                   "memory in this run",
                   tok_gb, tg_gbs, 100 * tg_gbs / mem_gbs, mem_gbs, nthreads, nthreads == 1 ? "" : "s");
            if (l3 > 0 && tok_gb * 1e9 <= (double)l3) /* then decode's rate is the cache's, not memory's */
                printf(" (the weights fit in the %ld MB L3 cache)", l3 >> 20);
            printf("\n");
        } else if (n && !probe_fits)
            printf("decode reads %.3g GB of weights a token: %.1f GB/s (memory's read rate not measured: %lld MB available "
                   "or allowed by --max-memory, under the %d MB its %d MB buffer wants)\n",
                   tok_gb, tg_gbs, avail >> 20, 2 * READ_PROBE_MB, READ_PROBE_MB);
        printf("peak RSS %.0f MB (anonymous %.0f MB); %s; stored-weight kernels %s, decode activations %s, prefill "
               "activations %s%s%s%s\n",
               peak_mb, anon_mb, qs_blas_describe(), qs_wmat_kernel(), qs_wmat_act(), qs_wmat_prefill_act(),
               cli_prefill_kernel(),
               core ? "; OPENBLAS_CORETYPE=" : "", core ? core : "");
        if (core_note) printf("note: %s\n", core_note);
        const char *q8t = p && !strcmp(qs_wmat_prefill_act(), "f32") && !strcmp(qs_variant_spec(var), "fp32") ? q8_prefill_type(m) : NULL;
        if (q8t)
            printf("note: prefill kept its activations exact (fp32); --prefill-act q8 rounds them to 8 bits and multiplies "
                   "this file's %s weights in an int8 GEMM, as llama.cpp's prefill does\n", q8t);
    }
    rc = EXIT_OK;
done:
    qs_variant_free(var);
    qs_calib_free(&cal);
    qs_model_free(m);
    return rc;
}
