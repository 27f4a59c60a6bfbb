/*
 * src/core/name_part.cpp
 */
#include "core/name_part.hpp"

#include "core/transliterate.hpp"

namespace m365 {

std::string
KeepUsernameCharacters(std::string_view ascii)
{
	std::string out;
	out.reserve(ascii.size());
	bool hyphen_pending = false;
	for (char c : ascii) {
		const bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (keep) {
			if (hyphen_pending && !out.empty())
				out.push_back('-');
			hyphen_pending = false;
			out.push_back(c);
		} else if (c == '-') {
			hyphen_pending = true;
		}
	}
	return out;
}

std::string
FirstNamePart(std::string_view official_first_name)
{
	for (std::string_view word : SplitWords(official_first_name)) {
		std::string part = KeepUsernameCharacters(TransliterateToAscii(word));
		if (!part.empty())
			return part;
	}
	return {};
}

std::string
LastNamePart(std::string_view official_last_name)
{
	/* Word by word, so that each word is a cache entry of its own and a
	 * transliteration never sees a space it could turn into something. */
	std::string out;
	for (std::string_view word : SplitWords(official_last_name)) {
		if (out.size() > kMaxNameInputBytes)
			break;
		out += TransliterateToAscii(word);
		out.push_back(' ');
	}
	return KeepUsernameCharacters(out);
}

}  // namespace m365
