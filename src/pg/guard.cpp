/*
 * src/pg/guard.cpp
 *
 * The one sigsetjmp site and the one ereport site of the C++ code.
 */
#include "pg/guard.hpp"

#include "core/utf8.hpp"

namespace m365::pg {

namespace {

/* Copies as much of `source` as fits, never half a UTF-8 character. */
void
CopyInto(char* target, size_t size, const char* source) noexcept
{
	const std::string_view kept = m365::Utf8Prefix(source == nullptr ? "" : source, size - 1);
	memcpy(target, kept.data(), kept.size());
	target[kept.size()] = '\0';
}

}  // namespace

CapturedError&
Scratch() noexcept
{
	static CapturedError scratch;
	return scratch;
}

void
Capture(const char* code, const char* message, const char* detail, const char* hint) noexcept
{
	CapturedError& s = Scratch();
	CopyInto(s.code, sizeof(s.code), code);
	if (strlen(s.code) != 5)
		CopyInto(s.code, sizeof(s.code), m365::sqlstate::kInternal);
	CopyInto(s.message, sizeof(s.message), message);
	CopyInto(s.detail, sizeof(s.detail), detail);
	CopyInto(s.hint, sizeof(s.hint), hint);
}

void
RaiseCaptured()
{
	const CapturedError& s = Scratch();
	const int code = MAKE_SQLSTATE(s.code[0], s.code[1], s.code[2], s.code[3], s.code[4]);
	ereport(ERROR, (errcode(code), errmsg_internal("%s", s.message),
	                s.detail[0] != '\0' ? errdetail_internal("%s", s.detail) : 0,
	                s.hint[0] != '\0' ? errhint("%s", s.hint) : 0));
	pg_unreachable();
}

void
PgCallImpl(void (*thunk)(void*), void* context)
{
	MemoryContext volatile caller_context = CurrentMemoryContext;
	sigjmp_buf* volatile saved_exception_stack = PG_exception_stack;
	ErrorContextCallback* volatile saved_error_context = error_context_stack;
	sigjmp_buf local;

	if (sigsetjmp(local, 0) == 0) {
		PG_exception_stack = &local;
		thunk(context);
		PG_exception_stack = saved_exception_stack;
		error_context_stack = saved_error_context;
		return;
	}

	/* PostgreSQL raised an error: only C frames were skipped. */
	PG_exception_stack = saved_exception_stack;
	error_context_stack = saved_error_context;
	MemoryContextSwitchTo(caller_context);
	ErrorData* error = CopyErrorData();
	FlushErrorState();
	Capture(unpack_sql_state(error->sqlerrcode), error->message, error->detail, error->hint);
	FreeErrorData(error);

	const CapturedError& s = Scratch();
	throw m365::Error(s.code, s.message, s.detail, s.hint);
}

}  // namespace m365::pg
