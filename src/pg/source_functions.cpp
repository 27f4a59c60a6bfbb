/*
 * src/pg/source_functions.cpp
 *
 * How the extension reads an attached application table (docs/attach.md):
 * locked by its OID, named as the catalog names it now, and read with its
 * owner's rights, never the extension's.
 *
 * Reading a table can run code of whoever owns it: the planner folds the
 * IMMUTABLE functions of its index and statistics expressions, a view can
 * take the table's old name, an implicit cast of its own type can sit in a
 * join (red-team finds, each of which ran the application's code as the
 * superuser owner). A table whose indexes or statistics call code outside
 * pg_catalog is not read at all (m365.source_runs_code, asked right before
 * the plan): run as its owner, that code still reached the reading session's
 * cursors, locks and exit_on_error. What remains is guarded the way
 * PostgreSQL's own maintenance commands (ANALYZE, REFRESH
 * MATERIALIZED VIEW) switch to the table's owner in a security-restricted
 * operation for that reason; m365.source_read does the same, with pinned
 * settings, so that neither the caller's session (DateStyle, enable_*) nor
 * the owner's code (SET inside a function) changes what is read or leaks
 * out.
 */
#include "pg/guard.hpp"

extern "C" {
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"
}

using m365::pg::PgCall;

namespace {

/* The settings a read runs with, whatever the session says. */
constexpr const char* kReadSettings[][2] = {
	{"search_path", "pg_catalog, pg_temp"},
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"extra_float_digits", "3"},
	{"jit", "off"},
	{"enable_seqscan", "on"},
	{"enable_indexscan", "on"},
	{"enable_indexonlyscan", "on"},
	{"enable_bitmapscan", "on"},
	{"enable_nestloop", "on"},
	{"enable_hashjoin", "on"},
	{"enable_mergejoin", "on"},
	{"enable_hashagg", "on"},
	{"enable_sort", "on"},
	{"enable_material", "on"},
	{"exit_on_error", "off"},
	/* A policy the owner is subject to (FORCE ROW LEVEL SECURITY) would
	 * hide rows, and the copy would lose them: an error instead. */
	{"row_security", "off"},
};

/* The read itself: plain PostgreSQL calls, no C++ object in its frame (an
 * error longjmps out of it into PgCall). */
