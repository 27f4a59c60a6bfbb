-- Security review, as tests: how the extension's code is written (pinned
-- search_path, no SQL built from input), and what m365_app, m365_admin and an
-- SDS reader can reach when they try: planted functions and operators that
-- overload the built-ins through search_path, temp tables that shadow the
-- extension's tables, and input that looks like SQL.
BEGIN;
SELECT plan(43);
\ir lib/session.psql

CREATE TEMP VIEW ext_function AS
SELECT p.oid, p.oid::regprocedure::text AS signature, p.prosecdef, p.proconfig, p.prosrc, p.prorettype, l.lanname, p.prosqlbody
  FROM pg_proc AS p
  JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
  JOIN pg_language AS l ON l.oid = p.prolang;

CREATE TEMP TABLE source_function AS
SELECT signature, prosecdef FROM ext_function
 WHERE signature ~ '^m365\.(source_write|source_sync|source_leave|source_leave_children|source_changed|source_drift|attach_source|detach_source)\(';

-- 1. How the code is written.
SELECT is_empty($$ SELECT signature FROM ext_function
                    WHERE prosecdef AND NOT coalesce(proconfig @> '{"search_path=pg_catalog, pg_temp"}', false) $$,
                'every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp');
SELECT cmp_ok((SELECT count(*)::int FROM ext_function WHERE prosecdef), '>=', 15, 'and there are many of them (the review saw them all)');
SELECT is_empty($$ SELECT signature FROM ext_function
                    WHERE lanname = 'plpgsql' AND prosrc ~* 'EXECUTE\s+[^;]*\|\|' $$,
                'no PL/pgSQL function EXECUTEs a string built with ||: dynamic SQL uses format(%I, %L) or USING');
-- m365.apply_access and m365.allow build GRANT statements with %s from
-- m365.access_rule, which only the install script writes (privilege and
-- object texts, not values); the role goes through %I or regrole's output.
-- m365.generation_chunk builds its LOCK statements from m365.generation_locks,
-- a constant of the install script (regclass output and a lock mode).
SELECT is_empty($$ SELECT signature FROM ext_function
                    WHERE lanname = 'plpgsql' AND prosrc ~* 'EXECUTE\s+(pg_catalog\.)?format\(' AND prosrc ~* 'format\([^)]*%s'
                      AND signature NOT IN ('m365.apply_access(regrole,text[],boolean)', 'm365.allow(text,text,text)',
                                            'm365.generation_chunk(bigint)')
                      AND signature NOT IN (SELECT signature FROM source_function) $$,
                'and no format() feeding EXECUTE uses %s for a value');
-- The attached sources' functions put SQL pieces into their statements with
-- %s: select lists, column lists and key joins, which m365.source_sql_of and
-- m365.source_columns build from identifiers through %I only (names of the
-- copy's columns and of the registered source's columns), never from values,
-- and the table's name as m365.source_lock quotes it.
SELECT is_empty($$ SELECT signature FROM source_function
                    WHERE has_function_privilege('public', signature::regprocedure, 'EXECUTE')
                       OR has_function_privilege('m365_app', signature::regprocedure, 'EXECUTE')
                       OR (NOT prosecdef AND has_function_privilege('m365_admin', signature::regprocedure, 'EXECUTE')) $$,
                'those run as their caller only for the owner; what an administrator may call runs as the owner, PUBLIC and the app call none');
SELECT is_empty($$ SELECT signature FROM ext_function
                    WHERE signature IN ('m365.apply_access(regrole,text[],boolean)', 'm365.allow(text,text,text)')
                      AND (prosecdef OR has_function_privilege('public', oid, 'EXECUTE')) $$,
                'the two that do run as their caller, and only the owner may call them');
SELECT is_empty($$ SELECT signature FROM ext_function
                    WHERE (prosecdef OR prorettype IN ('trigger'::regtype, 'event_trigger'::regtype))
                      AND has_function_privilege('public', oid, 'EXECUTE') $$,
                'no SECURITY DEFINER function, and no trigger function, is callable by PUBLIC (EXECUTE is what CREATE TRIGGER checks)');
SELECT is_empty($$ SELECT signature FROM ext_function
                    WHERE proconfig IS NULL AND lanname IN ('sql', 'plpgsql') AND prosqlbody IS NULL
                      -- A procedure that commits cannot carry SET: it names everything in full.
                      AND signature <> 'm365.generate_usernames()' $$,
                'the functions without a pinned search_path (inlined on purpose) have SQL-standard bodies, bound at CREATE');
SELECT is((SELECT nspacl::text FROM pg_namespace WHERE nspname = 'm365') ~ '(^|[{,])=', false,
          'PUBLIC has no rights on schema m365');
SELECT is((SELECT nspacl::text FROM pg_namespace WHERE nspname = 'm365_sds') ~ '(^|[{,])=', false,
          'PUBLIC has no rights on schema m365_sds');

