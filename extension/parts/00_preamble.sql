-- m365_usernames install script, built from the files in extension/parts by the Makefile

\echo Use "CREATE EXTENSION m365_usernames" to load this file. \quit

-- Names are read as UTF-8 bytes by the C++ code.
DO $guard$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'm365_usernames needs a UTF8 database, this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported';
    END IF;
END
$guard$;


-- The extension creates its schema itself, so that it is a member: CREATE
-- EXTENSION fails when a schema "m365" exists already (whoever made it could
-- have planted objects there that the owner's code or pg_cron would call),
-- and pg_dump writes no CREATE SCHEMA of its own. The control file names
-- pg_catalog (as plpgsql's does) only so that the script runs with a known
-- search_path; every object is created schema-qualified.
CREATE SCHEMA m365;
COMMENT ON SCHEMA m365 IS 'm365_usernames: Microsoft 365 usernames for school administrations';
