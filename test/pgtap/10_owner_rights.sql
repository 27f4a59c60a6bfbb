-- The promise: no code that runs with the extension owner's rights uses an
-- object the caller owns or can create.
--
-- The attack (0.2.0): a member of m365_admin creates, in its own session, temp
-- tables named like the job's pg_temp.m365_generation_* tables, with a
-- trigger on them, and calls m365.generate_usernames_in_transaction() (SECURITY DEFINER): the
-- job TRUNCATEs and INSERTs into the caller's tables, the trigger runs as the
-- owner, and `ALTER ROLE <caller> SUPERUSER` succeeds.
--
-- The test is generic. Every name the extension's functions could resolve in
-- pg_temp is derived from the catalog, from the sources of the functions that
-- are members of the extension: pg_temp.<name>, CREATE TEMP TABLE <name>, and
-- every unqualified name after FROM, JOIN, UPDATE, TABLE, USING, TRUNCATE,
-- LOCK, ANALYZE, VACUUM, COPY and INSERT/MERGE INTO (comments skipped; string
-- literals kept, dynamic SQL is in them), since the functions run with
-- search_path = pg_catalog, pg_temp. CTE and transition-table names are kept
-- on purpose: planting them checks that they really shadow pg_temp.
--
-- Then, for an application role, an admin role and an SDS reader, each in
-- turn, as that role (SET ROLE; pg_temp belongs to the session, so planting
-- and calling happen in one session):
--   (a) a temp TABLE under every name (with the extension's own column list
--       where it creates one), with BEFORE/AFTER row and statement triggers on
--       INSERT/UPDATE/DELETE and BEFORE/AFTER TRUNCATE triggers;
--   (b) a temp VIEW under every name (same columns) whose WHERE calls the
--       planted function, with INSTEAD OF INSERT/UPDATE/DELETE triggers.
-- The planted function tries ALTER ROLE <attacker> SUPERUSER (and CREATEROLE,
-- CREATEDB, BYPASSRLS, REPLICATION), advances a canary sequence and inserts
-- into a canary table, both in a schema the attacker cannot use; each try
-- swallows its own failure and records nothing then. The role then writes
-- school data on every path its grants allow (sample rows, and a
-- statement-level INSERT/UPDATE/DELETE on every extension table it may
-- write), calls every extension function it may EXECUTE (plausible arguments
-- per type) and reads every extension relation it may SELECT: one statement
-- at a time, errors swallowed. Around every statement, seen from outside: the
-- attacker's role attributes, the canary table and the canary sequence (a
-- sequence is not rolled back, so an escalation inside a call that then
-- failed is caught too) must not change. Positive controls: every planted
-- object fires when the attacker itself writes to / reads from it, and the
-- planted function, run with the owner's rights, is caught.
--
-- On 0.2.0 this file FAILED (pg_prove -v, abridged):
--   ok 1 - the extension's functions name 22 relations that could resolve in pg_temp
--          (derived from the catalog): free, free_by_base, job_id, m365_generation_batch
--          (with its column list), m365_generation_claimed (...), m365_generation_cursor (...),
--          m365_generation_name (...), m365_generation_waiting (...), new_enrolments, ...
--   ok 16 - owner_rights_admin, table round: it called the 116 functions/argument lists it may EXECUTE
--           (100 ran) and read the 28 relations it may SELECT (28 ran)
--   not ok 28 - owner_rights_admin, table round: no write, call or read changed the attacker's role attributes
--   #  have: {"SELECT m365.generate_usernames((100)::integer) (ok): super f, createrole f, createdb f,
--             bypassrls f, replication f -> super t, createrole t, createdb t, bypassrls t, replication t"}
--   not ok 34 - owner_rights_admin, table round: no write, call or read let a planted object insert into the canary table
--   #  have: {"SELECT m365.generate_usernames((100)::integer) (ok): 110 canary rows"}
--   not ok 40 - owner_rights_admin, table round: no write, call or read let a planted object advance the canary
--               sequence, not even in a statement that then failed (the planted objects fired 110 times meanwhile)
--   #  have: {"SELECT m365.generate_usernames((100)::integer) (ok): canary sequence +110"}
--   not ok 44 - after every round, each attacker has the role attributes it started with ...
--   #  Unexpected records: (3,owner_rights_admin,"super t, createrole t, createdb t, bypassrls t, replication t")
--   not ok 45 - the canary table is empty
--   #  Unexpected records: ("owner_rights_admin, table round",postgres,"m365_generation_batch: BEFORE TRUNCATE STATEMENT",2)
--   #    ... m365_generation_claimed/_batch/_name/_waiting/_cursor: BEFORE/AFTER TRUNCATE, INSERT, UPDATE, ROW and STATEMENT, all as postgres
--   Failed 5/46 subtests (28, 34, 40, 44-45)
-- The job TRUNCATEd and filled the admin's own temp tables, and their triggers
-- ran as the owner. Everything else held on 0.2.0: the application and reader
-- rounds, and the view rounds (the job TRUNCATEs its tables first, which fails
-- on a view, before it reads one). Runtime: about 2-3 seconds.
BEGIN;
SELECT plan(46);

SET LOCAL lock_timeout = '5s';
SET LOCAL client_min_messages = warning;

