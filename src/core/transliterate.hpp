/*
 * src/core/transliterate.hpp
 *
 * Turns one word of a person's name (UTF-8) into lower-case ASCII:
 * Unicode NFC, then ICU "Any-Latin; Latin-ASCII", then lower case.
 * The ICU objects are built once per backend and results are memoised,
 * because real school data repeats the same few thousand names.
 */
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace m365 {

/* Longest input, in bytes, that is transliterated; the rest is ignored.
 * A username part is at most 64 characters, so nothing real is lost, and
 * a 1 GB argument cannot make the backend spend minutes in ICU. */
inline constexpr size_t kMaxNameInputBytes = 4096;

/* Lower-case ASCII transliteration of `utf8`. Characters with no Latin
 * form (emoji, symbols) come back unchanged or vanish; callers filter. */
std::string TransliterateToAscii(std::string_view utf8);

/* What the per-backend cache of results holds now, in bytes (estimated:
 * the strings, a per-entry overhead and the bucket array). */
size_t TransliterationCacheBytes();

/* Whether every byte is 7-bit ASCII. */
bool IsAscii(std::string_view text);

/* Splits on Unicode white space (not on hyphens), dropping empty words. */
std::vector<std::string_view> SplitWords(std::string_view utf8);

/* The ICU version the results depend on, e.g. "72.1". */
std::string IcuVersion();

}  // namespace m365
