# libFuzzer targets: make -f tests/fuzz/fuzz.mk [FUZZ_SECONDS=60] run
# (the top Makefile's `make fuzz`). Every src/*.c is built again with clang
# and -fsanitize=fuzzer-no-link,address,undefined into build/fuzz; each
# tests/fuzz/fuzz_*.c links them all but main.o and the file it includes
# (fuzz_nomad.c includes src/nomad.c, fuzz_reply.c src/handler.c, to reach
# their static parsers). tests/fuzz/run.sh runs each target on its corpus.
FUZZ_CC   ?= clang
FUZZ_SAN  := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
PKGS      := libconfig hiredis libcurl libcjson libmicrohttpd
FB        := build/fuzz
FUZZ_CFLAGS := -std=c11 -g -O1 -Iinclude -D_GNU_SOURCE -DSCALENO_VERSION='"fuzz"' \
             -DSCALENO_SYSCONFDIR='"/etc"' $(FUZZ_SAN) $(shell pkg-config --cflags $(PKGS)) -MMD -MP
FUZZ_LIBS := $(shell pkg-config --libs $(PKGS)) -lm

SRCS    := $(wildcard src/*.c)
OBJS    := $(SRCS:src/%.c=$(FB)/obj/%.o) $(FB)/obj/redis_scripts.o
LIBOBJS := $(filter-out $(FB)/obj/main.o,$(OBJS))
TARGETS := $(patsubst tests/fuzz/%.c,$(FB)/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60

.PHONY: targets run
.SECONDARY:
targets: $(TARGETS)

$(FB)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FB)/gen/redis_scripts.c: $(wildcard contrib/lua/*.lua) contrib/lua/embed.awk
	@mkdir -p $(@D)
	awk -f contrib/lua/embed.awk $(wildcard contrib/lua/*.lua) >$@.tmp && mv $@.tmp $@

$(FB)/obj/redis_scripts.o: $(FB)/gen/redis_scripts.c
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FB)/fuzz_nomad: EXCLUDE := $(FB)/obj/nomad.o
$(FB)/fuzz_reply: EXCLUDE := $(FB)/obj/handler.o
$(FB)/fuzz_%: tests/fuzz/fuzz_%.c $(LIBOBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(filter-out $(EXCLUDE),$(LIBOBJS)) $(FUZZ_LIBS)

-include $(OBJS:.o=.d) $(TARGETS:=.d)

run: targets
	@FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh $(TARGETS)
