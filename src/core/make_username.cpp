/*
 * src/core/make_username.cpp
 */
#include "core/make_username.hpp"

#include "core/error.hpp"
#include "core/name_part.hpp"

namespace m365 {

namespace {

bool
IsSeparator(char c)
{
	return c == '.' || c == '-' || c == '_';
}

bool
Needs(const UsernameFormat& format, FormatToken a, FormatToken b)
{
	for (const FormatPiece& piece : format)
		if (piece.token == a || piece.token == b)
			return true;
	return false;
}

}  // namespace

std::string
TrimToLimit(std::string_view text, size_t limit)
{
	std::string_view cut = text.substr(0, limit);
	while (!cut.empty() && IsSeparator(cut.back()))
		cut.remove_suffix(1);
	return std::string(cut);
}

std::optional<std::string>
MakeUsername(const UsernameFormat& format, std::string_view first_name, std::string_view last_name)
{
	const std::string first = Needs(format, FormatToken::kFirstName, FormatToken::kFirstInitial)
	                              ? FirstNamePart(first_name)
	                              : std::string();
	const std::string last =
	    Needs(format, FormatToken::kLastName, FormatToken::kLastInitial) ? LastNamePart(last_name) : std::string();

	std::string out;
	for (const FormatPiece& piece : format) {
		std::string_view value;
		switch (piece.token) {
		case FormatToken::kFirstName:
			value = first;
			break;
		case FormatToken::kLastName:
			value = last;
			break;
		case FormatToken::kFirstInitial:
			value = std::string_view(first).substr(0, 1);
			break;
		case FormatToken::kLastInitial:
			value = std::string_view(last).substr(0, 1);
			break;
		}
		if (value.empty())
			continue;
		if (!out.empty())
			out.push_back(piece.separator);
		out.append(value);
		if (out.size() > kMaxLocalPartLength)
			break;
	}
	std::string trimmed = TrimToLimit(out, kMaxLocalPartLength);
	if (trimmed.empty())
		return std::nullopt;
	return trimmed;
}

std::optional<std::string>
MakeUsername(std::string_view format, std::string_view first_name, std::string_view last_name)
{
	/* The job calls this once per person with the same few formats. */
	static std::string last_text;
	static UsernameFormat last_format;
	if (last_format.empty() || format != last_text) {
		UsernameFormat parsed = ParseUsernameFormat(format);
		last_text.assign(format);
		last_format = std::move(parsed);
	}
	return MakeUsername(last_format, first_name, last_name);
}

std::string
WithSuffix(std::string_view base, long long n)
{
	if (n < 2)
		throw Error(sqlstate::kInvalidParameter, "a username suffix starts at 2, got " + std::to_string(n));
	const std::string digits = std::to_string(n);
	if (digits.size() >= kMaxLocalPartLength)
		throw Error(sqlstate::kInvalidParameter, "username suffix " + digits + " is too long");
	std::string stem = TrimToLimit(base, kMaxLocalPartLength - digits.size());
	if (stem.empty())
		throw Error(sqlstate::kInvalidParameter, "a username base must not be empty");
	return stem + digits;
}

}  // namespace m365
