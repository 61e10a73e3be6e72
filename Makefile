# twirt: build the nginx dynamic module against Debian's nginx-dev tree,
# run the gateway, run the tests.

SHELL      := /bin/bash
NGINX_SRC  ?= /usr/share/nginx/src
NGINX      ?= /usr/sbin/nginx
BUILD_DIR  ?= build
NGX_TREE    = $(BUILD_DIR)/nginx
MODULE_DIR  = $(CURDIR)
MODULE      = objs/ngx_http_twirt_module.so
CC_OPT     ?= -Wall -Wextra -Werror
SRCS        = ngx_http_twirt_module.c $(wildcard src/*.c)
HDRS        = $(wildcard src/*.h)

# The suites run against a test build: the same sources plus the test
# module (test/module/, the twirt_redis_test directive), configured with
# TWIRT_TEST_BUILD=1 in a tree of its own.  `make` never contains it.
TWIRT_TEST_BUILD =
TEST_MODULE      = objs/test/ngx_http_twirt_module.so

ifeq ($(TWIRT_TEST_BUILD),1)
SRCS       += $(wildcard test/module/*.c)
endif

.PHONY: all deps run call test test-build valgrind bench deb clean

all: $(MODULE)

# configure only when `config` or the set of source files changed
$(NGX_TREE)/objs/Makefile: config $(BUILD_DIR)/srcs.list
	@test -f $(NGINX_SRC)/configure || { \
	    echo "twirt: $(NGINX_SRC)/configure not found:" \
	         "install nginx-dev (make deps)"; exit 1; }
	rm -rf $(NGX_TREE)
	mkdir -p $(BUILD_DIR)
	cp -r $(NGINX_SRC) $(NGX_TREE)
	cd $(NGX_TREE) && . ./conf_flags && \
	    TWIRT_TEST_BUILD=$(TWIRT_TEST_BUILD) \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="$(CC_OPT)" \
	        --add-dynamic-module=$(MODULE_DIR) > configure.log 2>&1 || \
	    { cat configure.log; exit 1; }

$(BUILD_DIR)/srcs.list: FORCE
	@mkdir -p $(BUILD_DIR)
	@echo $(SRCS) > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@

$(MODULE): $(NGX_TREE)/objs/Makefile $(SRCS) $(HDRS)
	$(MAKE) -C $(NGX_TREE) -f objs/Makefile modules
	@mkdir -p $(dir $(MODULE))
	cp $(NGX_TREE)/objs/ngx_http_twirt_module.so $(MODULE)

# the test build: this Makefile again, in $(BUILD_DIR)/test
ifneq ($(TWIRT_TEST_BUILD),1)
test-build: $(TEST_MODULE)

$(TEST_MODULE): FORCE
	@$(MAKE) --no-print-directory BUILD_DIR=$(BUILD_DIR)/test \
	    MODULE=$(TEST_MODULE) TWIRT_TEST_BUILD=1 $(TEST_MODULE)
endif

FORCE:

# installs the Debian packages the build, the gateway and the tests need
deps:
	@util/deps

# runs the gateway on localhost against the local Realtime simulator
run: deps all
	@util/run

# places a simulated call through the running gateway
call:
	@util/call

# builds (both builds), starts what the suites need, runs every suite
# against the test build, stops everything
test: deps all test-build
	@util/test

# the load tool against nginx with one worker at 100, 500, 1000 calls,
# then 100 calls without and with a 10,000-row campaign being dialed
bench: deps all
	@bench/run $(BENCH_ARGS)

# libnginx-mod-http-twirt_<version>_<arch>.deb, built as Debian builds
# its libnginx-mod-http-* packages (debian/, dh-sequence-nginx)
deb:
	@util/deb

# the stream, upstream, bridge, tools, control, campaign, board, reload,
# greeting, rotate and redis_tls suites under valgrind
valgrind: deps all
	@util/valgrind

-include test/Makefile.codec
-include test/Makefile.json

clean:
	rm -rf $(BUILD_DIR) objs t/servroot* libnginx-mod-http-twirt_*.deb
