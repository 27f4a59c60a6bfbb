--------------------------------------------------------------------------------
-- pg_cron scheduling. pg_cron lives in one database (cron.database_name);
-- when this extension is created there, its jobs are scheduled at once.
--------------------------------------------------------------------------------

-- The extension's jobs: name, schedule, command.
CREATE FUNCTION m365.job_definitions()
RETURNS TABLE (job_name text, schedule text, command text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES ('m365_generate_usernames', '*/15 * * * *', 'SELECT m365.generate_usernames()'),
           ('m365_sds_snapshot', '0 */12 * * *', 'SELECT m365.take_sds_snapshots()')
$$;
COMMENT ON FUNCTION m365.job_definitions() IS 'The pg_cron jobs of m365_usernames: name, schedule and command';

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
CREATE FUNCTION m365.schedule_jobs()
RETURNS SETOF bigint
LANGUAGE plpgsql
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
    FOR job IN SELECT * FROM m365.job_definitions() LOOP
        RETURN QUERY EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING job.job_name, job.schedule, job.command;
    END LOOP;
END
$$;
COMMENT ON FUNCTION m365.schedule_jobs() IS
'Schedules the extension''s pg_cron jobs (generation every 15 minutes); without pg_cron here, says what to run instead';

CREATE FUNCTION m365.unschedule_jobs()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer := 0;
    job_id bigint;
BEGIN
    IF NOT m365.pg_cron_is_here() THEN
        RETURN 0;
    END IF;
    FOR job_id IN EXECUTE
        'SELECT j.jobid FROM cron.job AS j WHERE j.jobname = ANY ($1) AND j.database = pg_catalog.current_database()'
        USING (SELECT pg_catalog.array_agg(d.job_name) FROM m365.job_definitions() AS d)
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING job_id;
        removed := removed OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION m365.unschedule_jobs() IS 'Removes the extension''s pg_cron jobs from this database; returns how many';

-- CREATE EXTENSION shows warnings only.
DO $schedule$
BEGIN
    IF m365.pg_cron_is_here() THEN
        PERFORM m365.schedule_jobs();
    ELSE
        RAISE WARNING 'pg_cron is not installed in database "%": the m365_usernames jobs are not scheduled',
                      pg_catalog.current_database()
            USING HINT = 'Run in the database named by cron.database_name: ' OPERATOR(pg_catalog.||) m365.schedule_jobs_elsewhere();
    END IF;
END
$schedule$;

-- DROP EXTENSION takes the jobs along (they would fail every 15 minutes).
-- ddl_command_start, because a sql_drop trigger that belongs to the extension
-- is itself gone by the time sql_drop fires. It runs in the dropping
-- transaction, so a DROP that fails keeps the jobs too.
CREATE FUNCTION m365.before_drop_extension()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.current_query() OPERATOR(pg_catalog.~*) 'm365_usernames' AND m365.pg_cron_is_here() THEN
        BEGIN
            PERFORM m365.unschedule_jobs();
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'the pg_cron jobs of m365_usernames were not removed: %', SQLERRM
                USING HINT = 'Remove them with cron.unschedule(); see cron.job.';
        END;
    END IF;
END
$$;
CREATE EVENT TRIGGER m365_usernames_before_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION m365.before_drop_extension();

