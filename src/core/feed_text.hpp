/*
 * src/core/feed_text.hpp
 *
 * A name as the SDS feed sends it: whole and on one line. SDS reads CSV with
 * no line breaks inside a value, and a control or bidi-override character
 * in a name shows up in every Microsoft 365 app.
 */
#pragma once

#include <string>
#include <string_view>

namespace m365 {

/* `utf8` in Unicode NFC, every run of White_Space characters (tab, line
 * breaks, U+2028/U+2029, no-break spaces, ...) made one space and trimmed,
 * and control (Cc) and Bidi_Control characters removed. Zero-width joiners
 * and non-joiners stay: Persian and Indic names need them. */
std::string FeedText(std::string_view utf8);

}  // namespace m365
