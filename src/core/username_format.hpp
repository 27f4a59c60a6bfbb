/*
 * src/core/username_format.hpp
 *
 * A configuration's username format, e.g. "naam.voornaam": tokens joined by
 * separators. Formats are validated, never guessed: an unknown token is an
 * error that names it.
 */
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace m365 {

enum class FormatToken {
	kFirstName,    /* voornaam, firstname */
	kLastName,     /* naam, lastname */
	kFirstInitial, /* v, f */
	kLastInitial,  /* n, l */
};

struct FormatPiece {
	char separator; /* '.', '-' or '_' before this token; '\0' for the first */
	FormatToken token;
};

using UsernameFormat = std::vector<FormatPiece>;

/* Longest format text accepted; real formats are a few tokens long. */
inline constexpr size_t kMaxFormatLength = 200;

/* Throws Error(kInvalidUsernameFormat) naming the offending token. */
UsernameFormat ParseUsernameFormat(std::string_view text);

}  // namespace m365
