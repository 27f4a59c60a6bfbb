-- m365_usernames 0.1.0 -> 0.2.0. Committed as it is (never regenerated); the
-- upgrade test (test/shell/upgrade.sh) checks that a database updated with it
-- has exactly the objects, rights and comments of a fresh 0.2.0 install.

\echo Use "ALTER EXTENSION m365_usernames UPDATE TO '0.2.0'" to load this file. \quit

-- New in 0.2.0: monitoring (extension/parts/88_monitoring.sql).
CREATE VIEW m365.status AS
SELECT c.id AS configuration_id,
       c.name AS configuration_name,
       coalesce(u.usernames, 0) AS usernames,
       coalesce(u.synced, 0) AS synced,
       coalesce(q.queued, 0) AS queued,
       coalesce(q.failing, 0) AS failing,
       q.oldest_queued_at,
       u.last_created_at
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
              GROUP BY configuration_id) AS q ON q.configuration_id OPERATOR(pg_catalog.=) c.id;
COMMENT ON VIEW m365.status IS
'Per configuration: usernames, synced, queued, failing (kept with last_error) and the oldest waiting entry';

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

-- Monitoring: the application may show the queue's state; the jobs' runs are
-- pg_cron's rows of the extension's owner, read for m365_admin.
GRANT SELECT ON m365.status TO m365_app;
ALTER FUNCTION m365.job_status() SECURITY DEFINER;
REVOKE ALL ON FUNCTION m365.job_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION m365.job_status() TO m365_admin;

-- Fixed in 0.2.0: snapshots right after a bulk load (stale statistics) chose
-- nested loops over the feed's views and took minutes (87_sds_snapshots.sql).
ALTER FUNCTION m365.take_sds_snapshots() SET enable_nestloop = off;

-- Fixed in 0.2.0: concurrent bulk sync changes over overlapping lists could
-- deadlock (found by the soak test); set_sync now locks in id order.
CREATE OR REPLACE FUNCTION m365.set_sync(username_ids bigint[], value boolean)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed integer;
    unknown bigint[];
BEGIN
    IF value IS NULL OR username_ids IS NULL THEN
        PERFORM m365.raise_message('M3S01', 'sync_not_saved', NULL, NULL, 'the flag and the list of ids must not be NULL');
    END IF;
    SELECT pg_catalog.array_agg(i) INTO unknown
      FROM pg_catalog.unnest(username_ids) AS i
     WHERE NOT EXISTS (SELECT FROM m365.username AS u WHERE u.id OPERATOR(pg_catalog.=) i);
    IF unknown IS NOT NULL THEN
        PERFORM m365.raise_message('M3S01', 'sync_not_saved', NULL, NULL, 'unknown username ids: ' OPERATOR(pg_catalog.||) unknown::text);
    END IF;
    BEGIN
        -- Lock in id order first: two bulk changes over overlapping lists
        -- (a location and a hand-picked set) then wait, never deadlock.
        PERFORM FROM m365.username AS u
          WHERE u.id OPERATOR(pg_catalog.=) ANY (username_ids)
          ORDER BY u.id
            FOR NO KEY UPDATE;
        UPDATE m365.username AS u SET sync = value
         WHERE u.id OPERATOR(pg_catalog.=) ANY (username_ids)
           AND u.sync OPERATOR(pg_catalog.<>) value;
        GET DIAGNOSTICS changed = ROW_COUNT;
    EXCEPTION WHEN OTHERS THEN
        PERFORM m365.raise_message('M3S01', 'sync_not_saved', NULL, NULL, SQLERRM);
    END;
    RETURN changed;
END
$$;

-- Fixed in 0.2.0: set_username racing the job for one name could deadlock
-- (found by the soak test); it now claims the name in the ledger first, as the job does.
CREATE OR REPLACE FUNCTION m365.set_username(username_id bigint, new_username text)
RETURNS m365.username
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    typed    text := coalesce(new_username, '');
    wanted   text := pg_catalog.btrim(coalesce(new_username, ''), E' \t\r\n');
    local    text;
    domain   text;
    current  m365.username;
    config   m365.configuration;
    saved    m365.username;
    sets_domain boolean;
