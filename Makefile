# kvi -- convenience wrapper around CMake.  The two commands a fresh Debian 12
# machine needs are `make demo` and `make test`; both install missing Debian
# packages when run as root and otherwise print the apt-get line to run.

BUILD      ?= build
ASAN_BUILD ?= build-asan
COV_BUILD  ?= build-coverage
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
CMAKE_ARGS ?=

# Packages to build the library, the command, the engines, the examples and
# the test programs (cmocka, so that one build tree serves demo and test);
# DEPS_TEST adds the servers and tools the tests run.  Installed without
# Recommends, so what a test needs is named here even when Debian only
# recommends it (libsasl2-modules: the PLAIN mechanism of memcached's SASL;
# openssl: the command that makes the TLS tests' certificates).
# tools/fresh-root-test.sh proves the list on a clean Debian 12 root.
DEPS_BUILD = build-essential cmake pkg-config libhiredis-dev libmemcached-dev \
             libglib2.0-dev libedit-dev libsqlite3-dev libssl-dev libcmocka-dev \
             libuv1-dev libevent-dev
DEPS_TEST  = $(DEPS_BUILD) redis-server redis-tools memcached valgrind \
             liblua5.1-0-dev liblua5.4-dev lua5.1 lua5.4 luarocks lua-busted lua-sql-sqlite3 lua-socket \
             clang libclang-rt-14-dev sasl2-bin libsasl2-modules openssl \
             kamailio kamailio-lua-modules kamailio-sqlite-modules kamailio-mysql-modules mariadb-server \
             sip-tester sqlite3 tmux \
             gcovr

# DEPS_BENCH adds what the benchmarks and the measurements the docs show
# use (perf stat, strace -c, hyperfine); `make bench` installs them.
DEPS_BENCH = $(DEPS_TEST) linux-perf strace hyperfine

.PHONY: all build configure demo test check test-asan test-valgrind test-soak test-mutants test-mutants-check coverage coverage-report bench fuzz install clean \
        deps-build deps-test deps-bench

all: build

deps-build:
	@sh tools/ensure-packages.sh $(DEPS_BUILD)

deps-test:
	@sh tools/ensure-packages.sh $(DEPS_TEST)

deps-bench:
	@sh tools/ensure-packages.sh $(DEPS_BENCH)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVI_WERROR=ON $(CMAKE_ARGS)

# Configures again even when the build tree exists, so that what was
# installed since (a library, hence an engine module) is found: the tests
# registered never depend on what was typed first.  (Server binaries are
# looked up by the tests at run time.)
configure:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVI_WERROR=ON $(CMAKE_ARGS)

build: deps-build $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# The main job: a demo on the embedded local engine.
demo: build
	@sh examples/demo.sh $(BUILD)

# Every test: the normal build (gcc), then ASan+UBSan (clang), valgrind on
# the unit tests, the soak (KVI_SOAK_SECONDS, default 60) and the fuzzers
# (FUZZ_SECONDS per target, default 60).  deps-test has installed every
# server, so KVI_REQUIRE_SERVERS=1: a test that skips fails instead.
# Every phase runs under KVI_REQUIRE_SERVERS=1: a skipped test or case fails.
test: deps-test
	KVI_REQUIRE_SERVERS=1 $(MAKE) check
	KVI_REQUIRE_SERVERS=1 $(MAKE) test-asan
	KVI_REQUIRE_SERVERS=1 $(MAKE) test-valgrind
	KVI_REQUIRE_SERVERS=1 $(MAKE) test-soak
	KVI_REQUIRE_SERVERS=1 $(MAKE) fuzz

test-soak: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)
	ctest --test-dir $(BUILD) --output-on-failure -L soak -j3 \
	  --output-log $(BUILD)/ctest-soak.log; rc=$$?; \
	  sh tests/support/check-skips.sh $(BUILD)/ctest-soak.log \
	    $(BUILD)/Testing/Temporary/LastTest.log || rc=1; exit $$rc

# Skipped tests are listed at the end (check-skips.sh); with
# KVI_REQUIRE_SERVERS=1 any skip fails the run.  CTEST_ARGS selects a subset
# (e.g. CTEST_ARGS="-R conformance_redis").
CTEST_ARGS ?=
check: configure
	cmake --build $(BUILD) -j$(JOBS)
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS) -LE soak \
	  --output-log $(BUILD)/ctest-check.log $(CTEST_ARGS); rc=$$?; \
	  sh tests/support/check-skips.sh $(BUILD)/ctest-check.log \
	    $(BUILD)/Testing/Temporary/LastTest.log || rc=1; exit $$rc

# The sanitizer build uses clang, so CI builds with both gcc and clang.
# intercept_tls_get_addr=0: the leak checker of clang 14 (Debian 12) reads
# a thread's dynamically allocated TLS block with a pre-2.25 glibc layout
# when the block happens to start 16 bytes into a page, and then crashes at
# exit ("Tracer caught signal 11", after every check passed: CI of 853ca6b).
# kvi's own thread-locals are initial-exec (unit test tls_model), but a
# dlopen()ed module drags in libraries that are not (libstdc++ under
# libmemcached).  Off, the checker still finds those blocks through the
# thread's DTV, which it scans with the thread's static TLS.
test-asan:
	CC=clang cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKVI_WERROR=ON -DKVI_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:intercept_tls_get_addr=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j$(JOBS) -LE 'soak|bench-smoke|install' \
	  --output-log $(ASAN_BUILD)/ctest-asan.log $(CTEST_ARGS); rc=$$?; \
	  sh tests/support/check-skips.sh $(ASAN_BUILD)/ctest-asan.log \
	    $(ASAN_BUILD)/Testing/Temporary/LastTest.log || rc=1; exit $$rc