void
ReadAsOwner(FunctionCallInfo fcinfo)
{
	Oid relid = PG_GETARG_OID(0);
	char* query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Datum args[2] = {PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2), PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3)};
	char nulls[3] = {PG_ARGISNULL(2) ? 'n' : ' ', PG_ARGISNULL(3) ? 'n' : ' ', '\0'};
	Oid argtypes[2] = {INT8ARRAYOID, INT8ARRAYOID};

	HeapTuple classtuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(classtuple))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("the attached table %u is gone", relid)));
	Oid owner = ((Form_pg_class) GETSTRUCT(classtuple))->relowner;
	ReleaseSysCache(classtuple);

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	ReturnSetInfo* rsinfo = (ReturnSetInfo*) fcinfo->resultinfo;

	/* The read runs in a subtransaction that is always rolled back: whatever
	 * the owner's code did in the reading session (a write, SET CONSTRAINTS,
	 * a cursor, NOTIFY) goes with it (red-team finds). The rows are already
	 * in the tuplestore, which belongs to the caller. */
	MemoryContext caller_context = CurrentMemoryContext;
	ResourceOwner caller_owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller_context);

	Oid saved_user;
	int saved_context;
	GetUserIdAndSecContext(&saved_user, &saved_context);
	int nest_level = NewGUCNestLevel();
	for (const auto& setting : kReadSettings)
		(void) set_config_option(setting[0], setting[1], PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("m365.source_read: SPI_connect failed")));
		/* Planning the read folds the table's index and statistics
		 * expressions: code of the owner's there would run in this session,
		 * where it could read or close the caller's cursors, release its
		 * locks or end it with FATAL (red-team round six). Asked here, the
		 * last moment before the plan (the callers ask too). */
		Oid checkargs[1] = {OIDOID};
		Datum checkrel[1] = {ObjectIdGetDatum(relid)};
		bool isnull = true;
		if (SPI_execute_with_args("SELECT m365.source_runs_code($1)", 1, checkargs, checkrel, nullptr, true, 1) != SPI_OK_SELECT ||
		    SPI_processed != 1)
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("m365.source_read: the check of the table failed")));
		Datum runs = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull || DatumGetBool(runs))
			ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			                errmsg("an index or statistics object of the attached table %u calls code outside pg_catalog, which reading it would run", relid)));
		SetUserIdAndSecContext(owner, saved_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
		if (SPI_execute_with_args(query, 2, argtypes, args, nulls, true, 0) != SPI_OK_SELECT)
			ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("m365.source_read reads with a SELECT only")));
		TupleDesc got = SPI_tuptable->tupdesc;
		TupleDesc want = rsinfo->setDesc;
		bool fits = got->natts == want->natts;
		for (int i = 0; fits && i < got->natts; i++)
			fits = TupleDescAttr(got, i)->atttypid == TupleDescAttr(want, i)->atttypid;
		if (!fits)
			ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH), errmsg("m365.source_read: the query's columns do not match the column list")));
		for (uint64 i = 0; i < SPI_processed; i++)
			tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
		SPI_finish();
	}
	PG_CATCH();
	{
		/* The owner's code may raise query_canceled or assert_failure, which
		 * PL/pgSQL's WHEN OTHERS does not catch: it stopped the job and
		 * every drift query (a red-team find). Raised by code, not by an
		 * interrupt, they come back as 38000; a real cancel stays one. The
		 * rollback puts user, settings and SPI back. */
		MemoryContextSwitchTo(caller_context);
		ErrorData* error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_context);
		CurrentResourceOwner = caller_owner;
		if ((error->sqlerrcode == ERRCODE_QUERY_CANCELED || error->sqlerrcode == ERRCODE_ASSERT_FAILURE) &&
		    (error->funcname == nullptr || strcmp(error->funcname, "ProcessInterrupts") != 0))
			error->sqlerrcode = ERRCODE_EXTERNAL_ROUTINE_EXCEPTION;
		ReThrowError(error);
	}
	PG_END_TRY();

	SetUserIdAndSecContext(saved_user, saved_context);
	/* false, as ANALYZE does: every setting made at this level or below goes
	 * back, the owner's own SETs too (with true, a session-level SET in a
	 * policy of the owner's survived and changed the search_path of the
	 * extension's code that ran next: a red-team find). */
	AtEOXact_GUC(false, nest_level);
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(caller_context);
	CurrentResourceOwner = caller_owner;
}

}  // namespace

/*
 * m365.source_lock(regclass) RETURNS text: locks the table by its OID (ACCESS
 * SHARE, until the end of the transaction) and answers its name as the
 * catalog has it now, quoted and qualified (NULL: it is gone). A name read
 * through an older snapshot could be another relation's by now.
 */
M365_SQL_FUNCTION(m365_source_lock)
{
	Oid relid = PG_GETARG_OID(0);
	PgCall([&] { LockRelationOid(relid, AccessShareLock); });
	char* name = PgCall([&]() -> char* {
		char* rel = get_rel_name(relid);
		char* nsp = rel ? get_namespace_name(get_rel_namespace(relid)) : nullptr;
		return nsp ? quote_qualified_identifier(nsp, rel) : nullptr;
	});
	if (name == nullptr) {
		fcinfo->isnull = true;
		return (Datum) 0;
	}
	return PgCall([&] { return CStringGetTextDatum(name); });
}

/*
 * m365.in_restricted_operation() RETURNS boolean: whether code runs inside a
 * security-restricted operation (m365.source_read, ANALYZE, ...), where the
 * session's user is not who runs it: nothing audited may happen there.
 */
M365_SQL_FUNCTION(m365_in_restricted_operation)
{
	return BoolGetDatum(InSecurityRestrictedOperation());
}

/*
 * m365.source_read(source regclass, query text, k1 bigint[], k2 bigint[])
 * RETURNS SETOF record: runs query (a SELECT of the extension's making over
 * source, $1 and $2 the keys) as source's owner in a security-restricted
 * operation with pinned settings, and returns its rows.
 */
M365_SQL_FUNCTION(m365_source_read)
{
	PgCall([&] { ReadAsOwner(fcinfo); });
	return (Datum) 0;
}
