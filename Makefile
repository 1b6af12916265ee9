# Top-level build: the charm (later issues), the local model's C tools, tests.
# `make demo` and `make check` are the two commands the README starts with.

CC      ?= cc
BUILD   := build
CSTD    := -std=gnu11
WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla
HARDEN  := -O2 -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fPIE
LDHARD  := -pie -Wl,-z,relro,-z,now
CFLAGS  := $(CSTD) $(WARN) $(HARDEN) -g
LDFLAGS := $(LDHARD)
PYTEST  := /usr/bin/python3 -m pytest

SANDBOX_BIN := $(BUILD)/sandbox/jujuc $(BUILD)/sandbox/unit-init
# Sanitizer build of the same tools, run by tests/sandbox/test_c_tools.py when present.
ASAN_BIN    := $(BUILD)/asan/jujuc $(BUILD)/asan/unit-init
SANITIZE    := -fsanitize=address,undefined -fno-omit-frame-pointer
ASAN_CFLAGS := $(CSTD) $(WARN) $(SANITIZE) -O1 -g

.PHONY: all asan build deps check demo bench clean lint test-sandbox

all: build

build: $(SANDBOX_BIN)

$(BUILD)/sandbox/%: sandbox/src/%.c sandbox/src/wire.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

asan: $(ASAN_BIN)

$(BUILD)/asan/%: sandbox/src/%.c sandbox/src/wire.h
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -o $@ $< $(SANITIZE)

deps:
	@scripts/install-deps.sh

lint: build
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
		--inline-suppr sandbox/src
	/usr/bin/python3 -m pyflakes sandbox/bin/juju sandbox/juju/*.py tests/sandbox/*.py bench/*.py

test-sandbox: build
	$(PYTEST) -p no:cacheprovider -q tests/sandbox

check: deps build asan lint
	$(PYTEST) -p no:cacheprovider -q tests/sandbox
	BENCH_TOOL_CALLS=20 /usr/bin/python3 bench/sandbox_deploy.py

demo: deps build
	@sandbox/demo.sh

bench: deps build
	/usr/bin/python3 bench/sandbox_deploy.py

clean:
	rm -rf $(BUILD)
