-- "Nobody outside the admin level can make a run silently do nothing."
-- Attacks as 0.2.0 allowed them, each in a real session (dblink):
--   * any login role took pg_advisory_lock(365, 1): every run returned 0 with
--     a NOTICE and pg_cron recorded success (on 0.2.0 this file's test 2
--     failed: the run returned 0 and made nothing);
--   * the application locks a table the job reads (it may: it has UPDATE on
--     m365.enrolment) and keeps its transaction open: 0.2.0 waited for ever.
-- Now one run at a time is a lease row only the job can lock; a run that has
-- to give way is recorded with the pid and role that held it up.
BEGIN;
SELECT plan(27);
\ir lib/session.psql

SELECT dblink_connect('job', (SELECT info FROM conn));
SELECT dblink_connect('other', (SELECT info FROM conn));
SELECT * FROM dblink('job', 'SELECT m365.unschedule_jobs()') AS t(n int);

CREATE TEMP TABLE run AS SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 100000 + 70000 AS base;
CREATE TEMP TABLE cfg AS
SELECT id FROM dblink('job', format('INSERT INTO m365.configuration (name) VALUES (%L) RETURNING id',
                                    'job lease ' || (SELECT base FROM run))) AS t(id bigint);
CREATE FUNCTION pg_temp.enrol(n int) RETURNS text LANGUAGE sql AS $$
    SELECT dblink_exec('other', format($f$
        INSERT INTO m365.school (id, name, configuration_id) VALUES (%1$s, 'S', %2$s) ON CONFLICT DO NOTHING;
        INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (%1$s, %1$s, 'L', %2$s) ON CONFLICT DO NOTHING;
        INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + %3$s, 'Lease', 'Nr' || %3$s);
        INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%1$s + %3$s, %1$s + %3$s, %1$s, DATE '2026-09-01');
    $f$, (SELECT base FROM run), (SELECT id FROM cfg), n))
$$;
CREATE FUNCTION pg_temp.last_run() RETURNS m365.job_run LANGUAGE sql AS $$
    SELECT * FROM m365.job_run ORDER BY id DESC LIMIT 1
$$;
CREATE TEMP TABLE other_pid AS SELECT pid FROM dblink('other', 'SELECT pg_backend_pid()') AS t(pid int);
CREATE TEMP TABLE job_pid AS SELECT pid FROM dblink('job', 'SELECT pg_backend_pid()') AS t(pid int);

-- 1. The advisory lock of 0.2.0 no longer stops anything.
SELECT pg_temp.enrol(1);
SELECT * FROM dblink('other', 'SELECT pg_advisory_lock(365, 1)') AS t(x text);
SELECT is((SELECT n FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)) >= 1, true,
          'a session holding pg_advisory_lock(365, 1) does not stop a run');
SELECT is((SELECT count(*)::int FROM m365.username WHERE configuration_id = (SELECT id FROM cfg)), 1, 'the run made the username');
SELECT * FROM dblink('other', 'SELECT pg_advisory_unlock(365, 1)') AS t(x text);

