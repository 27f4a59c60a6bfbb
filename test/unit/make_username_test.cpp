// Unit tests of the username core, outside PostgreSQL.
#include "core/error.hpp"
#include "core/make_username.hpp"
#include "core/name_part.hpp"
#include "core/upn.hpp"

#include <gtest/gtest.h>

namespace m365 {
namespace {

std::string
Made(std::string_view format, std::string_view first, std::string_view last)
{
	return MakeUsername(format, first, last).value_or("<null>");
}

TEST(MakeUsername, SpecificationExamples)
{
	EXPECT_EQ(Made("voornaam.naam", "Zoë", "D'Hondt"), "zoe.dhondt");
	EXPECT_EQ(Made("voornaam.naam", "Łukasz", "Wróblewski"), "lukasz.wroblewski");
	EXPECT_EQ(Made("voornaam.naam", "Özgür", "Yılmaz"), "ozgur.yilmaz");
	EXPECT_EQ(Made("voornaam.naam", "Ørjan", "Sæther"), "orjan.saether");
	EXPECT_EQ(Made("voornaam.naam", "Дмитрий", "Иванов"), "dmitrij.ivanov");
	EXPECT_EQ(Made("naam.voornaam", "Jan", "Peeters"), "peeters.jan");
	EXPECT_EQ(Made("voornaam.naam", "Marie Louise", "Van den Broeck"), "marie.vandenbroeck");
	EXPECT_EQ(Made("voornaam.naam", "Jean-Luc", "Van 't Hof"), "jean-luc.vanthof");
}

TEST(MakeUsername, DropsEmptyPartsWithTheirSeparator)
{
	EXPECT_EQ(Made("voornaam.naam", "😀", "Peeters"), "peeters");
	EXPECT_EQ(Made("naam.voornaam", "Jan", "🎉"), "jan");
	EXPECT_EQ(Made("voornaam.naam", "😀", "🎉"), "<null>");
	EXPECT_EQ(Made("voornaam.naam", "", ""), "<null>");
}

TEST(MakeUsername, CutsAt64WithoutTrailingSeparator)
{
	const std::string long_last(63, 'b');
	const std::string made = Made("naam.voornaam", "Jan", long_last + "-c");
	EXPECT_EQ(made, long_last);
	EXPECT_EQ(Made("voornaam.naam", std::string(500, 'a'), "x").size(), 64u);
}

TEST(UsernameFormat, RejectsUnknownTokens)
{
	try {
		MakeUsername("naam.achternaam", "Jan", "Peeters");
		FAIL() << "no error";
	} catch (const Error& e) {
		EXPECT_EQ(e.Code(), "M3F01");
		EXPECT_NE(std::string(e.what()).find("\"achternaam\""), std::string::npos) << e.what();
	}
	EXPECT_THROW(MakeUsername("", "a", "b"), Error);
	EXPECT_THROW(MakeUsername("naam..v", "a", "b"), Error);
	EXPECT_THROW(MakeUsername("naam.", "a", "b"), Error);
	EXPECT_THROW(MakeUsername("-naam", "a", "b"), Error);
	EXPECT_THROW(MakeUsername("Naam", "a", "b"), Error);
}

TEST(WithSuffix, KeepsWithinTheLimit)
{
	EXPECT_EQ(WithSuffix("jan.peters", 2), "jan.peters2");
	EXPECT_EQ(WithSuffix(std::string(63, 'x') + ".", 10), std::string(62, 'x') + "10");
	EXPECT_THROW(WithSuffix("jan", 1), Error);
	EXPECT_THROW(WithSuffix("", 2), Error);
}

TEST(KeepUsernameCharacters, HyphensSingleAndInside)
{
	EXPECT_EQ(KeepUsernameCharacters("--jean--luc-"), "jean-luc");
	EXPECT_EQ(KeepUsernameCharacters("van 't hof"), "vanthof");
	EXPECT_EQ(KeepUsernameCharacters("- - -"), "");
}

TEST(Upn, Rules)
{
	EXPECT_TRUE(IsValidUsername("jan.peeters"));
	EXPECT_TRUE(IsValidUsername("o'neil@school.be"));
	EXPECT_TRUE(IsValidUsername(std::string(64, 'a') + "@" + std::string(45, 'b') + ".be"));
	EXPECT_FALSE(IsValidUsername(""));
	EXPECT_FALSE(IsValidUsername("jan..peeters"));
	EXPECT_FALSE(IsValidUsername(".jan"));
	EXPECT_FALSE(IsValidUsername("jan.@school.be"));
	EXPECT_FALSE(IsValidUsername("zoë"));
	EXPECT_FALSE(IsValidUsername(std::string(65, 'a')));
	EXPECT_FALSE(IsValidUsername("a@b@school.be"));
	EXPECT_EQ(CheckUsername("jan@school"), UsernameProblem::kDomainInvalid);
	EXPECT_EQ(CheckDomain("school"), DomainProblem::kMissingTld);
	EXPECT_EQ(CheckDomain("school.123"), DomainProblem::kNumericTld);
	EXPECT_EQ(CheckDomain("ab--cd.be"), DomainProblem::kReservedHyphens);
	EXPECT_EQ(CheckDomain("xn--bcher-kva.be"), DomainProblem::kNone);
	EXPECT_EQ(CheckDomain("a..be"), DomainProblem::kEmptyLabel);
	EXPECT_EQ(CheckDomain("-a.be"), DomainProblem::kLabelHyphen);
	EXPECT_EQ(CheckDomain(std::string(47, 'b') + ".be"), DomainProblem::kTooLong);
}

/* The uniqueness key is ASCII lower case, never the locale's (Turkish "I" -> "ı"). */
TEST(Upn, LocalPartKey)
{
	EXPECT_EQ(LocalPartKey("IVO.Peeters@School.BE"), "ivo.peeters");
	EXPECT_EQ(LocalPartKey("ivo.peeters"), "ivo.peeters");
	EXPECT_EQ(LocalPartKey("O'Neil_Z-9"), "o'neil_z-9");
	EXPECT_EQ(LocalPartKey("a@b@c.be"), "a");
	EXPECT_EQ(LocalPartKey("@school.be"), "");
	EXPECT_EQ(LocalPartKey(""), "");
	EXPECT_EQ(LocalPartKey("\xc3\x89LODIE"), "\xc3\x89lodie"); /* bytes >= 0x80 kept (the CHECK refuses them) */
}

}  // namespace
}  // namespace m365
