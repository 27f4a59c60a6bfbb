# m365_usernames: PGXS build.  make && make install && make installcheck
EXTENSION = m365_usernames
# The version is the control file's default_version: one place to change it.
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = m365_usernames
SRCS = $(sort $(wildcard src/core/*.cpp src/pg/*.cpp))
OBJS = $(SRCS:.cpp=.o)

# The current version's script is built from small parts; the scripts of
# released versions and the upgrade scripts are committed as they are.
EXTENSION_PARTS = $(sort $(wildcard extension/parts/*.sql))
DATA_built = extension/$(EXTENSION)--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(wildcard extension/$(EXTENSION)--*.sql)) \
	$(wildcard extension/$(EXTENSION)--*.control)

# pg_regress: sql/*.sql against expected/*.out, in name order.
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

ICU_CFLAGS := $(shell pkg-config --cflags icu-uc icu-i18n)
ICU_LIBS := $(shell pkg-config --libs icu-uc icu-i18n)

# PostgreSQL's headers are system headers for us: their warnings are not ours.
PG_CPPFLAGS = -Isrc $(ICU_CFLAGS)
PG_CXXFLAGS = -std=c++17 -Wall -Wextra -Wshadow -Wno-register -Wno-missing-field-initializers \
	-Wno-unused-parameter $(if $(filter 1,$(ERROR_ON_WARNING)),-Werror)
SHLIB_LINK = $(ICU_LIBS) -lstdc++

EXTRA_CLEAN = results regression.diffs regression.out

# No LLVM bitcode: JIT-inlining these functions buys nothing, and it would
# need a matching clang at build time.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

PG_MAJOR := $(shell $(PG_CONFIG) --version | sed 's/^PostgreSQL \([0-9]*\).*/\1/')
ifneq ($(PG_MAJOR),15)
$(warning m365_usernames is built and tested on PostgreSQL 15; this is $(PG_MAJOR))
endif

# PostgreSQL includes its server headers with -I; make them -isystem.
override CPPFLAGS := $(patsubst -I$(includedir_server),-isystem $(includedir_server),$(CPPFLAGS))

extension/$(EXTENSION)--$(EXTVERSION).sql: $(EXTENSION_PARTS)
	cat $^ > $@

# Header dependencies.
override CXXFLAGS += -MMD -MP
-include $(OBJS:.o=.d)
EXTRA_CLEAN += $(OBJS:.o=.d)
