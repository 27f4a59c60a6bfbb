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