-- Data for the attempts below.
INSERT INTO m365.configuration (id, name) VALUES (908001, 'security A'), (908002, 'security B');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (908001, 'A', 908001, 'a.example.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (908001, 908001, 'A', 908001, 'l.a.example.be');
INSERT INTO m365.class (id, location_id, name, school_year) VALUES (908001, 908001, '1A', m365.school_year(CURRENT_DATE));
INSERT INTO m365.student (id, first_name, last_name) VALUES (908001, 'Lotte', 'Maes'), (908002, 'Lotte', 'Maes');
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
VALUES (908001, 908001, 908001, 908001, CURRENT_DATE - 1), (908002, 908002, 908001, 908001, CURRENT_DATE - 1);
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_location_sync(908001, true);
SELECT m365.create_sds_reader('sds_security_test', 908001);

-- 2. A planted schema: every built-in these functions might call unqualified,
-- overloaded with the same argument types, raising XP001 when called.
CREATE SCHEMA planted;
GRANT USAGE ON SCHEMA planted TO PUBLIC;
CREATE FUNCTION planted.trap() RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'a planted object was called' USING ERRCODE = 'XP001'; END $$;
DO $plant$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['lower(text)', 'upper(text)', 'btrim(text)', 'length(text)', 'strpos(text, text)',
                             'split_part(text, text, integer)', 'replace(text, text, text)', 'substr(text, integer)',
                             'regexp_replace(text, text, text)', 'regexp_replace(text, text, text, text)', 'left(text, integer)',
                             'format(text)', 'format(text, VARIADIC "any")', 'now()', 'current_setting(text, boolean)',
                             'set_config(text, text, boolean)', 'to_char(date, text)', 'date_part(text, date)',
                             'make_date(integer, integer, integer)', 'nullif(text, text)', 'array_length(anyarray, integer)',
                             'unnest(anyarray)', 'md5(text)', 'string_agg(text, text)', 'jsonb_build_object(VARIADIC "any")',
                             'pg_advisory_xact_lock(bigint, bigint)', 'txid_current()', 'int8larger(bigint, bigint)'] LOOP
        BEGIN
            EXECUTE format('CREATE FUNCTION planted.%s RETURNS text LANGUAGE sql AS %L', f, 'SELECT planted.trap()');
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- names that cannot be overloaded this way (aggregates, keywords)
        END;
    END LOOP;
END
$plant$;
CREATE FUNCTION planted.eq(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT planted.trap() IS NULL';
CREATE FUNCTION planted.eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT planted.trap() IS NULL';
CREATE FUNCTION planted.cat(text, text) RETURNS text LANGUAGE sql AS 'SELECT planted.trap()';
CREATE OPERATOR planted.= (LEFTARG = text, RIGHTARG = text, FUNCTION = planted.eq);
CREATE OPERATOR planted.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = planted.eq);
CREATE OPERATOR planted.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = planted.eq);
CREATE OPERATOR planted.~ (LEFTARG = text, RIGHTARG = text, FUNCTION = planted.eq);
CREATE OPERATOR planted.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = planted.cat);
SELECT cmp_ok((SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'planted'::regnamespace), '>=', 25, 'the planted schema is armed');
SELECT is(pg_temp.as_role('m365_app', $$ SELECT 'a' = 'b' $$, 'planted, pg_catalog, public'), 'XP001',
          'and it works: an unqualified = in the caller''s own query hits the planted operator');

-- The application, with the planted schema first in its search_path. (The
-- attempts carry literal ids: their own query would hit the planted = too.)
CREATE TEMP TABLE target AS SELECT (SELECT id FROM m365.username WHERE person_id = 908001 AND person_kind = 'student') AS mine, (SELECT username FROM m365.username WHERE person_id = 908002 AND person_kind = 'student') AS taken;
CREATE TEMP TABLE attempt (who name, what text, statement text, expected text);
INSERT INTO attempt VALUES
    ('m365_app', 'make_username', $$ SELECT m365.make_username('voornaam.naam', 'Zoë', 'D''Hondt') $$, 'ok'),
    ('m365_app', 'the username list', 'SELECT * FROM m365.student_usernames(908001)', 'ok'),
    ('m365_app', 'set_username', format($$ SELECT m365.set_username(%s, 'lotte.maes.a') $$, (SELECT mine FROM target)), 'ok'),
    ('m365_app', 'set_username to a taken name (the Dutch error path)', format($$ SELECT m365.set_username(%s, %L) $$, (SELECT mine FROM target), (SELECT taken FROM target)), 'M3U03'),
    ('m365_app', 'set_sync', format($$ SELECT m365.set_sync('{%s}', false) $$, (SELECT mine FROM target)), 'ok'),
    ('m365_app', 'set_location_sync', 'SELECT m365.set_location_sync(908001, true)', 'ok'),
    ('m365_app', 'an enrolment (queueing triggers)', $$ INSERT INTO m365.student (id, first_name, last_name) VALUES (908003, 'Jens', 'Maes'); INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (908003, 908003, 908001, CURRENT_DATE) $$, 'ok'),
    ('m365_app', 'a name change (re-queueing trigger)', $$ UPDATE m365.student SET last_name = 'Maes-Peeters' WHERE id = 908002 $$, 'ok'),
    ('m365_app', 'diagnostics', 'SELECT * FROM m365.diagnose_student(908001, 908001)', 'ok'),
    ('m365_app', 'preview_format', $$ SELECT * FROM m365.preview_format(908001, 'v.naam') $$, 'ok'),
    ('m365_app', 'the status view', 'SELECT * FROM m365.status', 'ok'),
    ('m365_app', 'the history', 'SELECT * FROM m365.username_history', 'ok'),
    ('m365_admin', 'the job', 'SELECT m365.generate_usernames_in_transaction()', 'ok'),
    ('m365_admin', 'job_status', 'SELECT * FROM m365.job_status()', 'ok'),
    ('m365_admin', 'old SDS records', 'SELECT m365.remove_old_sds_records()', 'ok'),
    ('m365_admin', 'retention', 'SELECT m365.apply_retention()', 'ok'),
    ('m365_app', 'whether a name is taken (forgotten names too)', $$ SELECT m365.username_is_taken(908001, 'iemand.anders') $$, 'ok'),
    ('m365_admin', 'pending SDS changes', 'SELECT * FROM m365.pending_sds_changes(908001)', 'ok'),
    ('m365_admin', 'forget a person the school data still holds', $$ SELECT m365.forget_person('student', 908001) $$, 'M3P01'),
    ('sds_security_test', 'every file of the feed', $$ SELECT * FROM m365_sds.orgs, m365_sds.users, m365_sds.roles, m365_sds.classes, m365_sds.enrollments, m365_sds."academicSessions", m365_sds.left_out $$, 'ok');

