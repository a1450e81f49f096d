/* Ctrl-C in the shell commands: the first SIGINT sets a flag that the
 * commands' progress callbacks return, so the running core loop stops the
 * way the workbench cancels a job (its callback asks to stop, the call
 * returns QS_ECANCEL); cli_main then says "interrupted" and exits 130. A
 * second SIGINT before that: the default action. `qscope run` has its own
 * handler (lua/qsl_run.c), which stops the script the same way. */
#include <signal.h>
#include <string.h>

#include "cli.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    if (interrupted) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    interrupted = 1;
}

void cli_interrupt_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

int cli_interrupted(void) { return interrupted; }
