/*
 * src/core/username_format.cpp
 */
#include "core/username_format.hpp"

#include "core/error.hpp"
#include "core/utf8.hpp"

namespace m365 {

namespace {

constexpr const char* kFormatHint =
    "A format is tokens joined by \".\", \"-\" or \"_\". Tokens: voornaam or firstname, naam or lastname, "
    "v or f (first letter of the first name), n or l (first letter of the last name). Example: naam.voornaam";

bool
IsSeparator(char c)
{
	return c == '.' || c == '-' || c == '_';
}

/* The format as quoted in an error: long ones are cut. */
std::string
Shown(std::string_view format)
{
	return Utf8Shown(format, 60);
}

[[noreturn]] void
Reject(std::string_view format, const std::string& why)
{
	throw Error(sqlstate::kInvalidUsernameFormat,
	            "invalid username format \"" + Shown(format) + "\": " + why, "",
	            kFormatHint);
}

FormatToken
TokenFor(std::string_view format, std::string_view word)
{
	if (word == "voornaam" || word == "firstname")
		return FormatToken::kFirstName;
	if (word == "naam" || word == "lastname")
		return FormatToken::kLastName;
	if (word == "v" || word == "f")
		return FormatToken::kFirstInitial;
	if (word == "n" || word == "l")
		return FormatToken::kLastInitial;
	Reject(format, "unknown token \"" + Utf8Shown(word, 60) + "\"");
}

}  // namespace

UsernameFormat
ParseUsernameFormat(std::string_view text)
{
	if (text.empty())
		Reject(text, "it is empty");
	if (text.size() > kMaxFormatLength)
		Reject(text, "it is longer than " + std::to_string(kMaxFormatLength) + " characters");

	UsernameFormat format;
	char separator = '\0';
	size_t i = 0;
	while (i < text.size()) {
		const char c = text[i];
		if (IsSeparator(c)) {
			if (format.empty())
				Reject(text, "it starts with the separator \"" + std::string(1, c) + "\"");
			if (separator != '\0')
				Reject(text, "two separators in a row at position " + std::to_string(i + 1));
			separator = c;
			++i;
			continue;
		}
		if (!(c >= 'a' && c <= 'z')) {
			const std::string shown = (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f)
			                              ? std::string(1, c)
			                              : "byte " + std::to_string(static_cast<unsigned char>(c));
			Reject(text, "unexpected character \"" + shown + "\" at position " + std::to_string(i + 1) +
			                 " (tokens are lower case)");
		}
		size_t end = i;
		while (end < text.size() && text[end] >= 'a' && text[end] <= 'z')
			++end;
		format.push_back(FormatPiece{separator, TokenFor(text, text.substr(i, end - i))});
		separator = '\0';
		i = end;
	}
	if (separator != '\0')
		Reject(text, "it ends with the separator \"" + std::string(1, separator) + "\"");
	return format;
}

}  // namespace m365
