-- The job's promises, attacked from real sessions (dblink: committed work, so
-- this file uses ids and configurations of its own):
--   1. nobody is lost: a correction made while a run holds an older decision
--      (0.2.0: a staff member reactivated during the run that dropped their
--      queue entry ended active, without username and without entry);
--   2. the application never waits on a run: with a run held open by the
--      owner's test hook (m365.job_lease.pause_in_chunk), enrolling, renaming a
--      failing person, deactivating and reactivating succeed under
--      lock_timeout = 50ms; racing the job for its very name waits for that
--      chunk only;
--   3. never reused, race-proof: a rename moving x to the ledger while x is
--      stored for someone else never ends with x held by one and issued to the
--      other;
--   4. a name taken by another session between the job's choice and its store
--      is a collision: only that person gets another name, and it is counted;
--   5. never reused holds in REPEATABLE READ too (40001, then refused);
--   6. a store undone by the ledger check renames only the person concerned;
--   7. nobody lost when a location or school is linked in a long transaction,
--   8. nor under REPEATABLE READ or SET CONSTRAINTS ALL IMMEDIATE;
--   9. a session holding a chosen name uncommitted stops no run.
BEGIN;
SELECT plan(28);
\ir lib/session.psql

SELECT dblink_connect('job', (SELECT info FROM conn));
SELECT dblink_connect('app', (SELECT info FROM conn));
SELECT dblink_connect('owner', (SELECT info FROM conn));
SELECT * FROM dblink('owner', 'SELECT m365.unschedule_jobs()') AS t(n int);
-- The job as the version installed runs it in one transaction (0.2.0 had
-- no log: the same attack then reads its function).
CREATE TEMP TABLE job_call AS
SELECT CASE WHEN to_regprocedure('m365.generate_usernames_in_transaction()') IS NULL
            THEN 'SELECT m365.generate_usernames()' ELSE 'SELECT m365.generate_usernames_in_transaction()' END AS q;
CREATE FUNCTION pg_temp.run_job(conn text) RETURNS int LANGUAGE sql AS $$
    SELECT n FROM dblink(conn, (SELECT q FROM job_call)) AS t(n int)
$$;

CREATE TEMP TABLE run AS SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 100000 + 40000 AS base;
CREATE TEMP TABLE cfg AS
SELECT id FROM dblink('owner', format('INSERT INTO m365.configuration (name) VALUES (%L) RETURNING id',
                                      'job redesign ' || (SELECT base FROM run))) AS t(id bigint);
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.school (id, name, configuration_id) VALUES (%1$s, 'S', %2$s);
    INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (%1$s, %1$s, 'L', %2$s);
$$, (SELECT base FROM run), (SELECT id FROM cfg)));
CREATE FUNCTION pg_temp.has_username(kind text, person bigint) RETURNS boolean LANGUAGE sql AS $$
    SELECT EXISTS (SELECT FROM m365.username WHERE configuration_id = (SELECT id FROM cfg)
                      AND person_kind = kind AND person_id = (SELECT base FROM run) + person)
$$;

--------------------------------------------------------------------------------
-- 1. The lost person. Staff member 1 is deactivated by mistake; a run reads
--    that (no username needed) and, before it commits, the mistake is
--    corrected and committed.
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.staff (id, first_name, last_name, active) VALUES (%1$s + 1, 'Vergeten', 'Collega', false);
    INSERT INTO m365.staff_school (staff_id, school_id) VALUES (%1$s + 1, %1$s);
$$, (SELECT base FROM run)));
SELECT dblink_exec('job', 'BEGIN');
SELECT pg_temp.run_job('job');
SELECT is((SELECT r FROM dblink('app', format($$ SET lock_timeout = '50ms';
                                                UPDATE m365.staff SET active = true WHERE id = %s $$, (SELECT base FROM run) + 1))
                          AS t(r text)), 'UPDATE 1',
          'the correction (reactivation) does not wait for the run');
SELECT dblink_exec('job', 'COMMIT');
SELECT is(pg_temp.has_username('staff', 1), false, 'the run that decided from the old state made no username');
SELECT pg_temp.run_job('job');
SELECT is(pg_temp.has_username('staff', 1), true,
          'the next run makes it: the correction was not lost (0.2.0: active, no username, nothing queued, for ever)');

