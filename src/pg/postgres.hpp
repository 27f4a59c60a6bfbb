/*
 * src/pg/postgres.hpp
 *
 * The only way C++ code includes PostgreSQL headers, and only from src/pg/.
 * PostgreSQL's port.h redefines printf, snprintf and friends as macros, so
 * every standard header a src/pg file needs is included here, first.
 */
#pragma once

#include <cstddef>
#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

extern "C" {
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
}
