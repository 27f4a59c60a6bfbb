/*
 * src/core/csv_reader.cpp
 */
#include "core/csv_reader.hpp"

#include "core/error.hpp"
#include "core/utf8.hpp"

namespace m365 {
namespace {

constexpr const char* kBadFile = "22P04";  // bad_copy_file_format
constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";

[[noreturn]] void
Fail(size_t line, const std::string& what, std::string detail = {})
{
	throw Error(kBadFile, "the CSV file is not valid at line " + std::to_string(line) + ": " + what, std::move(detail));
}

/* The separator: a comma, or a semicolon when the header has no comma
 * outside quotes and has a semicolon. */
char
Separator(std::string_view text)
{
	bool quoted = false;
	bool semicolon = false;
	for (char c : text) {
		if (c == '"')
			quoted = !quoted;
		else if (!quoted && (c == '\n' || c == '\r'))
			break;
		else if (!quoted && c == ',')
			return ',';
		else if (!quoted && c == ';')
			semicolon = true;
	}
	return semicolon ? ';' : ',';
}

}  // namespace

std::vector<CsvRecord>
ReadCsv(std::string_view text)
{
	if (text.substr(0, kByteOrderMark.size()) == kByteOrderMark)
		text.remove_prefix(kByteOrderMark.size());
	const char separator = Separator(text);

	std::vector<CsvRecord> records;
	CsvRecord record{1, {}};
	std::string field;
	size_t line = 1;
	size_t i = 0;
	const size_t n = text.size();
	bool record_has_text = false;  // anything at all since the record began

	auto end_record = [&]() {
		record.fields.push_back(std::move(field));
		field.clear();
		if (!records.empty() && record.fields.size() != records.front().fields.size())
			Fail(record.line,
			     "it has " + std::to_string(record.fields.size()) + " field(s), the header " +
			         std::to_string(records.front().fields.size()),
			     "A value with a separator or a line break must be in double quotes.");
		records.push_back(std::move(record));
		record = CsvRecord{line, {}};
		record_has_text = false;
	};
	// A line break at i (CRLF, LF or CR): its length.
	auto line_break = [&](size_t at) -> size_t {
		if (text[at] == '\r')
			return at + 1 < n && text[at + 1] == '\n' ? 2 : 1;
		return text[at] == '\n' ? 1 : 0;
	};

	while (i < n) {
		const char c = text[i];
		if (c == '"') {
			if (!field.empty())
				Fail(line, "a double quote inside a value that does not begin with one",
				     "Near: " + Utf8Shown(field, 60));
			const size_t opened = line;
			++i;
			for (;;) {
				if (i >= n)
					Fail(opened, "a double quote is never closed");
				if (text[i] == '"') {
					if (i + 1 < n && text[i + 1] == '"') {
						field += '"';
						i += 2;
						continue;
					}
					++i;
					break;
				}
				if (size_t br = line_break(i)) {
					field.append(text.substr(i, br));
					i += br;
					++line;
					continue;
				}
				field += text[i++];
			}
			record_has_text = true;
			// Only a separator, a line break or the end may follow (the loop ends the field).
			if (i < n && text[i] != separator && line_break(i) == 0)
				Fail(line, "text after a closing double quote", "Near: " + Utf8Shown(text.substr(i, 60), 60));
			continue;
		}
		if (c == separator) {
			record.fields.push_back(std::move(field));
			field.clear();
			record_has_text = true;
			++i;
			continue;
		}
		if (size_t br = line_break(i)) {
			i += br;
			++line;
			if (record_has_text || !field.empty() || !record.fields.empty())
				end_record();
			else
				record.line = line;  // an empty line: skipped
			continue;
		}
		field += c;
		record_has_text = true;
		++i;
	}
	if (record_has_text || !field.empty() || !record.fields.empty())
		end_record();
	if (records.empty())
		throw Error(kBadFile, "the CSV file is empty", "", "The first line must name the columns.");
	return records;
}

}  // namespace m365
