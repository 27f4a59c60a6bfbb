// Error texts are cut on character boundaries, and the transliteration cache
// stays within its byte budget (issue 14, point 9).
#include "core/error.hpp"
#include "core/transliterate.hpp"
#include "core/username_format.hpp"
#include "core/utf8.hpp"

#include <gtest/gtest.h>

#include <string>

namespace m365 {
namespace {

// Whether `text` is well-formed UTF-8 (no split or stray continuation byte).
bool
IsWholeUtf8(std::string_view text)
{
	size_t i = 0;
	while (i < text.size()) {
		const auto lead = static_cast<unsigned char>(text[i]);
		const size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
		if (length == 0 || i + length > text.size())
			return false;
		for (size_t k = 1; k < length; ++k)
			if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80)
				return false;
		i += length;
	}
	return true;
}

TEST(Utf8Prefix, NeverSplitsACharacter)
{
	const std::string text = "aé€😀Дmitrij";  // 1, 2, 3, 4 and 2-byte characters
	for (size_t limit = 0; limit <= text.size() + 1; ++limit) {
		const std::string_view kept = Utf8Prefix(text, limit);
		EXPECT_LE(kept.size(), limit);
		EXPECT_TRUE(IsWholeUtf8(kept)) << "limit " << limit;
		EXPECT_EQ(text.substr(0, kept.size()), kept);
	}
	EXPECT_EQ(Utf8Prefix(text, 2), "a");    // not the first byte of é
	EXPECT_EQ(Utf8Prefix(text, 3), "aé");
}

TEST(Utf8Prefix, ErrorTextsQuotingLongInputStayWhole)
{
	// A format of 59 ASCII bytes then Cyrillic: the quoted part is cut at
	// 60 bytes, which falls inside the first Cyrillic letter.
	for (const std::string tail : {"Дмитрий", "ééééé", "😀😀😀"}) {
		const std::string format = std::string(59, 'x') + tail;
		try {
			ParseUsernameFormat(format);
			ADD_FAILURE() << "accepted " << format;
		} catch (const Error& e) {
			EXPECT_EQ(e.Code(), sqlstate::kInvalidUsernameFormat);
			EXPECT_TRUE(IsWholeUtf8(e.what())) << e.what();
		}
		// An unknown token of 500 characters is quoted cut, and whole.
		try {
			ParseUsernameFormat("voornaam." + std::string(250, 'q') + "é" + tail);
			ADD_FAILURE();
		} catch (const Error& e) {
			EXPECT_TRUE(IsWholeUtf8(e.what())) << e.what();
			EXPECT_LT(std::string(e.what()).size(), 300u);
		}
	}
}

TEST(TransliterationCache, StaysWithinItsByteBudget)
{
	// 6,000 distinct non-ASCII names of 4 KB each (24 MB: the case that once grew
	// one backend to 405 MB), then 200,000 distinct short ones.
	for (int i = 0; i < 6000; ++i) {
		std::string name = "Ž" + std::to_string(i);
		name.resize(4000, 'a');
		TransliterateToAscii(name);
		ASSERT_LE(TransliterationCacheBytes(), size_t{9} << 20) << "after " << i;
	}
	for (int i = 0; i < 200000; ++i) {
		TransliterateToAscii("Žofia" + std::to_string(i));
		ASSERT_LE(TransliterationCacheBytes(), size_t{9} << 20) << "after " << i;
	}
	// Short names are kept: the second call is served from the cache.
	EXPECT_EQ(TransliterateToAscii("Žofia199999"), "zofia199999");
	EXPECT_GT(TransliterationCacheBytes(), 0u);
}

}  // namespace
}  // namespace m365
