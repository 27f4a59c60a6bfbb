-- Uniqueness is the same in every database, whatever its locale (issue 14,
-- point 8). Microsoft 365 compares usernames ASCII case-insensitively; lower()
-- follows the database's locale, and a Turkish one lowers "I" to a dotless
-- "ı": with lower() as the key, "IVO.PEETERS" and "ivo.peeters" were two names.
-- The attacks run in a database of their own with ICU locale tr-TR (0.2.0 and
-- 0.3.0 before the fix accept both names there); the catalog checks run here.
BEGIN;
SELECT plan(15);
\ir lib/session.psql

-- The key, from C++: ASCII letters only, the part before the first "@".
SELECT is(m365.local_part_key('IVO.Peeters@School.BE'), 'ivo.peeters', 'the key: the local part, ASCII letters in lower case');
SELECT is(m365.local_part_key('ÉLODIE'), 'Élodie', 'other bytes are left as they are (a username is ASCII: the CHECK refuses them)');
SELECT volatility_is('m365', 'local_part_key', ARRAY['text'], 'immutable', 'local_part_key is IMMUTABLE (it keys indexes)');

-- Every generated key column is the C++ key.
SELECT set_eq($$
    SELECT c.relname::text, pg_get_expr(d.adbin, d.adrelid)
      FROM pg_attrdef AS d JOIN pg_class AS c ON c.oid = d.adrelid
      JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
     WHERE c.relnamespace = 'm365'::regnamespace AND a.attgenerated = 's'$$,
    $$VALUES ('username', 'm365.local_part_key(username)'), ('reserved_username', 'm365.local_part_key(username)'),
             ('tenant_account', 'm365.local_part_key(user_principal_name)'),
             ('tenant_account', 'split_part(user_principal_name, ''@''::text, 2)')$$,
    'the generated local parts are m365.local_part_key (and a tenant account''s domain, lower-cased on import)');

-- No lower() on a local part anywhere: the only lower() calls left in the
-- extension's functions name their collation (domains, the language setting,
-- the list filter, the header names and employeeIds of a tenant export), and no index,
-- constraint or default calls it.
SELECT set_eq($$
    SELECT p.proname::text FROM pg_proc AS p
     WHERE p.pronamespace = 'm365'::regnamespace AND pg_get_functiondef(p.oid) ~* 'lower\('$$,
    $$VALUES ('lower_domain'), ('language'), ('list_row_matches'), ('tenant_file_rows'), ('import_tenant_accounts')$$,
    'only five functions call lower() (none on a local part)');
SELECT is_empty($$
    SELECT p.proname FROM pg_proc AS p
     WHERE p.pronamespace = 'm365'::regnamespace AND pg_get_functiondef(p.oid) ~* 'lower\('
       AND regexp_count(pg_get_functiondef(p.oid), 'lower\(') <> regexp_count(pg_get_functiondef(p.oid), 'COLLATE "(C|und-x-icu)"')$$,
    'each of those lower() calls names a collation that is the same in every database');
SELECT is_empty($$
    SELECT i.indexrelid::regclass FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid
     WHERE c.relnamespace = 'm365'::regnamespace AND pg_get_indexdef(i.indexrelid) ~* 'lower\('
    UNION ALL
    SELECT n.oid::regclass FROM pg_constraint AS n JOIN pg_class AS c ON c.oid = n.conrelid
     WHERE c.relnamespace = 'm365'::regnamespace AND pg_get_constraintdef(n.oid) ~* 'lower\('
    UNION ALL
    SELECT d.adrelid::regclass FROM pg_attrdef AS d JOIN pg_class AS c ON c.oid = d.adrelid
     WHERE c.relnamespace = 'm365'::regnamespace AND pg_get_expr(d.adbin, d.adrelid) ~* 'lower\('$$,
    'no index, constraint, default or generated column calls lower()');

