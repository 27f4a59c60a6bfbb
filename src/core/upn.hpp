/*
 * src/core/upn.hpp
 *
 * Microsoft 365 username (userPrincipalName) rules: the local part, and an
 * optional "@domain". See docs/username-rules.md for the sources.
 */
#pragma once

#include <string>
#include <string_view>

namespace m365 {

inline constexpr size_t kMaxUsernameLength = 113; /* local@domain */
inline constexpr size_t kMaxDomainLength = 48;
inline constexpr size_t kMaxLabelLength = 63;

enum class UsernameProblem {
	kNone,
	kEmpty,
	kLocalPartEmpty,
	kLocalPartTooLong,
	kForbiddenCharacter,
	kBadDots,          /* leading, trailing or doubled "." */
	kMoreThanOneAt,
	kDomainInvalid,
	kTooLong,
};

enum class DomainProblem {
	kNone,
	kEmpty,
	kTooLong,
	kEmptyLabel,      /* "." at an end, or two in a row */
	kLabelTooLong,
	kLabelCharacter,  /* other than a-z A-Z 0-9 - */
	kLabelHyphen,     /* "-" at the start or end of a label */
	kMissingTld,      /* fewer than two labels */
	kNumericTld,
	kReservedHyphens, /* "ab--" that is not "xn--" */
};

UsernameProblem CheckUsername(std::string_view username);
DomainProblem CheckDomain(std::string_view domain);

inline bool
IsValidUsername(std::string_view username)
{
	return CheckUsername(username) == UsernameProblem::kNone;
}

inline bool
IsValidDomain(std::string_view domain)
{
	return CheckDomain(domain) == DomainProblem::kNone;
}

/*
 * What uniqueness is about: the part before the first "@", with ASCII A-Z in
 * lower case and every other byte as it is. Not the database's lower(): under
 * a Turkish locale that makes "I" a dotless "ı", so "IVO" and "ivo" would be
 * two names, while Microsoft 365 compares ASCII case-insensitively.
 */
std::string LocalPartKey(std::string_view username);

/* Short English reasons, for error details. */
const char* Describe(UsernameProblem problem);
const char* Describe(DomainProblem problem);

}  // namespace m365
