/*
 * src/pg/module.cpp
 *
 * The library's magic block. Nothing runs at load time: the ICU objects are
 * built on first use, so backends that never call us pay nothing.
 */
#include "pg/postgres.hpp"

extern "C" {
PG_MODULE_MAGIC;
}
