/*
 * src/core/make_username.hpp
 *
 * The username a person gets from a format and their official names.
 */
#pragma once

#include "core/username_format.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace m365 {

/* Microsoft's limit for the part before "@". */
inline constexpr size_t kMaxLocalPartLength = 64;

/* Builds the local part. A token whose name part is empty is dropped with
 * its separator; nullopt when nothing is left. The result is at most
 * kMaxLocalPartLength characters, never ends on a separator, and always
 * passes IsValidUsername(). */
std::optional<std::string> MakeUsername(const UsernameFormat& format, std::string_view first_name,
                                        std::string_view last_name);

/* Same, parsing `format` first (the last parsed format is remembered). */
std::optional<std::string> MakeUsername(std::string_view format, std::string_view first_name,
                                        std::string_view last_name);

/* `base` with the numeric suffix n (n >= 2) appended, base cut so that the
 * whole stays within kMaxLocalPartLength and never ends on a separator
 * before the digits: ("jan.peters", 2) -> "jan.peters2". */
std::string WithSuffix(std::string_view base, long long n);

/* Cuts to `limit` characters and strips trailing separators. */
std::string TrimToLimit(std::string_view text, size_t limit);

}  // namespace m365
