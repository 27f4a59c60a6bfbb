/*
 * src/core/error.hpp
 *
 * The one exception type the core throws. It carries a SQLSTATE as a
 * five-character string so that core code needs no PostgreSQL header; the
 * entry guard in src/pg/ turns it into ereport(ERROR) with that code.
 */
#pragma once

#include <stdexcept>
#include <string>

namespace m365 {

/* SQLSTATEs the extension raises. Class "M3" is ours; see docs/sqlstates.md. */
namespace sqlstate {
inline constexpr const char* kInvalidUsernameFormat = "M3F01";
inline constexpr const char* kInvalidDomain = "M3D01";
inline constexpr const char* kInvalidParameter = "22023";
inline constexpr const char* kOutOfMemory = "53200";
inline constexpr const char* kInternal = "XX000";
}  // namespace sqlstate

class Error : public std::runtime_error {
public:
	Error(const char* code, const std::string& message, std::string detail = {}, std::string hint = {})
	    : std::runtime_error(message), code_(code), detail_(std::move(detail)), hint_(std::move(hint))
	{
	}

	/* Five characters, [0-9A-Z]. */
	const std::string& Code() const noexcept { return code_; }
	const std::string& Detail() const noexcept { return detail_; }
	const std::string& Hint() const noexcept { return hint_; }

private:
	std::string code_;
	std::string detail_;
	std::string hint_;
};

}  // namespace m365
