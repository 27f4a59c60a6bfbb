-- An SDS reader sees its own configuration only, whatever it writes: tried by
-- breaking it. Two tenants, every view of m365_sds (from the catalog) x every
-- column (from the catalog) x attacks that make the planner run the reader's
-- own conditions on rows of the views (a cast to integer, the same cast only
-- on tenant B's marker, a division by zero on B's marker, a cheap temporary
-- function that writes down its argument) x planner settings and the settings
-- a reader may SET; then the reader's role is dropped and a new role of the
-- same name is made.
-- Tenant B's names, usernames, location names and class names all hold
-- "Geheim", its ids are 8642xxx: any leak is found by that marker and by the
-- list of B's values.
--
-- What 0.2.0 showed (pg_prove, 1.6 s): 6 of 18 fail.
--   7  casting never shows B: "cast marked" errors quote B under every setting,
--      e.g. users: invalid input syntax for type integer: "Geheimina" (default
--      plan), orgs: "Geheime Vestiging Noord", classes: "Geheimklas 1A",
--      enrollments: "class-8642201", left_out: "student-8642001"
--      (orgs, classes with enable_nestloop = off, enable_mergejoin = off);
--   8  a condition failing only on B's marker fails: 48 queries (cast 22P02,
--      division 22012) in users, orgs, classes, enrollments, left_out: 8 each
--      under default, enable_hashjoin off and the SETs of B, 24 with nestloop
--      and mergejoin off (none with enable_seqscan off);
--   9  pg_temp.leak (COST 0.0000001) was called with B's values: users 77
--      times (all B's names, usernames, "Geheim\nLijn"), enrollments 69
--      ("class-8642201", ...), left_out 23 ("staff-8642101"), orgs 16 ("Geheime
--      Vestiging Noord"), under every setting but enable_seqscan off;
--   12 39 of B's 54 values were seen: all its student and staff ids and
--      names, usernames, both location names, "Geheimklas 1A";
--   14 the plain cast on left_out."sourcedId" quoted "student-911001", a row
--      the reader is not given (A's own, not left out): conditions run below
--      the view's own filter;
--   18 a new role under the dropped reader's name, given what the old one had
--      (membership of m365_sds_reader), read tenant A: users 8, roles 10,
--      orgs 2, classes 2, enrollments 8, academicSessions 1, left_out 1 rows.
--   (11, a reader that SETs m365.sds_configuration and m365.sds_on_date reads
--   no row of B, held on 0.2.0: it ignored a reader's setting.)
-- The roles view leaks nothing even without a barrier (its window functions
-- keep the conditions above them); the test would see it if that changed.
BEGIN;
SELECT plan(21);
\ir lib/session.psql
-- The disabled plan types cost 1e10 and would JIT-compile every attack (minutes).
SET LOCAL jit = off;

-- Data: tenant A (ids 911xxx, "Alfa") and tenant B (ids 8642xxx, "Geheim"),
-- configurations 911000 and 864200 (B's id is no secret: the attacker types it),
-- each with a school, two locations, seven students (one whose names, once
-- made a username, become blank in the feed, so that left_out has a row), two
-- teachers, two classes.
INSERT INTO m365.configuration (id, name) VALUES (911000, 'isolation tenant Alfa'), (864200, 'isolation tenant Geheim');
INSERT INTO m365.school (id, name, configuration_id, staff_domain)
VALUES (911001, 'Alfaschool', 911000, 'alfa-school.be'), (8642001, 'Geheimschool', 864200, 'geheim-school.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (911001, 911001, 'Alfa Noord', 911000, 'leerling.alfa-school.be'),
       (911002, 911001, 'Alfa Zuid', 911000, 'leerling.alfa-school.be'),
       (8642001, 8642001, 'Geheime Vestiging Noord', 864200, 'leerling.geheim-school.be'),
       (8642002, 8642001, 'Geheime Vestiging Zuid', 864200, 'leerling.geheim-school.be');
INSERT INTO m365.class (id, location_id, name, school_year)
VALUES (911201, 911001, 'Alfaklas 1A', m365.school_year(CURRENT_DATE)),
       (911202, 911002, 'Alfaklas 2B', m365.school_year(CURRENT_DATE)),
       (8642201, 8642001, 'Geheimklas 1A', m365.school_year(CURRENT_DATE)),
       (8642202, 8642002, 'Geheimklas 2B', m365.school_year(CURRENT_DATE));
INSERT INTO m365.student (id, first_name, last_name)
SELECT 911000 + i, (ARRAY['Anna', 'Bert', 'Cis', 'Dirk', 'Els', 'Fien'])[i], 'Alfaerts' FROM generate_series(1, 6) AS i
UNION ALL SELECT 911007, 'Gust', E'Alfa\nLijn'
UNION ALL
SELECT 8642000 + i, (ARRAY['Geheimina', 'Geheimo', 'Geheimke', 'Geheimert', 'Geheimia', 'Geheimus'])[i], 'Geheimsma'
  FROM generate_series(1, 6) AS i
UNION ALL SELECT 8642007, 'Geheimgust', E'Geheim\nLijn';
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
SELECT 911300 + i, 911000 + i, CASE WHEN i % 2 = 1 THEN 911001 ELSE 911002 END,
       CASE WHEN i % 2 = 1 THEN 911201 ELSE 911202 END, CURRENT_DATE - 10 FROM generate_series(1, 7) AS i
UNION ALL
SELECT 8642300 + i, 8642000 + i, CASE WHEN i % 2 = 1 THEN 8642001 ELSE 8642002 END,
       CASE WHEN i % 2 = 1 THEN 8642201 ELSE 8642202 END, CURRENT_DATE - 10 FROM generate_series(1, 7) AS i;
INSERT INTO m365.staff (id, first_name, last_name)
VALUES (911101, 'Piet', 'Alfadocent'), (911102, 'Rita', 'Alfadocent'),
       (8642101, 'Geheimpiet', 'Geheimdocent'), (8642102, 'Geheimrita', 'Geheimdocent');
INSERT INTO m365.staff_school (staff_id, school_id)
VALUES (911101, 911001), (911102, 911001), (8642101, 8642001), (8642102, 8642001);
INSERT INTO m365.class_teacher (class_id, staff_id)
VALUES (911201, 911101), (911202, 911102), (8642201, 8642101), (8642202, 8642102);
CREATE TEMP TABLE made AS SELECT m365.generate_usernames_in_transaction() AS usernames;
UPDATE m365.student SET first_name = E'\u3000', last_name = E'\t' WHERE id IN (911007, 8642007);
CREATE TEMP TABLE synced AS SELECT m365.set_sync(array_agg(id), true) AS usernames FROM m365.username WHERE configuration_id IN (911000, 864200);

-- Readers: plain LOGIN roles, made readers by the DBA; A may create temporary
-- objects (PUBLIC may, by default; granted here so that the attack can run).
CREATE ROLE sds_iso_reader_a LOGIN;
CREATE ROLE sds_iso_reader_b LOGIN;
SELECT lives_ok($$ SELECT m365.create_sds_reader('sds_iso_reader_a', 911000) $$, 'a reader for tenant A');
SELECT lives_ok($$ SELECT m365.create_sds_reader('sds_iso_reader_b', 864200) $$, 'a reader for tenant B');
DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO sds_iso_reader_a', current_database()); END $$;

-- The views, from the catalog.
CREATE TEMP TABLE target AS
SELECT c.relname::text AS view, a.attname::text AS col, a.attnum
  FROM pg_class AS c
  JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'm365_sds'::regnamespace AND c.relkind = 'v';

-- A query's answer as jsonb, run as `role`.
CREATE FUNCTION pg_temp.json_as(role name, query text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    j jsonb;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    EXECUTE query INTO j;
    RESET ROLE;
    RETURN j;
END
$$;

-- What each reader legitimately reads: (view, column, value), NULLs included.
CREATE TEMP TABLE feed AS
SELECT r.reader, t.view, t.col, row_value ->> t.col AS val
  FROM (VALUES ('a'), ('b')) AS r (reader)
  CROSS JOIN (SELECT DISTINCT view FROM target) AS v
  CROSS JOIN LATERAL jsonb_array_elements(
        coalesce(pg_temp.json_as('sds_iso_reader_' || r.reader,
                                 format('SELECT jsonb_agg(to_jsonb(t)) FROM m365_sds.%I AS t', v.view)), '[]')) AS row_value
  JOIN target AS t ON t.view = v.view;

SELECT is_empty($$ SELECT view FROM target EXCEPT SELECT view FROM feed WHERE reader = 'a' $$,
                'tenant A reads rows in every view of m365_sds');
SELECT is_empty($$ SELECT view FROM target EXCEPT SELECT view FROM feed WHERE reader = 'b' $$,
                'tenant B reads rows in every view of m365_sds');

-- Tenant B's secrets: every value of B's feed that A's feed does not hold, and
-- B's names, usernames, location, school and class names and ids.
CREATE TEMP TABLE secret AS
SELECT val AS secret FROM feed WHERE reader = 'b' AND val IS NOT NULL
EXCEPT SELECT val FROM feed WHERE reader = 'a' AND val IS NOT NULL
UNION SELECT username FROM m365.username WHERE configuration_id = 864200
UNION SELECT name FROM m365.location WHERE configuration_id = 864200
UNION SELECT name FROM m365.school WHERE configuration_id = 864200
UNION SELECT c.name FROM m365.class AS c JOIN m365.location AS l ON l.id = c.location_id WHERE l.configuration_id = 864200
UNION SELECT unnest(ARRAY[first_name, last_name, id::text]) FROM m365.student WHERE id BETWEEN 8642000 AND 8642999
UNION SELECT unnest(ARRAY[first_name, last_name, id::text]) FROM m365.staff WHERE id BETWEEN 8642000 AND 8642999;

-- The reader's weapons: a temporary function the planner thinks costs nothing
-- (so it runs first, wherever it is pushed), which tells its argument in a
-- NOTICE and writes it down in a temporary table of the reader's own.
SELECT is(pg_temp.as_role('sds_iso_reader_a', $$
    CREATE TEMP TABLE leaked (val text);
    CREATE FUNCTION pg_temp.leak(val text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $f$
    BEGIN
        RAISE NOTICE 'leak: %', val;
        INSERT INTO pg_temp.leaked VALUES (val);
        RETURN true;
    END
    $f$ $$), 'ok', 'the reader may create a temporary function and table');

-- Planner settings, and what a reader may SET to choose a tenant and a day.
CREATE TEMP TABLE setting (setting text, statements text[], planner boolean);
INSERT INTO setting VALUES
    ('default', '{}', true),
    ('enable_hashjoin off', '{"SET LOCAL enable_hashjoin = off"}', true),
    ('enable_nestloop, enable_mergejoin off', '{"SET LOCAL enable_nestloop = off", "SET LOCAL enable_mergejoin = off"}', true),
    ('enable_seqscan off', '{"SET LOCAL enable_seqscan = off"}', true),
    ('sds_configuration of B, sds_on_date', ARRAY['SET LOCAL m365.sds_configuration = ''864200''',
                                                  format('SET LOCAL m365.sds_on_date = %L', CURRENT_DATE - 5)], false);

-- The matrix. Per column, under every setting:
--   cast:         the column cast to integer (an error quotes the first value
--                 the condition sees);
--   cast marked:  the column cast to integer when it holds tenant B's marker:
--                 fails, quoting it, on B's first row the condition sees;
--   zero:         a division by zero only on a value with tenant B's marker;
--   leak:         WHERE pg_temp.leak(column).
-- Per view, under every setting: read: SELECT pg_temp.leak(row) FROM view.
-- Positive control, default settings: zero own (tenant A's marker) must fail
-- where A's values hold it; cast and leak are controls of themselves (below).
CREATE TEMP TABLE attack (
    id serial PRIMARY KEY, view text, col text, attack text, setting text, statements text[], query text,
    sqlstate text, message text, detail text, hint text, context text, leaked text[], ran boolean NOT NULL DEFAULT false);
INSERT INTO attack (view, col, attack, setting, statements, query)
SELECT t.view, t.col, k.attack, s.setting, s.statements,
       CASE k.attack
           WHEN 'cast' THEN format('SELECT 1 FROM m365_sds.%I WHERE %I::text::int = 0', t.view, t.col)
           WHEN 'cast marked' THEN format('SELECT 1 FROM m365_sds.%I WHERE (CASE WHEN %I::text ~* %L THEN %I::text END)::int = 0',
                                          t.view, t.col, 'geheim|8642[0-9]{3}', t.col)
           WHEN 'zero' THEN format('SELECT 1 FROM m365_sds.%I WHERE 1 / (CASE WHEN %I::text ~* %L THEN 0 ELSE 1 END) = 1',
                                   t.view, t.col, 'geheim|8642[0-9]{3}')
           WHEN 'leak' THEN format('SELECT 1 FROM m365_sds.%I WHERE pg_temp.leak(%I::text)', t.view, t.col)
           WHEN 'zero own' THEN format('SELECT 1 FROM m365_sds.%I WHERE 1 / (CASE WHEN %I::text ~* %L THEN 0 ELSE 1 END) = 1',
                                       t.view, t.col, 'alfa|911[0-9]{3}')
       END
  FROM target AS t
  CROSS JOIN (VALUES ('cast'), ('cast marked'), ('zero'), ('leak'), ('zero own')) AS k (attack)
  JOIN setting AS s ON k.attack <> 'zero own' OR s.setting = 'default'
UNION ALL
SELECT v.view, NULL, 'read', s.setting, s.statements, format('SELECT pg_temp.leak(t::text) FROM m365_sds.%I AS t', v.view)
  FROM (SELECT DISTINCT view FROM target) AS v CROSS JOIN setting AS s;

-- Runs every attack as the reader (who SETs the settings itself) and keeps
-- everything it could see: error message, detail, hint, context (without the
-- attack's own text) and what its leak function wrote down.
CREATE FUNCTION pg_temp.run_attacks(reader name) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a record;
    s text;
    st text; msg text; det text; hnt text; ctx text;
    saved_level text := current_setting('client_min_messages');
BEGIN
    PERFORM set_config('client_min_messages', 'warning', true);  -- the NOTICEs are in pg_temp.leaked too
    FOR a IN SELECT * FROM attack ORDER BY id LOOP
        st := NULL; msg := NULL; det := NULL; hnt := NULL; ctx := NULL;
        BEGIN
            EXECUTE format('SET LOCAL ROLE %I', reader);
            FOREACH s IN ARRAY a.statements LOOP
                EXECUTE s;
            END LOOP;
            EXECUTE a.query;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                                    hnt = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT;
        END;
        RESET ROLE;
        RESET enable_hashjoin;
        RESET enable_nestloop;
        RESET enable_mergejoin;
        RESET enable_seqscan;
        RESET m365.sds_configuration;
        RESET m365.sds_on_date;
        -- The reader's own text (the attack, the SETs) is no leak.
        ctx := replace(ctx, a.query, '<attack>');
        FOREACH s IN ARRAY a.statements LOOP
            ctx := replace(ctx, s, '<setting>');
        END LOOP;
        UPDATE attack
           SET sqlstate = st, message = msg, detail = nullif(det, ''), hint = nullif(hnt, ''),
               context = nullif(ctx, ''),
               leaked = ARRAY(SELECT l.val FROM pg_temp.leaked AS l), ran = true
         WHERE id = a.id;
        DELETE FROM pg_temp.leaked;
    END LOOP;
    PERFORM set_config('client_min_messages', saved_level, true);
END
$$;
SELECT pg_temp.run_attacks('sds_iso_reader_a');

-- Everything the reader saw, one text per row.
CREATE TEMP VIEW seen AS
SELECT a.id, a.view, a.col, a.attack, a.setting, a.sqlstate, x.what, x.text
  FROM attack AS a
  CROSS JOIN LATERAL (SELECT 'message', a.message UNION ALL SELECT 'detail', a.detail UNION ALL SELECT 'hint', a.hint
                      UNION ALL SELECT 'context', a.context
                      UNION ALL SELECT 'leaked', l FROM unnest(a.leaked) AS l) AS x (what, text)
 WHERE x.text IS NOT NULL;

SELECT ok((SELECT count(DISTINCT view) >= 7 AND count(*) >= 38 FROM target)
          AND (SELECT count(*) FROM attack WHERE ran) = (SELECT count(*) FROM target) * 21 + (SELECT count(DISTINCT view) FROM target) * 5,
          'the matrix ran: every view and column of m365_sds x 4 attacks x 5 settings and a control; every view x read x 5 settings');

-- No leak. (On failure: per view, attack and what, how many, under which settings, one example.)
CREATE TEMP VIEW b_seen AS
SELECT view, attack, what, count(*) AS n, string_agg(DISTINCT setting, '; ') AS settings, left(min(text), 200) AS example
  FROM seen WHERE text ~* 'geheim|8642[0-9]{3}' GROUP BY view, attack, what;
SELECT is_empty($$ SELECT * FROM b_seen WHERE attack IN ('cast', 'cast marked') $$,
                'casting a column to integer never shows the reader a value of tenant B (error, detail, hint, context)');
SELECT is_empty($$ SELECT view, col, attack, setting, sqlstate, message FROM attack
                    WHERE attack IN ('cast marked', 'zero') AND sqlstate IS NOT NULL $$,
                'a condition that fails only on tenant B''s marker (a cast, a division by zero) never fails: it never sees B''s rows');
SELECT is_empty($$ SELECT * FROM b_seen WHERE attack = 'leak' $$,
                'a temporary function of tiny COST in WHERE is never called with a value of tenant B');
SELECT is_empty($$ SELECT * FROM b_seen WHERE attack NOT IN ('cast', 'cast marked', 'leak') $$,
                'no other attack (read, division, the control) shows a value of tenant B');
SELECT is_empty($$ SELECT view, left(text, 200) FROM seen
                    WHERE attack = 'read' AND setting = 'sds_configuration of B, sds_on_date' AND text ~* 'geheim|8642[0-9]{3}' $$,
                'a reader that SETs m365.sds_configuration to B and m365.sds_on_date reads no row of B');
SELECT is_empty($$ SELECT secret, count(*) AS times, string_agg(DISTINCT view || '/' || attack, ', ') AS where_seen
                     FROM secret JOIN seen ON strpos(lower(seen.text), lower(secret.secret)) > 0
                    WHERE length(secret) >= 4 GROUP BY secret $$,
                'none of B''s usernames, names, location names, ids or feed values is in anything the reader saw');

-- Positive controls: the same attacks surface tenant A's own values.
SELECT is_empty($$ SELECT f.view, f.col, s.setting, f.val FROM feed AS f CROSS JOIN setting AS s
                    WHERE f.reader = 'a' AND s.planner
                   EXCEPT
                   SELECT a.view, a.col, a.setting, l FROM attack AS a CROSS JOIN LATERAL unnest(a.leaked) AS l
                    WHERE a.attack = 'leak' $$,
                'control: the leak function is called with every value the reader reads, in every column, under every planner setting');
SELECT set_eq($$ SELECT a.view, a.col, a.setting FROM attack AS a JOIN setting AS s ON s.setting = a.setting AND s.planner
                  WHERE a.attack = 'cast' AND a.sqlstate = '22P02'
                    AND substring(a.message FROM '^invalid input syntax for type integer: "(.*)"$')
                        IN (SELECT f.val FROM feed AS f WHERE f.reader = 'a' AND f.view = a.view AND f.col = a.col) $$,
              $$ SELECT DISTINCT f.view, f.col, s.setting FROM feed AS f CROSS JOIN setting AS s
                  WHERE f.reader = 'a' AND f.val !~ '^[0-9]{1,9}$' AND s.planner $$,
              'control: a cast to integer fails quoting one of the reader''s own values, in every column that holds text, under every planner setting');
SELECT set_eq($$ SELECT view, col FROM attack WHERE attack = 'zero own' AND sqlstate = '22012' $$,
              $$ SELECT DISTINCT view, col FROM feed WHERE reader = 'a' AND val ~* 'alfa|911[0-9]{3}' $$,
              'control: a division by zero on tenant A''s marker happens in exactly the columns that hold it');

-- EXPLAIN ANALYZE counts rows. A leakproof condition (text =, <, ^@) may pass
-- a security barrier; pushed into the base scans it would count tenant B's
-- rows there (a red-team finding against the first 0.3.0: "Seq Scan on student
-- (actual rows=1)" for one of B's names, enough to recover them all). For
-- every view and column holding a value only B has, that value and a value
-- nobody has must give plans with the same actual row counts.
CREATE FUNCTION pg_temp.explain_rows(role name, query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    plan jsonb;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', role);
    EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, FORMAT JSON) ' || query INTO plan;
    RESET ROLE;
    RETURN (SELECT string_agg(m[1], ',') FROM regexp_matches(plan::text, '"Actual Rows": ([0-9]+)', 'g') AS m);
END
$$;
CREATE TEMP TABLE b_only AS
SELECT f.view, f.col, min(f.val) AS val
  FROM feed AS f
 WHERE f.reader = 'b' AND f.val IS NOT NULL
   AND f.val NOT IN (SELECT a.val FROM feed AS a WHERE a.reader = 'a' AND a.val IS NOT NULL)
 GROUP BY f.view, f.col;
CREATE FUNCTION pg_temp.explain_leaks() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT b.view || '.' || b.col
      FROM b_only AS b
     WHERE pg_temp.explain_rows('sds_iso_reader_a', format('SELECT * FROM m365_sds.%I WHERE %I::text = %L', b.view, b.col, b.val))
           IS DISTINCT FROM
           pg_temp.explain_rows('sds_iso_reader_a', format('SELECT * FROM m365_sds.%I WHERE %I::text = %L', b.view, b.col, 'nobody at all'))
$$;
SELECT cmp_ok((SELECT count(*)::int FROM b_only), '>=', 10, 'the EXPLAIN probe has tenant B''s values in many columns');
SELECT is_empty('SELECT * FROM pg_temp.explain_leaks()',
                'EXPLAIN ANALYZE counts no row of tenant B (every view and column, default plans)');
SET LOCAL enable_nestloop = off;
SET LOCAL enable_mergejoin = off;
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
SELECT is_empty('SELECT * FROM pg_temp.explain_leaks()',
                'nor with sequential scans and hash joins only');
RESET enable_nestloop;
RESET enable_mergejoin;
RESET enable_indexscan;
RESET enable_bitmapscan;

-- Bound by role OID, not by name: the reader's role is dropped and a role of
-- the same name made, to which the DBA grants by hand exactly the rights the
-- old one had (its memberships and its grants on schemas, tables, columns,
-- functions and this database; on 0.2.0 that is membership of
-- m365_sds_reader): it reads nothing of tenant A.
CREATE TEMP TABLE reader_right AS
SELECT format('GRANT %I TO sds_iso_reader_a', m.roleid::regrole) AS statement
  FROM pg_auth_members AS m WHERE m.member = 'sds_iso_reader_a'::regrole
UNION ALL
SELECT format('GRANT %s ON SCHEMA %I TO sds_iso_reader_a', a.privilege_type, n.nspname)
  FROM pg_namespace AS n, aclexplode(n.nspacl) AS a WHERE a.grantee = 'sds_iso_reader_a'::regrole
UNION ALL
SELECT format('GRANT %s ON TABLE %s TO sds_iso_reader_a', a.privilege_type, c.oid::regclass)
  FROM pg_class AS c, aclexplode(c.relacl) AS a WHERE a.grantee = 'sds_iso_reader_a'::regrole
UNION ALL
SELECT format('GRANT %s (%I) ON TABLE %s TO sds_iso_reader_a', a.privilege_type, t.attname, t.attrelid::regclass)
  FROM pg_attribute AS t, aclexplode(t.attacl) AS a WHERE a.grantee = 'sds_iso_reader_a'::regrole
UNION ALL
SELECT format('GRANT %s ON ROUTINE %s TO sds_iso_reader_a', a.privilege_type, p.oid::regprocedure)
  FROM pg_proc AS p, aclexplode(p.proacl) AS a WHERE a.grantee = 'sds_iso_reader_a'::regrole
UNION ALL
SELECT format('GRANT %s ON DATABASE %I TO sds_iso_reader_a', a.privilege_type, d.datname)
  FROM pg_database AS d, aclexplode(d.datacl) AS a
 WHERE d.datname = current_database() AND a.grantee = 'sds_iso_reader_a'::regrole;

SELECT lives_ok($$ DROP OWNED BY sds_iso_reader_a; DROP ROLE sds_iso_reader_a $$, 'the reader''s role is dropped');
CREATE FUNCTION pg_temp.recreate_reader() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s text;
BEGIN
    CREATE ROLE sds_iso_reader_a LOGIN;
    FOR s IN SELECT statement FROM reader_right LOOP
        EXECUTE s;
    END LOOP;
END
$$;
SELECT lives_ok($$ SELECT pg_temp.recreate_reader() $$, 'a new role of the same name, given every right the old one had');

CREATE FUNCTION pg_temp.count_or_error(role name, query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n text;
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', role);
        EXECUTE query INTO n;
    EXCEPTION WHEN OTHERS THEN
        n := SQLSTATE;
    END;
    RESET ROLE;
    RETURN n;
END
$$;
SELECT is_empty($$ SELECT view, rows FROM (SELECT view, pg_temp.count_or_error('sds_iso_reader_a', format('SELECT count(*) FROM m365_sds.%I', view)) AS rows
                                             FROM (SELECT DISTINCT view FROM target) AS v) AS c
                    WHERE rows IS DISTINCT FROM '0' $$,
                'the new role of the same name reads nothing of tenant A: 0 rows in every view');

SELECT * FROM finish();
ROLLBACK;
