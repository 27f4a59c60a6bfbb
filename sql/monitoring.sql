-- Monitoring: m365.status per configuration, m365.job_status(), m365.job_run.
BEGIN;
DELETE FROM m365.username_request;
CREATE ROLE regress_monitor_app NOLOGIN;
CREATE ROLE regress_monitor_admin NOLOGIN;
SELECT m365.grant_access('regress_monitor_app', 'app'), m365.grant_access('regress_monitor_admin', 'admin');
INSERT INTO m365.configuration (id, name) VALUES (801, 'monitored'), (802, 'empty');
INSERT INTO m365.school (id, name, configuration_id) VALUES (801, 'S', 801);
INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (801, 801, 'L', 801);
INSERT INTO m365.student (id, first_name, last_name) VALUES
    (801, 'An', 'Peeters'), (802, 'Bo', 'Janssens'), (803, '😀', '🎉');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT id, id, 801, CURRENT_DATE FROM m365.student WHERE id BETWEEN 801 AND 803;
-- Before the job: three logged, none failing yet.
SELECT configuration_name, usernames, synced, waiting, failing, oldest_waiting_at IS NOT NULL AS someone_waits, last_created_at
  FROM m365.status WHERE configuration_id IN (801, 802) ORDER BY configuration_id;
SELECT m365.generate_usernames_in_transaction();
SELECT m365.set_sync(ARRAY(SELECT id FROM m365.username WHERE configuration_id = 801 AND person_id = 801), true);
-- After: two made, one synced, the emoji name is a failure (with its reason) and the log is empty.
SELECT configuration_name, usernames, synced, waiting, failing, oldest_waiting_at IS NOT NULL AS someone_waits,
       last_created_at IS NOT NULL AS made_some
  FROM m365.status WHERE configuration_id IN (801, 802) ORDER BY configuration_id;
-- The application may read it; the job's runs are for m365_admin.
SELECT has_table_privilege('regress_monitor_app', 'm365.status', 'SELECT') AS app_reads_status,
       has_function_privilege('regress_monitor_app', 'm365.job_status()', 'EXECUTE') AS app_reads_jobs,
       has_table_privilege('regress_monitor_app', 'm365.job_run', 'SELECT') AS app_reads_runs,
       has_function_privilege('regress_monitor_admin', 'm365.job_status()', 'EXECUTE') AS admin_reads_jobs,
       has_table_privilege('regress_monitor_admin', 'm365.job_run', 'SELECT') AS admin_reads_runs;
-- Without pg_cron in this database: the definitions, nothing scheduled; the
-- job's own record of its last run.
SELECT job_name, schedule, scheduled, active, last_status, last_outcome, run_problem, stale FROM m365.job_status();
SELECT job, outcome, served, created, collisions, run_by = session_user AS run_by_me, finished_at >= started_at AS timed
  FROM m365.job_run ORDER BY id DESC LIMIT 1;
SELECT DISTINCT run_problem FROM m365.status;
ROLLBACK;
