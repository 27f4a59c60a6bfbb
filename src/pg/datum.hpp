/*
 * src/pg/datum.hpp
 *
 * Arguments and results of SQL functions, through PgCall so that a detoast
 * or palloc failure becomes a C++ exception like any other.
 */
#pragma once

#include "pg/postgres.hpp"

namespace m365::pg {

/* The text argument n. The bytes live in the function's memory context. */
std::string_view TextArg(FunctionCallInfo fcinfo, int n);

int64_t Int64Arg(FunctionCallInfo fcinfo, int n);

/* A new text datum holding `value`. */
Datum TextDatum(std::string_view value);

}  // namespace m365::pg
