/*
 * src/pg/csv_functions.cpp
 *
 * SQL entry point of the CSV reader (src/core/csv_reader.hpp): the tenant
 * import's file, parsed in the database so that the script and the tests
 * read it the same way.
 */
#include "core/csv_reader.hpp"
#include "pg/datum.hpp"
#include "pg/guard.hpp"

extern "C" {
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/tuplestore.h"
}

using m365::pg::PgCall;
using m365::pg::TextArg;

namespace {

/* One record as a row (line integer, fields text[]). Plain PostgreSQL calls
 * on plain values: run inside PgCall. */
void
PutRecord(ReturnSetInfo* rsinfo, int line, Datum* fields, int count)
{
	ArrayType* array = construct_array(fields, count, TEXTOID, -1, false, TYPALIGN_INT);
	Datum values[2] = {Int32GetDatum(line), PointerGetDatum(array)};
	bool nulls[2] = {false, false};
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	for (int i = 0; i < count; i++)
		pfree(DatumGetPointer(fields[i]));
	pfree(array);
}

}  // namespace

/* m365.csv_records(csv text) RETURNS TABLE (line integer, fields text[]) */
M365_SQL_FUNCTION(m365_csv_records)
{
	std::vector<m365::CsvRecord> records = m365::ReadCsv(TextArg(fcinfo, 0));
	PgCall([&] { InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC); });
	ReturnSetInfo* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
	std::vector<Datum> fields;
	for (const m365::CsvRecord& record : records) {
		fields.clear();
		for (const std::string& field : record.fields)
			fields.push_back(m365::pg::TextDatum(field));
		const int line = static_cast<int>(record.line);
		Datum* values = fields.data();
		const int count = static_cast<int>(fields.size());
		PgCall([rsinfo, line, values, count] { PutRecord(rsinfo, line, values, count); });
	}
	return (Datum) 0;
}
