# scaleno — queue-driven autoscaler and job-worker supervisor.
# make | make check | make install PREFIX=/usr/local DESTDIR= | make SANITIZE=address,undefined check
# make bench | make demo | make VALGRIND=1 check

PREFIX     ?= /usr/local
SYSCONFDIR ?= $(PREFIX)/etc
DESTDIR    ?=
CC         ?= cc
V          ?= 0

PKGS := libconfig hiredis libcurl libcjson libmicrohttpd
VERSION := 0.1.0

WARN := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
        -Wpointer-arith -Wcast-qual -Wwrite-strings -Wformat=2 -Wundef \
        -Wvla -Wnull-dereference -Wimplicit-fallthrough
CFLAGS ?= -O2 -g
CPPFLAGS += -Iinclude -D_GNU_SOURCE -DSCALENO_VERSION='"$(VERSION)"' \
            -DSCALENO_SYSCONFDIR='"$(SYSCONFDIR)"'
ALL_CFLAGS = -std=c11 $(WARN) $(CFLAGS) $(shell pkg-config --cflags $(PKGS)) -MMD -MP
LDLIBS += $(shell pkg-config --libs $(PKGS)) -lm

ifdef SANITIZE
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SANITIZE)
BUILD := build/san
else
BUILD := build
endif

ifeq ($(V),0)
Q := @
say = @printf '  %-6s %s\n' $(1) $(2);
else
Q :=
say =
endif

