/*
 * src/core/utf8.hpp
 *
 * Cutting UTF-8 text to a byte budget without splitting a character: a
 * split one is invalid UTF-8, which a client in another encoding cannot
 * convert (it then gets 22021 instead of the error that was meant).
 */
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace m365 {

/* The longest prefix of `text` of at most `limit` bytes that ends on a
 * character boundary. */
inline std::string_view
Utf8Prefix(std::string_view text, size_t limit) noexcept
{
	if (text.size() <= limit)
		return text;
	size_t end = limit;
	while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80)
		--end;
	return text.substr(0, end);
}

/* `text` as quoted in an error message: cut to `limit` bytes, marked "...". */
inline std::string
Utf8Shown(std::string_view text, size_t limit)
{
	if (text.size() <= limit)
		return std::string(text);
	return std::string(Utf8Prefix(text, limit)) + "...";
}

}  // namespace m365
