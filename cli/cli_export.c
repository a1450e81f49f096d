/* qscope export: a model or a variant written out, as a GGUF file llama.cpp
 * runs or a Hugging Face directory transformers and qscope load. */
#include <cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "export/export.h"
#include "methods/methods.h"

/* bytes under path: the file, or the files of the directory (one level) */
static long long output_bytes(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    if (!S_ISDIR(sb.st_mode)) return (long long)sb.st_size;
    long long sum = 0;
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (e->d_name[0] != '.' && stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) sum += (long long)sb.st_size;
    }
    if (d) closedir(d);
    return sum;
}

int cli_export(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *spec = "fp32", *dtype = NULL, *tokp = NULL;
    int force = 0, wonly = 0, json = 0;
    qs_calib_opts co = cli_calib_init();
    const cli_opt opts[] = {CLI_STR("--out", &out),           CLI_STR("--variant", &spec),
                            CLI_STR("--dtype", &dtype),       CLI_FLAG("--force", &force, 1),
                            CLI_FLAG("--weights-only", &wonly, 1), CLI_STR("--tokenizer", &tokp),
                            CLI_FLAG("--json", &json, 1),     {0}};
    if (cli_parse("export", argc, argv, opts, &co, &model, 1, 0, NULL)) return EXIT_USAGE;
    if (!out) {
        cli_error("export: --out PATH is required (a .gguf file or a directory)");
        return EXIT_USAGE;
    }
    if (dtype && strcmp(dtype, "f32") && strcmp(dtype, "f16") && strcmp(dtype, "bf16")) {
        cli_error("export: --dtype is f32, f16 or bf16, got '%s'", dtype);
        return EXIT_USAGE;
    }
    int need_cal = cli_spec_needs_calib(spec);
    if (need_cal < 0) return EXIT_USAGE;
    qs_model *m = cli_load_model(model, tokp);
    if (!m) return EXIT_RUNTIME;
    int rc = EXIT_RUNTIME;
    qs_calib cal = {0};
    qs_variant *var = NULL;
    double t0 = qs_io_clock();
    if (cli_variant_build(m, spec, need_cal, &co, &cal, &var)) goto done;
    qs_export_opts o = {.force = force, .weights_only = wonly, .dtype = dtype, .progress = cli_progress,
                        .progress_ud = "export"};
    if (qs_export(m, var, out, &o)) {
        cli_error("%s", qs_last_error());
        goto done;
    }
    long long bytes = output_bytes(out);
    double secs = qs_io_clock() - t0;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", m->path);
        cJSON_AddStringToObject(j, "variant", qs_variant_spec(var));
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddStringToObject(j, "format", strlen(out) > 5 && !strcmp(out + strlen(out) - 5, ".gguf") ? "gguf" : "safetensors");
        if (bytes) cJSON_AddNumberToObject(j, "bytes", (double)bytes);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cli_json_print(j, 1);
    } else {
        printf("wrote %s", out);
        if (bytes) printf(" (%.1f MB)", (double)bytes / 1e6);
        printf(": %s of %s, %.1f s\n", qs_variant_spec(var), m->path, secs);
    }
    rc = EXIT_OK;
done:
    qs_variant_free(var);
    qs_calib_free(&cal);
    qs_model_free(m);
    return rc;
}
