/* `qscope run FILE.lua [args...]`: a headless Lua 5.4 with the module
 * preloaded as `qscope`, `arg` set as lua(1) sets it, Ctrl-C turned into a
 * clean "interrupted" error, and an exit status a shell can test. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <lualib.h>

#include "qsl_impl.h"

static lua_State *run_L;
static volatile sig_atomic_t sigints;

/* First Ctrl-C: stop the running call cleanly. A second one before the
 * first was handled: the default action (the process ends). */
static void on_sigint(int sig) {
    if (qsl_interrupt_pending()) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    sigints++;
    qsl_interrupt(run_L);
}

int qsl_run(int argc, char **argv) {
    if (argc < 1 || !argv[0][0]) {
        fputs("usage: qscope run FILE.lua [args...]   (FILE - reads standard input)\n", stderr);
        return 2;
    }
    lua_State *L = luaL_newstate();
    if (!L) {
        fputs("qscope: cannot create a Lua state (out of memory)\n", stderr);
        return 1;
    }
    luaL_openlibs(L);
    if (qsl_preload(L) != 0) {
        fprintf(stderr, "qscope: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    lua_createtable(L, argc, 1);
    lua_pushliteral(L, "qscope");
    lua_rawseti(L, -2, -1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
    const char *file = strcmp(argv[0], "-") ? argv[0] : NULL;
    if (luaL_loadfile(L, file) != LUA_OK) {
        fprintf(stderr, "qscope: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    luaL_checkstack(L, argc, "too many arguments");
    for (int i = 1; i < argc; i++) lua_pushstring(L, argv[i]);

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    run_L = L;
    sigints = 0;
    sigaction(SIGINT, &sa, &old);
    int st = qsl_pcall(L, argc - 1, 0);
    sigaction(SIGINT, &old, NULL);

    int rc = 0;
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (!msg) msg = "(error object is not a string)";
        if (st == QSL_ERRUSAGE) { /* the script's command line: as a command's usage error */
            fprintf(stderr, "qscope: %s: %s\n", file ? file : "stdin", msg);
            rc = 2;
        } else if (sigints && strstr(msg, "interrupted")) {
            fputs("qscope: interrupted\n", stderr);
            rc = 130;
        } else {
            fprintf(stderr, "qscope: %s\n", msg);
            rc = 1;
        }
    }
    fflush(stdout);
    lua_close(L);
    run_L = NULL;
    return rc;
}