--------------------------------------------------------------------------------
-- 1. The names, from the catalog.
--------------------------------------------------------------------------------
CREATE TEMP TABLE owner_rights_source AS
SELECT signature, src,
       -- without comments (string literals stay: dynamic SQL is in them)
       regexp_replace(regexp_replace(src, '/\*.*?\*/', ' ', 'g'), '--[^\n]*', ' ', 'g') AS code
  FROM (
SELECT p.oid::regprocedure::text AS signature,
       CASE WHEN p.prosqlbody IS NOT NULL THEN pg_get_functiondef(p.oid) ELSE p.prosrc END AS src
  FROM pg_proc AS p
  JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
  JOIN pg_language AS l ON l.oid = p.prolang
 WHERE l.lanname NOT IN ('c', 'internal')) AS f;

-- The column list of `CREATE TEMP TABLE <name> (...)` in any of the sources
-- (balanced parentheses, skipping -- comments and quoted strings), or NULL.
CREATE FUNCTION pg_temp.owner_rights_definition(wanted text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s text;
    start integer;
    i integer;
    depth integer;
    ch text;
BEGIN
    FOR s IN SELECT src FROM pg_temp.owner_rights_source ORDER BY signature LOOP
        start := regexp_instr(s, 'CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:pg_temp\s*\.\s*)?"?'
                                 || regexp_replace(wanted, '([^A-Za-z0-9_])', '\\\1', 'g') || '"?\s*\(', 1, 1, 1, 'i');
        CONTINUE WHEN start = 0;
        depth := 1;
        i := start;
        WHILE i <= length(s) AND depth > 0 LOOP
            ch := substr(s, i, 1);
            IF ch = '(' THEN
                depth := depth + 1;
            ELSIF ch = ')' THEN
                depth := depth - 1;
            ELSIF ch = '-' AND substr(s, i, 2) = '--' THEN
                i := i + coalesce(nullif(strpos(substr(s, i), E'\n'), 0), length(s)) - 1;
            ELSIF ch = '''' THEN
                i := i + strpos(substr(s, i + 1), '''');
            END IF;
            i := i + 1;
        END LOOP;
        IF depth = 0 THEN
            RETURN substr(s, start, i - 1 - start);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TEMP TABLE owner_rights_name AS
WITH found AS (
    SELECT CASE WHEN m[1] = '"' THEN m[2] ELSE lower(m[2]) END AS name
      FROM pg_temp.owner_rights_source,
           regexp_matches(src, 'pg_temp\s*\.\s*("?)([A-Za-z_][A-Za-z0-9_$]*)', 'gi') AS m
    UNION
    SELECT CASE WHEN m[1] = '"' THEN m[2] ELSE lower(m[2]) END
      FROM pg_temp.owner_rights_source,
           regexp_matches(src, 'CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+(?:UNLOGGED\s+)?(?:TABLE|VIEW|SEQUENCE)\s+(?:IF\s+NOT\s+EXISTS\s+)?("?)([A-Za-z_][A-Za-z0-9_$]*)"?(?![A-Za-z0-9_$]|\s*\.)', 'gi') AS m
    UNION
    -- (INTO only after INSERT or MERGE: a PL/pgSQL SELECT ... INTO names a
    -- variable; a word followed by = is an option, as in RAISE ... USING ERRCODE =)
    SELECT CASE WHEN m[2] = '"' THEN m[3] ELSE lower(m[3]) END
      FROM pg_temp.owner_rights_source,
           regexp_matches(code, '(\m(?:FROM|JOIN|UPDATE|TABLE|USING|TRUNCATE|LOCK|ANALYZE|VACUUM|COPY)|\m(?:INSERT|MERGE)\s+INTO)\s+(?:ONLY\s+)?(?:TABLE\s+)?("?)([A-Za-z_][A-Za-z0-9_$]*)"?(?![A-Za-z0-9_$]|\s*[.(=])', 'gi') AS m
)
SELECT name, pg_temp.owner_rights_definition(name) AS definition
  FROM found
 WHERE name NOT IN (SELECT word FROM pg_get_keywords() WHERE catcode = 'R')
   AND name NOT IN ('pg_temp', 'pg_catalog');

SELECT cmp_ok((SELECT count(*)::int FROM pg_temp.owner_rights_name), '>', 0,
              format('the extension''s functions name %s relations that could resolve in pg_temp (derived from the catalog): %s',
                     (SELECT count(*) FROM pg_temp.owner_rights_name),
                     (SELECT string_agg(name || CASE WHEN definition IS NOT NULL THEN ' (with its column list)' ELSE '' END, ', ' ORDER BY name)
                        FROM pg_temp.owner_rights_name)));

--------------------------------------------------------------------------------
-- 2. School data, the attackers, the canary.
--------------------------------------------------------------------------------
INSERT INTO m365.configuration (id, name) VALUES (911001, 'owner rights');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (911001, 'Owner', 911001, 'owner.example.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (911001, 911001, 'Owner', 911001, 'leerling.owner.example.be');
INSERT INTO m365.class (id, location_id, name, school_year) VALUES (911001, 911001, '1A', m365.school_year(CURRENT_DATE));
INSERT INTO m365.student (id, first_name, last_name) VALUES (911001, 'Lotte', 'Eigenaar');
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date) VALUES (911001, 911001, 911001, 911001, CURRENT_DATE - 1);
INSERT INTO m365.staff (id, first_name, last_name) VALUES (911001, 'Jan', 'Eigenaar');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (911001, 911001);
INSERT INTO m365.class_teacher (class_id, staff_id) VALUES (911001, 911001);
DO $$ BEGIN PERFORM m365.generate_usernames_in_transaction(); PERFORM m365.set_location_sync(911001, true); END $$;
-- Someone still waiting, so that the job has work whenever it is called.
INSERT INTO m365.student (id, first_name, last_name) VALUES (911002, 'Mia', 'Eigenaar');
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date) VALUES (911002, 911002, 911001, 911001, CURRENT_DATE - 1);

