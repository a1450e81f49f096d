/* Hugging Face directory export: a variant written out and read back runs
 * as the variant ran (weight-only variants under the source's names, in
 * fp32 exactly and in the model's dtype within its rounding; SliceGPT in
 * qscope's own layout), the side files are copies, and an existing output is
 * never damaged by a refused or cancelled export. */
#include <cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "export/export.h"
#include "read/read.h"
#include "run/run.h"
#include "stats/stats.h"
#include "harness.h"

enum { N_IDS = 48 };

static qs_model *load_shared(const char *name) {
    char p[256];
    snprintf(p, sizeof p, "models/%s", name);
    qs_model *m = NULL;
    if (qs_model_load(th_path(p), NULL, &m)) th_fail_at(__FILE__, __LINE__, "load %s: %s", name, qs_last_error());
    return m;
}

/* logits (n, vocab) of ids through exec x (NULL: the model) */
static float *logits_of(const qs_model *m, const qs_exec *x, const int32_t *ids, int n) {
    qs_ctx *c;
    if (qs_ctx_new(m, x, n, &c)) return NULL;
    float *lg = malloc((size_t)n * m->cfg.vocab * sizeof(float));
    if (lg && qs_forward(c, ids, n, lg, QS_LOGITS_ALL)) {
        free(lg);
        lg = NULL;
    }
    qs_ctx_free(c);
    return lg;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    if (scale) *scale = s;
    return d;
}

static double ppl_of(const qs_model *m, const qs_exec *x, const int32_t *ids, size_t n) {
    qs_ctx *c;
    if (qs_ctx_new(m, x, 128, &c)) return NAN;
    qs_ppl_opts po = {.ctx = 128, .max_windows = 4};
    qs_ppl_result r;
    qs_status st = qs_eval_ppl(c, ids, (long)n, &po, &r);
    qs_ctx_free(c);
    return st ? NAN : r.ppl;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) { return remove(p); }
static void rm_tree(const char *p) { nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* a fresh parent directory under /tmp; the export goes to <it>/out */
static int scratch_dir(char *parent, size_t cap, char *out, size_t ocap) {
    snprintf(parent, cap, "/tmp/qs_export_test.XXXXXX");
    if (!mkdtemp(parent)) return 0;
    snprintf(out, ocap, "%s/out", parent);
    return 1;
}

static int entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int same = !qs_io_read_all(a, &x, &nx) && !qs_io_read_all(b, &y, &ny) && nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return same;
}

/* Export v of m into a scratch directory with dtype, load it back and
 * compare logits on the first N_IDS ids; returns the max abs difference
 * (NAN on failure). keep: leave the directory for the caller (path in dir). */
static double roundtrip(const qs_model *m, const qs_variant *v, const char *dtype, const int32_t *ids, char *parent,
                        char *dir, qs_model **back) {
    *back = NULL;
    if (!scratch_dir(parent, 256, dir, 300)) return NAN;
    qs_export_opts o = {.dtype = dtype};
    qs_status st = qs_export_dir(m, v, dir, &o);
    CHECK(st == QS_OK, "export %s: %s", dtype ? dtype : "(model's dtype)", qs_last_error());
    if (st) return NAN;
    st = qs_model_load(dir, NULL, back);
    CHECK(st == QS_OK, "load back: %s", qs_last_error());
    if (st) return NAN;
    float *a = logits_of(m, v ? qs_variant_exec(v) : NULL, ids, N_IDS), *b = logits_of(*back, NULL, ids, N_IDS);
    double d = a && b ? max_abs_diff(a, b, (size_t)N_IDS * m->cfg.vocab, NULL) : NAN;
    free(a);
    free(b);
    return d;
}

/* The side files of src are byte-identical in dir (config.json too unless skip_config). */
static void check_copies(const qs_model *m, const char *dir, int skip_config) {
    static const char *const files[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                                        "vocab.json", "merges.txt", "generation_config.json"};
    int n = 0;
    for (size_t i = skip_config ? 1 : 0; i < sizeof files / sizeof *files; i++) {
        char a[1200], b[1200];
        qs_io_join(a, sizeof a, m->path, files[i]);
        qs_io_join(b, sizeof b, dir, files[i]);
        if (!qs_io_exists(a)) {
            CHECK(!qs_io_exists(b), "%s appeared in the export", files[i]);
            continue;
        }
        CHECK(same_file(a, b), "%s: not a byte-identical copy", files[i]);
        n++;
    }
    CHECK(n >= 3, "only %d side files compared", n);
}

