--------------------------------------------------------------------------------
-- Pure functions (C++, src/pg/username_functions.cpp)
--------------------------------------------------------------------------------

-- STABLE, not IMMUTABLE: the transliteration comes from the ICU library, whose
-- tables change between versions. Nothing may index its output; generated
-- usernames are stored, so an ICU upgrade never changes an existing name.
CREATE FUNCTION m365.make_username(format text, first_name text, last_name text)
RETURNS text
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_make_username';
COMMENT ON FUNCTION m365.make_username(text, text, text) IS
'The username (local part) for a person from the format (e.g. naam.voornaam) and official names, transliterated to ASCII with ICU; NULL when the names yield nothing';

CREATE FUNCTION m365.username_is_valid(username text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_username_is_valid';
COMMENT ON FUNCTION m365.username_is_valid(text) IS
'Whether a username (local part, or local@domain) follows Microsoft''s userPrincipalName rules';

CREATE FUNCTION m365.username_problem(username text)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_username_problem';
COMMENT ON FUNCTION m365.username_problem(text) IS
'Why a username is not valid, in English; NULL when it is valid';

-- The uniqueness key of a username, the same in every database: the local
-- part with ASCII A-Z in lower case (lower() follows the locale: in Turkish
-- "I" becomes "ı"). Every index, comparison and check of a local part uses it.
CREATE FUNCTION m365.local_part_key(username text)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_local_part_key';
COMMENT ON FUNCTION m365.local_part_key(text) IS
'The uniqueness key of a username: the part before "@" with ASCII letters in lower case, whatever the database''s locale';

CREATE FUNCTION m365.domain_is_valid(domain text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_domain_is_valid';
COMMENT ON FUNCTION m365.domain_is_valid(text) IS
'Whether a domain name is usable in a Microsoft 365 username (LDH labels, a TLD, at most 48 characters)';

CREATE FUNCTION m365.check_domain(domain text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_check_domain';
COMMENT ON FUNCTION m365.check_domain(text) IS
'true for a valid domain; raises M3D01 with the reason otherwise (used by CHECK constraints)';

CREATE FUNCTION m365.check_username_format(format text)
RETURNS boolean
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_check_username_format';
COMMENT ON FUNCTION m365.check_username_format(text) IS
'true for a valid username format; raises M3F01 naming the offending token otherwise';

CREATE FUNCTION m365.username_with_suffix(base text, n bigint)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_username_with_suffix';
COMMENT ON FUNCTION m365.username_with_suffix(text, bigint) IS
'base with the numeric suffix n (n >= 2), base shortened so that the result stays within 64 characters';

-- A name as the SDS feed sends it (NFC, white space collapsed, control and
-- bidi characters removed). STABLE like make_username: NFC follows ICU's
-- Unicode version.
CREATE FUNCTION m365.feed_text(text)
RETURNS text
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_feed_text';
COMMENT ON FUNCTION m365.feed_text(text) IS
'A name as the SDS feed sends it: Unicode NFC, every run of white space (line breaks included) one space, trimmed, control and bidi characters removed (joiners kept)';

CREATE FUNCTION m365.icu_version()
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_icu_version';
COMMENT ON FUNCTION m365.icu_version() IS
'The ICU version make_username transliterates with';

-- VOLATILE: it changes with every new word this backend transliterates.
CREATE FUNCTION m365.name_cache_bytes()
RETURNS bigint
LANGUAGE C VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_name_cache_bytes';
COMMENT ON FUNCTION m365.name_cache_bytes() IS
'Bytes held by this backend''s cache of transliterated words (bounded at 8 MiB; outside PostgreSQL''s memory accounting)';

-- Array forms for CHECK constraints: every element must pass.
CREATE FUNCTION m365.check_domains(domains text[])
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT pg_catalog.bool_and(m365.check_domain(d)) IS NOT FALSE
          FROM pg_catalog.unnest(domains) AS d
         WHERE d IS NOT NULL)
   AND pg_catalog.array_position(domains, NULL) IS NULL;

CREATE FUNCTION m365.check_username_formats(formats text[])
RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT pg_catalog.bool_and(m365.check_username_format(f)) IS NOT FALSE
          FROM pg_catalog.unnest(formats) AS f
         WHERE f IS NOT NULL)
   AND pg_catalog.array_position(formats, NULL) IS NULL;