-- The attackers (roles made in this transaction roll back with it), and a
-- bystander for the functions that take a role.
CREATE ROLE owner_rights_app LOGIN;
CREATE ROLE owner_rights_admin LOGIN;
CREATE ROLE owner_rights_reader LOGIN;
CREATE ROLE owner_rights_bystander LOGIN;
DO $$
BEGIN
    IF to_regprocedure('m365.grant_access(regrole,text)') IS NOT NULL THEN
        PERFORM m365.grant_access('owner_rights_app', 'app');
        PERFORM m365.grant_access('owner_rights_admin', 'admin');
    ELSE
        GRANT m365_app TO owner_rights_app;
        GRANT m365_admin TO owner_rights_admin;
    END IF;
    PERFORM m365.create_sds_reader('owner_rights_reader', 911001);
END
$$;
CREATE TEMP TABLE owner_rights_attacker AS
SELECT r.oid, r.rolname, o.round_no, o.kind,
       format('super %s, createrole %s, createdb %s, bypassrls %s, replication %s',
              r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication) AS attributes
  FROM pg_roles AS r
  JOIN (VALUES ('owner_rights_app', 1, 'table'), ('owner_rights_app', 2, 'view'),
               ('owner_rights_admin', 3, 'table'), ('owner_rights_admin', 4, 'view'),
               ('owner_rights_reader', 5, 'table'), ('owner_rights_reader', 6, 'view')) AS o (rolname, round_no, kind)
    ON o.rolname = r.rolname;

-- The canary: a schema the attackers cannot use at all. The sequence is not
-- rolled back with a failed statement; the table and the role attributes are.
CREATE SCHEMA owner_rights_canary;
REVOKE ALL ON SCHEMA owner_rights_canary FROM PUBLIC;
CREATE TABLE owner_rights_canary.hit (id bigserial, round text, what text, as_user name);
CREATE SEQUENCE owner_rights_canary.hit_seq;

CREATE FUNCTION pg_temp.owner_rights_state(attacker name, OUT attributes text, OUT canary_rows bigint, OUT canary_seq bigint)
LANGUAGE sql AS $$
    SELECT (SELECT format('super %s, createrole %s, createdb %s, bypassrls %s, replication %s',
                          r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication)
              FROM pg_catalog.pg_roles AS r WHERE r.rolname = attacker),
           (SELECT count(*) FROM owner_rights_canary.hit),
           (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM owner_rights_canary.hit_seq)
$$;