/* Every tensor of the source is in the export under its name and shape. */
static void check_names(const qs_model *m, const char *dir) {
    char a[1200], b[1200];
    qs_st_file *fa = NULL, *fb = NULL;
    qs_io_join(a, sizeof a, m->path, "model.safetensors");
    qs_io_join(b, sizeof b, dir, "model.safetensors");
    REQUIRE(!qs_st_open(a, &fa) && !qs_st_open(b, &fb), "%s", qs_last_error());
    CHECK(qs_st_count(fa) == qs_st_count(fb), "%zu tensors, source %zu", qs_st_count(fb), qs_st_count(fa));
    for (size_t i = 0; i < qs_st_count(fa); i++) {
        const qs_st_tensor *t = qs_st_tensor_at(fa, i), *u = qs_st_find(fb, t->name);
        CHECK(u && u->n_dims == t->n_dims && u->shape[0] == t->shape[0], "'%s' missing or reshaped", t->name);
    }
    qs_st_close(fa);
    qs_st_close(fb);
}

/* The variant's weights with every packed linear decoded to fp32 (what the
 * f32 export holds), run as fp32 linears: the same arithmetic as the model
 * read back, where the packed kernels sum in another order. bufs: freed by
 * the caller (n_layers * QS_LAYER_LINEARS). */
static qs_weights decoded(const qs_model *m, const qs_variant *v, qs_layer *layers, float **bufs, float **embed) {
    qs_weights w = *qs_variant_exec(v)->w;
    memcpy(layers, w.layers, (size_t)m->cfg.n_layers * sizeof *layers);
    w.layers = layers;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        qs_linear *ls[QS_LAYER_LINEARS];
        int k = qs_layer_linears(&layers[l], 0, ls);
        for (int i = 0; i < k; i++) {
            float *tmp = NULL;
            bufs[l * QS_LAYER_LINEARS + i] = NULL;
            if (!qs_linear_readable(ls[i]) || ls[i]->w) continue;
            const float *f = qs_linear_f32(ls[i], &tmp);
            if (f) qs_linear_set_f32(ls[i], f);
            bufs[l * QS_LAYER_LINEARS + i] = tmp;
        }
    }
    if (w.embed_q) { /* the embedding (and the head tied to it) as fp32 too */
        int tied = qs_head_tied(&w), de = w.d_embed ? w.d_embed : m->cfg.d_model;
        float *e = malloc((size_t)m->cfg.vocab * de * sizeof *e);
        if (!e) return w;
        qs_wrows_f32(w.embed_type, w.embed_q, de, 0, m->cfg.vocab, e);
        w.tok_embed = e;
        w.embed_q = NULL;
        if (tied) qs_head_tie(&w, m->cfg.vocab, de);
        *embed = e;
    }
    return w;
}