-- 2. Two runs at once: the second gives way, and says who holds the lease.
SELECT pg_temp.enrol(2);
CREATE TEMP TABLE before_step_2 AS SELECT max(id) AS id FROM m365.job_run;
SELECT dblink_exec('job', 'BEGIN');
SELECT * FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int);
SELECT is((SELECT n FROM dblink('other', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 0,
          'a second run while the first is open does nothing');
SELECT is((pg_temp.last_run()).outcome, 'skipped', 'and is recorded as skipped');
SELECT is((pg_temp.last_run()).blocker_pid, (SELECT pid FROM job_pid), 'with the pid of the run that holds the lease');
SELECT dblink_exec('job', 'COMMIT');
SELECT is((SELECT array_agg(outcome ORDER BY finished_at) FROM m365.job_run WHERE id > (SELECT id FROM before_step_2)),
          '{done,skipped}', 'the first run is recorded as done (once it commits)');

-- 3. Only the job can take the lease: no role of the application or admin
--    level may lock it, read or write the job's working tables.
SELECT is(pg_temp.as_role('m365_admin', 'SELECT FROM m365.job_lease FOR UPDATE'), '42501', 'm365_admin cannot take the lease');
SELECT is(pg_temp.as_role('m365_app', 'LOCK TABLE m365.job_lease'), '42501', 'm365_app cannot lock the lease table');
SELECT is(pg_temp.as_role('m365_admin', 'SELECT FROM m365_work.batch'), '42501', 'nor read the job''s working tables');
-- Naming a table is enough to lock it (PREPARE parses, and locks, before any
-- right is checked): the working tables, which the job TRUNCATEs, cannot be
-- named outside their schema (a red-team finding against the first 0.3.0).
SELECT is(pg_temp.as_role('m365_app', 'PREPARE lease_p AS SELECT * FROM m365_work.claimed'), '42501',
          'm365_app cannot even name the working tables (and so cannot hold a lock on them)');

-- 4. The application holds a table the job needs: the run gives way after the
--    job's lock_timeout (5 s) and records who held it up.
SELECT pg_temp.enrol(3);
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', 'SET LOCAL ROLE m365_app');
SELECT dblink_exec('other', 'LOCK TABLE m365.enrolment IN ACCESS EXCLUSIVE MODE');
SELECT is((SELECT n FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 0,
          'a run held up by a lock does nothing (and does not wait for ever)');
SELECT is((pg_temp.last_run()).outcome || ' ' || (pg_temp.last_run()).blocker_pid, 'blocked ' || (SELECT pid FROM other_pid),
          'it is recorded as blocked, with the pid that held the lock');
SELECT dblink_exec('other', 'ROLLBACK');
SELECT matches((SELECT run_problem FROM m365.status WHERE configuration_id = (SELECT id FROM cfg)),
               '^blocked at .*: pid [0-9]+ \(', 'm365.status shows who held up the latest run');
SELECT is((SELECT n FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 1, 'the next run makes the waiting username');

-- 5. A lock the application is waiting for, queued ahead of the job, holds it
--    up too: the run names the waiting session (a red-team finding: 0.3.0's
--    first version looked at granted locks only and named nobody).
SELECT dblink_connect('third', (SELECT info FROM conn));
CREATE TEMP TABLE third_pid AS SELECT pid FROM dblink('third', 'SELECT pg_backend_pid()') AS t(pid int);
SELECT pg_temp.enrol(4);
-- A fourth session holds locks that do not stand in the job's way (SHARE
-- UPDATE EXCLUSIVE, as autovacuum takes, on a table the job writes; SHARE on
-- one it only reads): the run must not name it (it did, in CI, when
-- autovacuum was working on an m365 table at that moment).
SELECT dblink_connect('fourth', (SELECT info FROM conn));
SELECT dblink_exec('fourth', 'BEGIN');
SELECT dblink_exec('fourth', 'LOCK TABLE m365.username IN SHARE UPDATE EXCLUSIVE MODE');
SELECT dblink_exec('fourth', 'LOCK TABLE m365.student IN SHARE MODE');
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', 'SET LOCAL ROLE m365_app');
SELECT * FROM dblink('other', 'SELECT count(*) FROM m365.enrolment') AS t(n bigint);
SELECT dblink_exec('third', 'BEGIN');
SELECT dblink_exec('third', 'SET LOCAL ROLE m365_app');
SELECT dblink_send_query('third', 'LOCK TABLE m365.enrolment IN ACCESS EXCLUSIVE MODE');
-- (Sent, not yet queued: wait until the request waits, or the job can get
-- there first and this test races; it failed once in CI that way.)
DO $$
BEGIN
    FOR i IN 1 .. 1000 LOOP
        EXIT WHEN EXISTS (SELECT FROM pg_locks WHERE pid = (SELECT pid FROM third_pid) AND NOT granted);
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SELECT is((SELECT n FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 0,
          'a run queued behind a waiting lock request does nothing');
SELECT is((pg_temp.last_run()).outcome || ' ' || (pg_temp.last_run()).blocker_pid, 'blocked ' || (SELECT pid FROM third_pid),
          'and names the session whose request waits ahead of it');
SELECT matches((pg_temp.last_run()).detail, ' held AccessExclusiveLock \(waiting, ahead of the job\) on m365\.enrolment for longer than lock_timeout',
          'not a session whose locks do not conflict with the job''s');
SELECT dblink_exec('fourth', 'ROLLBACK');
SELECT dblink_disconnect('fourth');
SELECT dblink_exec('other', 'ROLLBACK');
SELECT * FROM dblink_get_result('third') AS t(r text);
SELECT * FROM dblink_get_result('third') AS t(r text);
SELECT dblink_exec('third', 'ROLLBACK');
SELECT dblink_disconnect('third');

-- 6. Without any right on m365.reserved_username, the application can still
--    hold a lock on it by preparing an INSERT; the job's SHARE lock then waits.
--    The run gives way, and says who held it up: not silent.
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', 'SET LOCAL ROLE m365_app');
SELECT dblink_exec('other', $$PREPARE lease_reserve AS INSERT INTO m365.reserved_username (configuration_id, username) VALUES (1, 'x')$$);
SELECT is((SELECT n FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 0,
          'a run held up by a lock taken without a right does nothing');
SELECT is((pg_temp.last_run()).blocker_pid, (SELECT pid FROM other_pid), 'and names the session that holds it');
SELECT dblink_exec('other', 'ROLLBACK');
SELECT is((SELECT n FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 1, 'the next run makes the waiting username');

-- 7. Names taken by edits (ledger rows without a suffix: the suffix cursor
--    does not see them) must not stop the job: the second red team renamed one
--    person 3,000 times as the app, and every later run failed on "no free
--    suffix found after 1000 rounds", unrecorded. (Ledger rows written here
--    directly: what 5,000 renames by set_username leave.)
SELECT dblink_exec('other', format($$
    INSERT INTO m365.issued_username (configuration_id, local_part, person_kind, person_id)
    SELECT %1$s, 'suffix.attack' || n, 'student', %2$s FROM generate_series(2, 5002) AS n;
    INSERT INTO m365.issued_username (configuration_id, local_part, person_kind, person_id) VALUES (%1$s, 'suffix.attack', 'student', %2$s);
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%2$s + 5, 'Attack', 'Suffix');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (%2$s + 5, %2$s + 5, %2$s, DATE '2026-09-01');
$$, (SELECT id FROM cfg), (SELECT base FROM run)));
SELECT is((SELECT n FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 1,
          'a base with 5,000 names taken by edits still gets its next free name');
SELECT is((SELECT username FROM m365.username WHERE person_id = (SELECT base FROM run) + 5), 'suffix.attack5003',
          'the first free one (windows that double each round)');

-- 8. A log row another session is writing and has not committed must not
--    make a run wait or fail (0.3.0 before the log: the second red team held a
--    queue entry open as the app, and every run died on lock_timeout). The
--    run serves what is committed; the open row is the next run's.
SELECT dblink_exec('other', format($$
    INSERT INTO m365.student (id, first_name, last_name)
    SELECT %1$s + 1000 + i, 'Bulk', 'Nr' || i FROM generate_series(1, 10000) AS i;
    UPDATE m365.student SET first_name = '!!!', last_name = '???' WHERE id = %1$s + 1001;
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
    SELECT %1$s + 1000 + i, %1$s + 1000 + i, %1$s, DATE '2026-09-01' FROM generate_series(1, 10000) AS i;
$$, (SELECT base FROM run)));
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', format($$ UPDATE m365.student SET first_name = 'Bulk2' WHERE id = %s $$, (SELECT base FROM run) + 1002));
SELECT is((SELECT n FROM dblink('job', 'SET lock_timeout = ''200ms''; SELECT m365.generate_usernames_in_transaction()') AS t(n int)), 9999,
          'a run serves the bulk statement without waiting for the open transaction: 9,999 usernames');
SELECT is((pg_temp.last_run()).outcome, 'done', 'and is done');
SELECT is((SELECT reason FROM m365.username_failure WHERE person_id = (SELECT base FROM run) + 1001),
          'the official first and last name yield no username (nothing is left after transliteration to a-z, 0-9 and -)',
          'the person whose name yields nothing is a failure, with the reason');
SELECT dblink_exec('other', 'COMMIT');
SELECT is((SELECT count(*)::int FROM m365.username_request WHERE person_id = (SELECT base FROM run) + 1002), 1,
          'the row the open transaction wrote is still in the log after the run');
SELECT * FROM dblink('job', 'SELECT m365.generate_usernames_in_transaction()') AS t(n int);
SELECT is((SELECT count(*)::int FROM m365.username_request WHERE person_id = (SELECT base FROM run) + 1002), 0,
          'and the next run serves it');

SELECT count(*) AS rescheduled FROM dblink('job', 'SELECT m365.schedule_jobs()') AS t(jobid bigint);
SELECT dblink_disconnect('job');
SELECT dblink_disconnect('other');
SELECT * FROM finish();
ROLLBACK;