--------------------------------------------------------------------------------
-- 3. What the attacker plants.
--------------------------------------------------------------------------------
-- The planted function: tries to escalate, and records only what succeeds.
CREATE FUNCTION pg_temp.owner_rights_trap_source(attacker name, label text) RETURNS text LANGUAGE sql AS $$
SELECT format($src$
CREATE FUNCTION pg_temp.owner_rights_trap(what text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $trap$
BEGIN
    BEGIN PERFORM pg_catalog.nextval('pg_temp.owner_rights_fired'); EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN ALTER ROLE %1$I SUPERUSER; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN ALTER ROLE %1$I CREATEROLE; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN ALTER ROLE %1$I CREATEDB; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN ALTER ROLE %1$I BYPASSRLS; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN ALTER ROLE %1$I REPLICATION; EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN PERFORM pg_catalog.nextval('owner_rights_canary.hit_seq'); EXCEPTION WHEN OTHERS THEN NULL; END;
    BEGIN
        INSERT INTO owner_rights_canary.hit (round, what, as_user) VALUES (%2$L, what, current_user);
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN false;
END
$trap$
$src$, attacker, label)
$$;

CREATE FUNCTION pg_temp.owner_rights_fired() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RETURN (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pg_temp.owner_rights_fired);
END
$$;

-- Drops what the attackers planted, and any relation under a derived name
-- (the job of 0.2.0 leaves its own ON COMMIT DROP tables until commit).
CREATE FUNCTION pg_temp.owner_rights_clear() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT format('DROP %s IF EXISTS pg_temp.%I CASCADE',
                          CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                         WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.relname) AS statement
               FROM pg_catalog.pg_class AS c
              WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()
                AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                AND (c.relname IN (SELECT name FROM pg_temp.owner_rights_name)
                     OR c.relowner IN (SELECT oid FROM pg_temp.owner_rights_attacker))
    LOOP
        EXECUTE r.statement;
    END LOOP;
    FOR r IN SELECT format('DROP FUNCTION IF EXISTS %s CASCADE', p.oid::regprocedure) AS statement
               FROM pg_catalog.pg_proc AS p
              WHERE p.pronamespace = pg_catalog.pg_my_temp_schema()
                AND p.proowner IN (SELECT oid FROM pg_temp.owner_rights_attacker)
    LOOP
        EXECUTE r.statement;
    END LOOP;
END
$$;

--------------------------------------------------------------------------------
-- 4. What the attacker does: writes, calls, reads.
--------------------------------------------------------------------------------
-- Plausible arguments per type; the first is the one used while another
-- argument varies.
CREATE TEMP TABLE owner_rights_value (typ regtype, ord integer, literal text);
INSERT INTO owner_rights_value
SELECT t::regtype, o, l
  FROM (VALUES ('bigint', 1, '911001'),
               ('bigint', 2, coalesce((SELECT id::text FROM m365.username WHERE person_kind = 'student' AND person_id = 911001), 'NULL')),
               ('integer', 1, '100'), ('smallint', 1, '1'), ('numeric', 1, '1'),
               ('text', 1, '''voornaam.naam'''), ('text', 2, '''student'''), ('text', 3, '''admin'''),
               ('character varying', 1, '''student'''),
               ('name', 1, '''owner_rights_bystander'''), ('regrole', 1, '''owner_rights_bystander'''),
               ('boolean', 1, 'true'), ('boolean', 2, 'false'),
               ('date', 1, 'CURRENT_DATE'), ('timestamp with time zone', 1, 'now()'), ('timestamp without time zone', 1, 'localtimestamp'),
               ('bigint[]', 1, format('ARRAY[%s]', coalesce((SELECT id::text FROM m365.username WHERE person_kind = 'student' AND person_id = 911001), '911001'))),
               ('bigint[]', 2, 'ARRAY[911001]'),
               ('integer[]', 1, 'ARRAY[100]'), ('text[]', 1, 'ARRAY[''voornaam.naam'']'),
               ('jsonb', 1, '''{}'''), ('json', 1, '''{}''')) AS v (t, o, l);

-- The argument lists of one function: all first candidates, then each
-- argument through its other candidates.
CREATE FUNCTION pg_temp.owner_rights_arglists(arg_types regtype[], is_variadic boolean) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    types regtype[] := ARRAY(SELECT unnest(arg_types));  -- proargtypes counts from 0
    k integer := coalesce(array_length(types, 1), 0);
    base_args text[] := '{}';
    args_now text[];
    candidates text[];
    i integer;
    j integer;
BEGIN
    FOR i IN 1 .. k LOOP
        base_args := base_args || coalesce((SELECT literal FROM pg_temp.owner_rights_value WHERE typ = types[i] ORDER BY ord LIMIT 1), 'NULL');
    END LOOP;
    RETURN NEXT pg_temp.owner_rights_render(types, base_args, is_variadic);
    FOR i IN 1 .. k LOOP
        candidates := ARRAY(SELECT literal FROM pg_temp.owner_rights_value WHERE typ = types[i] ORDER BY ord);
        FOR j IN 2 .. coalesce(array_length(candidates, 1), 0) LOOP
            args_now := base_args;
            args_now[i] := candidates[j];
            RETURN NEXT pg_temp.owner_rights_render(types, args_now, is_variadic);
        END LOOP;
    END LOOP;
END
$$;
CREATE FUNCTION pg_temp.owner_rights_render(types regtype[], vals text[], is_variadic boolean) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(CASE WHEN is_variadic AND i = array_length(types, 1) THEN 'VARIADIC ' ELSE '' END
                               || format('(%s)::%s', vals[i], types[i]), ', ' ORDER BY i), '')
      FROM generate_subscripts(types, 1) AS i
$$;

