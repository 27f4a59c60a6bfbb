/*
 * src/pg/datum.cpp
 */
#include "pg/datum.hpp"

#include "pg/guard.hpp"

namespace m365::pg {

std::string_view
TextArg(FunctionCallInfo fcinfo, int n)
{
	struct varlena* raw = reinterpret_cast<struct varlena*>(DatumGetPointer(PG_GETARG_DATUM(n)));
	struct varlena* text = PgCall([raw] { return pg_detoast_datum_packed(raw); });
	return std::string_view(VARDATA_ANY(text), VARSIZE_ANY_EXHDR(text));
}

int64_t
Int64Arg(FunctionCallInfo fcinfo, int n)
{
	return PG_GETARG_INT64(n);
}

Datum
TextDatum(std::string_view value)
{
	const char* data = value.data();
	const int length = static_cast<int>(value.size());
	return PgCall([data, length] { return PointerGetDatum(cstring_to_text_with_len(data, length)); });
}

}  // namespace m365::pg
