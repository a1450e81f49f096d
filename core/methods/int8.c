/* int8.c — LLM.int8() (Dettmers et al. 2022, section 3): every linear's
 * weights become int8 per output row and run through the int8 kernel
 * (core/kern), whose feature columns with |x| >= threshold go through fp32. */
#include <stddef.h>
#include <stdlib.h>

#include "kern/kern.h"
#include "methods/methods.h"
#include "methods/methods_impl.h"

/* The forward pass's view of an int8 layer: the codes, and how to run them. */
typedef struct {
    qs_int8_linear *L;
    float threshold;
    qs_int8_act act;
} int8_kdata;

static qs_status int8_run(const void *data, const float *x, int n, float *y, void *scratch, int *count) {
    const int8_kdata *k = data;
    qs_int8_stats st = {0};
    if (!scratch) return qs_fail(QS_ENOMEM, "out of memory for int8 scratch");
    qs_status s = qs_int8_linear_forward_with(k->L, x, n, k->threshold, k->act, y, &st, scratch);
    *count = st.n_outliers;
    return s;
}

static void *int8_scratch_new(void) { return qs_int8_scratch_new(); }
static void int8_scratch_free(void *s) { qs_int8_scratch_free(s); }

static const qs_lin_kernel int8_kernel = {"int8", int8_run, int8_scratch_new, int8_scratch_free};

static qs_status int8_apply(qs_variant *v, const qs_step *s) {
    const qs_config *c = &v->m->cfg;
    int n_lin = 0;
    for (int l = 0; l < c->n_layers; l++) {
        qs_layer *L = &v->w.layers[l];
        qs_linear *ls[QS_LAYER_LINEARS];
        int nl = qs_layer_linears(L, 0, ls);
        for (int j = 0; j < nl; j++) {
            qs_linear *lin = ls[j];
            if (!qs_linear_readable(lin)) continue;
            if (lin->bits)
                return qs_fail(QS_EARG, "%s: layer %d's weights are already %d-bit; int8 replaces fp32 weights",
                               v->spec.text, l, lin->bits);
            qs_int8_linear *q;
            float *tmp;
            const float *src = qs_linear_f32(lin, &tmp);
            if (!src) return qs_fail_prefix(QS_ENOMEM, "%s: layer %d", v->spec.text, l);
            qs_status st = qs_int8_linear_new(src, lin->b, lin->n_out, lin->n_in, &q);
            free(tmp);
            if (st) return qs_fail_prefix(st, "%s: layer %d", v->spec.text, l);
            if (v->n_i8 == v->cap_i8) {
                int nc = v->cap_i8 ? 2 * v->cap_i8 : 64;
                void **ni = realloc(v->i8s, (size_t)nc * sizeof *ni);
                if (!ni) {
                    qs_int8_linear_free(q);
                    return qs_fail(QS_ENOMEM, "out of memory");
                }
                v->i8s = ni;
                v->cap_i8 = nc;
            }
            v->i8s[v->n_i8++] = q;
            int8_kdata *kd = qs_store_alloc(v->store, sizeof *kd);
            if (!kd) return QS_ENOMEM;
            *kd = (int8_kdata){q, s->threshold, s->int8_act ? QS_INT8_ACT_TENSOR : QS_INT8_ACT_TOKEN};
            lin->kern = &int8_kernel;
            lin->kdata = kd;
            qs_linear_set_f32(lin, NULL); /* the int8 codes are the only copy, as in bitsandbytes; b stays to
                              say there is a bias (the kernel adds its own copy) */
            n_lin++;
        }
    }
    if (s->threshold > 0)
        qs_variant_note(v, "LLM.int8(): int8 weights per row, int8 activations per %s, feature columns with |x| >= %g in fp32 "
                           "(%d linears)", s->int8_act ? "tensor" : "token", s->threshold, n_lin);
    else
        qs_variant_note(v, "int8 weights per row, int8 activations per %s, no outlier decomposition (%d linears)",
                        s->int8_act ? "tensor" : "token", n_lin);
    v->modified = 1;
    return QS_OK;
}

/* ---- the record ---- */

static const int int8_act_values[2] = {0, 1};

static const qs_method_key int8_keys[] = {
    {"threshold", "tau", QS_KEY_FLOAT, offsetof(qs_step, threshold), 0, 1e6, 6, NULL, NULL, NULL,
     "outlier magnitude: feature columns with |x| >= it run in fp32 (0: no decomposition)", 0.5},
    {"act", NULL, QS_KEY_WORD, offsetof(qs_step, int8_act), 0, 0, 0, "token|tensor", int8_act_values,
     "token or tensor", "int8 activation scales per token (vector-wise) or per tensor", 0},
};

static void int8_init(qs_step *s) { s->w_bits = 8; }

static void int8_format(const qs_step *s, char *b, size_t cap) {
    qs_spec_addf(b, cap, "threshold=%g", s->threshold);
    if (s->int8_act) qs_spec_addf(b, cap, "act=%s", "tensor");
}

const qs_method_def qs_method_int8 = {
    .id = QS_M_INT8, .name = "int8", .aliases = "llm.int8",
    .summary = "LLM.int8(): int8 weights and activations, outlier feature columns in fp32",
    QS_METHOD_KEYS(int8_keys), .init = int8_init, .format = int8_format, .apply = int8_apply,
};