CREATE TEMP TABLE owner_rights_write (ord integer, statement text);
INSERT INTO owner_rights_write VALUES
    (1, $$ INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (%1$s, 'Owner %1$s', 911001, 's%1$s.owner.example.be') $$),
    (2, $$ INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (%1$s, %1$s, 'Owner %1$s', 911001, 'l%1$s.owner.example.be') $$),
    (3, $$ INSERT INTO m365.class (id, location_id, name, school_year) VALUES (%1$s, %1$s, '1A', m365.school_year(CURRENT_DATE)) $$),
    (4, $$ INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s, 'Owner', 'Rights'), (%1$s + 1, 'Other', 'Rights') $$),
    (5, $$ INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
           VALUES (%1$s, %1$s, %1$s, %1$s, CURRENT_DATE - 1), (%1$s + 1, %1$s + 1, 911001, NULL, CURRENT_DATE - 1) $$),
    (6, $$ INSERT INTO m365.staff (id, first_name, last_name) VALUES (%1$s, 'Leraar', 'Rights') $$),
    (7, $$ INSERT INTO m365.staff_school (staff_id, school_id) VALUES (%1$s, %1$s), (%1$s, 911001) $$),
    (8, $$ INSERT INTO m365.class_teacher (class_id, staff_id) VALUES (%1$s, %1$s) $$),
    (9, $$ UPDATE m365.student SET last_name = 'Rights-Changed' WHERE id = %1$s $$),
    (10, $$ UPDATE m365.enrolment SET end_date = CURRENT_DATE + 30 WHERE id = %1$s $$),
    (11, $$ UPDATE m365.staff SET last_name = 'Rights-Changed' WHERE id = %1$s $$),
    (12, $$ UPDATE m365.staff_school SET linked_at = clock_timestamp() WHERE staff_id = %1$s $$),
    (13, $$ UPDATE m365.class SET name = '1B' WHERE id = %1$s $$),
    (14, $$ UPDATE m365.location SET student_domain = 'l2-%1$s.owner.example.be' WHERE id = %1$s $$),
    (15, $$ UPDATE m365.school SET staff_domain = 's2-%1$s.owner.example.be' WHERE id = %1$s $$),
    (16, $$ UPDATE m365.location SET configuration_id = NULL WHERE id = %1$s $$),
    (17, $$ UPDATE m365.location SET configuration_id = 911001 WHERE id = %1$s $$),
    (18, $$ UPDATE m365.school SET configuration_id = NULL WHERE id = %1$s $$),
    (19, $$ UPDATE m365.school SET configuration_id = 911001 WHERE id = %1$s $$),
    (20, $$ UPDATE m365.staff SET active = false, inactive_since = CURRENT_DATE WHERE id = %1$s $$),
    (21, $$ UPDATE m365.staff SET active = true, inactive_since = NULL WHERE id = %1$s $$),
    (22, $$ UPDATE m365.configuration SET username_format = 'voornaam.naam' WHERE id = 911001 $$),
    (23, $$ INSERT INTO m365.reserved_username (configuration_id, username, note) VALUES (911001, 'gereserveerd%1$s', 'owner rights') $$),
    (24, $$ DELETE FROM m365.reserved_username WHERE configuration_id = 911001 AND username = 'gereserveerd%1$s' $$),
    (25, $$ DELETE FROM m365.class_teacher WHERE class_id = %1$s $$),
    (26, $$ DELETE FROM m365.staff_school WHERE staff_id = %1$s AND school_id = 911001 $$),
    (27, $$ DELETE FROM m365.enrolment WHERE id = %1$s + 1 $$),
    (28, $$ DELETE FROM m365.student WHERE id = %1$s + 1 $$);

-- Every statement the role may try: the writes above, a statement-level
-- INSERT/UPDATE/DELETE on every extension table it may write, every
-- extension function it may EXECUTE, a read of every relation it may SELECT.
CREATE FUNCTION pg_temp.owner_rights_statements(attacker name, base bigint, OUT ord integer, OUT what text, OUT statement text) RETURNS SETOF record LANGUAGE sql AS $$
    WITH ext AS (
        SELECT d.classid, d.objid
          FROM pg_depend AS d JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
         WHERE d.deptype = 'e'
    ), rel AS (
        SELECT c.oid, c.relkind FROM pg_class AS c JOIN ext ON ext.classid = 'pg_class'::regclass AND ext.objid = c.oid
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
    ), col AS (
        SELECT a.attrelid, a.attnum, a.attname, a.atttypid
          FROM pg_attribute AS a JOIN rel ON rel.oid = a.attrelid
         WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity <> 'a'
    )
    SELECT w.ord, 'write', format(w.statement, base + 1) FROM pg_temp.owner_rights_write AS w
    UNION ALL
    SELECT 100, 'write', format('INSERT INTO %s (%I) SELECT NULL WHERE false', rel.oid::regclass,
                           (SELECT attname FROM col WHERE col.attrelid = rel.oid ORDER BY attnum LIMIT 1))
      FROM rel WHERE rel.relkind IN ('r', 'p') AND has_table_privilege(attacker, rel.oid, 'INSERT')
    UNION ALL
    SELECT 100, 'write', format('UPDATE %s SET (%s) = ROW(%s) WHERE false', rel.oid::regclass, c.list, c.list)
      FROM rel
      CROSS JOIN LATERAL (SELECT string_agg(format('%I', col.attname), ', ' ORDER BY col.attnum) AS list
                            FROM col WHERE col.attrelid = rel.oid AND has_column_privilege(attacker, rel.oid, col.attnum, 'UPDATE')) AS c
     WHERE rel.relkind IN ('r', 'p') AND c.list IS NOT NULL
    UNION ALL
    SELECT 100, 'write', format('DELETE FROM %s WHERE false', rel.oid::regclass)
      FROM rel WHERE rel.relkind IN ('r', 'p') AND has_table_privilege(attacker, rel.oid, 'DELETE')
    UNION ALL
    SELECT 200, 'call', format(CASE WHEN p.prokind = 'p' THEN 'CALL %I.%I(%s)' ELSE 'SELECT %I.%I(%s)' END, n.nspname, p.proname, a.args)
      FROM pg_proc AS p
      JOIN ext ON ext.classid = 'pg_proc'::regclass AND ext.objid = p.oid
      JOIN pg_namespace AS n ON n.oid = p.pronamespace
     CROSS JOIN LATERAL pg_temp.owner_rights_arglists(p.proargtypes::oid[]::regtype[], p.provariadic <> 0) AS a (args)
     WHERE p.prokind IN ('f', 'p')
       AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
       AND has_function_privilege(attacker, p.oid, 'EXECUTE')
    UNION ALL
    SELECT 300, 'read', format('SELECT count(*) FROM (SELECT * FROM %s) AS r', rel.oid::regclass)
      FROM rel WHERE has_table_privilege(attacker, rel.oid, 'SELECT')
$$;

-- One statement as the attacker; what changed meanwhile (seen as the caller
-- of the test).
CREATE FUNCTION pg_temp.owner_rights_act(attacker name, statement text,
                                         OUT outcome text, OUT attributes_change text, OUT rows_change bigint, OUT seq_change bigint)