SELECT is(pg_temp.as_role(who, statement, 'planted, pg_catalog, public'), expected,
          format('%s, %s, with a planted schema first in search_path: %s', who, what, expected))
  FROM attempt ORDER BY who = 'm365_app' DESC, who, what;

-- 3. Temp tables that shadow the extension's tables (pg_temp is on every
-- pinned search_path, last): every reference is schema-qualified, so none is read.
CREATE TEMP TABLE username (nothing int);
CREATE TEMP TABLE username_request (nothing int);
CREATE TEMP TABLE configuration (nothing int);
CREATE TEMP TABLE issued_username (nothing int);
CREATE TEMP TABLE student (nothing int);
CREATE TEMP TABLE enrolment (nothing int);
CREATE TEMP TABLE location (nothing int);
CREATE TEMP TABLE message (nothing int);
SELECT is(pg_temp.as_role('m365_app', $$ SELECT m365.set_username((SELECT id FROM m365.username WHERE person_id = 908001 AND person_kind = 'student'), 'lotte.maes.b') $$,
                          'pg_temp, pg_catalog'), 'ok', 'set_username ignores temp tables named like its own');
SELECT is(pg_temp.as_role('m365_app', $$ SELECT m365.set_username((SELECT id FROM m365.username WHERE person_id = 908001 AND person_kind = 'student'), 'x y') $$,
                          'pg_temp, pg_catalog'), 'M3U02', 'and its error texts still come from m365.message');
SELECT is(pg_temp.as_role('m365_admin', 'SELECT m365.generate_usernames_in_transaction()', 'pg_temp, pg_catalog'), 'ok',
          'the job ignores them too');

-- 4. Rights that belong to others: the application is not a feed reader, nor an admin.
SELECT is(pg_temp.as_role('m365_app', 'SELECT count(*) FROM m365_sds.users'), '42501',
          'm365_app cannot read the SDS feed (it is not a reader)');
-- (SET ROLE is checked against the session's user, a superuser here: ask the catalog.)
SELECT is(pg_has_role('m365_app', 'sds_security_test', 'MEMBER'), false,
          'm365_app cannot become a reader');
SELECT is(pg_temp.as_role('m365_app', 'SET m365.sds_configuration = 908002; SELECT count(*) FROM m365_sds.users'), '42501',
          'nor reach another configuration''s feed through the admin setting');
SELECT is(pg_temp.as_role('sds_security_test', 'SELECT * FROM m365.status'), '42501',
          'a reader cannot read the monitoring view (all configurations)');
SELECT is(pg_temp.as_role('m365_app', 'SELECT * FROM m365.job_status()'), '42501',
          'm365_app cannot read pg_cron''s runs through job_status()');

-- 5. Input that looks like SQL is data.
SELECT is(pg_temp.as_role('m365_app', $$ SELECT m365.set_username((SELECT id FROM m365.username WHERE person_id = 908001 AND person_kind = 'student'), 'x''; DROP TABLE m365.username; --') $$),
          'M3U02', 'a username that carries SQL is an invalid username');
SELECT lives_ok($$ SELECT m365.create_sds_reader('sds"; DROP TABLE m365.username; --', 908002) $$,
                'a reader name that carries SQL is only a strange role name (quoted with %I)');
SELECT ok(to_regclass('m365.username') IS NOT NULL AND EXISTS (SELECT FROM pg_roles WHERE rolname = 'sds"; DROP TABLE m365.username; --'),
          'm365.username is still there, and the role has exactly that name');

SELECT * FROM finish();
ROLLBACK;