--------------------------------------------------------------------------------
-- 2. Nobody waits for a run. Student 10 has a name that yields nothing,
--    staff 11 has a username, student 12 is new for the held run.
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 10, '!!!', '???'), (%1$s + 12, 'Ines', 'Wachter');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 10, %1$s + 10, %1$s, DATE '2026-09-01');
    INSERT INTO m365.staff (id, first_name, last_name) VALUES (%1$s + 11, 'Bram', 'Leraar');
    INSERT INTO m365.staff_school (staff_id, school_id) VALUES (%1$s + 11, %1$s);
$$, (SELECT base FROM run)));
SELECT pg_temp.run_job('job');
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 12, %1$s + 12, %1$s, DATE '2026-09-01');
    UPDATE m365.job_lease SET pause_in_chunk = '3 seconds';
$$, (SELECT base FROM run)));
-- The run: its chunk stores wachter.ines and then holds everything a chunk
-- holds for 3 seconds before it commits.
SELECT dblink_send_query('job', 'CALL m365.generate_usernames()');
CREATE FUNCTION pg_temp.wait_for_pause() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 600 LOOP
        IF EXISTS (SELECT FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE 'CALL m365.generate_usernames()%') THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END
$$;
SELECT ok(pg_temp.wait_for_pause(), 'a run is held open inside its chunk by the owner''s hook');
CREATE FUNCTION pg_temp.as_app(statement text) RETURNS text LANGUAGE sql AS $$
    SELECT r FROM dblink('app', format($q$ SET ROLE m365_app; SET lock_timeout = '50ms'; %s $q$, statement)) AS t(r text)
$$;
SELECT is(pg_temp.as_app(format($$
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 13, 'Nieuwe', 'Leerling');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 13, %1$s + 13, %1$s, DATE '2026-09-01') $$,
    (SELECT base FROM run))), 'INSERT 0 1', 'during the run: enrolling succeeds under lock_timeout = 50ms');
SELECT is(pg_temp.as_app(format($$ UPDATE m365.student SET first_name = 'Hersteld', last_name = 'Kind' WHERE id = %s $$,
                                (SELECT base FROM run) + 10)), 'UPDATE 1', 'renaming the failing person succeeds');
SELECT is(pg_temp.as_app(format($$ UPDATE m365.staff SET active = false WHERE id = %s $$, (SELECT base FROM run) + 11)),
          'UPDATE 1', 'deactivating succeeds');
SELECT is(pg_temp.as_app(format($$ UPDATE m365.staff SET active = true WHERE id = %s $$, (SELECT base FROM run) + 11)),
          'UPDATE 1', 'reactivating succeeds');
-- Racing the job for its very name waits, for that chunk only.
CREATE TEMP TABLE race AS SELECT clock_timestamp() AS started;
SELECT throws_like(format($$ SELECT * FROM dblink('app', 'SET ROLE m365_app; SET lock_timeout = ''10s'';
                                                  SELECT m365.set_username(%s, ''wachter.ines'')') AS t(r text) $$,
                          (SELECT id FROM m365.username WHERE configuration_id = (SELECT id FROM cfg) AND person_kind = 'staff'
                              AND person_id = (SELECT base FROM run) + 11)),
                   '%is al in gebruik%', 'set_username of the name the held chunk stores waits for it, then answers "in use"');
SELECT cmp_ok(extract(epoch FROM clock_timestamp() - (SELECT started FROM race))::numeric, '<', 4.0,
              'and waited less than the chunk was held (3 s) plus a second');
SELECT diag(format('set_username racing the job for its name waited %s s (chunk held 3 s)',
                   round(extract(epoch FROM clock_timestamp() - (SELECT started FROM race))::numeric, 2)));
SELECT * FROM dblink_get_result('job') AS t(r text);
SELECT * FROM dblink_get_result('job') AS t(r text);
SELECT dblink_exec('owner', 'UPDATE m365.job_lease SET pause_in_chunk = NULL');
SELECT pg_temp.run_job('job');
SELECT ok(pg_temp.has_username('student', 10) AND pg_temp.has_username('student', 12) AND pg_temp.has_username('student', 13)
          AND pg_temp.has_username('staff', 11),
          'afterwards everyone who needs a username has one (the renamed, the held run''s, the enrolled, the reactivated)');

--------------------------------------------------------------------------------
-- 3. Never reused, race-proof. Student 20 holds dubbel.naam; in one open
--    transaction an administrator renames them to it and away again (the name
--    goes to the ledger as theirs). Meanwhile the job stores dubbel.naam for
--    student 21 (session job does what the job's store does).
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES
        (%1$s, 'student', %2$s + 20, 'eerste.naam'), (%1$s, 'student', %2$s + 22, 'andere.naam');
$$, (SELECT id FROM cfg), (SELECT base FROM run)));
SELECT dblink_exec('app', 'RESET ROLE');
SELECT dblink_exec('app', 'BEGIN');
SELECT dblink_exec('app', format($$ DO $d$ BEGIN PERFORM m365.set_username(%s, 'dubbel.naam'); END $d$ $$,
                                 (SELECT id FROM m365.username WHERE person_id = (SELECT base FROM run) + 20)));
