// Reading the tenant's users CSV (issue 17, part 2).
#include "core/csv_reader.hpp"
#include "core/error.hpp"

#include <gtest/gtest.h>

namespace m365 {
namespace {

using Fields = std::vector<std::string>;

std::vector<Fields>
FieldsOf(std::string_view text)
{
	std::vector<Fields> out;
	for (auto& r : ReadCsv(text))
		out.push_back(r.fields);
	return out;
}

std::string
ErrorOf(std::string_view text)
{
	try {
		ReadCsv(text);
	} catch (const Error& e) {
		EXPECT_EQ(e.Code(), "22P04");
		return e.what();
	}
	return "no error";
}

TEST(CsvReader, PlainRecords)
{
	EXPECT_EQ(FieldsOf("a,b\n1,2\n"), (std::vector<Fields>{{"a", "b"}, {"1", "2"}}));
	EXPECT_EQ(FieldsOf("a,b\r\n1,2"), (std::vector<Fields>{{"a", "b"}, {"1", "2"}}));
	EXPECT_EQ(FieldsOf("a,b\r1,2\r"), (std::vector<Fields>{{"a", "b"}, {"1", "2"}}));
	EXPECT_EQ(FieldsOf("a,b\n,\n"), (std::vector<Fields>{{"a", "b"}, {"", ""}}));
}

TEST(CsvReader, ByteOrderMarkSkipped)
{
	EXPECT_EQ(FieldsOf("\xEF\xBB\xBFuserPrincipalName,givenName\nx@s.be,Jan\n"),
	          (std::vector<Fields>{{"userPrincipalName", "givenName"}, {"x@s.be", "Jan"}}));
}

TEST(CsvReader, QuotedValues)
{
	EXPECT_EQ(FieldsOf("a,b\n\"Peeters, Jan\",\"say \"\"hi\"\"\"\n"),
	          (std::vector<Fields>{{"a", "b"}, {"Peeters, Jan", "say \"hi\""}}));
	EXPECT_EQ(FieldsOf("a,b\n\"two\r\nlines\",\"\"\n"), (std::vector<Fields>{{"a", "b"}, {"two\r\nlines", ""}}));
	EXPECT_EQ(FieldsOf("\"a\",\"b\"\n\"Zoë\",\"Дмитрий\""), (std::vector<Fields>{{"a", "b"}, {"Zoë", "Дмитрий"}}));
}

TEST(CsvReader, LineNumbersCountLineBreaksInsideQuotes)
{
	auto records = ReadCsv("a,b\n\"x\ny\",1\n\nz,2\n");
	ASSERT_EQ(records.size(), 3u);
	EXPECT_EQ(records[1].line, 2u);
	EXPECT_EQ(records[2].line, 5u);
}

TEST(CsvReader, SemicolonsWhenTheHeaderHasNoComma)
{
	EXPECT_EQ(FieldsOf("a;b\n\"1,5\";2\n"), (std::vector<Fields>{{"a", "b"}, {"1,5", "2"}}));
	// A header with commas: semicolons are data.
	EXPECT_EQ(FieldsOf("a,b\n1;5,2\n"), (std::vector<Fields>{{"a", "b"}, {"1;5", "2"}}));
}

TEST(CsvReader, EmptyLinesSkipped)
{
	EXPECT_EQ(FieldsOf("\n\na,b\n\n1,2\n\n"), (std::vector<Fields>{{"a", "b"}, {"1", "2"}}));
}

TEST(CsvReader, BrokenFilesNameTheLine)
{
	EXPECT_EQ(ErrorOf(""), "the CSV file is empty");
	EXPECT_EQ(ErrorOf("\xEF\xBB\xBF\r\n"), "the CSV file is empty");
	EXPECT_EQ(ErrorOf("a,b\n1,2,3\n"), "the CSV file is not valid at line 2: it has 3 field(s), the header 2");
	EXPECT_EQ(ErrorOf("a,b\n1\n"), "the CSV file is not valid at line 2: it has 1 field(s), the header 2");
	EXPECT_EQ(ErrorOf("a,b\n1,\"2\n3,4\n"), "the CSV file is not valid at line 2: a double quote is never closed");
	EXPECT_EQ(ErrorOf("a,b\n1,\"2\"x\n"), "the CSV file is not valid at line 2: text after a closing double quote");
	EXPECT_EQ(ErrorOf("a,b\n1,2\"\n"),
	          "the CSV file is not valid at line 2: a double quote inside a value that does not begin with one");
	// Peeters, Jan unquoted: one field too many, not a silent shift.
	EXPECT_EQ(ErrorOf("upn,name\nj@s.be,Peeters, Jan\n"),
	          "the CSV file is not valid at line 2: it has 3 field(s), the header 2");
}

TEST(CsvReader, LongAndOddValues)
{
	std::string long_value(100000, 'x');
	auto fields = FieldsOf("a\n\"" + long_value + "\"\n");
	EXPECT_EQ(fields[1][0].size(), 100000u);
	EXPECT_EQ(FieldsOf("a\n\xF0\x9F\x98\x80\n"), (std::vector<Fields>{{"a"}, {"\xF0\x9F\x98\x80"}}));
}

}  // namespace
}  // namespace m365
