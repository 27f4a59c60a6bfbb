/*
 * src/core/upn.cpp
 *
 * Plain byte checks: every allowed character is ASCII, so a UTF-8 byte
 * >= 0x80 is simply a forbidden character.
 */
#include "core/upn.hpp"

#include "core/make_username.hpp" /* kMaxLocalPartLength */

namespace m365 {

namespace {

bool
IsAlnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool
IsLocalCharacter(char c)
{
	switch (c) {
	case '\'':
	case '.':
	case '-':
	case '_':
	case '!':
	case '#':
	case '^':
	case '~':
		return true;
	default:
		return IsAlnum(c);
	}
}

DomainProblem
CheckLabel(std::string_view label)
{
	if (label.empty())
		return DomainProblem::kEmptyLabel;
	if (label.size() > kMaxLabelLength)
		return DomainProblem::kLabelTooLong;
	for (char c : label)
		if (!IsAlnum(c) && c != '-')
			return DomainProblem::kLabelCharacter;
	if (label.front() == '-' || label.back() == '-')
		return DomainProblem::kLabelHyphen;
	if (label.size() >= 4 && label[2] == '-' && label[3] == '-') {
		const bool xn = (label[0] == 'x' || label[0] == 'X') && (label[1] == 'n' || label[1] == 'N');
		if (!xn)
			return DomainProblem::kReservedHyphens;
	}
	return DomainProblem::kNone;
}

}  // namespace

std::string
LocalPartKey(std::string_view username)
{
	std::string key(username.substr(0, username.find('@')));
	for (char& c : key)
		if (c >= 'A' && c <= 'Z')
			c = static_cast<char>(c - 'A' + 'a');
	return key;
}

DomainProblem
CheckDomain(std::string_view domain)
{
	if (domain.empty())
		return DomainProblem::kEmpty;
	if (domain.size() > kMaxDomainLength)
		return DomainProblem::kTooLong;

	size_t labels = 0;
	std::string_view last_label;
	size_t start = 0;
	while (true) {
		const size_t dot = domain.find('.', start);
		const std::string_view label =
		    domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
		if (DomainProblem problem = CheckLabel(label); problem != DomainProblem::kNone)
			return problem;
		++labels;
		last_label = label;
		if (dot == std::string_view::npos)
			break;
		start = dot + 1;
	}
	if (labels < 2)
		return DomainProblem::kMissingTld;
	bool numeric = true;
	for (char c : last_label)
		numeric = numeric && c >= '0' && c <= '9';
	if (numeric)
		return DomainProblem::kNumericTld;
	return DomainProblem::kNone;
}

UsernameProblem
CheckUsername(std::string_view username)
{
	if (username.empty())
		return UsernameProblem::kEmpty;

	const size_t at = username.find('@');
	if (at != std::string_view::npos && username.find('@', at + 1) != std::string_view::npos)
		return UsernameProblem::kMoreThanOneAt;
	const std::string_view local = username.substr(0, at);

	if (local.empty())
		return UsernameProblem::kLocalPartEmpty;
	if (local.size() > kMaxLocalPartLength)
		return UsernameProblem::kLocalPartTooLong;
	for (char c : local)
		if (!IsLocalCharacter(c))
			return UsernameProblem::kForbiddenCharacter;
	if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos)
		return UsernameProblem::kBadDots;

	if (at != std::string_view::npos && CheckDomain(username.substr(at + 1)) != DomainProblem::kNone)
		return UsernameProblem::kDomainInvalid;
	if (username.size() > kMaxUsernameLength)
		return UsernameProblem::kTooLong;
	return UsernameProblem::kNone;
}

const char*
Describe(UsernameProblem problem)
{
	switch (problem) {
	case UsernameProblem::kNone:
		return "valid";
	case UsernameProblem::kEmpty:
		return "the username is empty";
	case UsernameProblem::kLocalPartEmpty:
		return "nothing before the \"@\"";
	case UsernameProblem::kLocalPartTooLong:
		return "more than 64 characters before the \"@\"";
	case UsernameProblem::kForbiddenCharacter:
		return "a character other than A-Z a-z 0-9 ' . - _ ! # ^ ~ before the \"@\"";
	case UsernameProblem::kBadDots:
		return "a \".\" at the start or end, or two in a row";
	case UsernameProblem::kMoreThanOneAt:
		return "more than one \"@\"";
	case UsernameProblem::kDomainInvalid:
		return "the domain is not valid";
	case UsernameProblem::kTooLong:
		return "more than 113 characters";
	}
	return "unknown problem";
}

const char*
Describe(DomainProblem problem)
{
	switch (problem) {
	case DomainProblem::kNone:
		return "valid";
	case DomainProblem::kEmpty:
		return "the domain is empty";
	case DomainProblem::kTooLong:
		return "the domain is longer than 48 characters";
	case DomainProblem::kEmptyLabel:
		return "a \".\" at the start or end of the domain, or two in a row";
	case DomainProblem::kLabelTooLong:
		return "a part of the domain is longer than 63 characters";
	case DomainProblem::kLabelCharacter:
		return "a character other than a-z 0-9 - in the domain";
	case DomainProblem::kLabelHyphen:
		return "a part of the domain starts or ends with \"-\"";
	case DomainProblem::kMissingTld:
		return "the domain has no extension (TLD)";
	case DomainProblem::kNumericTld:
		return "the domain extension (TLD) is all digits";
	case DomainProblem::kReservedHyphens:
		return "\"--\" in the third and fourth place of a label is reserved for \"xn--\"";
	}
	return "unknown problem";
}

}  // namespace m365