SELECT dblink_exec('app', format($$ DO $d$ BEGIN PERFORM m365.set_username(%s, 'weer.anders'); END $d$ $$,
                                 (SELECT id FROM m365.username WHERE person_id = (SELECT base FROM run) + 20)));
SELECT dblink_send_query('job', format($$ INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
                                          VALUES (%s, 'student', %s, 'dubbel.naam') $$, (SELECT id FROM cfg), (SELECT base FROM run) + 21));
SELECT pg_sleep(0.3);
SELECT is(dblink_is_busy('job'), 1, 'the store of dubbel.naam waits for the transaction that let go of it');
SELECT dblink_exec('app', 'COMMIT');
SELECT * FROM dblink_get_result('job', false) AS t(r text);
SELECT matches(dblink_error_message('job'), 'was issued before', 'then refuses it: it was issued to student 20');
SELECT * FROM dblink_get_result('job', false) AS t(r text);
SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = (SELECT id FROM cfg) AND local_part = 'dubbel.naam'), 0,
          'dubbel.naam is held by nobody');
SELECT is((SELECT person_id - (SELECT base FROM run) FROM m365.issued_username
            WHERE configuration_id = (SELECT id FROM cfg) AND local_part = 'dubbel.naam'), 20::bigint,
          'and is in the ledger as student 20''s only');

--------------------------------------------------------------------------------
-- 4. A collision at store time: student 30 is new, and another session takes
--    the name the job will choose for them, committing while the chunk stores.
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 30, 'Kim', 'Botsing');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 30, %1$s + 30, %1$s, DATE '2026-09-01');
$$, (SELECT base FROM run)));
SELECT dblink_exec('app', 'BEGIN');
SELECT dblink_exec('app', format($$ DO $d$ BEGIN PERFORM m365.set_username(%s, 'botsing.kim'); END $d$ $$,
                                 (SELECT id FROM m365.username WHERE person_id = (SELECT base FROM run) + 22)));
SELECT dblink_send_query('job', 'CALL m365.generate_usernames()');
SELECT pg_sleep(1);
SELECT dblink_exec('app', 'COMMIT');
SELECT * FROM dblink_get_result('job') AS t(r text);
SELECT * FROM dblink_get_result('job') AS t(r text);
SELECT is((SELECT username FROM m365.username WHERE configuration_id = (SELECT id FROM cfg) AND person_id = (SELECT base FROM run) + 30),
          'botsing.kim2', 'the person whose name was taken meanwhile gets the next one');
SELECT cmp_ok((SELECT collisions FROM m365.job_run ORDER BY id DESC LIMIT 1), '>=', 1, 'and the run counts the collision');

--------------------------------------------------------------------------------
-- 5. Never reused under REPEATABLE READ (red-team find against the first
--    redesign: the ledger check read the caller's old snapshot). b takes its
--    snapshot; a gives person 40 rr.naam and renames them away (committed);
--    b then asks for rr.naam for person 41.
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES
        (%1$s, 'student', %2$s + 40, 'veertig.naam'), (%1$s, 'student', %2$s + 41, 'eenenveertig.naam');
$$, (SELECT id FROM cfg), (SELECT base FROM run)));
CREATE TEMP TABLE rr AS
SELECT (SELECT id FROM m365.username WHERE person_id = (SELECT base FROM run) + 40) AS a,
       (SELECT id FROM m365.username WHERE person_id = (SELECT base FROM run) + 41) AS b;
