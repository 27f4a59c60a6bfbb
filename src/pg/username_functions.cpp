/*
 * src/pg/username_functions.cpp
 *
 * SQL entry points for making and checking usernames. Each unpacks its
 * arguments, calls the core, and packs the result; the rules live in
 * src/core/.
 */
#include "core/error.hpp"
#include "core/make_username.hpp"
#include "core/transliterate.hpp"
#include "core/upn.hpp"
#include "core/username_format.hpp"
#include "core/utf8.hpp"
#include "pg/datum.hpp"
#include "pg/guard.hpp"

using m365::pg::Int64Arg;
using m365::pg::TextArg;
using m365::pg::TextDatum;

/* m365.make_username(format text, first_name text, last_name text) RETURNS text */
M365_SQL_FUNCTION(m365_make_username)
{
	std::optional<std::string> username = m365::MakeUsername(TextArg(fcinfo, 0), TextArg(fcinfo, 1), TextArg(fcinfo, 2));
	if (!username)
		PG_RETURN_NULL();
	return TextDatum(*username);
}

/* m365.username_is_valid(username text) RETURNS boolean */
M365_SQL_FUNCTION(m365_username_is_valid)
{
	PG_RETURN_BOOL(m365::IsValidUsername(TextArg(fcinfo, 0)));
}

/* m365.username_problem(username text) RETURNS text: NULL when valid. */
M365_SQL_FUNCTION(m365_username_problem)
{
	const std::string_view username = TextArg(fcinfo, 0);
	const m365::UsernameProblem problem = m365::CheckUsername(username);
	if (problem == m365::UsernameProblem::kNone)
		PG_RETURN_NULL();
	std::string reason = m365::Describe(problem);
	if (problem == m365::UsernameProblem::kDomainInvalid)
		reason += std::string(": ") + m365::Describe(m365::CheckDomain(username.substr(username.find('@') + 1)));
	return TextDatum(reason);
}

/* m365.local_part_key(username text) RETURNS text IMMUTABLE: the uniqueness key. */
M365_SQL_FUNCTION(m365_local_part_key)
{
	return TextDatum(m365::LocalPartKey(TextArg(fcinfo, 0)));
}

/* m365.domain_is_valid(domain text) RETURNS boolean */
M365_SQL_FUNCTION(m365_domain_is_valid)
{
	PG_RETURN_BOOL(m365::IsValidDomain(TextArg(fcinfo, 0)));
}

/* m365.check_domain(domain text) RETURNS boolean: true, or raises M3D01. */
M365_SQL_FUNCTION(m365_check_domain)
{
	const std::string_view domain = TextArg(fcinfo, 0);
	const m365::DomainProblem problem = m365::CheckDomain(domain);
	if (problem != m365::DomainProblem::kNone)
		throw m365::Error(m365::sqlstate::kInvalidDomain,
		                  "invalid domain \"" + m365::Utf8Shown(domain, 100) + "\"", m365::Describe(problem),
		                  "A domain is like \"school.be\": letters, digits and hyphens, at least two labels.");
	PG_RETURN_BOOL(true);
}

/* m365.check_username_format(format text) RETURNS boolean: true, or raises M3F01. */
M365_SQL_FUNCTION(m365_check_username_format)
{
	m365::ParseUsernameFormat(TextArg(fcinfo, 0));
	PG_RETURN_BOOL(true);
}

/* m365.username_with_suffix(base text, n bigint) RETURNS text */
M365_SQL_FUNCTION(m365_username_with_suffix)
{
	return TextDatum(m365::WithSuffix(TextArg(fcinfo, 0), Int64Arg(fcinfo, 1)));
}

/* m365.icu_version() RETURNS text */
M365_SQL_FUNCTION(m365_icu_version)
{
	return TextDatum(m365::IcuVersion());
}

/* m365.name_cache_bytes() RETURNS bigint: what this backend's cache of
 * transliterated words holds (outside PostgreSQL's memory accounting). */
M365_SQL_FUNCTION(m365_name_cache_bytes)
{
	PG_RETURN_INT64(static_cast<int64>(m365::TransliterationCacheBytes()));
}
