// Names as the SDS feed sends them (issue 14, point 5).
#include "core/feed_text.hpp"

#include <gtest/gtest.h>

namespace m365 {
namespace {

TEST(FeedText, PlainNamesUnchanged)
{
	EXPECT_EQ(FeedText("Jan"), "Jan");
	EXPECT_EQ(FeedText("Van den Broeck"), "Van den Broeck");
	EXPECT_EQ(FeedText("Zoë D'Hondt-Été"), "Zoë D'Hondt-Été");
	EXPECT_EQ(FeedText("Дмитрий"), "Дмитрий");
	EXPECT_EQ(FeedText(""), "");
}

TEST(FeedText, WhiteSpaceCollapsedAndTrimmed)
{
	EXPECT_EQ(FeedText("Mia\nRose"), "Mia Rose");
	EXPECT_EQ(FeedText("  Mia \t\r\n Rose  "), "Mia Rose");
	EXPECT_EQ(FeedText("Mia\u2028Rose\u2029"), "Mia Rose");       // line and paragraph separators
	EXPECT_EQ(FeedText("Mia\u00A0\u3000Rose"), "Mia Rose");       // no-break and ideographic space
	EXPECT_EQ(FeedText(" \t\n "), "");
}

TEST(FeedText, ControlAndBidiCharactersRemoved)
{
	EXPECT_EQ(FeedText(std::string("Ja\0n", 4)), "Jan");
	EXPECT_EQ(FeedText("Ja\x7Fn\x1B"), "Jan");
	EXPECT_EQ(FeedText("Jan\u202Eneeters\u202C"), "Janneeters");   // a right-to-left override
	EXPECT_EQ(FeedText("\u200FMaes\u200E"), "Maes");                // RLM, LRM
	EXPECT_EQ(FeedText("\u2066Maes\u2069"), "Maes");                // isolates
}

TEST(FeedText, JoinersKept)
{
	// Persian and Indic names need ZWNJ and ZWJ.
	EXPECT_EQ(FeedText("می\u200Cخواهم"), "می\u200Cخواهم");
	EXPECT_EQ(FeedText("क्\u200Dष"), "क्\u200Dष");
}

TEST(FeedText, Nfc)
{
	EXPECT_EQ(FeedText("Zoe\u0308"), "Zo\u00EB");   // e + combining diaeresis -> ë
	EXPECT_EQ(FeedText("A\u030A"), "\u00C5");
}

}  // namespace
}  // namespace m365