# Memcheck wraps the test's first program only (no --trace-children): the
# Lua tests start lua through a runner or a shell, so they are left to their
# own valgrind runs (lua5.1_valgrind, lua5.4_valgrind, in make check), and a
# shell's own leaks (dash) are not kvi's: shell scripts (label shell) neither.
# Integration tests run under memcheck only when named in VALGRIND_INTEGRATION
# (a second ctest run): batch_async (~30 s under memcheck here) drives every
# engine's non-blocking path, and its fork()ed children check their own
# leaks (kvi_test_child_start/_exit in tests/support/kvitest.h).
VALGRIND_OPTIONS = --leak-check=full --error-exitcode=97 --errors-for-leak-kinds=definite,indirect --suppressions=$(CURDIR)/tests/valgrind/ld-so.supp
VALGRIND_INTEGRATION = ^batch_async$$
test-valgrind: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)
	@rm -f $(BUILD)/Testing/Temporary/MemoryChecker.*.log  # judge this run's logs only
	ctest --test-dir $(BUILD) --output-on-failure -L 'unit|conformance' -LE 'integration|cli|bench-smoke|examples|lua|shell' \
	  --overwrite MemoryCheckCommandOptions="$(VALGRIND_OPTIONS)" \
	  -T memcheck -j$(JOBS) --output-log $(BUILD)/ctest-valgrind.log; rc=$$?; \
	  sh tests/support/check-skips.sh $(BUILD)/ctest-valgrind.log \
	    "$$(ls -t $(BUILD)/Testing/Temporary/LastDynamicAnalysis_*.log 2>/dev/null | head -1)" \
	    || rc=1; [ $$rc = 0 ] || exit $$rc
	ctest --test-dir $(BUILD) --output-on-failure -R '$(VALGRIND_INTEGRATION)' \
	  --overwrite MemoryCheckCommandOptions="$(VALGRIND_OPTIONS)" \
	  -T memcheck -j$(JOBS) --output-log $(BUILD)/ctest-valgrind-integration.log; rc=$$?; \
	  sh tests/support/check-skips.sh $(BUILD)/ctest-valgrind-integration.log \
	    "$$(ls -t $(BUILD)/Testing/Temporary/LastDynamicAnalysis_*.log 2>/dev/null | head -1)" \
	    || rc=1; [ $$rc = 0 ] || exit $$rc
	@if grep -l -E 'definitely lost: [1-9]|indirectly lost: [1-9]|ERROR SUMMARY: [1-9]' \
	    $(BUILD)/Testing/Temporary/MemoryChecker.*.log 2>/dev/null; then \
	  echo "valgrind found errors or leaks (logs above)"; exit 1; fi

# Line and branch coverage of src/, tools/ and bindings/ over the tests of
# `make check`, in its own build tree (gcc --coverage, -O0).  Not part of
# `make test`; fails when a test failed, after writing the report:
# $(COV_BUILD)/coverage-lines.txt and coverage-branches.txt (per file),
# $(COV_BUILD)/coverage/index.html.  docs/coverage.md says what stays uncovered.
GCOVR_FILTER = -r $(CURDIR) -f '$(CURDIR)/src/' -f '$(CURDIR)/tools/' -f '$(CURDIR)/bindings/' \
  -e '$(CURDIR)/bindings/lua/tests/'
coverage: deps-test
	cmake -S . -B $(COV_BUILD) -DCMAKE_BUILD_TYPE=Debug -DKVI_WERROR=ON -DKVI_COVERAGE=ON $(CMAKE_ARGS)
	cmake --build $(COV_BUILD) -j$(JOBS)
	find $(COV_BUILD) -name '*.gcda' -delete
	KVI_REQUIRE_SERVERS=1 ctest --test-dir $(COV_BUILD) --output-on-failure -j$(JOBS) -LE soak \
	  --output-log $(COV_BUILD)/ctest-coverage.log $(CTEST_ARGS); rc=$$?; \
	  $(MAKE) coverage-report || rc=1; exit $$rc

# The report alone, from the counters the last run left.
coverage-report:
	mkdir -p $(COV_BUILD)/coverage
	gcovr $(GCOVR_FILTER) --object-directory $(CURDIR)/$(COV_BUILD) -j$(JOBS) \
	  --json $(COV_BUILD)/coverage.json
	gcovr $(GCOVR_FILTER) -a $(COV_BUILD)/coverage.json --txt $(COV_BUILD)/coverage-lines.txt
	gcovr $(GCOVR_FILTER) -a $(COV_BUILD)/coverage.json -b --txt $(COV_BUILD)/coverage-branches.txt
	gcovr $(GCOVR_FILTER) -a $(COV_BUILD)/coverage.json \
	  --html-details $(COV_BUILD)/coverage/index.html --print-summary
	@echo "per file: $(COV_BUILD)/coverage-lines.txt, $(COV_BUILD)/coverage-branches.txt, $(COV_BUILD)/coverage/index.html"

# The mutation check (tests/mutants/run.sh; not part of `make test`): every
# mutant in tests/mutants/*.patch is applied to a copy of the tree
# (build-mutants/), built, and must make the tests its header names fail
# within 5 minutes.  test-mutants-check only checks that every patch still
# applies to the source (seconds).  MUTANTS="name ..." runs a subset.
MUTANTS ?=
test-mutants: deps-test
	JOBS=$(JOBS) sh tests/mutants/run.sh $(MUTANTS)

test-mutants-check:
	sh tests/mutants/run.sh --check $(MUTANTS)

bench: deps-bench build
	$(BUILD)/kvi-bench

fuzz:
	sh tests/fuzz/run.sh

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(COV_BUILD) build-fuzz build-mutants
