/* The calibration rules (qs_calib_opts) and the comparison of variants
 * (qs_compare_run) that the CLI, Lua and the workbench share. Uses the
 * bundled model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "methods/methods.h"
#include "run/run.h"
#include "stats/stats.h"
#include "harness.h"

TEST(calib_opts_defaults_and_load) {
    qs_model *m = NULL;
    REQUIRE(qs_model_load("models/opt-mini", NULL, &m) == QS_OK, "%s", qs_last_error());
    qs_calib_opts o = qs_calib_opts_defaults();
    CHECK(o.windows == 32 && o.ctx == 0 && !o.file && !o.text && !o.ids_file, "defaults");
    CHECK(qs_calib_opts_ctx(m, &o) == 512, "ctx %d", qs_calib_opts_ctx(m, &o));
    qs_calib a, b;
    o.windows = 3;
    REQUIRE(qs_calib_load(m, &o, &a) == QS_OK, "%s", qs_last_error()); /* calib.txt beside the model */
    CHECK(a.n_rows == 3 && a.ctx == 512, "%d rows of %d", a.n_rows, a.ctx);
    char *text;
    size_t len;
    REQUIRE(qs_io_read_all("models/opt-mini/calib.txt", &text, &len) == QS_OK, "%s", qs_last_error());
    o.text = text;
    o.text_len = len;
    REQUIRE(qs_calib_load(m, &o, &b) == QS_OK, "%s", qs_last_error());
    CHECK(b.n_rows == 3 && !memcmp(a.ids, b.ids, (size_t)3 * 512 * sizeof *a.ids), "the same rows from the text");
    qs_calib_free(&b);
    qs_calib_opts bad = qs_calib_opts_defaults();
    bad.ctx = 1024;
    CHECK(qs_calib_load(m, &bad, &b) == QS_EARG && strstr(qs_last_error(), "1024"), "%s", qs_last_error());
    bad = qs_calib_opts_defaults();
    bad.file = "no/such/calib.txt";
    CHECK(qs_calib_load(m, &bad, &b) != QS_OK && strstr(qs_last_error(), "no/such/calib.txt"), "%s",
          qs_last_error());
    free(text);
    qs_calib_free(&a);
    qs_model_free(m);
}

TEST(compare_rows_match_direct_evaluation) {
    qs_model *m = NULL;
    REQUIRE(qs_model_load("models/opt-mini", NULL, &m) == QS_OK, "%s", qs_last_error());
    char *text;
    size_t len, n;
    int32_t *ids;
    REQUIRE(qs_io_read_all("models/opt-mini/eval.txt", &text, &len) == QS_OK, "%s", qs_last_error());
    REQUIRE(qs_tok_encode(m->tok, text, len, 1, &ids, &n) == QS_OK, "%s", qs_last_error());
    free(text);
    qs_calib_opts co = qs_calib_opts_defaults();
    co.windows = 2;
    qs_calib cal;
    REQUIRE(qs_calib_load(m, &co, &cal) == QS_OK, "%s", qs_last_error());

    const char *specs[] = {"rtn:w=4", "fp32", "bogus", "rtn:a=8,act=tensor"};
    qs_compare_row rows[5];
    qs_compare_opts o = {.calib = &cal, .ctx = 128, .max_windows = 2};
    REQUIRE(qs_compare_run(m, specs, 4, ids, (long)n, &o, rows) == QS_OK, "%s", qs_last_error());

    qs_ctx *c;
    qs_ppl_opts po = {.ctx = 128, .max_windows = 2};
    qs_ppl_result r;
    REQUIRE(qs_ctx_new(m, NULL, 128, &c) == QS_OK && qs_eval_ppl(c, ids, (long)n, &po, &r) == QS_OK, "%s",
            qs_last_error());
    qs_ctx_free(c);
    CHECK(rows[0].ok && !strcmp(rows[0].spec, "fp32") && rows[0].ppl == r.ppl && rows[0].tokens == r.tokens,
          "fp32 row %.6f vs %.6f", rows[0].ppl, r.ppl);
    CHECK(rows[0].weight_bytes == qs_model_weight_bytes(m) && rows[0].params == qs_model_params(m), "fp32 sizes");
    /* rtn:w=4 replaces each layer's linears (as stored: F16 here) by 4-bit codes with scales */
    long long want4 = rows[0].weight_bytes;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        qs_linear *ls[QS_LAYER_LINEARS];
        int nl = qs_layer_linears(&m->w.layers[l], 0, ls);
        for (int j = 0; j < nl; j++)
            if (qs_linear_readable(ls[j]))
                want4 += qs_quant_weight_bytes(ls[j]->n_out, ls[j]->n_in, 4, 0, 1) - qs_linear_stored_bytes(ls[j]);
    }
    CHECK(rows[1].ok && rows[1].ppl > rows[0].ppl && rows[1].weight_bytes == want4,
          "rtn:w=4: ppl %.4f, %lld bytes, want %lld", rows[1].ppl, rows[1].weight_bytes, want4);
    CHECK(rows[2].ok && rows[2].ppl == rows[0].ppl, "fp32 again is the reference");
    CHECK(!rows[3].ok && !strcmp(rows[3].spec, "bogus") && strstr(rows[3].err, "unknown method"), "bad spec: %s",
          rows[3].err);
    CHECK(rows[4].ok && isfinite(rows[4].ppl) && rows[4].kv_bytes_per_token < rows[0].kv_bytes_per_token,
          "calibrated row: %s", rows[4].err);

    /* without calibration rows the specs that need them fail, the others run */
    o.calib = NULL;
    REQUIRE(qs_compare_run(m, specs + 3, 1, ids, (long)n, &o, rows) == QS_OK, "%s", qs_last_error());
    CHECK(rows[0].ok && !rows[1].ok && rows[1].err[0], "no calibration: %s", rows[1].err);
    qs_calib_free(&cal);
    free(ids);
    qs_model_free(m);
}
