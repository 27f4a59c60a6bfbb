// Property test: random bytes (invalid UTF-8 included) and random code
// points never crash the core, and every username made passes the validator.
// Run it under -DM365_SANITIZE=ON to catch memory errors too.
#include "core/error.hpp"
#include "core/make_username.hpp"
#include "core/upn.hpp"

#include <gtest/gtest.h>

#include <random>

namespace m365 {
namespace {

std::string
RandomBytes(std::mt19937& rng, size_t max_length)
{
	std::uniform_int_distribution<size_t> length(0, max_length);
	std::uniform_int_distribution<int> byte(1, 255);
	std::string out(length(rng), '\0');
	for (char& c : out)
		c = static_cast<char>(byte(rng));
	return out;
}

void
AppendUtf8(std::string& out, char32_t cp)
{
	if (cp < 0x80) {
		out.push_back(static_cast<char>(cp));
	} else if (cp < 0x800) {
		out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
		out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
	} else if (cp < 0x10000) {
		out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
		out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
		out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
	} else {
		out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
		out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
		out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
		out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
	}
}

std::string
RandomText(std::mt19937& rng, size_t max_length)
{
	std::uniform_int_distribution<size_t> length(0, max_length);
	std::uniform_int_distribution<char32_t> cp(1, 0x10FFFF);
	std::string out;
	for (size_t i = length(rng); i > 0; --i) {
		char32_t c = cp(rng);
		if (c >= 0xD800 && c <= 0xDFFF)
			c = ' ';
		AppendUtf8(out, c);
	}
	return out;
}

void
ExpectValidOrNull(const std::string& format, const std::string& first, const std::string& last)
{
	const std::optional<std::string> made = MakeUsername(format, first, last);
	if (made) {
		EXPECT_TRUE(IsValidUsername(*made)) << *made;
		EXPECT_LE(made->size(), kMaxLocalPartLength);
	}
}

TEST(RandomInput, RandomBytesNeverBreakTheCore)
{
	std::mt19937 rng(365);
	for (int i = 0; i < 3000; ++i) {
		const std::string a = RandomBytes(rng, 80);
		const std::string b = RandomBytes(rng, 80);
		ExpectValidOrNull("voornaam.naam", a, b);
		CheckUsername(a);
		CheckDomain(b);
		try {
			MakeUsername(a, "x", "y");  // random formats: an Error, never a crash
		} catch (const Error&) {
		}
	}
}

TEST(RandomInput, RandomCodePointsYieldValidUsernames)
{
	std::mt19937 rng(2026);
	const char* formats[] = {"voornaam.naam", "naam.voornaam", "v.naam", "naam_v", "n-v"};
	for (int i = 0; i < 3000; ++i)
		ExpectValidOrNull(formats[i % 5], RandomText(rng, 30), RandomText(rng, 30));
	ExpectValidOrNull("voornaam.naam", RandomText(rng, 10000), RandomText(rng, 10000));
}

}  // namespace
}  // namespace m365