LANGUAGE plpgsql AS $$
DECLARE
    st0 record;
    st1 record;
BEGIN
    RESET ROLE;
    SELECT * INTO st0 FROM pg_temp.owner_rights_state(attacker);
    EXECUTE format('SET LOCAL ROLE %I', attacker);
    BEGIN
        EXECUTE statement;
        outcome := 'ok';
    EXCEPTION WHEN OTHERS THEN
        outcome := SQLSTATE;
    END;
    RESET ROLE;
    SELECT * INTO st1 FROM pg_temp.owner_rights_state(attacker);
    IF st1.attributes IS DISTINCT FROM st0.attributes THEN
        attributes_change := format('%s -> %s', st0.attributes, st1.attributes);
    END IF;
    rows_change := st1.canary_rows - st0.canary_rows;
    seq_change := st1.canary_seq - st0.canary_seq;
    EXECUTE format('SET LOCAL ROLE %I', attacker);
END
$$;

CREATE TEMP TABLE owner_rights_round (
    round_no integer, attacker name, kind text, derived integer, planted integer, plant_failed text[], not_fired text[],
    writes integer, writes_ok integer, may_write boolean, calls integer, calls_ok integer, reads integer, reads_ok integer,
    fired_in_actions bigint, attributes_changes text[], canary_row_changes text[], canary_seq_changes text[],
    attributes_at_end text,
    failed_calls text[]  -- not asserted (many fail on purpose: wrong ids, formats); for reading when a count above looks wrong
);

