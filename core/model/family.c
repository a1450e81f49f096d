/* family.c — the list of model families (one description per fam_*.c). */
#include <string.h>

#include "model/family_impl.h"

extern const qs_family qs_fam_opt, qs_fam_gpt2, qs_fam_llama, qs_fam_mistral, qs_fam_qwen2, qs_fam_qwen3,
    qs_fam_gemma, qs_fam_gemma2, qs_fam_phi3, qs_fam_phi, qs_fam_neox;

const qs_family *const qs_family_list[] = {
    &qs_fam_opt,  &qs_fam_gpt2,  &qs_fam_llama, &qs_fam_mistral, &qs_fam_qwen2, &qs_fam_qwen3,
    &qs_fam_gemma, &qs_fam_gemma2, &qs_fam_phi3, &qs_fam_phi,   &qs_fam_neox,  NULL,
};

const qs_family *qs_family_by_arch(const char *hf_arch) {
    for (int i = 0; qs_family_list[i]; i++)
        if (!strcmp(qs_family_list[i]->hf_arch, hf_arch)) return qs_family_list[i];
    return NULL;
}

const qs_family *qs_family_by_type(const char *model_type) {
    for (int i = 0; qs_family_list[i]; i++)
        if (!strcmp(qs_family_list[i]->model_type, model_type)) return qs_family_list[i];
    return NULL;
}
