// libFuzzer target for the name normaliser, the validators and the CSV reader, outside
// PostgreSQL. The input is "format\nfirst name\nlast name\nsuffix digits";
// missing lines are empty. A crash, a sanitizer report, an exception other
// than m365::Error, or a broken promise below (__builtin_trap) is a finding.
#include "core/csv_reader.hpp"
#include "core/error.hpp"
#include "core/make_username.hpp"
#include "core/name_part.hpp"
#include "core/transliterate.hpp"
#include "core/upn.hpp"
#include "core/username_format.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::string_view
NextLine(std::string_view& rest)
{
	size_t end = rest.find('\n');
	std::string_view line = rest.substr(0, end);
	rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
	return line;
}

void
Require(bool promise)
{
	if (!promise)
		__builtin_trap();
}

// What MakeUsername promises (src/core/make_username.hpp).
void
CheckMadeUsername(const std::optional<std::string>& made, long long suffix)
{
	if (!made)
		return;
	Require(!made->empty() && made->size() <= m365::kMaxLocalPartLength);
	Require(m365::IsAscii(*made));
	Require(m365::IsValidUsername(*made));
	std::string with_suffix = m365::WithSuffix(*made, suffix);
	Require(with_suffix.size() <= m365::kMaxLocalPartLength);
	Require(m365::IsValidUsername(with_suffix));
}

}  // namespace

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
	std::string_view rest(reinterpret_cast<const char*>(data), size);
	std::string_view format_text = NextLine(rest);
	std::string_view first = NextLine(rest);
	std::string_view last = NextLine(rest);
	long long suffix = 2;
	for (char c : NextLine(rest).substr(0, 18))
		if (c >= '0' && c <= '9')
			suffix = suffix * 10 + (c - '0');

	// The validators take anything.
	std::string_view whole(reinterpret_cast<const char*>(data), size);
	m365::UsernameProblem problem = m365::CheckUsername(whole);
	Require(m365::Describe(problem) != nullptr);
	Require(m365::Describe(m365::CheckDomain(whole)) != nullptr);

	// Transliteration is the same every time (the memo cache must not change
	// it); what has no Latin form may stay, so the name parts filter to ASCII.
	std::string latin = m365::TransliterateToAscii(first);
	Require(latin == m365::TransliterateToAscii(first));
	Require(m365::IsAscii(m365::FirstNamePart(first)) && m365::IsAscii(m365::LastNamePart(last)));

	// A format the input spells, and the fixed ones the application uses.
	try {
		m365::UsernameFormat format = m365::ParseUsernameFormat(format_text);
		std::optional<std::string> made = m365::MakeUsername(format, first, last);
		CheckMadeUsername(made, suffix);
		Require(made == m365::MakeUsername(format, first, last));
	} catch (const m365::Error&) {
		// An invalid format is an answer (M3F01), not a finding.
	}
	for (std::string_view fixed : {"naam.voornaam", "voornaam.naam", "v.naam", "n_v"})
		CheckMadeUsername(m365::MakeUsername(fixed, first, last), suffix);

	// The tenant CSV reader takes anything: records of the header's width,
	// or m365::Error.
	try {
		std::vector<m365::CsvRecord> records = m365::ReadCsv(whole);
		Require(!records.empty());
		for (const auto& record : records)
			Require(record.fields.size() == records.front().fields.size() && record.line >= 1);
	} catch (const m365::Error&) {
	}
	return 0;
}