SRCS  := $(wildcard src/*.c)
# contrib/lua/*.lua, the only copy of each script, built in as one C table.
LUA_SRCS := $(wildcard contrib/lua/*.lua)
LUA_GEN := $(BUILD)/gen/redis_scripts.c
OBJS  := $(SRCS:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/redis_scripts.o
LIBOBJS := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
PROG  := $(BUILD)/scaleno
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
# Example handlers (contrib/handlers/*.c) and test/bench tools (tests/tools/*.c):
# standalone programs, each one file.
HANDLER_BINS := $(patsubst contrib/handlers/%.c,$(BUILD)/handlers/%,$(wildcard contrib/handlers/*.c))
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(wildcard tests/tools/*.c))
# libscaleno.a: the publish API of include/scaleno/publish.h for C producers,
# with only what it needs (no libconfig, cJSON, curl: link it with hiredis and
# libm alone), linked into one object that exports only scaleno_* so a
# producer's own log_warn or util_now_s cannot clash. contrib/examples/*.c
# and tests/unit/test_lib.c are built against it the way a user would.
LIB := $(BUILD)/libscaleno.a
LIB_OBJS := $(addprefix $(BUILD)/obj/,publish.o redis.o redis_cluster.o redis_sentinel.o redis_keys.o \
    redis_scripts.o util.o)
LIB_LDLIBS := $(shell pkg-config --libs hiredis) -lm
EXAMPLE_BINS := $(patsubst contrib/examples/%.c,$(BUILD)/examples/%,$(wildcard contrib/examples/*.c))

.PHONY: all deps check unit integration lint install uninstall clean bench demo check-faults fuzz
all: $(PROG) $(HANDLER_BINS) $(TOOL_BINS) $(LIB) $(EXAMPLE_BINS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(LUA_GEN): $(LUA_SRCS) contrib/lua/embed.awk
	@mkdir -p $(@D)
	$(call say,GEN,$@)awk -f contrib/lua/embed.awk $(LUA_SRCS) >$@.tmp && mv $@.tmp $@

$(BUILD)/obj/redis_scripts.o: $(LUA_GEN)
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<

$(PROG): $(OBJS)
	$(call say,LINK,$@)$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS)
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) -Itests/unit $(ALL_CFLAGS) $(shell pkg-config --cflags cunit) \
	  -o $@ $< $(LIBOBJS) $(LDFLAGS) $(LDLIBS) $(shell pkg-config --libs cunit)

# Fails when anything but scaleno_* is left defined and global.
$(LIB): $(LIB_OBJS)
	@mkdir -p $(BUILD)/lib
	$(call say,AR,$@)ld -r -o $(BUILD)/lib/scaleno-all.o $(LIB_OBJS) && \
	  objcopy --wildcard -G 'scaleno_*' $(BUILD)/lib/scaleno-all.o $(BUILD)/lib/scaleno.o && \
	  bad=$$(nm -g --defined-only $(BUILD)/lib/scaleno.o | awk '$$3 !~ /^scaleno_/ { print $$3 }') && \
	  if [ -n "$$bad" ]; then echo "libscaleno: exports more than scaleno_*: $$bad" >&2; exit 1; fi && \
	  rm -f $@ && $(AR) rcs $@ $(BUILD)/lib/scaleno.o

$(BUILD)/examples/%: contrib/examples/%.c $(LIB)
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) -Iinclude $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) -L$(BUILD) -lscaleno $(LIB_LDLIBS)

# A producer that defines names the library uses inside (log_warn, util_now_s)
# links against it with hiredis alone; the test also reads the exported symbols.
$(BUILD)/tests/test_lib: tests/unit/test_lib.c $(LIB)
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) -Iinclude $(ALL_CFLAGS) $(shell pkg-config --cflags cunit) -o $@ $< \
	  $(LDFLAGS) -L$(BUILD) -lscaleno $(LIB_LDLIBS) $(shell pkg-config --libs cunit)

$(BUILD)/handlers/%: contrib/handlers/%.c
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

$(BUILD)/tools/%: tests/tools/%.c
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

-include $(OBJS:.o=.d) $(UNIT_BINS:=.d)

# Installs every Debian package the build and the tests need, when missing.
deps:
	@sh contrib/install-deps.sh

check: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@$(MAKE) --no-print-directory lint
	@BUILD=$(BUILD) sh tests/run.sh $(UNIT_BINS)
	@SCALENO_BIN=$(CURDIR)/$(BUILD)/scaleno timeout -k 10 300 python3 tests/faults/run.py --short

unit: $(UNIT_BINS)
	@BUILD=$(BUILD) SCALENO_SKIP_INTEGRATION=1 sh tests/run.sh $(UNIT_BINS)

integration: all
	@BUILD=$(BUILD) SCALENO_SKIP_UNIT=1 sh tests/run.sh

# The fault-injection suite, every fault kind (tests/faults/run.py --help;
# FAULTS_ARGS="--seed N --faults a,b" to replay or narrow a run). `make check`
# ends with its short form (--short).
check-faults: deps all
	@SCALENO_BIN=$(CURDIR)/$(BUILD)/scaleno python3 tests/faults/run.py $(FAULTS_ARGS)

# libFuzzer targets (clang), each for FUZZ_SECONDS (default 60): tests/fuzz/fuzz.mk.
fuzz:
	@sh tests/fuzz/deps.sh
	@$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk -j2 run

lint:
	@mandoc -T lint -W warning man/*.[1-8] && echo "  LINT   man pages clean"

bench: deps all
	@BUILD=$(BUILD) sh tests/bench.sh

demo: deps all
	@BUILD=$(BUILD) sh contrib/demo/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8 \
	  $(DESTDIR)$(PREFIX)/share/scaleno/examples $(DESTDIR)$(PREFIX)/share/scaleno/lua
	install -m 0755 $(PROG) $(DESTDIR)$(PREFIX)/bin/scaleno
	install -d $(DESTDIR)$(PREFIX)/lib
	install -m 0644 $(LIB) $(DESTDIR)$(PREFIX)/lib/libscaleno.a
	for m in man/*.[1-8]; do s=$${m##*.}; install -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; done
	cp -R etc/. $(DESTDIR)$(PREFIX)/share/scaleno/examples/
	if ls contrib/lua/*.lua >/dev/null 2>&1; then install -m 0644 contrib/lua/*.lua $(DESTDIR)$(PREFIX)/share/scaleno/lua/; fi
	if ls include/scaleno/*.h >/dev/null 2>&1; then install -d $(DESTDIR)$(PREFIX)/include/scaleno && \
	  install -m 0644 include/scaleno/*.h $(DESTDIR)$(PREFIX)/include/scaleno/; fi
	install -d $(DESTDIR)$(PREFIX)/share/scaleno/contrib
	cp -R contrib/nomad contrib/examples contrib/scaleno-agent.service contrib/scaleno-worker.service contrib/grafana-dashboard.json \
	  contrib/handlers $(DESTDIR)$(PREFIX)/share/scaleno/contrib/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/scaleno $(DESTDIR)$(PREFIX)/lib/libscaleno.a
	for m in man/*.[1-8]; do s=$${m##*.}; rm -f $(DESTDIR)$(PREFIX)/share/man/man$$s/$${m##*/}; done
	rm -rf $(DESTDIR)$(PREFIX)/share/scaleno $(DESTDIR)$(PREFIX)/include/scaleno

clean:
	rm -rf build
