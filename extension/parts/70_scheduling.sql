--------------------------------------------------------------------------------
-- pg_cron scheduling. pg_cron lives in one database (cron.database_name).
-- CREATE EXTENSION schedules nothing: a side effect outside the extension
-- would be restored twice by pg_restore (pg_cron dumps its own jobs) and
-- would move another database's jobs. The DBA calls m365.schedule_jobs().
--------------------------------------------------------------------------------

-- pg_cron job names are unique per user across the cluster, at most 63
-- bytes: the database's name makes them unique, a hash keeps a long one short.
CREATE FUNCTION m365.job_name(job text, database_name text DEFAULT pg_catalog.current_database())
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN pg_catalog.octet_length(job OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) database_name)
                 OPERATOR(pg_catalog.<=) 63
            THEN job OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) database_name
            ELSE job OPERATOR(pg_catalog.||) '@db-' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.md5(database_name), 16)
       END;
COMMENT ON FUNCTION m365.job_name(text, text) IS 'The pg_cron job name of one of the extension''s jobs in a database (this one): job@database';

-- The extension's jobs: name, schedule, command; and the name 0.2.0 gave them.
CREATE FUNCTION m365.job_definitions()
RETURNS TABLE (job_name text, schedule text, command text, old_name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m365.job_name(d.job), d.schedule, d.command, d.old_name
      FROM (VALUES ('m365_generate_usernames', '*/15 * * * *', 'CALL m365.generate_usernames()', 'm365_generate_usernames'),
                   ('m365_retention', '30 3 * * *', 'SELECT m365.apply_retention()', 'm365_sds_snapshot'))
           AS d(job, schedule, command, old_name)
$$;
COMMENT ON FUNCTION m365.job_definitions() IS 'The pg_cron jobs of m365_usernames in this database: name, schedule, command, and the name before 0.3.0';

CREATE FUNCTION m365.pg_cron_is_here()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_cron');

-- What to run in the pg_cron database when pg_cron is not in this one.
CREATE FUNCTION m365.schedule_jobs_elsewhere()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT pg_catalog.string_agg(pg_catalog.format('SELECT cron.schedule_in_database(%L, %L, %L, %L);',
                                                       d.job_name, d.schedule, d.command, pg_catalog.current_database()), ' ')
          FROM m365.job_definitions() AS d);
COMMENT ON FUNCTION m365.schedule_jobs_elsewhere() IS
'The cron.schedule_in_database() calls to run in the pg_cron database when pg_cron is not in this one';

-- Schedules (or reschedules) every job. Returns the job ids. Without pg_cron
-- in this database it schedules nothing and says what to run where pg_cron is.
-- Jobs under the names of 0.2.0 are renamed (same ids).
CREATE FUNCTION m365.schedule_jobs()
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job record;
BEGIN
    IF NOT m365.pg_cron_is_here() THEN
        RAISE NOTICE 'pg_cron is not installed in database "%": no job scheduled', pg_catalog.current_database()
            USING HINT = 'Run in the database named by cron.database_name: ' OPERATOR(pg_catalog.||) m365.schedule_jobs_elsewhere();
        RETURN;
    END IF;
    PERFORM m365.rename_old_jobs();
    FOR job IN SELECT * FROM m365.job_definitions() LOOP
        RETURN QUERY EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING job.job_name, job.schedule, job.command;
    END LOOP;
END
$$;
COMMENT ON FUNCTION m365.schedule_jobs() IS
'Schedules the extension''s pg_cron jobs (generation every 15 minutes); without pg_cron here, says what to run instead';
REVOKE ALL ON FUNCTION m365.schedule_jobs() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.schedule_jobs()');

-- Gives this database's jobs scheduled under a name of 0.2.0 their name and
-- command of today (0.2.0 ran SELECT m365.generate_usernames(), which is now
-- CALL m365.generate_usernames()), keeping their ids. Returns how many.
-- (Also run by the upgrade.)
CREATE FUNCTION m365.rename_old_jobs()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    renamed integer := 0;
BEGIN
    IF m365.pg_cron_is_here() THEN
        EXECUTE 'UPDATE cron.job AS j SET jobname = d.job_name, command = d.command
                   FROM m365.job_definitions() AS d
                  WHERE j.jobname = d.old_name AND j.database = pg_catalog.current_database()
                    AND NOT EXISTS (SELECT FROM cron.job AS o WHERE o.jobname = d.job_name AND o.username = j.username)';
        GET DIAGNOSTICS renamed = ROW_COUNT;
    END IF;
    RETURN renamed;
END
$$;
REVOKE ALL ON FUNCTION m365.rename_old_jobs() FROM PUBLIC;

CREATE FUNCTION m365.unschedule_jobs()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer := 0;
    job_id bigint;
    names text[] := (SELECT pg_catalog.array_agg(n) FROM m365.job_definitions() AS d, LATERAL (VALUES (d.job_name), (d.old_name)) AS x(n));
BEGIN
    IF NOT m365.pg_cron_is_here() THEN
        RETURN 0;
    END IF;
    FOR job_id IN EXECUTE
        'SELECT j.jobid FROM cron.job AS j WHERE j.jobname = ANY ($1) AND j.database = pg_catalog.current_database()'
        USING names
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING job_id;
        removed := removed OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION m365.unschedule_jobs() IS
'Removes the extension''s pg_cron jobs of this database; returns how many. Run it before DROP EXTENSION';
REVOKE ALL ON FUNCTION m365.unschedule_jobs() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.unschedule_jobs()');
