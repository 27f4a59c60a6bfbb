-- The job against other sessions: two runs at once, enrolments during a run,
-- a run cancelled halfway. Real sessions (dblink): their work is committed,
-- so every run of this test uses ids and a configuration of its own.
BEGIN;
SELECT plan(17);
\ir lib/session.psql

SELECT dblink_connect('a', (SELECT info FROM conn));
SELECT dblink_connect('b', (SELECT info FROM conn));
-- The scheduled job must not run the queue behind the test's back.
SELECT * FROM dblink('a', 'SELECT m365.unschedule_jobs()') AS t(n int);

-- Ids far from every other test's.
CREATE TEMP TABLE run AS SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 100000 AS base;
CREATE TEMP TABLE cfg AS
SELECT id FROM dblink('a', format('INSERT INTO m365.configuration (name, username_format) VALUES (%L, %L) RETURNING id',
                                  'generation concurrency ' || (SELECT base FROM run), 'voornaam.naam')) AS t(id bigint);
SELECT dblink_exec('a', format($$
    INSERT INTO m365.school (id, name, configuration_id) VALUES (%1$s, 'School', %2$s);
    INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (%1$s, %1$s, 'Campus', %2$s);
    INSERT INTO m365.student (id, first_name, last_name)
    SELECT %1$s + i, (ARRAY['Jan', 'An', 'Zoë', 'Noah'])[1 + i %% 4], (ARRAY['Peeters', 'Maes', 'D''Hondt'])[1 + i %% 3]
      FROM generate_series(1, 1000) AS i;
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
    SELECT %1$s + i, %1$s + i, %1$s, DATE '2026-09-01' FROM generate_series(1, 1000) AS i;
$$, (SELECT base FROM run), (SELECT id FROM cfg)));
-- The test's students with a row in the log.
CREATE FUNCTION pg_temp.logged(first bigint, last bigint) RETURNS bigint[] LANGUAGE sql AS $$
    SELECT coalesce(array_agg(DISTINCT person_id - (SELECT base FROM run) ORDER BY person_id - (SELECT base FROM run)), '{}')
      FROM m365.username_request
     WHERE person_kind = 'student' AND person_id BETWEEN (SELECT base FROM run) + first AND (SELECT base FROM run) + last
$$;
SELECT is(cardinality(pg_temp.logged(1, 1000)), 1000, 'enrolling 1000 students logged 1000');

-- Run 1 holds the job; run 2 returns at once with nothing done.
SELECT dblink_exec('a', 'BEGIN');
SELECT cmp_ok((SELECT n FROM dblink('a', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), '>=', 1000,
              'run 1 makes the 1000 usernames');
SELECT is((SELECT n FROM dblink('b', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 0,
          'run 2, while run 1 is open, does nothing and does not wait');

-- Enrolling during the run never waits: a student being processed, and a new one.
SELECT dblink_send_query('b', format($$
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 5001, %1$s + 1, %1$s, DATE '2027-09-01');
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 5000, 'Jan', 'Peeters');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 5000, %1$s + 5000, %1$s, DATE '2026-09-01');
$$, (SELECT base FROM run)));
SELECT pg_sleep(0.5);
SELECT is(dblink_is_busy('b'), 0, 'enrolments made during a run do not wait for it');
SELECT is((SELECT r FROM dblink_get_result('b') AS t(r text)), 'INSERT 0 1', 'and they succeed');
SELECT * FROM dblink_get_result('b') AS t(r text);  -- the other two statements, then the end
SELECT * FROM dblink_get_result('b') AS t(r text);
SELECT * FROM dblink_get_result('b') AS t(r text);
SELECT dblink_exec('a', 'COMMIT');

SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = (SELECT id FROM cfg)), 1000, '1000 usernames stored');
SELECT is((SELECT count(DISTINCT local_part)::int FROM m365.username WHERE configuration_id = (SELECT id FROM cfg)), 1000,
          'all different');
SELECT is(pg_temp.logged(1, 9999), ARRAY[1, 5000::bigint],
          'only the students enrolled during the run are logged: the run deleted exactly the rows it read');
SELECT is((SELECT n FROM dblink('b', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 1, 'the next run makes that one');

-- A run cancelled halfway loses nothing and half-does nothing.
SELECT dblink_exec('a', format($$
    INSERT INTO m365.student (id, first_name, last_name)
    SELECT %1$s + 10000 + i, 'Jan', 'Peeters' FROM generate_series(1, 30000) AS i;
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
    SELECT %1$s + 10000 + i, %1$s + 10000 + i, %1$s, DATE '2026-09-01' FROM generate_series(1, 30000) AS i;
$$, (SELECT base FROM run)));
SELECT is(cardinality(pg_temp.logged(10001, 40000)), 30000, '30000 waiting');
SELECT is((SELECT count(*)::int FROM m365.username_request
            WHERE person_id BETWEEN (SELECT base FROM run) + 10001 AND (SELECT base FROM run) + 40000), 30000,
          'enrolled in one statement, one log row each');
SELECT dblink_exec('a', 'SET statement_timeout = ''150ms''');
-- PL/pgSQL cannot catch a cancel (57014), so read it as dblink's error message.
SELECT dblink_send_query('a', 'SELECT m365.generate_usernames_in_transaction()');
SELECT * FROM dblink_get_result('a', false) AS t(n int);
SELECT alike(dblink_error_message('a'), '%canceling statement due to statement timeout%', 'a run cancelled by statement_timeout');
SELECT * FROM dblink_get_result('a', false) AS t(n int);
SELECT dblink_exec('a', 'RESET statement_timeout');
SELECT is(cardinality(pg_temp.logged(10001, 40000)), 30000, 'after the cancel every one of them is still waiting');
SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = (SELECT id FROM cfg)), 1001,
          'and no username of the cancelled run was stored');
SELECT is((SELECT n FROM dblink('a', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 30000, 'the next run makes all 30000');
SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = (SELECT id FROM cfg) AND local_part ~ '^jan\.peeters[0-9]*$'),
          (SELECT count(*)::int FROM m365.student
            WHERE id BETWEEN (SELECT base FROM run) AND (SELECT base FROM run) + 99999
              AND first_name = 'Jan' AND last_name = 'Peeters'),
          'one jan.peeters... for each Jan Peeters');
SELECT is_empty(format($$ SELECT local_part FROM m365.username WHERE configuration_id = %s GROUP BY local_part HAVING count(*) > 1 $$,
                       (SELECT id FROM cfg)), 'no name twice');

-- The jobs as the extension left them, for the tests that follow.
SELECT count(*) AS rescheduled FROM dblink('a', 'SELECT m365.schedule_jobs()') AS t(jobid bigint);
SELECT dblink_disconnect('a');
SELECT dblink_disconnect('b');
SELECT * FROM finish();
ROLLBACK;