BEGIN
    IF wanted OPERATOR(pg_catalog.=) '' THEN
        PERFORM m365.raise_message('M3U01', 'username_empty', typed);
    END IF;
    IF NOT m365.username_is_valid(wanted) THEN
        PERFORM m365.raise_message('M3U02', 'username_invalid', wanted, NULL, m365.username_problem(wanted));
    END IF;
    local := pg_catalog.lower(pg_catalog.split_part(wanted, '@', 1));
    domain := NULLIF(pg_catalog.lower(pg_catalog.split_part(wanted, '@', 2)), '');

    SELECT * INTO current FROM m365.username AS u WHERE u.id OPERATOR(pg_catalog.=) set_username.username_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM m365.raise_message('M3U05', 'username_not_saved', wanted,
                                   m365.message('unknown_username_id', NULL, coalesce(username_id::text, 'NULL')));
    END IF;
    SELECT * INTO config FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) current.configuration_id;

    IF domain IS NOT NULL THEN
        -- A domain only where the configuration sets one for this kind of person.
        sets_domain := CASE current.person_kind
            WHEN 'student' THEN EXISTS (SELECT FROM m365.location AS l
                                         WHERE l.configuration_id OPERATOR(pg_catalog.=) config.id
                                           AND l.student_domain IS NOT NULL)
            ELSE EXISTS (SELECT FROM m365.school AS s
                          WHERE s.configuration_id OPERATOR(pg_catalog.=) config.id
                            AND s.staff_domain IS NOT NULL)
        END;
        IF NOT sets_domain THEN
            PERFORM m365.raise_message('M3U04', 'domain_not_allowed', wanted);
        END IF;
        IF pg_catalog.cardinality(config.accepted_domains) OPERATOR(pg_catalog.>) 0
           AND NOT domain OPERATOR(pg_catalog.=) ANY (SELECT pg_catalog.lower(d) FROM pg_catalog.unnest(config.accepted_domains) AS d) THEN
            PERFORM m365.raise_message('M3U02', 'username_invalid', wanted, NULL,
                                       m365.message('domain_not_accepted', NULL, domain));
        END IF;
    END IF;

    -- In use: by another username, issued before to someone else, or reserved.
    IF EXISTS (SELECT FROM m365.username AS u
                WHERE u.configuration_id OPERATOR(pg_catalog.=) config.id
                  AND u.local_part OPERATOR(pg_catalog.=) local
                  AND u.id OPERATOR(pg_catalog.<>) current.id)
       OR EXISTS (SELECT FROM m365.issued_username AS i
                   WHERE i.configuration_id OPERATOR(pg_catalog.=) config.id
                     AND i.local_part OPERATOR(pg_catalog.=) local
                     AND (i.person_kind, i.person_id) OPERATOR(pg_catalog.<>) (current.person_kind, current.person_id))
       OR EXISTS (SELECT FROM m365.reserved_username AS r
                   WHERE r.configuration_id OPERATOR(pg_catalog.=) config.id
                     AND r.local_part OPERATOR(pg_catalog.=) local) THEN
        PERFORM m365.raise_message('M3U03', 'username_in_use', wanted);
    END IF;

    BEGIN
        -- Claim the name in the ledger before taking it, in the job's order
        -- (ledger, then username): racing the job for a name then waits on
        -- the ledger's key and ends in "in use", never in a deadlock.
        INSERT INTO m365.issued_username (configuration_id, local_part, person_kind, person_id)
        VALUES (config.id, local, current.person_kind, current.person_id)
        ON CONFLICT (configuration_id, local_part) DO NOTHING;
        UPDATE m365.username AS u
           SET username = CASE WHEN domain IS NULL THEN local
                               ELSE local OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) domain END
         WHERE u.id OPERATOR(pg_catalog.=) current.id
        RETURNING * INTO saved;
    EXCEPTION
        -- A concurrent session took the name between the check and the update.
        WHEN unique_violation THEN
            PERFORM m365.raise_message('M3U03', 'username_in_use', wanted, NULL, SQLERRM);
        WHEN OTHERS THEN
            PERFORM m365.raise_message('M3U05', 'username_not_saved', wanted, SQLERRM);
    END;
    RETURN saved;
END
$$;
