-- Scheduling helpers where pg_cron is not installed (this test database):
-- nothing is scheduled, and the extension says what to run where pg_cron is.
SELECT m365.pg_cron_is_here();
SELECT * FROM m365.job_definitions() ORDER BY job_name;
SELECT m365.schedule_jobs_elsewhere();
SELECT count(*) AS scheduled FROM m365.schedule_jobs();
SELECT m365.unschedule_jobs() AS removed;
SELECT m365.next_generation_run() IS NULL AS no_next_run;
-- The ICU version the transliteration depends on: major.minor.
SELECT m365.icu_version() ~ '^[0-9]+\.[0-9]+' AS icu_version_shape;
