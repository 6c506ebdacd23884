# kembar — GNU Makefile.
#   make            build everything (build/)
#   make test       install missing Debian packages, then unit tests (ASan+UBSan) and integration tests
#   make demo       bring up a local replicated volume and show it working (make demo-down to remove)
#   make install    install binaries (PREFIX=/usr/local), mount.kembar into /sbin, systemd unit
# Sources are found by wildcard: a new .c file in a module folder is built without editing this file.
# xlators/ holds the translator framework; each translator is a folder xlators/<class>/<name>/.

PREFIX  ?= /usr/local
SBINDIR ?= /sbin
CC      ?= gcc
PKGS    := fuse3 uuid libcrypto libssl libevent libevent_pthreads libevent_openssl liburing
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) -I. -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(PKG_CFLAGS) $(CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lpthread -lm

B       ?= build
NPROC   := $(shell nproc 2>/dev/null || echo 2)
# V=1 shows the full compiler lines.
ifeq ($(V),1)
Q :=
else
Q := @
endif
XL_SRC  := $(sort $(shell find xlators -name '*.c'))
LIB_SRC := $(wildcard lib/*.c rpc/*.c client/*.c) $(XL_SRC)
SRV_SRC := $(wildcard server/*.c)
CLI_SRC := $(wildcard cli/*.c)
FUSE_SRC:= $(wildcard fuse/*.c)
BENCH_SRC := $(wildcard bench/*.c)
# tests/unit/ mirrors the source tree (tests/unit/xlators/cluster/replicate/ tests
# xlators/cluster/replicate/); its other .c files (mocks, harness) are linked into every test.
UNIT_SRC  := $(sort $(shell find tests/unit -name '*_test.c'))
TESTLIB_SRC := $(filter-out %_test.c,$(sort $(shell find tests/unit -name '*.c')))

LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
BINS    := $(B)/kembard $(B)/kembar $(B)/kembar-fuse $(B)/kembar-bench

.PHONY: docs all test test-unit test-integration test-long deps demo demo-down install clean fuzz check-deps
all: $(BINS)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(B)/libkembar.a: $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

# Translators are found by name at run time (xlators/registry.c, weak
# references), so every binary takes the whole library.
WHOLE = -Wl,--whole-archive $(1) -Wl,--no-whole-archive
$(B)/kembard: $(SRV_SRC:%.c=$(B)/%.o) $(B)/libkembar.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $(filter %.o,$^) $(call WHOLE,$(B)/libkembar.a) $(LDLIBS)
$(B)/kembar: $(CLI_SRC:%.c=$(B)/%.o) $(B)/libkembar.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $(filter %.o,$^) $(call WHOLE,$(B)/libkembar.a) $(LDLIBS)
$(B)/kembar-fuse: $(FUSE_SRC:%.c=$(B)/%.o) $(B)/libkembar.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $(filter %.o,$^) $(call WHOLE,$(B)/libkembar.a) $(LDLIBS)
$(B)/kembar-bench: $(BENCH_SRC:%.c=$(B)/%.o) $(B)/libkembar.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $(filter %.o,$^) $(call WHOLE,$(B)/libkembar.a) $(LDLIBS)

# ---- unit tests: Criterion, built under AddressSanitizer + UBSan in build/asan ----
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
UNIT_BINS := $(UNIT_SRC:tests/unit/%_test.c=build/asan/tests/%_test)

ifneq ($(B),build/asan)
build/asan/libkembar.a: FORCE
	@$(MAKE) --no-print-directory B=build/asan CFLAGS="$(ASAN_FLAGS)" build/asan/libkembar.a
build/asan/server.a: FORCE
	@$(MAKE) --no-print-directory B=build/asan CFLAGS="$(ASAN_FLAGS)" $(SRV_SRC:%.c=build/asan/%.o)
	@rm -f $@; ar rcs $@ $(filter-out build/asan/server/main.o,$(SRV_SRC:%.c=build/asan/%.o))
endif
build/asan/tests/%_test: tests/unit/%_test.c $(TESTLIB_SRC) build/asan/libkembar.a build/asan/server.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -o $@ $< $(TESTLIB_SRC) build/asan/server.a $(call WHOLE,build/asan/libkembar.a) $(LDLIBS) -lcriterion
FORCE:

deps:
	@sh scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all $(UNIT_BINS)
	@$(MAKE) --no-print-directory test-unit
	@KB_FUZZ_TIME=$${KB_FUZZ_TIME:-5} sh tests/fuzz/run.sh
	@$(MAKE) --no-print-directory test-integration

# libFuzzer targets (clang): frame/fop decoders, volfile and volume-definition parsers.
# make test runs each for 5 s; make fuzz for 10 s (KB_LONG=1: 120 s, KB_FUZZ_TIME=N).
fuzz: deps
	@sh tests/fuzz/run.sh

test-unit: $(UNIT_BINS)
	@sh tests/run-unit.sh $(UNIT_BINS)

test-integration: all
	@sh tests/run-integration.sh

test-long: deps all
	@KB_LONG=1 KB_TEST_TIMEOUT=900 sh tests/run-integration.sh
	@KB_LONG=1 sh tests/fuzz/run.sh

docs: $(B)/kembard
	@sh scripts/gen-options.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh up
demo-down:
	@sh scripts/demo.sh down

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(SBINDIR)
	install -m 755 $(B)/kembar $(B)/kembar-fuse $(B)/kembar-bench $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(B)/kembard $(DESTDIR)$(PREFIX)/sbin/
	install -m 755 scripts/mount.kembar $(DESTDIR)$(SBINDIR)/mount.kembar
	@if [ -d $(DESTDIR)/etc/systemd/system ] || [ -n "$(DESTDIR)" ]; then \
	  install -d $(DESTDIR)/etc/systemd/system && \
	  sed 's|@PREFIX@|$(PREFIX)|g' scripts/kembard.service > $(DESTDIR)/etc/systemd/system/kembard.service; fi

clean:
	rm -rf build

# ---- releases: libkembar.so, man pages, bash completion, Debian packages (issue 18) ----
#   make shared        build/pic/libkembar.so.VERSION (soname libkembar.so.0; PIC=1: from this
#                      build's own objects, which are then compiled -fPIC: debian/rules)
#   make man           build/man/*.[158] and build/kembar.bash-completion
#   make install-lib   libkembar.so*, its headers and kembar.pc (LIBDIR, INCLUDEDIR)
#   make deb           the Debian packages into build/deb/ (scripts/mkdeb.sh; DEB_OUT=DIR)
# The version is KB_VERSION in lib/common.h, the one every program prints with --version; the
# man pages, the library's file name, kembar.pc and the packages take it from there.
KB_VERSION  := $(shell sed -n 's/^.define KB_VERSION "\(.*\)"/\1/p' lib/common.h)
SOMAJOR     := 0
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
DEB_OUT     ?= $(B)/deb
MAN_PAGES   := kembard.8 kembar.8 kembar-fuse.8 mount.kembar.8 kembar-bench.1 kembar-options.5
MAN_OUT     := $(MAN_PAGES:%=$(B)/man/%)
MAN_DATE    := $(shell date -u -d "@$${SOURCE_DATE_EPOCH:-$$(date +%s)}" +%Y-%m-%d)
SHLIB_NAME  := libkembar.so.$(KB_VERSION)

.PHONY: man shared install-doc install-lib deb
man: $(MAN_OUT) $(B)/kembar.bash-completion

# @VERSION@, @DATE@, and the -o options of kembar-fuse (one file, two pages) at @FUSE_OPTIONS@.
MAN_SUBST = sed -e 's|@VERSION@|$(KB_VERSION)|g' -e 's|@DATE@|$(MAN_DATE)|g' \
	-e '/^\.\\" @FUSE_OPTIONS@$$/{r man/fuse-options.roff' -e 'd;}'
$(B)/man/%: man/%.in man/fuse-options.roff lib/common.h
	@mkdir -p $(dir $@)
	$(Q)$(MAN_SUBST) $< >$@
# The volume options and the completion's option keys come from the option tables compiled into
# kembard, through the generator of the README's table: they cannot drift from the code.
$(B)/man/kembar-options.5: man/kembar-options.5.in $(B)/kembard scripts/gen-options.sh lib/common.h
	@mkdir -p $(dir $@)
	$(Q)KB_BIN=$(B) sh scripts/gen-options.sh --man $< | $(MAN_SUBST) >$@.tmp && mv $@.tmp $@
$(B)/kembar.bash-completion: scripts/kembar.bash-completion $(B)/kembard scripts/gen-options.sh
	$(Q)keys=$$(KB_BIN=$(B) sh scripts/gen-options.sh --keys | tr '\n' ' ') && \
	  sed "s|@OPTION_KEYS@|$${keys% }|" $< >$@.tmp && mv $@.tmp $@

ifeq ($(PIC),1)
override CFLAGS += -fPIC
SHLIB := $(B)/$(SHLIB_NAME)
# Exported: what the public header client/kembar.h and the headers it includes declare.
$(B)/libkembar.map: $(LIB_OBJ) scripts/libkembar-api.sh
	$(Q)CC="$(CC)" sh scripts/libkembar-api.sh map $(LIB_OBJ) >$@.tmp && mv $@.tmp $@
$(SHLIB): $(LIB_OBJ) $(B)/libkembar.map
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,libkembar.so.$(SOMAJOR) -Wl,--no-undefined \
	    -Wl,--version-script=$(B)/libkembar.map -o $@ $(LIB_OBJ) $(LDLIBS)
else
SHLIB := $(B)/pic/$(SHLIB_NAME)
$(SHLIB): FORCE
	@$(MAKE) --no-print-directory B=$(B)/pic PIC=1 $@
endif
shared: $(SHLIB)

install: install-doc
install-doc: man
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(BASHCOMPDIR)
	install -m 644 $(filter %.1,$(MAN_OUT)) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(filter %.5,$(MAN_OUT)) $(DESTDIR)$(MANDIR)/man5/
	install -m 644 $(filter %.8,$(MAN_OUT)) $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(B)/kembar.bash-completion $(DESTDIR)$(BASHCOMPDIR)/kembar

# Headers: client/kembar.h and what it includes, under INCLUDEDIR/kembar/ with their paths, and
# INCLUDEDIR/kembar/kembar.h to include it (pkg-config --cflags kembar; #include <kembar.h>).
install-lib: $(SHLIB)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/kembar
	install -m 644 $(SHLIB) $(DESTDIR)$(LIBDIR)/$(SHLIB_NAME)
	ln -sfn $(SHLIB_NAME) $(DESTDIR)$(LIBDIR)/libkembar.so.$(SOMAJOR)
	ln -sfn libkembar.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libkembar.so
	for h in $$(CC="$(CC)" sh scripts/libkembar-api.sh headers); do \
	  install -D -m 644 $$h $(DESTDIR)$(INCLUDEDIR)/kembar/$$h || exit 1; done
	printf '/* kembar.h: libkembar, the kembar client library (client/kembar.h). */\n#include "client/kembar.h"\n' \
	  >$(DESTDIR)$(INCLUDEDIR)/kembar/kembar.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	  -e 's|@VERSION@|$(KB_VERSION)|g' scripts/kembar.pc.in >$(DESTDIR)$(LIBDIR)/pkgconfig/kembar.pc
	@[ -n "$(DESTDIR)" ] || ldconfig

deb:
	@KB_DEB_OUT=$(DEB_OUT) sh scripts/mkdeb.sh

-include $(shell find build -name '*.d' 2>/dev/null)
