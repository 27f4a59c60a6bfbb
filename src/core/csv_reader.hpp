/*
 * src/core/csv_reader.hpp
 *
 * Reading a CSV file exported by an admin center (the tenant's users): RFC
 * 4180, strictly. A file that is not what it seems is an error naming its
 * line, never a silent shift of columns: a wrong name in the wrong column
 * would reserve or hand out the wrong account.
 */
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace m365 {

struct CsvRecord {
	size_t line;  // the line the record starts on, from 1
	std::vector<std::string> fields;
};

/* The records of `utf8`, the first being the header. A UTF-8 byte order mark
 * is skipped. Fields are separated by commas, or by semicolons when the
 * first record has no comma outside quotes and has a semicolon (Excel saves
 * CSV that way in a Dutch or French locale). A quoted field may hold
 * separators, doubled quotes and line breaks. Records end with CRLF, LF or
 * CR; empty lines are skipped. Throws m365::Error (22P04) naming the line
 * for: a quote that is never closed, text after a closing quote, a quote
 * inside an unquoted field, a record whose number of fields differs from the
 * header's, and an empty file. */
std::vector<CsvRecord> ReadCsv(std::string_view utf8);

}  // namespace m365
