/*
 * src/core/transliterate.cpp
 *
 * ICU transliteration of name words, with a per-backend cache of the ICU
 * objects and of results. PostgreSQL backends are single-threaded, so the
 * function-local statics need no locking.
 */
#include "core/transliterate.hpp"

#include "core/error.hpp"

#include <memory>
#include <unordered_map>

#include <unicode/normalizer2.h>
#include <unicode/translit.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>
#include <unicode/uversion.h>

namespace m365 {

namespace {

/* Enough for every distinct word of a large school group; when full, the
 * cache is simply emptied (cheap, and the hot names come straight back). */
constexpr size_t kCacheLimit = 1 << 16;

struct IcuObjects {
	const icu::Normalizer2* nfc = nullptr;
	std::unique_ptr<icu::Transliterator> to_ascii;
};

const IcuObjects&
Icu()
{
	static std::unique_ptr<IcuObjects> objects;
	if (objects)
		return *objects;

	auto fresh = std::make_unique<IcuObjects>();
	UErrorCode status = U_ZERO_ERROR;
	fresh->nfc = icu::Normalizer2::getNFCInstance(status);
	if (U_FAILURE(status))
		throw Error(sqlstate::kInternal, std::string("ICU NFC normaliser unavailable: ") + u_errorName(status));

	UParseError parse_error{};
	fresh->to_ascii.reset(icu::Transliterator::createInstance(icu::UnicodeString("Any-Latin; Latin-ASCII"),
	                                                         UTRANS_FORWARD, parse_error, status));
	if (U_FAILURE(status) || !fresh->to_ascii)
		throw Error(sqlstate::kInternal,
		            std::string("ICU transliterator \"Any-Latin; Latin-ASCII\" unavailable: ") + u_errorName(status),
		            "", "Is the ICU data library (libicu) installed completely?");
	objects = std::move(fresh);
	return *objects;
}

std::unordered_map<std::string, std::string>&
Cache()
{
	static std::unordered_map<std::string, std::string> cache;
	return cache;
}

void
LowerAsciiInPlace(std::string& text)
{
	for (char& c : text)
		if (c >= 'A' && c <= 'Z')
			c = static_cast<char>(c - 'A' + 'a');
}

/* Cuts at a code-point boundary at or below `limit` bytes. */
std::string_view
ClampUtf8(std::string_view text, size_t limit)
{
	if (text.size() <= limit)
		return text;
	size_t end = limit;
	while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80)
		--end;
	return text.substr(0, end);
}

}  // namespace

bool
IsAscii(std::string_view text)
{
	for (unsigned char c : text)
		if (c >= 0x80)
			return false;
	return true;
}

std::string
TransliterateToAscii(std::string_view utf8)
{
	utf8 = ClampUtf8(utf8, kMaxNameInputBytes);
	if (IsAscii(utf8)) {
		std::string out(utf8);
		LowerAsciiInPlace(out);
		return out;
	}

	auto& cache = Cache();
	std::string key(utf8);
	if (auto hit = cache.find(key); hit != cache.end())
		return hit->second;

	const IcuObjects& icu_objects = Icu();
	UErrorCode status = U_ZERO_ERROR;
	icu::UnicodeString text = icu::UnicodeString::fromUTF8(icu::StringPiece(utf8.data(), static_cast<int32_t>(utf8.size())));
	icu::UnicodeString normalised = icu_objects.nfc->normalize(text, status);
	if (U_FAILURE(status))
		throw Error(sqlstate::kInternal, std::string("ICU normalisation failed: ") + u_errorName(status));
	icu_objects.to_ascii->transliterate(normalised);

	std::string out;
	normalised.toUTF8String(out);
	LowerAsciiInPlace(out);

	if (cache.size() >= kCacheLimit)
		cache.clear();
	cache.emplace(std::move(key), out);
	return out;
}

std::vector<std::string_view>
SplitWords(std::string_view utf8)
{
	std::vector<std::string_view> words;
	const auto* bytes = reinterpret_cast<const uint8_t*>(utf8.data());
	const int32_t length = static_cast<int32_t>(utf8.size());
	int32_t word_start = -1;
	int32_t i = 0;
	while (i < length) {
		const int32_t char_start = i;
		UChar32 c;
		U8_NEXT(bytes, i, length, c);
		const bool space = c >= 0 && u_isUWhiteSpace(c);
		if (space && word_start >= 0) {
			words.push_back(utf8.substr(word_start, char_start - word_start));
			word_start = -1;
		} else if (!space && word_start < 0) {
			word_start = char_start;
		}
	}
	if (word_start >= 0)
		words.push_back(utf8.substr(word_start));
	return words;
}

std::string
IcuVersion()
{
	UVersionInfo version;
	u_getVersion(version);
	char text[U_MAX_VERSION_STRING_LENGTH];
	u_versionToString(version, text);
	return text;
}

}  // namespace m365
