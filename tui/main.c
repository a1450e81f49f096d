/* qscope — a terminal workbench for looking inside language models and
 * compressing them. This file only dispatches: `qscope <command> ...` runs a
 * shell command (cli/), `qscope [MODEL]` opens the full-screen view. */
#include "../cli/cli.h"
#include "tui.h"

int main(int argc, char **argv) {
    int rc = cli_main(argc, argv, tui_main_accepts);
    return rc == CLI_WORKBENCH ? tui_main(argc - 1, argv + 1) : rc;
}