static void weight_only(const char *model, double tol_own) {
    qs_model *m = load_shared(model);
    if (!m) return;
    qs_variant *v = NULL;
    size_t n = 0;
    int32_t *ids = th_text_ids(m, "data/heldout.txt", &n);
    REQUIRE(ids && n >= N_IDS, "no ids");
    REQUIRE(qs_variant_new(m, "rtn:w=4,group=32,sym=1", NULL, &v) == QS_OK, "%s", qs_last_error());
    char parent[256], dir[300];
    qs_model *back;
    double d = roundtrip(m, v, "f32", ids, parent, dir, &back);
    printf("  %s rtn:w=4,group=32,sym=1 as F32: logits differ by at most %.3g (packed kernels' order of sums)\n",
           model, d);
    /* the packed kernels (fp32 panels through sgemm) against fp32 weights (the fused AVX-512 kernel where it runs):
     * two orders of sums, 1.02e-4 apart on opt-mini's logits */
    CHECK(d <= 2e-4, "%s f32: logits differ by %g", model, d);
    if (back) {
        int L = m->cfg.n_layers;
        qs_layer *layers = calloc((size_t)L, sizeof *layers);
        float **bufs = calloc((size_t)L * QS_LAYER_LINEARS, sizeof *bufs);
        REQUIRE(layers && bufs, "out of memory");
        float *embed = NULL;
        qs_weights w = decoded(m, v, layers, bufs, &embed);
        qs_exec x = {.w = &w};
        float *a = logits_of(m, &x, ids, N_IDS), *b = logits_of(back, NULL, ids, N_IDS);
        double e = a && b ? max_abs_diff(a, b, (size_t)N_IDS * m->cfg.vocab, NULL) : NAN;
        printf("  %s ... against the variant decoded to fp32: %.3g\n", model, e);
        CHECK(e == 0, "%s f32: logits differ from the decoded variant's by %g", model, e);
        free(a);
        free(b);
        for (int i = 0; i < L * QS_LAYER_LINEARS; i++) free(bufs[i]);
        free(bufs);
        free(layers);
        free(embed);
        check_copies(m, dir, 0);
        check_names(m, dir);
        CHECK(!strcmp(back->dtype, "F32"), "dtype %s", back->dtype);
    }
    qs_model_free(back);
    rm_tree(parent);
    d = roundtrip(m, v, NULL, ids, parent, dir, &back);
    printf("  %s rtn:w=4,group=32,sym=1 as %s: logits differ by at most %.3g\n", model, m->dtype, d);
    CHECK(d <= tol_own, "%s %s: logits differ by %g (tolerance %g)", model, m->dtype, d, tol_own);
    if (back) CHECK(!strcmp(back->dtype, m->dtype), "dtype %s, source %s", back->dtype, m->dtype);
    qs_model_free(back);
    rm_tree(parent);
    /* the model itself in its own dtype: the same bytes, the same logits */
    d = roundtrip(m, NULL, NULL, ids, parent, dir, &back);
    CHECK(d == 0, "%s unchanged: logits differ by %g", model, d);
    qs_model_free(back);
    rm_tree(parent);
    free(ids);
    qs_variant_free(v);
    qs_model_free(m);
}

/* In the model's own dtype the decoded 4-bit values (code x fp32 scale) are
 * rounded to it: llama-mini (BF16) logits moved by 0.064 at most, opt-mini
 * (F16) by 0.0069 (logits of magnitude ~10); the tolerance is 0.1. */
TEST(export_dir_llama_rtn) {
    NEED_SHARED();
    weight_only("llama-mini", 0.1);
}

TEST(export_dir_opt_rtn) {
    NEED_SHARED();
    weight_only("opt-mini", 0.1);
}

static void sliced(const char *model, const char *spec) {
    qs_model *m = load_shared(model);
    if (!m) return;
    char *ct = NULL;
    size_t nc = 0, n = 0;
    qs_calib cal = {0};
    REQUIRE(qs_io_read_all(th_path("data/calib.txt"), &ct, &nc) == QS_OK, "%s", qs_last_error());
    qs_status st = qs_calib_from_text(m->tok, ct, nc, 128, 8, &cal);
    free(ct);
    REQUIRE(st == QS_OK, "%s", qs_last_error());
    qs_variant_opts vo = {.calib = &cal};
    qs_variant *v = NULL;
    REQUIRE(qs_variant_new(m, spec, &vo, &v) == QS_OK, "%s", qs_last_error());
    int32_t *ids = th_text_ids(m, "data/heldout.txt", &n);
    REQUIRE(ids && n >= N_IDS, "no ids");
    char parent[256], dir[300];
    qs_model *back;
    double d = roundtrip(m, v, NULL, ids, parent, dir, &back);
    if (back) {
        double pv = ppl_of(m, qs_variant_exec(v), ids, n), pb = ppl_of(back, NULL, ids, n);
        printf("  %s %s: logits differ by at most %.3g; ppl %.6f, read back %.6f (rel %.1e)\n", model, spec, d, pv,
               pb, fabs(pv - pb) / pv);
        CHECK(fabs(pv - pb) <= 1e-4 * pv, "%s: ppl %.8f, read back %.8f", model, pv, pb);
        CHECK(d <= 1e-4, "%s: logits differ by %g", model, d);
        CHECK(back->w.layers[0].q.n_in == qs_variant_exec(v)->w->layers[0].q.n_in, "widths differ");
        check_copies(m, dir, 1);
    }
    qs_model_free(back);
    rm_tree(parent);
    free(ids);
    qs_variant_free(v);
    qs_calib_free(&cal);
    qs_model_free(m);
}

