-- The record of what SDS received, stored by change: an unchanged feed adds
-- no row version; sds_changes(a, b) between any two kept records equals the
-- diff of the two feeds computed in full when they were recorded (a property
-- test over random changes); a preview records nothing; retention removes
-- old records' rows, keeps their counts and never the newest.
-- REPEATABLE READ, as the export's holder session: record_feed refuses READ COMMITTED.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT plan(23);
\ir lib/session.psql

-- The brake on mass changes is 25_sds_brake.sql's subject: off here.
INSERT INTO m365.configuration (id, name, sds_brake_minimum) VALUES (924001, 'records', 1000000), (924002, 'records, other tenant', 1000000);
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (924001, 'R', 924001, 'r.be'), (924002, 'O', 924002, 'o.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (924001, 924001, 'R1', 924001, 'leerling.r.be'), (924002, 924001, 'R2', 924001, 'leerling.r.be'),
       (924003, 924002, 'O', 924002, 'leerling.o.be');
INSERT INTO m365.class (id, location_id, name, school_year)
SELECT 924000 + i, 924001 + (i % 2), 'K' || i, m365.school_year(CURRENT_DATE) FROM generate_series(1, 6) AS i;
INSERT INTO m365.student (id, first_name, last_name)
SELECT 924000 + i, 'Kind', 'Nr' || (i % 40) FROM generate_series(1, 120) AS i;
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
SELECT 924000 + i, 924000 + i, CASE WHEN i > 100 THEN 924003 ELSE 924001 + ((i % 6 + 1) % 2) END,
       CASE WHEN i > 100 THEN NULL ELSE 924000 + i % 6 + 1 END, CURRENT_DATE - 10
  FROM generate_series(1, 120) AS i;
INSERT INTO m365.staff (id, first_name, last_name, active) VALUES (924001, 'Juf', 'Een', true);
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (924001, 924001);
INSERT INTO m365.class_teacher (class_id, staff_id) VALUES (924001, 924001);
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id IN (924001, 924002);

-- The feed as the views give it now, in full, kept per record for the property test.
CREATE TEMP TABLE full_feed (record bigint, kind text, user_sourced_id text, value text);
CREATE FUNCTION pg_temp.keep(r bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('m365.sds_configuration', '924001', true);
    INSERT INTO full_feed
    SELECT r, 'user', u."sourcedId", u.username FROM m365_sds.users AS u
    UNION ALL
    SELECT r, 'membership', x.u, x.g || ' as ' || x.role FROM (
        SELECT "userSourcedId" AS u, "orgSourcedId" AS g, role FROM m365_sds.roles
        UNION SELECT "userSourcedId", "classSourcedId", role FROM m365_sds.enrollments) AS x;
    PERFORM set_config('m365.sds_configuration', '', true);
    RETURN r;
END
$$;
CREATE FUNCTION pg_temp.record_and_keep() RETURNS bigint LANGUAGE sql
RETURN pg_temp.keep((m365_sds.record_feed('/srv/sds/records', 924001)).record);

-- 1. The first record holds the feed; it claims the folder.
SELECT pg_temp.record_and_keep() AS first \gset
SELECT is((SELECT counts FROM m365.sds_record WHERE id = :first),
          (SELECT jsonb_build_object('users', count(*) FILTER (WHERE kind = 'user'),
                                     'roles', count(*) FILTER (WHERE value LIKE 'location-%'),
                                     'enrollments', count(*) FILTER (WHERE value LIKE 'class-%'))
             FROM full_feed WHERE record = :first),
          'a record counts the users, roles and enrollments of the feed');
SELECT is((SELECT sds_folder FROM m365.configuration WHERE id = 924001), '/srv/sds/records',
          'the first record sets the configuration''s SDS folder');

-- 2. An unchanged feed adds a record and no row version.
CREATE TEMP TABLE versions_before AS
SELECT (SELECT count(*) FROM m365.sds_record_user) + (SELECT count(*) FROM m365.sds_record_membership) AS n;
SELECT pg_temp.record_and_keep() AS second \gset
SELECT is((SELECT count(*) FROM m365.sds_record_user) + (SELECT count(*) FROM m365.sds_record_membership),
          (SELECT n FROM versions_before), 'a record of an unchanged feed adds no row version');
SELECT is_empty(format('SELECT * FROM m365.sds_changes(%s, %s)', :first, :second), 'and nothing changed between the two');

-- 3. A preview (another folder) records nothing; nor may the feed be recorded
--    without an absolute folder or for no configuration.
SELECT is((m365_sds.record_feed('/tmp/preview', 924001)).outcome, 'preview', 'an export to another folder is a preview');
SELECT is((SELECT max(id) FROM m365.sds_record WHERE configuration_id = 924001), :second::bigint, 'and no record was made');
SELECT throws_ok($$ SELECT m365_sds.record_feed('relative/folder', 924001) $$, '22023', NULL, 'the folder must be an absolute path');
SELECT throws_ok($$ SELECT m365_sds.record_feed('/srv/sds/records') $$, '42501', NULL,
                 'an admin session names the configuration (a reader gets its own)');

-- The day is today in the configuration's time zone, whatever the caller's
-- session says (a red-team find: an admin's SET m365.sds_on_date made history).
SET LOCAL m365.sds_on_date = '2031-01-01';
SELECT record AS third FROM m365_sds.record_feed('/srv/sds/records', 924001) \gset
SELECT is(current_setting('m365.sds_on_date'), '2031-01-01', 'record_feed leaves the caller''s m365.sds_on_date as it was');
RESET m365.sds_on_date;
SELECT pg_temp.keep(:third);
SELECT is((SELECT on_date FROM m365.sds_record WHERE id = :third), m365.configuration_today(924001),
          'and records today, not that day (the property test below checks its rows too)');
SELECT throws_ok($$ UPDATE m365.configuration SET sds_folder = '/srv/sds/records/' WHERE id = 924001 $$, '23514', NULL,
                 'an SDS folder is named as the export names it: no "/" at the end (nor "//", ".", "..")');

-- READ COMMITTED is refused: each statement would see another moment, and
-- two calls at once interleaved their versions (red-team find: records
-- holding rows they never had, sds_changes wrong).
SELECT dblink_connect('a', (SELECT info FROM conn));
SELECT dblink_connect('b', (SELECT info FROM conn));
SELECT throws_ok($$ SELECT * FROM dblink('a', 'SELECT record FROM m365_sds.record_feed(''/srv/sds/records'', 924001)') AS t(x bigint) $$,
                 '55000', NULL, 'record_feed refuses READ COMMITTED: 55000');
-- Two recordings at once, as two exports (REPEATABLE READ): the second
-- fails and records nothing (the export then swaps nothing). Committed, as
-- the other dblink tests: the configuration is one of this run's own.
CREATE TEMP TABLE race AS
SELECT id FROM dblink('a', $$INSERT INTO m365.configuration (name) VALUES ('records race ' || pg_backend_pid()) RETURNING id$$) AS t(id bigint);
SELECT dblink_exec('a', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('a', format('SELECT record FROM m365_sds.record_feed(''/srv/sds/race'', %s)', (SELECT id FROM race))) AS t(x bigint);
SELECT dblink_exec('b', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('b', 'SELECT 1') AS t(x int);
SELECT dblink_exec('a', 'COMMIT');
SELECT throws_ok(format($$ SELECT * FROM dblink('b', 'SELECT record FROM m365_sds.record_feed(''/srv/sds/race'', %s)') AS t(x bigint) $$, (SELECT id FROM race)),
                 '40001', NULL, 'two recordings at once: the second fails with 40001');
SELECT dblink_exec('b', 'ROLLBACK');
SELECT is((SELECT x FROM dblink('b', format('SELECT count(*) || '' '' || (SELECT newest_record = (SELECT max(id) FROM m365.sds_record WHERE configuration_id = %1$s) FROM m365.sds_record_head WHERE configuration_id = %1$s) FROM m365.sds_record WHERE configuration_id = %1$s',
                                             (SELECT id FROM race))) AS t(x text)), '1 true', 'one record, and the head names it');
SELECT dblink_disconnect('a');
SELECT dblink_disconnect('b');

-- 4. Twelve records over random changes: renames, sync off and on, ended
--    enrolments, class moves, a teacher leaving a class.
SELECT setseed(0.24);
SET m365.app_user = 'records.test';
CREATE TEMP TABLE kept (record bigint);
INSERT INTO kept VALUES (:first), (:second), (:third);
DO $$
DECLARE
    step integer;
    u bigint;
BEGIN
    FOR step IN 1 .. 12 LOOP
        FOR u IN SELECT id FROM m365.username WHERE configuration_id = 924001 AND random() < 0.05 LOOP
            PERFORM m365.set_username(u, 'hernoemd.' || step || '.' || u);
        END LOOP;
        PERFORM m365.set_sync(array_agg(id), random() < 0.5) FROM m365.username WHERE configuration_id = 924001 AND random() < 0.04;
        UPDATE m365.enrolment SET end_date = CURRENT_DATE - 1 WHERE id BETWEEN 924001 AND 924100 AND end_date IS NULL AND random() < 0.03;
        UPDATE m365.enrolment SET end_date = NULL WHERE id BETWEEN 924001 AND 924100 AND end_date IS NOT NULL AND random() < 0.3;
        UPDATE m365.enrolment SET class_id = 924000 + ((class_id - 924000 + 1) % 6) + 1
         WHERE id BETWEEN 924001 AND 924100 AND random() < 0.03
           AND (SELECT location_id FROM m365.class WHERE id = 924000 + ((class_id - 924000 + 1) % 6) + 1) = location_id;
        IF step = 6 THEN
            DELETE FROM m365.class_teacher WHERE class_id = 924001 AND staff_id = 924001;
        END IF;
        INSERT INTO kept SELECT pg_temp.record_and_keep();
    END LOOP;
END
$$;
RESET m365.app_user;

SELECT cmp_ok((SELECT count(DISTINCT value) FROM full_feed WHERE kind = 'user'), '>',
              (SELECT count(*) FROM full_feed WHERE kind = 'user' AND record = :first), 'the steps renamed, removed and added users');
CREATE TEMP TABLE expected_changes AS
SELECT a.record AS a, b.record AS b, d.*
  FROM kept AS a, kept AS b,
  LATERAL (
      SELECT CASE WHEN x.user_sourced_id IS NULL THEN 'user added' WHEN y.user_sourced_id IS NULL THEN 'user removed' ELSE 'user renamed' END AS change,
             coalesce(x.user_sourced_id, y.user_sourced_id) AS user_sourced_id,
             CASE WHEN x.user_sourced_id IS NULL THEN y.value WHEN y.user_sourced_id IS NULL THEN x.value ELSE x.value || ' -> ' || y.value END AS detail
        FROM (SELECT * FROM full_feed WHERE record = a.record AND kind = 'user') AS x
        FULL JOIN (SELECT * FROM full_feed WHERE record = b.record AND kind = 'user') AS y USING (user_sourced_id)
       WHERE x.user_sourced_id IS NULL OR y.user_sourced_id IS NULL OR x.value <> y.value
      UNION ALL
      SELECT CASE WHEN x.user_sourced_id IS NULL THEN 'membership gained' ELSE 'membership lost' END,
             coalesce(x.user_sourced_id, y.user_sourced_id), coalesce(x.value, y.value)
        FROM (SELECT * FROM full_feed WHERE record = a.record AND kind = 'membership') AS x
        FULL JOIN (SELECT * FROM full_feed WHERE record = b.record AND kind = 'membership') AS y
          ON x.user_sourced_id = y.user_sourced_id AND x.value = y.value
       WHERE x.user_sourced_id IS NULL OR y.user_sourced_id IS NULL) AS d;
SELECT cmp_ok((SELECT count(*) FROM expected_changes), '>', 100::bigint, 'the pairs of records differ in many rows');
SELECT set_eq($$ SELECT a.record AS a, b.record AS b, c.* FROM kept AS a, kept AS b, m365.sds_changes(a.record, b.record) AS c $$,
              'SELECT * FROM expected_changes',
              'sds_changes(a, b) equals the diff of the two full feeds, for every pair of the 15 records');
SELECT set_eq('SELECT record, kind, user_sourced_id, value FROM kept, m365.sds_record_rows(record)',
              'SELECT * FROM full_feed', 'every record gives back its feed exactly');

-- 5. Retention: records before the kept school years lose their rows, keep
--    their counts; the newest stays whatever its day.
UPDATE m365.sds_record SET on_date = on_date - 800 WHERE configuration_id = 924001 AND id <= (SELECT record FROM kept ORDER BY record OFFSET 5 LIMIT 1);
SELECT m365.remove_old_sds_records();
SELECT is((SELECT count(*) FROM m365.sds_record WHERE configuration_id = 924001 AND removed_at IS NOT NULL AND counts ? 'users'), 6::bigint,
          'the six oldest records are removed, their counts kept');
SELECT set_eq($$ SELECT record, kind, user_sourced_id, value FROM kept, m365.sds_record_rows(record) WHERE record > (SELECT record FROM kept ORDER BY record OFFSET 5 LIMIT 1) $$,
              $$ SELECT * FROM full_feed WHERE record > (SELECT record FROM kept ORDER BY record OFFSET 5 LIMIT 1) $$,
              'the kept records still give back their feeds exactly');
UPDATE m365.sds_record SET on_date = on_date - 800 WHERE configuration_id = 924001 AND removed_at IS NULL;
SELECT m365.remove_old_sds_records();
SELECT is((SELECT count(*) FROM m365.sds_record WHERE configuration_id = 924001 AND removed_at IS NULL), 1::bigint,
          'when every record is old, the newest stays (the next export compares with it)');
SELECT throws_ok(format('SELECT * FROM m365.sds_record_rows(%s)', :first), '22023', NULL,
                 'the rows of a removed record are refused: 22023 (its counts stay)');
SELECT throws_ok(format('SELECT * FROM m365.sds_changes(%s, -1)', :second), '22023', NULL,
                 'sds_changes with a record that does not exist: 22023');

SELECT * FROM finish();
ROLLBACK;
