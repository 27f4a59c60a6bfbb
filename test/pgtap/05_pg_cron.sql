-- The job really runs under pg_cron in this cluster: schedule it every minute
-- (the finest step of pg_cron 1.4), wait for its run, check its work.
BEGIN;
SELECT plan(8);
\ir lib/session.psql

SELECT dblink_connect('a', (SELECT info FROM conn));

CREATE TEMP TABLE run AS SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint * 100000 + 50000 AS base;
CREATE TEMP TABLE cfg AS
SELECT id FROM dblink('a', format('INSERT INTO m365.configuration (name) VALUES (%L) RETURNING id',
                                  'pg_cron ' || (SELECT base FROM run))) AS t(id bigint);
SELECT dblink_exec('a', format($$
    INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (%1$s, 'School', %2$s, 'cron.example.be');
    INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (%1$s, %1$s, 'Campus', %2$s);
    INSERT INTO m365.student (id, first_name, last_name) VALUES (%1$s + 1, 'Mila', 'Wouters'), (%1$s + 2, 'Mila', 'Wouters');
    INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
    VALUES (%1$s + 1, %1$s + 1, %1$s, DATE '2026-09-01'), (%1$s + 2, %1$s + 2, %1$s, DATE '2026-09-01');
    INSERT INTO m365.staff (id, first_name, last_name) VALUES (%1$s + 1, 'Ruben', 'Claes');
    INSERT INTO m365.staff_school (staff_id, school_id) VALUES (%1$s + 1, %1$s);
$$, (SELECT base FROM run), (SELECT id FROM cfg)));
CREATE TEMP VIEW logged AS
SELECT DISTINCT person_kind, person_id FROM m365.username_request
 WHERE person_id BETWEEN (SELECT base FROM run) + 1 AND (SELECT base FROM run) + 2;
SELECT is((SELECT count(*)::int FROM logged), 3, 'three people logged');

CREATE TEMP TABLE job AS
SELECT jobid FROM dblink('a', $$ SELECT cron.schedule('m365_test_every_minute', '* * * * *', 'CALL m365.generate_usernames()') $$)
    AS t(jobid bigint);
SELECT isnt((SELECT jobid FROM job), NULL, 'a job runs the generation every minute');

-- Wait for a run of that job that succeeded (at most 150 seconds).
CREATE FUNCTION pg_temp.wait_for_job(job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    outcome text;
BEGIN
    FOR i IN 1 .. 75 LOOP
        SELECT d.status INTO outcome FROM cron.job_run_details AS d
         WHERE d.jobid = job AND d.status IN ('succeeded', 'failed') ORDER BY d.runid LIMIT 1;
        IF FOUND THEN
            RETURN outcome;
        END IF;
        PERFORM pg_sleep(2);
    END LOOP;
    RETURN 'no run within 150 seconds';
END
$$;
SELECT is(pg_temp.wait_for_job((SELECT jobid FROM job)), 'succeeded', 'pg_cron ran the job, and it succeeded');
SELECT * FROM dblink('a', format('SELECT cron.unschedule(%s)', (SELECT jobid FROM job))) AS t(removed boolean);

SELECT is((SELECT count(*)::int FROM logged), 0, 'their log rows are gone');
SELECT set_eq(format('SELECT username FROM m365.username WHERE configuration_id = %s', (SELECT id FROM cfg)),
              ARRAY['wouters.mila', 'wouters.mila2', 'claes.ruben@cron.example.be'],
              'the scheduled run made the usernames');
SELECT matches((SELECT return_message FROM cron.job_run_details WHERE jobid = (SELECT jobid FROM job) ORDER BY runid LIMIT 1),
               '^CALL$', 'pg_cron recorded the run''s result (the CALL, its only statement)');
SELECT is_empty(format('SELECT FROM cron.job WHERE jobid = %s', (SELECT jobid FROM job)), 'the test job is gone again');

-- Monitoring sees the extension's own jobs, scheduled by m365.schedule_jobs().
SELECT set_eq('SELECT job_name FROM m365.job_status() WHERE scheduled AND active',
              ARRAY[m365.job_name('m365_generate_usernames'), m365.job_name('m365_retention')],
              'm365.job_status(): both jobs are scheduled and active in the pg_cron database');

SELECT dblink_disconnect('a');
SELECT * FROM finish();
ROLLBACK;
