/* hf_impl.h — the config.json reader's state, shared by hf.c and hf_config.c. */
#ifndef QS_HF_IMPL_H
#define QS_HF_IMPL_H

#include <cJSON.h>

struct qs_cfgr {
    const cJSON *root;
    const char *path; /* config.json, for messages */
};

#endif
