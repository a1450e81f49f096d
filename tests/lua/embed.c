/* A host embedding the qscope module as the workbench does: print and
 * io.write go to a log buffer, plots to a sink, errors come back with a
 * traceback. Built and run by test_runner.lua:
 *     embed 'LUA CODE'   prints what the sinks received.
 * With $EMBED_MODEL the host loads that model itself and lends it to Lua as
 * the global `host` (qsl_push_model), then checks it outlives the state. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "../../lua/qsl.h"

static char logbuf[4096];
static size_t loglen;

static void on_write(void *ud, const char *s, size_t n) {
    (void)ud;
    if (loglen + n < sizeof logbuf) {
        memcpy(logbuf + loglen, s, n);
        loglen += n;
    }
}

static void on_plot(void *ud, const qsl_plot *p) {
    (void)ud;
    printf("PLOT kind=%d title=%s series=%d n=%d groups=%d", p->kind, p->title ? p->title : "-", p->n_series,
           p->n_series ? p->series[0].n : 0, p->n_groups);
    for (int g = 0; g < p->n_groups; g++) printf(" [%s]", p->group_names[g]);
    if (p->n_series && p->series[0].group) {
        printf(" groups:");
        for (int i = 0; i < p->series[0].n; i++) printf(" %d", p->series[0].group[i]);
    }
    printf(" width=%d height=%d\n", p->width, p->height);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (qsl_preload(L) != 0) {
        printf("PRELOAD %s\n", lua_tostring(L, -1));
        return 1;
    }
    qsl_set_print(L, on_write, NULL);
    qsl_set_plot_sink(on_plot, NULL);
    qs_model *host = NULL;
    const char *hp = getenv("EMBED_MODEL");
    if (hp) {
        if (qs_model_load(hp, NULL, &host) != QS_OK) {
            printf("HOST cannot load %s\n", hp);
            return 1;
        }
        qsl_push_model(L, host);
        lua_setglobal(L, "host");
    }
    for (int i = 1; i < argc; i++) {
        if (luaL_loadstring(L, argv[i]) != LUA_OK || qsl_pcall(L, 0, 0) != LUA_OK) {
            printf("ERROR %s\n", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    printf("LOG[%.*s]\n", (int)loglen, logbuf);
    /* back to stdout */
    qsl_set_print(L, NULL, NULL);
    qsl_set_plot_sink(NULL, NULL);
    luaL_loadstring(L, "print('STDOUT') qscope.plot.bars({1}, {title = 'TEXT', width = 20})");
    if (qsl_pcall(L, 0, 0) != LUA_OK) printf("ERROR %s\n", lua_tostring(L, -1));
    lua_close(L);
    if (host) { /* still the host's, after every Lua handle has gone */
        printf("HOST params %lld\n", qs_model_params(host));
        qs_model_free(host);
    }
    return 0;
}