-- A database with a Turkish ICU locale, made and filled through dblink.
CREATE TEMP TABLE tr AS SELECT 'm365_tr_' || pg_backend_pid() AS db;
SELECT dblink_connect('server', (SELECT info FROM conn));
SELECT dblink_exec('server', format('DROP DATABASE IF EXISTS %I', (SELECT db FROM tr)));
SELECT dblink_exec('server', format($$CREATE DATABASE %I TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8'
                                      LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR'$$, (SELECT db FROM tr)));
SELECT dblink_connect('tr', replace((SELECT info FROM conn), 'dbname=' || current_database(), 'dbname=' || (SELECT db FROM tr)));
SELECT dblink_exec('tr', $$
    CREATE EXTENSION m365_usernames;
    INSERT INTO m365.configuration (id, name, username_format) VALUES (1, 'tr', 'voornaam.naam');
    INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (1, 'S', 1, 'school.be');
    INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (1, 1, 'L', 1);
    INSERT INTO m365.student (id, first_name, last_name) VALUES (1, 'Ivo', 'Peeters'), (2, 'Ivo', 'Peeters');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (1, 1, 1, CURRENT_DATE), (2, 2, 1, CURRENT_DATE);
$$);
SELECT is((SELECT lower FROM dblink('tr', $$SELECT lower('I')$$) AS t(lower text)), 'ı',
          'the database''s own lower() makes a dotless ı of I (the locale the attack needs)');

-- Function that runs a statement in the Turkish database and answers 'ok' or its SQLSTATE.
CREATE FUNCTION pg_temp.in_tr(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dblink_exec('tr', statement);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
CREATE FUNCTION pg_temp.tr_text(query text) RETURNS text LANGUAGE sql AS $$
    SELECT t FROM dblink('tr', query) AS r(t text)
$$;

SELECT is(pg_temp.in_tr($$INSERT INTO m365.reserved_username (configuration_id, username) VALUES (1, 'ivo.reserved')$$), 'ok',
          'a name is reserved');
SELECT is(pg_temp.in_tr($$INSERT INTO m365.reserved_username (configuration_id, username) VALUES (1, 'IVO.RESERVED')$$), '23505',
          'the same name in capitals is the same name (0.2.0 in a Turkish database: stored as a second name)');

SELECT is(pg_temp.in_tr($$CALL m365.generate_usernames()$$), 'ok', 'the job runs');
SELECT is(pg_temp.tr_text($$SELECT string_agg(username, ',' ORDER BY person_id) FROM m365.username$$),
          'ivo.peeters,ivo.peeters2', 'the job gives two Ivo Peeters two names');
SELECT is(pg_temp.in_tr($q$DO $$BEGIN PERFORM m365.set_username((SELECT id FROM m365.username WHERE person_id = 2), 'IVO.PEETERS'); END$$$q$), 'M3U03',
          'typing the other''s name in capitals is refused as in use (0.2.0 in a Turkish database: failed on the ı)');
SELECT is(pg_temp.in_tr($q$DO $$BEGIN PERFORM m365.set_username((SELECT id FROM m365.username WHERE person_id = 2), 'IVO.Peeters3'); END$$$q$)
          || ' ' || pg_temp.tr_text($$SELECT username FROM m365.username WHERE person_id = 2$$),
          'ok ivo.peeters3', 'a name typed in capitals is stored in ASCII lower case');
SELECT is(pg_temp.tr_text($$SELECT m365.set_location_sync(1, true, 'IVO.PEETERS3')::text$$), '1',
          'the list filter IVO.PEETERS3 finds ivo.peeters3 (the database''s lower() makes ıvo of it)');

SELECT dblink_disconnect('tr');
SELECT dblink_exec('server', format('DROP DATABASE %I WITH (FORCE)', (SELECT db FROM tr)));
SELECT dblink_disconnect('server');

SELECT * FROM finish();
ROLLBACK;
