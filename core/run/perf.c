/* perf.c — prefill and decode speed as llama-bench measures it: pp = one
 * forward of p tokens (logits of the last row), tg = n single-token steps
 * from an empty cache; each repeated, reported as the mean and standard
 * deviation of tokens/s. */
#include <math.h>
#include <stdlib.h>

#include "run/run.h"

static double stat_mean(const double *v, int n, double *sd) {
    double m = 0, s = 0;
    for (int i = 0; i < n; i++) m += v[i];
    m /= n;
    for (int i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    *sd = n > 1 ? sqrt(s / (n - 1)) : 0;
    return m;
}

qs_status qs_perf_run(const qs_model *m, const qs_exec *x, const qs_perf_opts *o, qs_perf_result *r) {
    int p = o->p, n = o->n, reps = o->reps < 1 ? 1 : o->reps > QS_PERF_MAX_REPS ? QS_PERF_MAX_REPS : o->reps;
    int cap = p > n ? p : n;
    if (cap < 1) return qs_fail(QS_EARG, "bench: nothing to measure (-p 0 and -n 0)");
    if (cap > m->cfg.max_pos)
        return qs_fail(QS_EARG, "bench: %d tokens exceed the model's %d positions", cap, m->cfg.max_pos);
    qs_ctx *c = NULL;
    qs_status st = qs_ctx_new(m, x, cap, &c);
    if (st) return st;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    float *logits = malloc((size_t)m->cfg.vocab * sizeof *logits);
    if (!ids || !logits) {
        st = qs_fail(QS_ENOMEM, "out of memory");
        goto done;
    }
    uint64_t s = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < cap; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        ids[i] = (int32_t)(s % (uint64_t)m->cfg.vocab);
    }
    r->reps = reps;
    long done_n = 0, total = (long)reps * (p > 0) + (long)reps * n;
    /* one untimed step first: the weights' pages and the pool's threads */
    qs_ctx_reset(c);
    if ((st = qs_forward(c, ids, 1, logits, QS_LOGITS_LAST))) goto done;
    for (int k = 0; k < reps && p > 0; k++) {
        qs_ctx_reset(c);
        double t0 = qs_io_clock();
        if ((st = qs_forward(c, ids, p, logits, QS_LOGITS_LAST))) goto done;
        r->pp_runs[k] = p / (qs_io_clock() - t0);
        if (o->progress && o->progress(o->progress_ud, ++done_n, total)) goto cancel;
    }
    for (int k = 0; k < reps && n > 0; k++) {
        qs_ctx_reset(c);
        double t0 = qs_io_clock();
        for (int i = 0; i < n; i++) {
            if ((st = qs_forward(c, ids + i, 1, logits, QS_LOGITS_LAST))) goto done;
            if (o->progress && o->progress(o->progress_ud, ++done_n, total)) goto cancel;
        }
        r->tg_runs[k] = n / (qs_io_clock() - t0);
    }
    r->pp_tok_s = p > 0 ? stat_mean(r->pp_runs, reps, &r->pp_sd) : 0;
    r->tg_tok_s = n > 0 ? stat_mean(r->tg_runs, reps, &r->tg_sd) : 0;
    goto done;
cancel:
    st = qs_fail(QS_ECANCEL, "bench: cancelled after %ld of %ld steps", done_n, total);
done:
    free(ids);
    free(logits);
    qs_ctx_free(c);
    return st;
}
