/*
 * src/pg/feed_functions.cpp
 *
 * SQL entry points for the SDS feed; the rules live in src/core/.
 */
#include "core/feed_text.hpp"
#include "pg/datum.hpp"
#include "pg/guard.hpp"

using m365::pg::TextArg;
using m365::pg::TextDatum;

/* m365.feed_text(text) RETURNS text */
M365_SQL_FUNCTION(m365_feed_text)
{
	return TextDatum(m365::FeedText(TextArg(fcinfo, 0)));
}
