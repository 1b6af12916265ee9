# Top-level build: the charm (relay + agent), the local model's C tools, tests.
# `make demo` and `make check` are the two commands the README starts with.

CC      ?= cc
CLANG   ?= clang-14
BUILD   := build
CSTD    := -std=gnu11
WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla
HARDEN  := -O2 -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fPIE
LDHARD  := -pie -Wl,-z,relro,-z,now
CFLAGS  := $(CSTD) $(WARN) $(HARDEN) -g
LDFLAGS := $(LDHARD)
INC     := -Ilib -Ihooks -Iagent -Itests/unit
PYTEST  := /usr/bin/python3 -m pytest
# libraries of the agent; `=` so pkg-config runs after `make deps` installed them
AGENT_PKGS  := libsystemd jansson libsodium libcrypto libssl libpq libcurl
AGENT_CFLAGS = $(shell pkg-config --cflags $(AGENT_PKGS))
AGENT_LIBS   = $(shell pkg-config --libs $(AGENT_PKGS))

SANITIZE    := -fsanitize=address,undefined -fno-omit-frame-pointer
ASAN_CFLAGS := $(CSTD) $(WARN) $(SANITIZE) -O1 -g

# ---- sources ----------------------------------------------------------------------
LIB_SRC    := $(wildcard lib/*.c)
RELAY_SRC  := hooks/relay.c
HOOKS_LIB  := $(filter-out $(RELAY_SRC),$(wildcard hooks/*.c))
AGENT_MAIN := agent/main.c
AGENT_LIB  := $(filter-out $(AGENT_MAIN),$(wildcard agent/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
HEADERS    := $(wildcard lib/*.h hooks/*.h agent/*.h tests/unit/*.h)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
aobj = $(patsubst %.c,$(BUILD)/asan-obj/%.o,$(1))

CHARM_TREE := $(BUILD)/charm
RELAY_BIN  := $(CHARM_TREE)/dispatch
AGENT_BIN  := $(CHARM_TREE)/bin/pg-agent
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
UNIT_ASAN  := $(patsubst tests/unit/%.c,$(BUILD)/asan/tests/%,$(UNIT_SRC))
FUZZ_BIN   := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
SANDBOX_BIN := $(BUILD)/sandbox/jujuc $(BUILD)/sandbox/unit-init
ASAN_BIN    := $(BUILD)/asan/jujuc $(BUILD)/asan/unit-init
CHARM_FILES := metadata.yaml $(wildcard config.yaml actions.yaml)

.PHONY: all asan build charm charm-asan charm-tree deps check demo bench clean lint unit fuzz tls-long \
	test-sandbox chaos bench-failover

all: build

build: $(SANDBOX_BIN) charm $(UNIT_BIN) $(BUILD)/tests-int/etcd_probe \
	$(BUILD)/tests-int/timeline_probe

# ---- the local model's C tools -------------------------------------------------------
$(BUILD)/sandbox/%: sandbox/src/%.c sandbox/src/wire.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/asan/%: sandbox/src/%.c sandbox/src/wire.h
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -o $@ $< $(SANITIZE)

# ---- the charm -------------------------------------------------------------------------
$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) $(AGENT_CFLAGS) -c -o $@ $<

$(BUILD)/asan-obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) $(INC) $(AGENT_CFLAGS) -c -o $@ $<

$(RELAY_BIN): $(call obj,$(RELAY_SRC) $(HOOKS_LIB) $(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS)

# RUNPATH: libraries charmcraft stages into the charm (charmcraft.yaml stage-packages).
AGENT_RPATH := -Wl,-rpath,'$$ORIGIN/../usr/lib/x86_64-linux-gnu'
$(AGENT_BIN): $(call obj,$(AGENT_MAIN) $(AGENT_LIB) $(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(AGENT_RPATH) $(AGENT_LIBS)

# src/cos/bundle.json: the alert rules (topology placeholder in every selector) and the
# dashboards (base64 xz, stable uid) the agent publishes on cos-agent (scripts/cos_bundle.py)
charm-tree: $(RELAY_BIN) $(AGENT_BIN) $(CHARM_FILES) $(shell find src -type f) scripts/cos_bundle.py
	install -m 0644 $(CHARM_FILES) $(CHARM_TREE)/
	rm -rf $(CHARM_TREE)/src && mkdir -p $(CHARM_TREE)/src
	cp -r src/. $(CHARM_TREE)/src/
	mkdir -p $(CHARM_TREE)/src/cos
	/usr/bin/python3 scripts/cos_bundle.py --root . --charm-name postgresql \
		--out $(CHARM_TREE)/src/cos/bundle.json
	find $(CHARM_TREE)/src -type f -exec chmod 0644 {} +
	printf 'bases:\n- architectures: [amd64]\n  channel: "22.04"\n  name: ubuntu\n- architectures: [amd64]\n  channel: "24.04"\n  name: ubuntu\n' > $(CHARM_TREE)/manifest.yaml

charm: charm-tree
	/usr/bin/python3 scripts/pack-charm.py $(CHARM_TREE) $(BUILD)/postgresql.charm
	cd $(BUILD) && sha256sum postgresql.charm > SHA256SUMS

# The same charm with relay and agent built with ASan+UBSan (findings go to files under
# /var/log/pg-agent in the unit); one integration test deploys it.
ASAN_TREE := $(BUILD)/asan-charm
ASAN_OPTS := tests/asan/asan_options.c
$(ASAN_TREE)/dispatch: $(call aobj,$(RELAY_SRC) $(HOOKS_LIB) $(LIB_SRC)) $(ASAN_OPTS)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(SANITIZE)

$(ASAN_TREE)/bin/pg-agent: $(call aobj,$(AGENT_MAIN) $(AGENT_LIB) $(LIB_SRC)) $(ASAN_OPTS)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -o $@ $^ $(SANITIZE) $(AGENT_LIBS)

charm-asan: charm-tree $(ASAN_TREE)/dispatch $(ASAN_TREE)/bin/pg-agent
	install -m 0644 $(CHARM_FILES) $(CHARM_TREE)/manifest.yaml $(ASAN_TREE)/
	rm -rf $(ASAN_TREE)/src && cp -r $(CHARM_TREE)/src $(ASAN_TREE)/src
	/usr/bin/python3 scripts/pack-charm.py $(ASAN_TREE) $(BUILD)/postgresql-asan.charm

# ---- tests -----------------------------------------------------------------------------
$(BUILD)/tests/%: tests/unit/%.c $(call obj,$(HOOKS_LIB) $(AGENT_LIB) $(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) $(AGENT_CFLAGS) -o $@ $^ $(LDFLAGS) $(AGENT_LIBS)

$(BUILD)/asan/tests/%: tests/unit/%.c $(call aobj,$(HOOKS_LIB) $(AGENT_LIB) $(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) $(INC) $(AGENT_CFLAGS) -o $@ $^ $(SANITIZE) $(AGENT_LIBS)

$(BUILD)/tests-int/etcd_probe: tests/etcd/etcd_probe.c $(call obj,$(HOOKS_LIB) $(AGENT_LIB) $(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) $(AGENT_CFLAGS) -o $@ $^ $(LDFLAGS) $(AGENT_LIBS)

$(BUILD)/tests-int/timeline_probe: tests/timeline/timeline_probe.c $(call obj,$(HOOKS_LIB) $(AGENT_LIB) $(LIB_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) $(AGENT_CFLAGS) -o $@ $^ $(LDFLAGS) $(AGENT_LIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(HOOKS_LIB) $(AGENT_LIB) $(LIB_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined $(INC) $(AGENT_CFLAGS) -o $@ $< \
		$(HOOKS_LIB) $(AGENT_LIB) $(LIB_SRC) $(AGENT_LIBS)

asan: $(ASAN_BIN) $(UNIT_ASAN) charm-asan

unit: $(UNIT_BIN) $(UNIT_ASAN)
	@set -e; for t in $(UNIT_BIN) $(UNIT_ASAN); do echo "== $$t"; $$t; done

# a short run of every fuzz target (longer: FUZZ_SECONDS=600 make fuzz)
FUZZ_SECONDS ?= 15
fuzz: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); echo "== $$n"; \
		work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; \
		cp -r tests/fuzz/corpus/$$n/. $$work/ 2>/dev/null || true; \
		if ! $$f -max_total_time=$(FUZZ_SECONDS) $$work > $$work.log 2>&1; then \
			tail -40 $$work.log; rm -rf "$$work" $$work.log; exit 1; fi; \
		grep -E '^(Done|#[0-9]+.*DONE)' $$work.log | tail -1; rm -rf "$$work" $$work.log; done

deps:
	@scripts/install-deps.sh

# clang-tidy (checks in .clang-tidy) and gcc's -fanalyzer over every C file of the charm and
# the local model, two files at a time; any finding fails. Suppress a false positive in
# place, with its reason: `// NOLINT(check): why` or a `#pragma GCC diagnostic` pair.
LINT_C      := $(LIB_SRC) $(wildcard hooks/*.c agent/*.c sandbox/src/*.c)
LINT_JOBS   ?= 2
CLANG_TIDY  ?= clang-tidy-14
# the build's own flags (-fno-caret-diagnostics only drops clang's "N warnings generated.")
TIDY_FLAGS   = $(CFLAGS) $(INC) $(AGENT_CFLAGS) -fno-caret-diagnostics
ANALYZER_FLAGS = -fanalyzer $(CSTD) -O1 -Wall -Wextra -Werror $(INC) $(AGENT_CFLAGS)

lint: build
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
		--inline-suppr sandbox/src lib hooks agent
	printf '%s\n' $(LINT_C) | xargs -P$(LINT_JOBS) -I{} $(CLANG_TIDY) -quiet {} -- $(TIDY_FLAGS)
	printf '%s\n' $(LINT_C) | xargs -P$(LINT_JOBS) -I{} gcc $(ANALYZER_FLAGS) -c -o /dev/null {}
	/usr/bin/python3 -m pyflakes sandbox/bin/juju sandbox/juju/*.py tests/*.py tests/sandbox/*.py \
		tests/integration/*.py tests/chaos/*.py tests/cos/*.py tests/charms/*/src/*.py \
		bench/*.py scripts/*.py

test-sandbox: build
	$(PYTEST) -p no:cacheprovider -q tests/sandbox

# Chaos tests (tests/chaos/test_chaos.py): `check` runs one short round (host kill, SIGSTOP,
# network cut, etcd-leader kill: about 2.5 min); `make chaos` runs CHAOS_ROUNDS rounds of each
# (and the instant-reboot fault) and a CHAOS_LOAD_SECONDS pgbench load, bounded by
# CHAOS_TIME_CAP seconds of rounds.
CHAOS_ROUNDS       ?= 3
CHAOS_LOAD_SECONDS ?= 600
CHAOS_TIME_CAP     ?= 5400
CHAOS_FAULTS       ?= kill,stop,netcut,etcd-leader,reboot
CHECK_CHAOS_ENV     = CHAOS_ROUNDS=1 CHAOS_FAULTS=kill,stop,netcut,etcd-leader \
		      CHAOS_LOAD_SECONDS=0 CHAOS_TIME_CAP=900

check: deps build asan lint unit fuzz
	$(CHECK_CHAOS_ENV) $(PYTEST) -p no:cacheprovider -q tests/cos tests/sandbox tests/integration \
		tests/chaos
	BENCH_TOOL_CALLS=20 /usr/bin/python3 bench/sandbox_deploy.py
	BENCH_HOOK_RUNS=20 /usr/bin/python3 bench/hook_latency.py

chaos: deps build
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_LOAD_SECONDS=$(CHAOS_LOAD_SECONDS) \
		CHAOS_TIME_CAP=$(CHAOS_TIME_CAP) CHAOS_FAULTS=$(CHAOS_FAULTS) \
		$(PYTEST) -p no:cacheprovider -q -rA tests/chaos

# the TLS renewal run of issue 5's acceptance: 2-minute certificates renewed for 10 minutes
# under a writer (make check runs the same test for TLS_ROTATION_SECONDS=240)
tls-long: deps build
	TLS_ROTATION_SECONDS=600 $(PYTEST) -p no:cacheprovider -q -rA tests/integration/test_tls_rotation.py

# failover and switchover figures, Patroni 3 (3 profiles) next to the charm (FAILOVER_ROUNDS,
# FAILOVER_PROFILES: see bench/failover.py)
bench-failover: deps build
	/usr/bin/python3 bench/failover.py

demo: deps build
	@sandbox/demo.sh

bench: deps build
	/usr/bin/python3 bench/sandbox_deploy.py
	/usr/bin/python3 bench/hook_latency.py

clean:
	rm -rf $(BUILD)
