/*
 * src/core/name_part.hpp
 *
 * From an official name to the piece of a username it contributes:
 * transliterated, lower case, only [a-z0-9-], hyphens single and inside.
 */
#pragma once

#include <string>
#include <string_view>

namespace m365 {

/* Keeps a-z and 0-9, and a hyphen only between two kept characters (runs of
 * hyphens become one). Everything else, spaces and apostrophes included, is
 * dropped: "van 't hof" -> "vanthof", "--jean--luc-" -> "jean-luc". */
std::string KeepUsernameCharacters(std::string_view ascii);

/* The first given name that yields anything: "Marie Louise" -> "marie",
 * "Jean-Luc" -> "jean-luc", "😀 Jan" -> "jan". Empty when none does. */
std::string FirstNamePart(std::string_view official_first_name);

/* The whole last name, words joined: "Van den Broeck" -> "vandenbroeck". */
std::string LastNamePart(std::string_view official_last_name);

}  // namespace m365
