/*
 * src/core/transliterate.cpp
 *
 * ICU transliteration of name words, with a per-backend cache of the ICU
 * objects and of results. PostgreSQL backends are single-threaded, so the
 * function-local statics need no locking.
 */
#include "core/transliterate.hpp"

#include "core/error.hpp"
#include "core/utf8.hpp"

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

/* The cache is bounded in bytes (it lives outside PostgreSQL's memory
 * accounting): 8 MiB holds every distinct word of a large school group many
 * times over. When full it is simply emptied (cheap, and the hot names come
 * straight back). Words longer than any real name part are not kept: 60,000
 * distinct 4 KB names once grew one backend to 405 MB. */
constexpr size_t kCacheByteLimit = 8 << 20;
constexpr size_t kLongestCachedWord = 256;
/* What an entry costs besides its two strings' bytes: the node, the
 * bucket, the two string headers. */
constexpr size_t kCacheEntryOverhead = 96;

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

struct ResultCache {
	std::unordered_map<std::string, std::string> entries;
	size_t bytes = 0;
};

ResultCache&
Cache()
{
	static ResultCache cache;
	return cache;
}

void
LowerAsciiInPlace(std::string& text)
{
	for (char& c : text)
		if (c >= 'A' && c <= 'Z')
			c = static_cast<char>(c - 'A' + 'a');
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
	utf8 = Utf8Prefix(utf8, kMaxNameInputBytes);
	if (IsAscii(utf8)) {
		std::string out(utf8);
		LowerAsciiInPlace(out);
		return out;
	}

	ResultCache& cache = Cache();
	std::string key(utf8);
	if (auto hit = cache.entries.find(key); hit != cache.entries.end())
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

	if (key.size() <= kLongestCachedWord) {
		const size_t cost = key.size() + out.size() + kCacheEntryOverhead;
		if (cache.bytes + cost > kCacheByteLimit) {
			cache.entries.clear();
			cache.bytes = 0;
		}
		cache.entries.emplace(std::move(key), out);
		cache.bytes += cost;
	}
	return out;
}

size_t
TransliterationCacheBytes()
{
	const ResultCache& cache = Cache();
	return cache.bytes + cache.entries.bucket_count() * sizeof(void*);
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
