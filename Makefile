# qscope — see README.md. `make` builds ./qscope; `make test` installs what is
# missing, builds and runs every test; `make run` opens the workbench.

PKGS      := ncursesw lua5.4 openblas lapacke readline libcjson libutf8proc oniguruma
CC        ?= cc
OPT       ?= -O3
CFLAGS    ?= $(OPT) -g
# always added, even when CFLAGS is given on the command line (make asan does)
QS_CFLAGS := -Icore -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -fPIC
# qscope never reads the floating-point exception flags: without this, gcc keeps each
# comparison of floats behind a branch and leaves loops such as the exponential's scalar
QS_CFLAGS += -fno-trapping-math
# make WERROR=1: warnings are errors (.ci/run builds so)
ifneq ($(WERROR),)
QS_CFLAGS += -Werror
endif
# pkg-config errors are not hidden: the build rules first check every package
# (pkgcheck) and stop naming the missing one; `make deps` installs them
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(PKGS))
LDLIBS    += $(PKG_LIBS) -lm -lpthread

BUILD     ?= build
CORE_SRC  := $(wildcard core/*/*.c)
LUA_SRC   := $(wildcard lua/*.c)
CLI_SRC   := $(wildcard cli/*.c)
TUI_SRC   := $(wildcard tui/*.c)
TEST_SRC  := $(wildcard tests/c/*.c)
CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/%.o)
LUA_OBJ   := $(LUA_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TUI_OBJ   := $(TUI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)
CORE_LIB  := $(BUILD)/libqscope-core.a
VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
PREFIX    ?= /usr/local

.PHONY: all deps pkgcheck run test check test-c test-c-quick test-cli test-cli-smoke test-lua test-tui test-fuzz fuzz asan sanitize bench bench-files lint clean install

all: qscope qscope.so

deps:
	@scripts/install-deps

# stop with a message naming each missing package (order-only: never rebuilds)
pkgcheck:
	@command -v pkg-config >/dev/null 2>&1 || { echo "qscope: pkg-config is not installed; run 'make deps'" >&2; exit 1; }
	@for p in $(PKGS); do pkg-config --exists $$p || { pkg-config --print-errors --exists $$p; \
	  echo "qscope: pkg-config cannot find package '$$p'; run 'make deps' to install it" >&2; exit 1; }; done

$(BUILD)/%.o: %.c | pkgcheck
	@mkdir -p $(dir $@)
	$(CC) $(QS_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -DQS_VERSION='"$(VERSION)"' -MMD -MP -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

qscope: $(TUI_OBJ) $(CLI_OBJ) $(LUA_OBJ) $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $(TUI_OBJ) $(CLI_OBJ) $(LUA_OBJ) $(CORE_LIB) $(LDFLAGS) $(LDLIBS)

# The Lua module for stock lua5.4 (`require "qscope"`): the bindings and the
# core library, all compiled -fPIC, linked against lua5.4 and the core's libraries.
SO_PKGS   := lua5.4 openblas lapacke libcjson libutf8proc oniguruma
SO_LIBS    = $(shell pkg-config --libs $(SO_PKGS)) -lm -lpthread
LUA_CMOD  ?= $(PREFIX)/lib/lua/5.4

qscope.so: $(LUA_OBJ) $(CORE_LIB)
	$(CC) $(QS_CFLAGS) $(CFLAGS) -shared -o $@ $(LUA_OBJ) $(CORE_LIB) $(LDFLAGS) $(SO_LIBS)

$(BUILD)/qs_tests: $(TEST_OBJ) $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(CORE_LIB) $(LDFLAGS) $(LDLIBS)

run: deps
	@$(MAKE) --no-print-directory all
	./qscope

test: deps
	@$(MAKE) --no-print-directory test-c test-fuzz test-cli test-lua test-tui

# The quick tier (under 2 minutes): the C unit tests but the slowest, then a
# smoke run of a few commands on the bundled model. `make test` runs everything.
check: deps
	@$(MAKE) --no-print-directory test-c-quick test-cli-smoke

test-c: $(BUILD)/qs_tests qscope
	$(BUILD)/qs_tests

# the slowest C tests (whole-model runs over many windows, GPTQ, SliceGPT
# against its reference, the RPTQ sweeps), left to `make test`
SLOW_C_TESTS ?= gptq_beats_rtn_gpt2 gptq_beats_rtn_llama gptq_beats_rtn_opt \
  ppl_gpt2_reference ppl_llama_reference ppl_opt_reference \
  rptq_a4_llama rptq_a4_opt rptq_g_sweep_opt rptq_g_sweep_per_head_opt rptq_quantizers_follow_reorder \
  rptq_ref_bits_per_site rptq_ref_ema_ranges rptq_ref_w16a4_opt rptq_ref_w16a8_opt rptq_ref_w4a4kv_gptq_opt \
  slice_opt_matches_reference slice_other_models variant_int8_gpt2 variant_int8_llama
test-c-quick: $(BUILD)/qs_tests qscope
	QS_SKIP_TESTS="$(SLOW_C_TESTS)" $(BUILD)/qs_tests

test-cli: qscope
	tests/cli/run

test-cli-smoke: qscope
	tests/cli/run --smoke

test-lua: qscope qscope.so
	@if ls tests/lua/*.lua >/dev/null 2>&1; then ./qscope run tests/lua/run.lua; fi

test-tui: qscope
	@if [ -x tests/tui/run ]; then tests/tui/run; fi

# The C and CLI tests (and the fuzz regression corpus) under AddressSanitizer + UndefinedBehaviorSanitizer,
# built with clang when it is installed (its UBSan also checks pointer
# arithmetic on NULL, which gcc's does not), else with $(CC); any report
# stops the run. `make asan`: the C tests only. The fused AVX-512 prefill
# (kern/wfgemm.c) is off for the end-to-end tests: at -O1 under ASan its
# accumulators live in checked memory and it takes most of the run; the
# wmat tests still run it (and its dispatch) under the sanitizers.
SAN_CC    ?= $(shell command -v clang >/dev/null 2>&1 && echo clang || echo $(CC))
SAN_FLAGS := -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_ENV   := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	     QSCOPE_FUSED_PREFILL=0
SAN_MAKE   = $(MAKE) --no-print-directory BUILD=build-san CC=$(SAN_CC) OPT="-O1" CFLAGS="-O1 -g $(SAN_FLAGS)" \
	  LDFLAGS="$(SAN_FLAGS)"

$(BUILD)/qscope: $(TUI_OBJ) $(CLI_OBJ) $(LUA_OBJ) $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $(TUI_OBJ) $(CLI_OBJ) $(LUA_OBJ) $(CORE_LIB) $(LDFLAGS) $(LDLIBS)

sanitize: deps
	@$(SAN_MAKE) build-san/qs_tests build-san/qscope $(FUZZ_TARGETS:%=build-san/replay_%)
	$(SAN_ENV) build-san/qs_tests
	$(SAN_ENV) QSCOPE=build-san/qscope tests/cli/run
	@$(SAN_ENV) $(SAN_MAKE) test-fuzz

asan: deps
	@$(SAN_MAKE) build-san/qs_tests
	$(SAN_ENV) build-san/qs_tests

# Fuzz targets (tests/fuzz/README): one per reader. `make test` replays the
# regression corpus and the seeds through each with a plain driver (no
# libFuzzer, any compiler); `make fuzz` builds them with clang's libFuzzer,
# ASan and UBSan and runs each for FUZZ_SECONDS, new inputs kept in
# build-fuzz/corpus/TARGET, crashes written to build-fuzz/crash-TARGET-*.
FUZZ_TARGETS := hf gguf l2c tokenizer_json vocab_merges tokenizer_config spm_model spec ids lua_opts
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_COMMON   = $(BUILD)/tests/fuzz/fuzz_util.o $(CORE_LIB)

$(BUILD)/replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/driver.o $(FUZZ_COMMON)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_COMMON)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDFLAGS) $(LDLIBS)

# the Lua option tables' target links the bindings too
$(BUILD)/replay_lua_opts: $(BUILD)/tests/fuzz/fuzz_lua_opts.o $(BUILD)/tests/fuzz/driver.o $(LUA_OBJ) $(FUZZ_COMMON)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/fuzz_lua_opts: $(BUILD)/tests/fuzz/fuzz_lua_opts.o $(LUA_OBJ) $(FUZZ_COMMON)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDFLAGS) $(LDLIBS)

test-fuzz: $(FUZZ_TARGETS:%=$(BUILD)/replay_%)
	@for t in $(FUZZ_TARGETS); do $(BUILD)/replay_$$t tests/fuzz/regress/$$t tests/fuzz/seeds/$$t || exit 1; done

fuzz:
	@scripts/install-deps --fuzz
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPT="-O1" \
	  CFLAGS="-O1 -g -fsanitize=fuzzer-no-link $(FUZZ_FLAGS)" LDFLAGS="$(FUZZ_FLAGS)" \
	  $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do mkdir -p build-fuzz/corpus/$$t; \
	  echo "== $$t ($(FUZZ_SECONDS) s)"; \
	  QSCOPE_THREADS=1 build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -dict=tests/fuzz/dict/$$t.dict -artifact_prefix=build-fuzz/crash-$$t- \
	    build-fuzz/corpus/$$t tests/fuzz/seeds/$$t $$(ls -d tests/fuzz/regress/$$t 2>/dev/null) 2>&1 | \
	    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|SUMMARY|Test unit written' || true; \
	  if ls build-fuzz/crash-$$t-* >/dev/null 2>&1; then echo "qscope: $$t: inputs that fail are in build-fuzz/" >&2; exit 1; fi; \
	done

bench: deps
	@$(MAKE) --no-print-directory qscope $(BUILD)/qs_bench $(BUILD)/qs_make_model
	$(BUILD)/qs_bench --json bench.json
	scripts/bench-files --shape tinyllama --out bench-files.json

# qscope bench on random-weight files against llama.cpp's figures (PERF.md)
bench-files: deps
	@$(MAKE) --no-print-directory qscope $(BUILD)/qs_make_model
	scripts/bench-files --out bench-files.json

$(BUILD)/qs_bench: $(BUILD)/bench/bench.o $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/qs_make_model: $(BUILD)/bench/make_model.o $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/qs_bench_i8: $(BUILD)/bench/bench_i8.o $(CORE_LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# Includes point down the layers only (scripts/check-layers).
lint:
	@scripts/check-layers

install: qscope qscope.so
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 qscope $(DESTDIR)$(PREFIX)/bin/qscope
	install -m 644 man/qscope.1 $(DESTDIR)$(PREFIX)/share/man/man1/qscope.1
	install -d $(DESTDIR)$(LUA_CMOD) $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 qscope.so $(DESTDIR)$(LUA_CMOD)/qscope.so
	install -m 644 man/qscope-lua.7 $(DESTDIR)$(PREFIX)/share/man/man7/qscope-lua.7

clean:
	rm -rf build build-asan build-san build-fuzz build-werror qscope qscope.so bench.json bench-files.json

FUZZ_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/fuzz/*.c))
.SECONDARY: $(FUZZ_OBJ)
-include $(CORE_OBJ:.o=.d) $(LUA_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TUI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(FUZZ_OBJ:.o=.d)