--------------------------------------------------------------------------------
-- 5. One round: plant (as the attacker), check the trap, do everything.
--------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.owner_rights_attack(attacker name, kind text, round_no integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    label text := format('%s, %s round', attacker, kind);
    names text[];
    definitions text[];
    actions record;
    todo text[];
    todo_kind text[];
    res record;
    i integer;
    nm text;
    col name;
    cols text;
    f0 bigint;
    fired_before bigint;
    inserted boolean;
    full_rows integer := 0;
    planted integer := 0;
    plant_failed text[] := '{}';
    not_fired text[] := '{}';
    attributes_changes text[] := '{}';
    canary_row_changes text[] := '{}';
    canary_seq_changes text[] := '{}';
    failed_calls text[] := '{}';
    n_writes integer := 0; writes_ok integer := 0;
    n_calls integer := 0; calls_ok integer := 0;
    n_reads integer := 0; reads_ok integer := 0;
    may_write boolean;
BEGIN
    PERFORM pg_temp.owner_rights_clear();
    SELECT array_agg(name ORDER BY name), array_agg(definition ORDER BY name) INTO names, definitions FROM pg_temp.owner_rights_name;
    SELECT array_agg(s.statement ORDER BY s.ord, s.statement), array_agg(s.what ORDER BY s.ord, s.statement) INTO todo, todo_kind
      FROM pg_temp.owner_rights_statements(attacker, 911100 + 10 * round_no) AS s;
    SELECT bool_or(has_table_privilege(attacker, c.oid, 'INSERT') OR has_table_privilege(attacker, c.oid, 'UPDATE')
                   OR has_table_privilege(attacker, c.oid, 'DELETE')) INTO may_write
      FROM pg_class AS c
      JOIN pg_depend AS d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
      JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'm365_usernames'
     WHERE c.relkind IN ('r', 'p');

    EXECUTE format('SET LOCAL ROLE %I', attacker);

    -- Plant.
    EXECUTE 'CREATE TEMP SEQUENCE owner_rights_fired';
    EXECUTE 'GRANT USAGE, SELECT ON SEQUENCE pg_temp.owner_rights_fired TO PUBLIC';
    EXECUTE pg_temp.owner_rights_trap_source(attacker, label);
    EXECUTE $trg$
        CREATE FUNCTION pg_temp.owner_rights_trigger() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            PERFORM pg_temp.owner_rights_trap(TG_TABLE_NAME || ': ' || TG_WHEN || ' ' || TG_OP || ' ' || TG_LEVEL);
            IF TG_LEVEL = 'ROW' THEN
                IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
                RETURN NEW;
            END IF;
            RETURN NULL;
        END
        $fn$ $trg$;
    FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
        nm := names[i];
        BEGIN
            EXECUTE format(E'CREATE TEMP TABLE %I (%s\n)', nm, coalesce(definitions[i], 'owner_rights_any text'));
            IF kind = 'table' THEN
                EXECUTE format('CREATE TRIGGER owner_rights_before_row BEFORE INSERT OR UPDATE OR DELETE ON pg_temp.%I FOR EACH ROW EXECUTE FUNCTION pg_temp.owner_rights_trigger()', nm);
                EXECUTE format('CREATE TRIGGER owner_rights_after_row AFTER INSERT OR UPDATE OR DELETE ON pg_temp.%I FOR EACH ROW EXECUTE FUNCTION pg_temp.owner_rights_trigger()', nm);
                EXECUTE format('CREATE TRIGGER owner_rights_before_statement BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pg_temp.%I FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.owner_rights_trigger()', nm);
                EXECUTE format('CREATE TRIGGER owner_rights_after_statement AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pg_temp.%I FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.owner_rights_trigger()', nm);
            ELSE
                SELECT string_agg(format('NULL::%s AS %I', format_type(a.atttypid, a.atttypmod), a.attname), ', ' ORDER BY a.attnum) INTO cols
                  FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid = format('pg_temp.%I', nm)::regclass AND a.attnum > 0 AND NOT a.attisdropped;
                EXECUTE format('DROP TABLE pg_temp.%I', nm);
                EXECUTE format('CREATE TEMP VIEW %I AS SELECT %s WHERE pg_temp.owner_rights_trap(%L)', nm, cols, 'view ' || nm);
                EXECUTE format('CREATE TRIGGER owner_rights_instead INSTEAD OF INSERT OR UPDATE OR DELETE ON pg_temp.%I FOR EACH ROW EXECUTE FUNCTION pg_temp.owner_rights_trigger()', nm);
            END IF;
            planted := planted + 1;
        EXCEPTION WHEN OTHERS THEN
            plant_failed := plant_failed || format('%s: %s', nm, SQLERRM);
        END;
    END LOOP;

    -- Positive control: the attacker's own writes and reads fire the trap
    -- (run with the attacker's rights, it escalates nothing).
    FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
        nm := names[i];
        CONTINUE WHEN to_regclass(format('pg_temp.%I', nm)) IS NULL;
        IF kind = 'table' THEN
            f0 := pg_temp.owner_rights_fired();
            inserted := false;
            BEGIN
                EXECUTE format('INSERT INTO pg_temp.%I DEFAULT VALUES', nm);
                inserted := true;
            EXCEPTION WHEN OTHERS THEN
                NULL;  -- NOT NULL columns: the BEFORE triggers have fired by then
            END;
            IF pg_temp.owner_rights_fired() - f0 < 2 THEN not_fired := not_fired || format('%s: INSERT', nm); END IF;
            IF inserted THEN
                full_rows := full_rows + 1;
                SELECT a.attname INTO col FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid = format('pg_temp.%I', nm)::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum LIMIT 1;
                f0 := pg_temp.owner_rights_fired();
                BEGIN EXECUTE format('UPDATE pg_temp.%1$I SET %2$I = %2$I', nm, col); EXCEPTION WHEN OTHERS THEN NULL; END;
                IF pg_temp.owner_rights_fired() - f0 < 4 THEN not_fired := not_fired || format('%s: UPDATE', nm); END IF;
                f0 := pg_temp.owner_rights_fired();
                BEGIN EXECUTE format('DELETE FROM pg_temp.%I', nm); EXCEPTION WHEN OTHERS THEN NULL; END;
                IF pg_temp.owner_rights_fired() - f0 < 4 THEN not_fired := not_fired || format('%s: DELETE', nm); END IF;
            END IF;
            f0 := pg_temp.owner_rights_fired();
            BEGIN EXECUTE format('TRUNCATE pg_temp.%I', nm); EXCEPTION WHEN OTHERS THEN NULL; END;
            IF pg_temp.owner_rights_fired() - f0 < 2 THEN not_fired := not_fired || format('%s: TRUNCATE', nm); END IF;
        ELSE
            f0 := pg_temp.owner_rights_fired();
            BEGIN EXECUTE format('SELECT count(*) FROM pg_temp.%I', nm); EXCEPTION WHEN OTHERS THEN NULL; END;
            IF pg_temp.owner_rights_fired() - f0 < 1 THEN not_fired := not_fired || format('%s: SELECT', nm); END IF;
            f0 := pg_temp.owner_rights_fired();
            BEGIN EXECUTE format('INSERT INTO pg_temp.%I DEFAULT VALUES', nm); EXCEPTION WHEN OTHERS THEN NULL; END;
            IF pg_temp.owner_rights_fired() - f0 < 1 THEN not_fired := not_fired || format('%s: INSERT (INSTEAD OF)', nm); END IF;
        END IF;
    END LOOP;
    IF kind = 'table' AND full_rows = 0 THEN
        not_fired := not_fired || 'no planted table took a row: the row UPDATE and DELETE triggers went unchecked'::text;
    END IF;

    -- Everything the role may do, one statement at a time.
    fired_before := pg_temp.owner_rights_fired();
    FOR i IN 1 .. coalesce(array_length(todo, 1), 0) LOOP
        SELECT * INTO res FROM pg_temp.owner_rights_act(attacker, todo[i]);
        CASE todo_kind[i]
            WHEN 'write' THEN n_writes := n_writes + 1; writes_ok := writes_ok + (res.outcome = 'ok')::integer;
            WHEN 'call' THEN n_calls := n_calls + 1; calls_ok := calls_ok + (res.outcome = 'ok')::integer;
            ELSE n_reads := n_reads + 1; reads_ok := reads_ok + (res.outcome = 'ok')::integer;
        END CASE;
        IF res.outcome <> 'ok' AND todo_kind[i] = 'call' THEN
            failed_calls := failed_calls || format('%s: %s', btrim(todo[i]), res.outcome);
        END IF;
        IF res.attributes_change IS NOT NULL THEN
            attributes_changes := attributes_changes || format('%s (%s): %s', btrim(todo[i]), res.outcome, res.attributes_change);
        END IF;
        IF res.rows_change <> 0 THEN
            canary_row_changes := canary_row_changes || format('%s (%s): %s canary rows', btrim(todo[i]), res.outcome, res.rows_change);
        END IF;
        IF res.seq_change <> 0 THEN
            canary_seq_changes := canary_seq_changes || format('%s (%s): canary sequence +%s', btrim(todo[i]), res.outcome, res.seq_change);
        END IF;
    END LOOP;
    f0 := pg_temp.owner_rights_fired() - fired_before;

    RESET ROLE;
    INSERT INTO pg_temp.owner_rights_round
    VALUES (round_no, attacker, kind, coalesce(array_length(names, 1), 0), planted, plant_failed, not_fired,
            n_writes, writes_ok, coalesce(may_write, false), n_calls, calls_ok, n_reads, reads_ok, f0,
            attributes_changes, canary_row_changes, canary_seq_changes,
            (SELECT attributes FROM pg_temp.owner_rights_state(attacker)), failed_calls);
    PERFORM pg_temp.owner_rights_clear();
    -- The next round starts from the attacker's own attributes again.
    EXECUTE format('ALTER ROLE %I NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS NOREPLICATION', attacker);
END
$$;

DO $$
DECLARE
    a record;
BEGIN
    FOR a IN SELECT rolname, kind, round_no FROM pg_temp.owner_rights_attacker ORDER BY round_no LOOP
        PERFORM pg_temp.owner_rights_attack(a.rolname, a.kind, a.round_no);
    END LOOP;
END
$$;

--------------------------------------------------------------------------------
-- 6. What happened.
--------------------------------------------------------------------------------
SELECT is(planted, derived, format('%s, %s round: planted a %s in its own pg_temp under each of the %s derived names%s',
                                   attacker, kind, kind, derived, CASE WHEN plant_failed <> '{}' THEN ' (failed: ' || array_to_string(plant_failed, '; ') || ')' ELSE '' END))
  FROM pg_temp.owner_rights_round ORDER BY round_no;
SELECT is(not_fired, '{}'::text[], format('%s, %s round: positive control: every planted %s fires when the attacker itself %s',
                                          attacker, kind, kind, CASE kind WHEN 'table' THEN 'writes to it' ELSE 'reads or writes it' END))
  FROM pg_temp.owner_rights_round ORDER BY round_no;
SELECT cmp_ok(calls_ok + reads_ok, '>', 0, format('%s, %s round: it called the %s functions/argument lists it may EXECUTE (%s ran) and read the %s relations it may SELECT (%s ran)',
                                                   attacker, kind, calls, calls_ok, reads, reads_ok))
  FROM pg_temp.owner_rights_round ORDER BY round_no;
SELECT is(writes_ok > 0, may_write, format('%s, %s round: it wrote school data on every path its grants allow (%s of %s writes ran)',
                                           attacker, kind, writes_ok, writes))
  FROM pg_temp.owner_rights_round ORDER BY round_no;
SELECT is(attributes_changes, '{}'::text[], format('%s, %s round: no write, call or read changed the attacker''s role attributes', attacker, kind))
  FROM pg_temp.owner_rights_round ORDER BY round_no;
SELECT is(canary_row_changes, '{}'::text[], format('%s, %s round: no write, call or read let a planted object insert into the canary table', attacker, kind))
  FROM pg_temp.owner_rights_round ORDER BY round_no;
SELECT is(canary_seq_changes, '{}'::text[], format('%s, %s round: no write, call or read let a planted object advance the canary sequence, not even in a statement that then failed (the planted objects fired %s times meanwhile)',
                                                   attacker, kind, fired_in_actions))
  FROM pg_temp.owner_rights_round ORDER BY round_no;

SELECT is_empty($$ SELECT r.round_no, r.attacker, r.attributes_at_end FROM pg_temp.owner_rights_round AS r
                    JOIN pg_temp.owner_rights_attacker AS a ON a.round_no = r.round_no
                   WHERE r.attributes_at_end IS DISTINCT FROM a.attributes $$,
                'after every round, each attacker has the role attributes it started with (rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication)');
SELECT is_empty('SELECT round, as_user, what, count(*) FROM owner_rights_canary.hit GROUP BY 1, 2, 3 ORDER BY min(id)', 'the canary table is empty');

-- Control: the same planted function, run with the owner's rights (the
-- session's user is the extension's owner in the test suite), is caught.
DO $$ BEGIN EXECUTE pg_temp.owner_rights_trap_source('owner_rights_bystander', 'control'); END $$;
CREATE TEMP SEQUENCE owner_rights_fired;
CREATE TEMP TABLE owner_rights_before AS SELECT * FROM pg_temp.owner_rights_state('owner_rights_bystander');
DO $$ BEGIN PERFORM pg_temp.owner_rights_trap('control'); END $$;
SELECT is((SELECT format('%s; %s rows; sequence %s', attributes, canary_rows, canary_seq)
             FROM pg_temp.owner_rights_state('owner_rights_bystander')),
          (SELECT format('%s; %s rows; sequence %s', 'super t, createrole t, createdb t, bypassrls t, replication t',
                         canary_rows + 1, canary_seq + 1)
             FROM pg_temp.owner_rights_before),
          format('control: the planted function, run with the owner''s rights (%s), is caught: attributes, canary row, canary sequence',
                 (SELECT extowner::regrole FROM pg_extension WHERE extname = 'm365_usernames')));

SELECT * FROM finish();
ROLLBACK;