SELECT dblink_exec('job', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('job', 'SELECT count(*) FROM m365.username') AS t(n bigint);
SELECT dblink_exec('app', format($$ DO $d$ BEGIN PERFORM m365.set_username(%s, 'rr.naam'); END $d$ $$, (SELECT a FROM rr)));
SELECT dblink_exec('app', format($$ DO $d$ BEGIN PERFORM m365.set_username(%s, 'veertig.anders'); END $d$ $$, (SELECT a FROM rr)));
SELECT throws_ok(format($$ SELECT * FROM dblink('job', 'SELECT m365.set_username(%s, ''rr.naam'')::text') AS t(r text) $$, (SELECT b FROM rr)),
                 '40001', NULL, 'a REPEATABLE READ transaction asking for a name retired after its snapshot must retry (40001)');
SELECT dblink_exec('job', 'ROLLBACK');
SELECT throws_like(format($$ SELECT * FROM dblink('job', 'SELECT m365.set_username(%s, ''rr.naam'')::text') AS t(r text) $$, (SELECT b FROM rr)),
                   '%is al in gebruik%', 'and its retry is refused: the name stays student 40''s');
SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = (SELECT id FROM cfg) AND local_part = 'rr.naam'), 0,
          'rr.naam is held by nobody');

--------------------------------------------------------------------------------
-- 6. A store undone by the ledger check (a name retired while the chunk waited
--    for it) gives another name only to the person whose name it was.
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 50, 'Kim', 'Ander'), (%1$s + 51, 'Lou', 'Ander');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES
        (%1$s + 50, %1$s + 50, %1$s, DATE '2026-09-01'), (%1$s + 51, %1$s + 51, %1$s, DATE '2026-09-01');
$$, (SELECT base FROM run)));
SELECT dblink_exec('app', 'BEGIN');
SELECT dblink_exec('app', format($$ DO $d$ BEGIN PERFORM m365.set_username(%s, 'ander.kim'); END $d$ $$, (SELECT b FROM rr)));
SELECT dblink_send_query('job', 'CALL m365.generate_usernames()');
SELECT pg_sleep(1);
SELECT dblink_exec('app', format($$ DO $d$ BEGIN PERFORM m365.set_username(%s, 'weer.weg'); END $d$ $$, (SELECT b FROM rr)));
SELECT dblink_exec('app', 'COMMIT');
SELECT * FROM dblink_get_result('job') AS t(r text);
SELECT * FROM dblink_get_result('job') AS t(r text);
SELECT is(ARRAY(SELECT username FROM m365.username WHERE configuration_id = (SELECT id FROM cfg)
                   AND person_id IN ((SELECT base FROM run) + 50, (SELECT base FROM run) + 51) ORDER BY person_id),
          ARRAY['ander.kim2', 'ander.lou'],
          'the person whose name was retired meanwhile gets the next one; the other keeps theirs');
SELECT is((SELECT outcome FROM m365.job_run ORDER BY id DESC LIMIT 1), 'done', 'and the run is done');

--------------------------------------------------------------------------------
-- 7. The lost person, by a link (red-team find against the first redesign):
--    a location and a school are linked in a transaction left open; a student
--    enrolled there and a staff member linked there meanwhile (committed) are
--    read by a run that finds nothing to do; then the link commits.
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.school (id, name) VALUES (%1$s + 1, 'Later');
    INSERT INTO m365.location (id, school_id, name) VALUES (%1$s + 1, %1$s + 1, 'Later');
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 60, 'Laat', 'Gekoppeld');
    INSERT INTO m365.staff (id, first_name, last_name) VALUES (%1$s + 61, 'Laat', 'Collega');
$$, (SELECT base FROM run)));
SELECT dblink_exec('app', 'BEGIN');
SELECT dblink_exec('app', format($$ UPDATE m365.location SET configuration_id = %2$s WHERE id = %1$s + 1;
                                    UPDATE m365.school SET configuration_id = %2$s WHERE id = %1$s + 1 $$,
                                 (SELECT base FROM run), (SELECT id FROM cfg)));
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + 60, %1$s + 60, %1$s + 1, DATE '2026-09-01');
    INSERT INTO m365.staff_school (staff_id, school_id) VALUES (%1$s + 61, %1$s + 1);
