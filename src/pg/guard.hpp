/*
 * src/pg/guard.hpp
 *
 * The two crossings between C++ and PostgreSQL, and nothing else.
 *
 * PostgreSQL -> C++: every SQL-callable function is declared with
 * M365_SQL_FUNCTION, whose C wrapper does one thing: GuardEntry(). It runs
 * the C++ body in try/catch, copies what was thrown into a static buffer
 * (no allocation while the exception is alive), leaves the catch block, and
 * only then calls ereport(ERROR). The longjmp that follows skips only frames
 * that own nothing.
 *
 * C++ -> PostgreSQL: any PostgreSQL function that can ereport is called as
 * PgCall([&] { return some_pg_function(...); }). A PostgreSQL error
 * longjmps back into PgCallImpl (a frame with no destructors), which copies
 * the error data, flushes the error state and throws m365::Error with the
 * original SQLSTATE. The exception must travel up to GuardEntry, which
 * raises it again: an error caught from PostgreSQL may never be swallowed,
 * because without a (sub)transaction abort PostgreSQL's state is not clean.
 */
#pragma once

#include "core/error.hpp"
#include "pg/postgres.hpp"

namespace m365::pg {

/* What an exception said, in fixed buffers that outlive the catch block. */
struct CapturedError {
	char code[6];
	char message[2048];
	char detail[1024];
	char hint[1024];
};

CapturedError& Scratch() noexcept;
void Capture(const char* code, const char* message, const char* detail, const char* hint) noexcept;
[[noreturn]] void RaiseCaptured();

template <typename Body>
Datum
GuardEntry(Body&& body)
{
	try {
		return body();
	} catch (const m365::Error& e) {
		Capture(e.Code().c_str(), e.what(), e.Detail().c_str(), e.Hint().c_str());
	} catch (const std::bad_alloc&) {
		Capture(m365::sqlstate::kOutOfMemory, "out of memory in m365_usernames", "", "");
	} catch (const std::exception& e) {
		Capture(m365::sqlstate::kInternal, e.what(), "", "");
	} catch (...) {
		Capture(m365::sqlstate::kInternal, "unexpected C++ exception in m365_usernames", "", "");
	}
	RaiseCaptured();
}

/* Runs thunk(context) with a private PostgreSQL error handler. */
void PgCallImpl(void (*thunk)(void*), void* context);

template <typename Call>
auto
PgCall(Call&& call) -> decltype(call())
{
	using Result = decltype(call());
	using CallType = std::remove_reference_t<Call>;
	static_assert(std::is_trivially_destructible_v<CallType>,
	              "a PgCall lambda may capture by reference only: a longjmp can skip its frame");
	if constexpr (std::is_void_v<Result>) {
		PgCallImpl([](void* context) { (*static_cast<CallType*>(context))(); }, &call);
	} else {
		static_assert(std::is_trivially_copyable_v<Result>, "PgCall returns plain PostgreSQL values only");
		struct Context {
			CallType* call;
			Result result;
		} context{&call, Result{}};
		PgCallImpl([](void* raw) {
			auto* ctx = static_cast<Context*>(raw);
			ctx->result = (*ctx->call)();
		},
		           &context);
		return context.result;
	}
}

}  // namespace m365::pg

/*
 * Declares a SQL-callable function `name` whose body is C++:
 *
 *     M365_SQL_FUNCTION(m365_foo) { ... return datum; }
 */
#define M365_SQL_FUNCTION(name)                                                                                        \
	static Datum name##_cpp(FunctionCallInfo fcinfo);                                                                  \
	extern "C" {                                                                                                       \
	PG_FUNCTION_INFO_V1(name);                                                                                         \
	Datum name(PG_FUNCTION_ARGS)                                                                                       \
	{                                                                                                                  \
		return m365::pg::GuardEntry([fcinfo] { return name##_cpp(fcinfo); });                                         \
	}                                                                                                                  \
	}                                                                                                                  \
	static Datum name##_cpp(FunctionCallInfo fcinfo)