TEST(export_dir_slice_opt) {
    NEED_SHARED();
    sliced("opt-mini", "slice:ratio=0.25");
    /* chained with packed 4-bit weights: decoded on the way out */
    sliced("opt-mini", "slice:ratio=0.25+rtn:w=4,group=16");
}

TEST(export_dir_slice_llama) {
    NEED_SHARED();
    sliced("llama-mini", "slice:ratio=0.25");
    sliced("llama-mini", "slice:ratio=0.25,head=1"); /* the head sliced too: head_width 144 */
}

static int cancel_half(void *ud, long done, long total) { return done * 2 > total; }

/* An existing directory: refused without force and left as it was; replaced
 * with force; a cancelled export leaves it and nothing else behind. */
TEST(export_dir_refuse) {
    NEED_SHARED();
    qs_model *m = load_shared("opt-mini");
    if (!m) return;
    char parent[256], dir[300], marker[400];
    REQUIRE(scratch_dir(parent, sizeof parent, dir, sizeof dir), "mkdtemp");
    REQUIRE(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    snprintf(marker, sizeof marker, "%s/mine.txt", dir);
    REQUIRE(qs_io_write_atomic(marker, "keep", 4) == QS_OK, "%s", qs_last_error());
    qs_export_opts o = {0};
    qs_status st = qs_export_dir(m, NULL, dir, &o);
    CHECK(st == QS_EARG && strstr(qs_last_error(), "exists; give --force"), "without force: %d %s", st,
          qs_last_error());
    CHECK(entries(dir) == 1 && qs_io_exists(marker), "the existing directory changed");
    o.force = 1;
    o.progress = cancel_half;
    st = qs_export_dir(m, NULL, dir, &o);
    CHECK(st == QS_ECANCEL, "cancelled: %d %s", st, qs_last_error());
    CHECK(entries(dir) == 1 && qs_io_exists(marker), "a cancelled export changed the directory");
    CHECK(entries(parent) == 1, "a cancelled export left %d entries beside it", entries(parent));
    o.progress = NULL;
    st = qs_export_dir(m, NULL, dir, &o);
    CHECK(st == QS_OK, "with force: %s", qs_last_error());
    CHECK(!qs_io_exists(marker) && entries(parent) == 1, "force: the old directory was not replaced cleanly");
    qs_model *g = NULL;
    if (qs_model_load(th_path("models/stories260K/stories260K.gguf"), NULL, &g) == QS_OK) {
        char out2[400];
        snprintf(out2, sizeof out2, "%s/from-gguf", parent);
        st = qs_export_dir(g, NULL, out2, &(qs_export_opts){0});
        CHECK(st == QS_EUNSUPPORTED && !qs_io_exists(out2), "a GGUF source: %d %s", st, qs_last_error());
        qs_model_free(g);
    }
    rm_tree(parent);
    qs_model_free(m);
}

/* Every family's small fixture (../shared/models/arch): an rtn variant
 * written as f32 reads back to the decoded variant's logits exactly (the
 * source's names, Gemma's stored norms, Qwen3's q/k norms, OPT-350m's
 * projections and post-norms, Gemma-2's post-norms), and the fused layouts
 * are refused naming what is fused. */
TEST(export_dir_families) {
    NEED_SHARED();
    static const char *const archs[] = {"gemma", "gemma2", "llama-bf16", "llama-f16", "llama3", "mistral",
                                        "opt350", "phi2", "qwen2", "qwen3", "neox", "phi3"};
    for (size_t a = 0; a < sizeof archs / sizeof *archs; a++) {
        char rel[128];
        snprintf(rel, sizeof rel, "arch/%s", archs[a]);
        qs_model *m = load_shared(rel);
        if (!m) continue;
        qs_variant *v = NULL;
        int32_t ids[16];
        for (int i = 0; i < 16; i++) ids[i] = (i * 7919 + 3) % m->cfg.vocab;
        char parent[256], dir[300];
        REQUIRE(scratch_dir(parent, sizeof parent, dir, sizeof dir), "mkdtemp");
        REQUIRE(qs_variant_new(m, "rtn:w=4,group=0", NULL, &v) == QS_OK, "%s: %s", archs[a], qs_last_error());
        qs_status st = qs_export_dir(m, v, dir, &(qs_export_opts){.dtype = "f32"});
        int fused = a >= 10;
        if (fused) {
            printf("  %s: %s\n", archs[a], qs_last_error());
            CHECK(st == QS_EUNSUPPORTED && strstr(qs_last_error(), "fused") && !qs_io_exists(dir), "%s: %d %s",
                  archs[a], st, qs_last_error());
        } else {
            CHECK(st == QS_OK, "%s: %s", archs[a], qs_last_error());
            qs_model *back = NULL;
            if (!st) CHECK(qs_model_load(dir, NULL, &back) == QS_OK, "%s: load back: %s", archs[a], qs_last_error());
            if (back) {
                int L = m->cfg.n_layers;
                qs_layer *layers = calloc((size_t)L, sizeof *layers);
                float **bufs = calloc((size_t)L * QS_LAYER_LINEARS, sizeof *bufs), *embed = NULL;
                qs_weights w = decoded(m, v, layers, bufs, &embed);
                qs_exec x = {.w = &w};
                float *la = logits_of(m, &x, ids, 16), *lb = logits_of(back, NULL, ids, 16);
                double d = la && lb ? max_abs_diff(la, lb, (size_t)16 * m->cfg.vocab, NULL) : NAN;
                printf("  %-10s rtn:w=4 as F32: logits differ from the decoded variant's by %.3g\n", archs[a], d);
                CHECK(d == 0, "%s: logits differ by %g", archs[a], d);
                check_names(m, dir);
                free(la);
                free(lb);
                for (int i = 0; i < L * QS_LAYER_LINEARS; i++) free(bufs[i]);
                free(bufs);
                free(layers);
                free(embed);
                qs_model_free(back);
            }
        }
        rm_tree(parent);
        qs_variant_free(v);
        qs_model_free(m);
    }
}

/* Activation quantizers have no place in a directory: refused, or left out
 * with weights_only (the weights then read back as the variant's). */
TEST(export_dir_activations) {
    NEED_SHARED();
    qs_model *m = load_shared("arch/llama-bf16");
    if (!m) return;
    qs_variant *v = NULL;
    char parent[256], dir[300];
    REQUIRE(scratch_dir(parent, sizeof parent, dir, sizeof dir), "mkdtemp");
    REQUIRE(qs_variant_new(m, "rtn:w=4,a=8,act=token", NULL, &v) == QS_OK, "%s", qs_last_error());
    qs_status st = qs_export_dir(m, v, dir, &(qs_export_opts){0});
    CHECK(st == QS_EUNSUPPORTED && strstr(qs_last_error(), "A8 activation quantizers at 10 sites") && !qs_io_exists(dir), "%d %s", st,
          qs_last_error());
    st = qs_export_dir(m, v, dir, &(qs_export_opts){.weights_only = 1});
    CHECK(st == QS_OK, "weights_only: %s", qs_last_error());
    qs_model *back = NULL;
    CHECK(!st && qs_model_load(dir, NULL, &back) == QS_OK, "load back: %s", qs_last_error());
    qs_model_free(back);
    rm_tree(parent);
    qs_variant_free(v);
    qs_model_free(m);
}

/* A sharded source (two shards and an index, made here from a fixture) is
 * written as one model.safetensors holding every tensor, and reads back to
 * the same logits. The writer refuses a tensor short of its bytes and
 * leaves no file. */
TEST(export_dir_sharded) {
    NEED_SHARED();
    char parent[256], dir[300], src[300], p[400], q[400];
    REQUIRE(scratch_dir(parent, sizeof parent, dir, sizeof dir), "mkdtemp");
    snprintf(src, sizeof src, "%s/sharded", parent);
    REQUIRE(mkdir(src, 0755) == 0, "mkdir");
    qs_st_file *f = NULL;
    snprintf(p, sizeof p, "%s", th_path("models/arch/llama-f16/model.safetensors"));
    REQUIRE(qs_st_open(p, &f) == QS_OK, "%s", qs_last_error());
    size_t n = qs_st_count(f), half = n / 2;
    cJSON *idx = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(idx, "weight_map");
    qs_status st = QS_OK;
    for (int s = 0; s < 2 && !st; s++) {
        char shard[64];
        snprintf(shard, sizeof shard, "model-%05d-of-00002.safetensors", s + 1);
        qs_st_w *w = qs_st_w_new();
        size_t i0 = s ? half : 0, i1 = s ? n : half;
        for (size_t i = i0; i < i1 && !st; i++) {
            const qs_st_tensor *t = qs_st_tensor_at(f, i);
            st = qs_st_w_add(w, t->name, t->dtype, t->n_dims, t->shape);
            cJSON_AddStringToObject(wm, t->name, shard);
        }
        qs_io_join(q, sizeof q, src, shard);
        if (!st) st = qs_st_w_begin(w, q);
        for (size_t i = i0; i < i1 && !st; i++) st = qs_st_w_data(w, qs_st_tensor_at(f, i)->data, qs_st_tensor_at(f, i)->nbytes);
        if (!st) st = qs_st_w_commit(w);
        qs_st_w_free(w);
    }
    char *js = cJSON_Print(idx);
    cJSON_Delete(idx);
    qs_io_join(q, sizeof q, src, "model.safetensors.index.json");
    if (!st) st = qs_io_write_atomic(q, js, strlen(js));
    free(js);
    qs_io_join(q, sizeof q, src, "config.json");
    char *cfg = NULL;
    size_t ncfg = 0;
    if (!st) st = qs_io_read_all(th_path("models/arch/llama-f16/config.json"), &cfg, &ncfg);
    if (!st) st = qs_io_write_atomic(q, cfg, ncfg);
    free(cfg);
    REQUIRE(st == QS_OK, "making the shards: %s", qs_last_error());

    qs_model *m = NULL, *back = NULL;
    REQUIRE(qs_model_load(src, NULL, &m) == QS_OK, "sharded: %s", qs_last_error());
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = (i * 7919 + 3) % m->cfg.vocab;
    st = qs_export_dir(m, NULL, dir, &(qs_export_opts){0});
    CHECK(st == QS_OK, "export: %s", qs_last_error());
    CHECK(!st && qs_model_load(dir, NULL, &back) == QS_OK, "load back: %s", qs_last_error());
    if (back) {
        float *la = logits_of(m, NULL, ids, 16), *lb = logits_of(back, NULL, ids, 16);
        double d = la && lb ? max_abs_diff(la, lb, (size_t)16 * m->cfg.vocab, NULL) : NAN;
        CHECK(d == 0, "logits differ by %g", d);
        free(la);
        free(lb);
        qs_st_file *g = NULL;
        qs_io_join(q, sizeof q, dir, "model.safetensors");
        CHECK(qs_st_open(q, &g) == QS_OK && qs_st_count(g) == n, "one file of %zu tensors", n);
        qs_st_close(g);
    }
    qs_model_free(back);
    qs_model_free(m);

    /* short data: commit fails naming the tensor, and nothing is left */
    qs_st_w *w = qs_st_w_new();
    snprintf(q, sizeof q, "%s/short.safetensors", parent);
    const qs_st_tensor *t = qs_st_tensor_at(f, 0);
    st = qs_st_w_add(w, t->name, t->dtype, t->n_dims, t->shape);
    if (!st) st = qs_st_w_begin(w, q);
    if (!st) st = qs_st_w_data(w, t->data, t->nbytes - 1);
    CHECK(!st && qs_st_w_commit(w) == QS_EARG && strstr(qs_last_error(), t->name), "short tensor: %s", qs_last_error());
    qs_st_w_free(w);
    CHECK(!qs_io_exists(q) && entries(parent) == 2, "a failed write left files (%d entries)", entries(parent));
    qs_st_close(f);
    rm_tree(parent);
}
