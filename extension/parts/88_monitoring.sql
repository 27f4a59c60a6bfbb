--------------------------------------------------------------------------------
-- Monitoring (0.2.0): what a DBA's monitoring polls. m365.status answers
-- "is every configuration's queue moving?", m365.job_status() "did pg_cron
-- run our jobs, and how did the last run end?".
--------------------------------------------------------------------------------

CREATE VIEW m365.status AS
SELECT c.id AS configuration_id,
       c.name AS configuration_name,
       coalesce(u.usernames, 0) AS usernames,
       coalesce(u.synced, 0) AS synced,
       coalesce(q.queued, 0) AS queued,
       coalesce(q.failing, 0) AS failing,
       q.oldest_queued_at,
       u.last_created_at,
       -- People of bulk statements the next run queues first (m365.queue_or_defer).
       coalesce(d.deferred, 0) AS deferred
  FROM m365.configuration AS c
  LEFT JOIN (SELECT configuration_id,
                    pg_catalog.count(*) AS usernames,
                    pg_catalog.count(*) FILTER (WHERE sync) AS synced,
                    pg_catalog.max(created_at) AS last_created_at
               FROM m365.username
              GROUP BY configuration_id) AS u ON u.configuration_id OPERATOR(pg_catalog.=) c.id
  LEFT JOIN (SELECT configuration_id,
                    pg_catalog.count(*) AS queued,
                    pg_catalog.count(*) FILTER (WHERE last_error IS NOT NULL) AS failing,
                    pg_catalog.min(queued_at) FILTER (WHERE last_error IS NULL) AS oldest_queued_at
               FROM m365.username_queue
              GROUP BY configuration_id) AS q ON q.configuration_id OPERATOR(pg_catalog.=) c.id
  LEFT JOIN (SELECT x.configuration_id, pg_catalog.count(*) AS deferred
               FROM m365.username_queue_deferred AS dq, pg_catalog.unnest(dq.configuration_ids) AS x(configuration_id)
              GROUP BY x.configuration_id) AS d ON d.configuration_id OPERATOR(pg_catalog.=) c.id;
COMMENT ON VIEW m365.status IS
'Per configuration: usernames, synced, queued, failing (kept with last_error), the oldest waiting entry, and people of bulk statements not queued yet (deferred)';

-- The extension's pg_cron jobs as pg_cron knows them, with their last run.
-- Without pg_cron in this database: the definitions, scheduled = false.
CREATE FUNCTION m365.job_status()
RETURNS TABLE (job_name text, schedule text, scheduled boolean, active boolean,
               last_start timestamptz, last_end timestamptz, last_status text, last_message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT m365.pg_cron_is_here() THEN
        RETURN QUERY SELECT d.job_name, d.schedule, false, NULL::boolean, NULL::timestamptz, NULL::timestamptz,
                            NULL::text, NULL::text
                       FROM m365.job_definitions() AS d;
        RETURN;
    END IF;
    -- cron.job is filtered to the caller's own jobs by pg_cron's row security.
    RETURN QUERY EXECUTE $q$
        SELECT d.job_name, coalesce(j.schedule, d.schedule), j.jobid IS NOT NULL, j.active,
               r.start_time, r.end_time, r.status, r.return_message
          FROM m365.job_definitions() AS d
          LEFT JOIN cron.job AS j ON j.jobname = d.job_name
          LEFT JOIN LATERAL (SELECT x.start_time, x.end_time, x.status, x.return_message
                               FROM cron.job_run_details AS x
                              WHERE x.jobid = j.jobid
                              ORDER BY x.runid DESC
                              LIMIT 1) AS r ON true
         ORDER BY d.job_name
    $q$;
END
$$;
COMMENT ON FUNCTION m365.job_status() IS
'The pg_cron jobs of m365_usernames: scheduled, active, and how the last run ended';
