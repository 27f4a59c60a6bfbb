--------------------------------------------------------------------------------
-- Monitoring: what a DBA's monitoring polls. m365.status answers
-- "is the job keeping up, and who is failing?", m365.job_status() "did pg_cron
-- run our jobs, and how did the last run end?".
--------------------------------------------------------------------------------

-- Why a run of the job did nothing or stopped; NULL when it ran (or runs).
CREATE FUNCTION m365.run_problem(run m365.job_run)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE run.outcome
           WHEN 'done' THEN NULL
           WHEN 'running' THEN NULL
           WHEN 'failed' THEN pg_catalog.format('failed at %s: %s', run.started_at, run.detail)
           WHEN 'interrupted' THEN pg_catalog.format('interrupted at %s: %s', run.started_at, run.detail)
           ELSE pg_catalog.format('%s at %s: pid %s (%s): %s', run.outcome, run.started_at, run.blocker_pid,
                                  run.blocker_role, run.detail)
       END;

CREATE VIEW m365.status AS
SELECT c.id AS configuration_id,
       c.name AS configuration_name,
       coalesce(u.usernames, 0) AS usernames,
       coalesce(u.synced, 0) AS synced,
       -- Log rows the next run reads (the whole database: a row names a
       -- person, the run decides the configurations).
       l.waiting,
       coalesce(f.failing, 0) AS failing,
       l.oldest_waiting_at,
       u.last_created_at,
       -- When the latest run of the job did nothing: why (who held it up, with
       -- pid and role, or the error); NULL when it ran.
       r.run_problem,
       -- When the brake on mass changes holds the SDS export (88_sds_brake.sql).
       CASE WHEN h.configuration_id IS NOT NULL THEN
           pg_catalog.format('held at %s: %s user(s) would leave and %s be renamed since SDS record %s (limit %s); see m365.pending_sds_changes(%s)',
                             h.held_at, h.leaving, h.renamed, h.since_record, h.change_limit, c.id) END AS sds_held
  FROM m365.configuration AS c
  LEFT JOIN m365.sds_hold AS h ON h.configuration_id OPERATOR(pg_catalog.=) c.id
  LEFT JOIN (SELECT configuration_id,
                    pg_catalog.count(*) AS usernames,
                    pg_catalog.count(*) FILTER (WHERE sync) AS synced,
                    pg_catalog.max(created_at) AS last_created_at
               FROM m365.username
              GROUP BY configuration_id) AS u ON u.configuration_id OPERATOR(pg_catalog.=) c.id
  LEFT JOIN (SELECT configuration_id, pg_catalog.count(*) AS failing
               FROM m365.username_failure
              GROUP BY configuration_id) AS f ON f.configuration_id OPERATOR(pg_catalog.=) c.id
  CROSS JOIN (SELECT pg_catalog.count(*) AS waiting, pg_catalog.min(requested_at) AS oldest_waiting_at
                FROM m365.username_request) AS l
  LEFT JOIN (SELECT m365.run_problem(j) AS run_problem
               FROM m365.job_run AS j
              WHERE j.job OPERATOR(pg_catalog.=) 'generate_usernames'
              ORDER BY j.id DESC
              LIMIT 1) AS r ON true;
COMMENT ON VIEW m365.status IS
'Per configuration: usernames, synced, failing (with the reason in m365.username_failure); log rows waiting for the next run (database-wide) and the oldest; why the latest run of the job did nothing; whether the brake on mass changes holds its SDS export';
SELECT m365.allow('app', 'SELECT', 'TABLE m365.status');

-- pg_cron's jobs of this database with their last run (none without pg_cron here).
CREATE FUNCTION m365.cron_jobs_here()
RETURNS TABLE (jobid bigint, jobname text, schedule text, active boolean, last_start timestamptz,
               last_end timestamptz, last_status text, last_message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT m365.pg_cron_is_here() THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT j.jobid, j.jobname::text, j.schedule, j.active, r.start_time, r.end_time, r.status, r.return_message
          FROM cron.job AS j
          LEFT JOIN LATERAL (SELECT x.start_time, x.end_time, x.status, x.return_message
                               FROM cron.job_run_details AS x
                              WHERE x.jobid = j.jobid
                              ORDER BY x.runid DESC
                              LIMIT 1) AS r ON true
         WHERE j.database = pg_catalog.current_database()
    $q$;
END
$$;
REVOKE ALL ON FUNCTION m365.cron_jobs_here() FROM PUBLIC;

-- The extension's pg_cron jobs of this database as pg_cron knows them, with
-- their last run; and how the generation job's own last run ended (pg_cron
-- records success for a run that gave way). Jobs still under a name of 0.2.0
-- are listed as stale. Without pg_cron in this database: the definitions,
-- scheduled = false.
CREATE FUNCTION m365.job_status()
RETURNS TABLE (job_name text, schedule text, scheduled boolean, active boolean,
               last_start timestamptz, last_end timestamptz, last_status text, last_message text,
               last_outcome text, run_problem text, stale boolean)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH cron_job AS (
        SELECT * FROM m365.cron_jobs_here()
    ), own_run AS (
        SELECT r.outcome, m365.run_problem(r) AS run_problem
          FROM m365.job_run AS r
         WHERE r.job OPERATOR(pg_catalog.=) 'generate_usernames'
         ORDER BY r.id DESC
         LIMIT 1
    )
    SELECT d.job_name, coalesce(j.schedule, d.schedule), j.jobid IS NOT NULL, j.active,
           j.last_start, j.last_end, j.last_status, j.last_message,
           CASE WHEN d.old_name OPERATOR(pg_catalog.=) 'm365_generate_usernames' THEN (SELECT o.outcome FROM own_run AS o) END,
           CASE WHEN d.old_name OPERATOR(pg_catalog.=) 'm365_generate_usernames' THEN (SELECT o.run_problem FROM own_run AS o) END,
           false
      FROM m365.job_definitions() AS d
      LEFT JOIN cron_job AS j ON j.jobname OPERATOR(pg_catalog.=) d.job_name
    UNION ALL
    -- Still scheduled under the name of 0.2.0: m365.schedule_jobs() renames them.
    SELECT j.jobname, j.schedule, true, j.active, j.last_start, j.last_end, j.last_status, j.last_message,
           NULL, NULL, true
      FROM cron_job AS j
      JOIN m365.job_definitions() AS d ON d.old_name OPERATOR(pg_catalog.=) j.jobname
     ORDER BY 1;
END
$$;
COMMENT ON FUNCTION m365.job_status() IS
'The pg_cron jobs of m365_usernames in this database: scheduled, active, how pg_cron''s last run ended, how the job''s own last run ended and why it did nothing, and stale jobs under an old name';
REVOKE ALL ON FUNCTION m365.job_status() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.job_status()');
