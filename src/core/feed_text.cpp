/*
 * src/core/feed_text.cpp
 */
#include "core/feed_text.hpp"

#include "core/error.hpp"
#include "core/transliterate.hpp"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

namespace m365 {

namespace {

/* Appends `c` to `out` unless it is removed; runs of white space become one
 * space between words. */
class Cleaner {
public:
	explicit Cleaner(size_t expected) { out_.reserve(expected); }

	void Add(UChar32 c)
	{
		if (u_isUWhiteSpace(c)) {
			space_pending_ = !out_.empty();
			return;
		}
		if (u_charType(c) == U_CONTROL_CHAR || u_hasBinaryProperty(c, UCHAR_BIDI_CONTROL))
			return;
		if (space_pending_) {
			out_ += ' ';
			space_pending_ = false;
		}
		char bytes[U8_MAX_LENGTH];
		int32_t length = 0;
		U8_APPEND_UNSAFE(bytes, length, c);
		out_.append(bytes, static_cast<size_t>(length));
	}

	std::string Take() { return std::move(out_); }

private:
	std::string out_;
	bool space_pending_ = false;
};

}  // namespace

std::string
FeedText(std::string_view utf8)
{
	Cleaner cleaner(utf8.size());
	if (IsAscii(utf8)) {
		/* ASCII is in NFC already. */
		for (char c : utf8)
			cleaner.Add(static_cast<unsigned char>(c));
		return cleaner.Take();
	}
	UErrorCode status = U_ZERO_ERROR;
	const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
	if (U_FAILURE(status))
		throw Error(sqlstate::kInternal, std::string("ICU NFC normaliser unavailable: ") + u_errorName(status));
	const icu::UnicodeString text =
	    icu::UnicodeString::fromUTF8(icu::StringPiece(utf8.data(), static_cast<int32_t>(utf8.size())));
	const icu::UnicodeString normalised = nfc->normalize(text, status);
	if (U_FAILURE(status))
		throw Error(sqlstate::kInternal, std::string("ICU normalisation failed: ") + u_errorName(status));
	for (int32_t i = 0; i < normalised.length();) {
		const UChar32 c = normalised.char32At(i);
		cleaner.Add(c);
		i += U16_LENGTH(c);
	}
	return cleaner.Take();
}

}  // namespace m365