$$, (SELECT base FROM run)));
SELECT pg_temp.run_job('job');
SELECT dblink_exec('app', 'COMMIT');
SELECT pg_temp.run_job('job');
SELECT ok(pg_temp.has_username('student', 60) AND pg_temp.has_username('staff', 61),
          'the link, committed last, logs them at commit: the next run serves both');

--------------------------------------------------------------------------------
-- 8. The link again, as the second red team did it: under REPEATABLE READ
--    (the commit-time trigger reads the old snapshot), and with SET
--    CONSTRAINTS ALL IMMEDIATE (the trigger fires at the statement). While a
--    transaction writes locations or schools, a run keeps the rows of people
--    it found nothing for.
CREATE FUNCTION pg_temp.link_while_enrolling(n int, how text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM dblink_exec('owner', format($$
        INSERT INTO m365.location (id, school_id, name) VALUES (%1$s + %2$s, %1$s, 'Later ' || %2$s);
        INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + %2$s, 'Laat', 'Kind' || %2$s);
    $$, (SELECT base FROM run), n));
    PERFORM dblink_exec('app', how);
    PERFORM dblink_exec('app', format('UPDATE m365.location SET configuration_id = %s WHERE id = %s + %s',
                                      (SELECT id FROM cfg), (SELECT base FROM run), n));
    PERFORM dblink_exec('owner', format($$ INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
                                           VALUES (%1$s + %2$s, %1$s + %2$s, %1$s + %2$s, DATE '2026-09-01') $$, (SELECT base FROM run), n));
    PERFORM pg_temp.run_job('job');
    PERFORM dblink_exec('app', 'COMMIT');
    PERFORM pg_temp.run_job('job');
    RETURN pg_temp.has_username('student', n);
END
$f$;
SELECT ok(pg_temp.link_while_enrolling(70, 'BEGIN ISOLATION LEVEL REPEATABLE READ'),
          'a location linked under REPEATABLE READ while a student is enrolled there: the student gets a username');
SELECT ok(pg_temp.link_while_enrolling(71, 'BEGIN; SET CONSTRAINTS ALL IMMEDIATE'),
          'the same with SET CONSTRAINTS ALL IMMEDIATE');

--------------------------------------------------------------------------------
-- 9. A session holding, uncommitted, the very name a chunk chooses (second red
--    team: every run failed on lock_timeout and nobody got a name). The run
--    ends done; the chunk's people stay in the log and get their names once
--    the session lets go.
SELECT dblink_exec('owner', format($$
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 80, 'Naam', 'Stil'), (%1$s + 81, 'Ander', 'Kind');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES
        (%1$s + 80, %1$s + 80, %1$s, DATE '2026-09-01'), (%1$s + 81, %1$s + 81, %1$s, DATE '2026-09-01');
$$, (SELECT base FROM run)));
SELECT dblink_exec('app', 'BEGIN');
SELECT dblink_exec('app', format($$ DO $d$ BEGIN PERFORM m365.set_username(%s, 'stil.naam'); END $d$ $$, (SELECT a FROM rr)));
SELECT pg_temp.run_job('job');
SELECT is((SELECT outcome FROM m365.job_run ORDER BY id DESC LIMIT 1), 'done', 'the run waits lock_timeout and ends done, not failed');
SELECT is((SELECT count(DISTINCT person_id)::int FROM m365.username_request
            WHERE person_id IN ((SELECT base FROM run) + 80, (SELECT base FROM run) + 81)), 2,
          'the chunk''s people are still in the log');
SELECT dblink_exec('app', 'ROLLBACK');
SELECT pg_temp.run_job('job');
SELECT ok(pg_temp.has_username('student', 80) AND pg_temp.has_username('student', 81), 'and get their names once the session lets go');

SELECT count(*) AS rescheduled FROM dblink('owner', 'SELECT m365.schedule_jobs()') AS t(jobid bigint);
SELECT dblink_disconnect('job');
SELECT dblink_disconnect('app');
SELECT dblink_disconnect('owner');
SELECT * FROM finish();
ROLLBACK;
