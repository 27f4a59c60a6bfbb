-- m365_usernames 0.1.0 -> 0.2.0. Committed as it is (never regenerated); the
-- upgrade test (test/shell/upgrade.sh) checks that a database updated with it
-- has exactly the objects, rights and comments of a fresh 0.2.0 install.
-- CREATE OR REPLACE FUNCTION resets SECURITY DEFINER: each replaced function
-- that 89_roles.sql makes SECURITY DEFINER gets its ALTER FUNCTION again.

\echo Use "ALTER EXTENSION m365_usernames UPDATE TO '0.2.0'" to load this file. \quit

-- New in 0.2.0: bulk statements defer their queueing to the job (50_queue.sql).
CREATE TABLE m365.username_queue_deferred (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_kind       text NOT NULL
                      CONSTRAINT username_queue_deferred_person_kind_known CHECK (person_kind OPERATOR(pg_catalog.=) ANY ('{student,staff}'::text[])),
    configuration_ids bigint[] NOT NULL,
    person_ids        bigint[] NOT NULL,
    deferred_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT username_queue_deferred_pairs CHECK (pg_catalog.cardinality(configuration_ids) OPERATOR(pg_catalog.=) pg_catalog.cardinality(person_ids))
);
COMMENT ON TABLE m365.username_queue_deferred IS
'Bulk statements whose people the next run of the job queues (m365.queue_people with these arrays)';

CREATE FUNCTION m365.queue_or_defer(configuration_ids bigint[], person_kind text, person_ids bigint[])
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- NULL (nobody) goes the small way: queue_people queues no one for it.
    IF coalesce(pg_catalog.cardinality(person_ids), 0) OPERATOR(pg_catalog.<) 10000 THEN
        RETURN m365.queue_people(configuration_ids, queue_or_defer.person_kind, person_ids);
    END IF;
    INSERT INTO m365.username_queue_deferred (person_kind, configuration_ids, person_ids)
    VALUES (queue_or_defer.person_kind, configuration_ids, person_ids);
    RETURN 0;
END
$$;

CREATE FUNCTION m365.queue_deferred()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    deferred m365.username_queue_deferred;
    queued   integer := 0;
BEGIN
    FOR deferred IN DELETE FROM m365.username_queue_deferred RETURNING * LOOP
        queued := queued OPERATOR(pg_catalog.+)
                  m365.queue_people(deferred.configuration_ids, deferred.person_kind, deferred.person_ids);
    END LOOP;
    RETURN queued;
END
$$;

CREATE OR REPLACE FUNCTION m365.enrolment_queue_students()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM m365.queue_or_defer(pg_catalog.array_agg(l.configuration_id), 'student', pg_catalog.array_agg(n.student_id))
       FROM new_enrolments AS n
       JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) n.location_id
      WHERE l.configuration_id IS NOT NULL
     HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
    RETURN NULL;
END
$$;
ALTER FUNCTION m365.enrolment_queue_students() SECURITY DEFINER;

CREATE OR REPLACE FUNCTION m365.location_queue()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM m365.queue_or_defer(pg_catalog.array_agg(n.configuration_id), 'student', pg_catalog.array_agg(e.student_id))
       FROM new_locations AS n
       JOIN m365.enrolment AS e ON e.location_id OPERATOR(pg_catalog.=) n.id
      WHERE n.configuration_id IS NOT NULL
        AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) CURRENT_DATE)
     HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0;
    RETURN NULL;
END
$$;
ALTER FUNCTION m365.location_queue() SECURITY DEFINER;

CREATE OR REPLACE FUNCTION m365.generate_usernames(max_count integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
-- The chunk's sorts and hashes (50,000 rows) in memory, not spilled to disk.
SET work_mem = '32MB'
AS $$
DECLARE
    chunk_size constant integer := 50000;
    processed integer := 0;
    created   integer := 0;
    claimed   integer;
    deferred  m365.username_queue_deferred;
    first     integer;
BEGIN
    IF max_count OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'max_count must not be negative, got %', max_count USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One run at a time; a second one returns at once instead of waiting.
    IF NOT pg_catalog.pg_try_advisory_xact_lock(365, 1) THEN
        RAISE NOTICE 'm365.generate_usernames is already running in another session; nothing done';
        RETURN 0;
    END IF;
    -- Names reserved while the job runs wait for it: what it checked stays true.
    LOCK TABLE m365.reserved_username IN SHARE MODE;
    -- A bounded run counts queue entries: the people of bulk statements
    -- (m365.queue_or_defer) join the queue first, as any other.
    IF max_count IS NOT NULL THEN
        PERFORM m365.queue_deferred();
    END IF;
    LOOP
        EXIT WHEN max_count IS NOT NULL AND processed OPERATOR(pg_catalog.>=) max_count;
        claimed := m365.generation_claim(CASE WHEN max_count IS NULL THEN chunk_size
                                              ELSE pg_catalog.int4smaller(chunk_size, max_count OPERATOR(pg_catalog.-) processed) END);
        EXIT WHEN claimed OPERATOR(pg_catalog.=) 0;
        processed := processed OPERATOR(pg_catalog.+) claimed;
        PERFORM m365.generation_assign();
        created := created OPERATOR(pg_catalog.+) m365.generation_store(true);
    END LOOP;
    -- A whole run takes the people of bulk statements straight from their
    -- deferred calls, after the queue: queue_deferred would have queued them
    -- now, behind every entry already there. A call still being written
    -- (uncommitted) is not seen and waits for the next run.
    LOOP
        EXIT WHEN max_count IS NOT NULL;
        DELETE FROM m365.username_queue_deferred AS d
         WHERE d.id OPERATOR(pg_catalog.=) (SELECT pg_catalog.min(d2.id) FROM m365.username_queue_deferred AS d2)
        RETURNING * INTO deferred;
        EXIT WHEN NOT FOUND;
        first := 1;
        WHILE first OPERATOR(pg_catalog.<=) pg_catalog.cardinality(deferred.person_ids) LOOP
            PERFORM m365.generation_claim_deferred(deferred, first, first OPERATOR(pg_catalog.+) chunk_size OPERATOR(pg_catalog.-) 1);
            PERFORM m365.generation_assign();
            created := created OPERATOR(pg_catalog.+) m365.generation_store(false);
            first := first OPERATOR(pg_catalog.+) chunk_size;
        END LOOP;
    END LOOP;
    -- After a bulk run (1 September) the planner would otherwise plan the
    -- lists and the SDS feed with the statistics of a nearly empty table until
    -- autovacuum comes by.
    IF created OPERATOR(pg_catalog.>=) 1000 THEN
        ANALYZE m365.username, m365.issued_username;
    END IF;
    RETURN created;
END
$$;
ALTER FUNCTION m365.generate_usernames(integer) SECURITY DEFINER;

CREATE OR REPLACE FUNCTION m365.diagnose_generation(configuration_id bigint, person_kind text, person_id bigint)
RETURNS TABLE (code text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    entry m365.username_queue;
    next_run timestamptz;
    deferred_at timestamptz;
BEGIN
    IF EXISTS (SELECT FROM m365.username AS u
                WHERE u.configuration_id OPERATOR(pg_catalog.=) diagnose_generation.configuration_id
                  AND u.person_kind OPERATOR(pg_catalog.=) diagnose_generation.person_kind
                  AND u.person_id OPERATOR(pg_catalog.=) diagnose_generation.person_id) THEN
        RETURN;
    END IF;
    SELECT * INTO entry FROM m365.username_queue AS q
     WHERE q.configuration_id OPERATOR(pg_catalog.=) diagnose_generation.configuration_id
       AND q.person_kind OPERATOR(pg_catalog.=) diagnose_generation.person_kind
       AND q.person_id OPERATOR(pg_catalog.=) diagnose_generation.person_id;
    IF NOT FOUND THEN
        -- Part of a bulk statement the job has not queued yet (m365.queue_or_defer)?
        SELECT d.deferred_at INTO deferred_at
          FROM m365.username_queue_deferred AS d, unnest(d.configuration_ids, d.person_ids) AS x(configuration_id, person_id)
         WHERE d.person_kind OPERATOR(pg_catalog.=) diagnose_generation.person_kind
           AND x.configuration_id OPERATOR(pg_catalog.=) diagnose_generation.configuration_id
           AND x.person_id OPERATOR(pg_catalog.=) diagnose_generation.person_id
         LIMIT 1;
        IF deferred_at IS NOT NULL THEN
            RETURN QUERY SELECT 'queued_in_bulk', m365.message('queued_in_bulk', NULL,
                pg_catalog.to_char(deferred_at, 'YYYY-MM-DD HH24:MI'));
        ELSE
            RETURN QUERY SELECT 'not_queued', m365.message('not_queued');
        END IF;
    ELSIF entry.last_error IS NOT NULL THEN
        RETURN QUERY SELECT 'generation_failed', m365.message('generation_failed', NULL, entry.last_error);
    ELSE
        next_run := m365.next_generation_run();
        RETURN QUERY SELECT 'queued', m365.message('queued', NULL,
            pg_catalog.to_char(entry.queued_at, 'YYYY-MM-DD HH24:MI')
            OPERATOR(pg_catalog.||) coalesce(' (' OPERATOR(pg_catalog.||) pg_catalog.to_char(next_run, 'HH24:MI')
                                             OPERATOR(pg_catalog.||) ')', ''));
    END IF;
END
$$;

INSERT INTO m365.message (code, language, text) VALUES
    ('queued_in_bulk', 'nl', 'De gebruikersnaam is nog niet aangemaakt: de persoon werd op <reason> met vele anderen tegelijk ingeschreven en komt bij de volgende uitvoering van de taak in de wachtrij.'),
    ('queued_in_bulk', 'fr', 'Le nom d''utilisateur n''est pas encore créé : la personne a été inscrite le <reason> avec beaucoup d''autres et sera mise en file d''attente à la prochaine exécution de la tâche.'),
    ('queued_in_bulk', 'en', 'The username has not been created yet: the person was enrolled on <reason> together with many others and joins the queue at the next run of the job.');

GRANT SELECT ON m365.username_queue_deferred TO m365_app;
REVOKE ALL ON FUNCTION m365.queue_or_defer(bigint[], text, bigint[]), m365.queue_deferred() FROM PUBLIC;

-- New in 0.2.0: monitoring (88_monitoring.sql).
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

-- Faster in 0.2.0: the claim step no longer runs make_username and its
-- subplans once per mention (an OFFSET 0 fence; claim 2.3 s -> 1.7 s per
-- 200,000), and the people of a deferred bulk call skip the queue: the claim
-- is split into a chunk's start, the two ways to claim, and the batch's fill;
-- the store step learns whether the chunk came from the queue.
CREATE FUNCTION m365.generation_begin_chunk()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.to_regclass('pg_temp.m365_generation_batch') IS NULL THEN
        CREATE TEMP TABLE m365_generation_batch (
            configuration_id bigint NOT NULL,
            person_kind      text NOT NULL,
            person_id        bigint NOT NULL,
            queued_at        timestamptz NOT NULL,
            first_name       text,
            last_name        text,
            domain           text,
            formats          text[] NOT NULL,
            base             text,     -- the name in the configuration's format
            -- pending, had_username, not_needed, failed; after the slow path also created
            outcome          text NOT NULL,
            error            text,
            PRIMARY KEY (configuration_id, person_kind, person_id)
        ) ON COMMIT DROP;
        -- The names given, written once (inserts are cheaper than updates).
        CREATE TEMP TABLE m365_generation_name (
            configuration_id bigint NOT NULL,
            person_kind      text NOT NULL,
            person_id        bigint NOT NULL,
            local_part       text NOT NULL,
            issued_base      text NOT NULL,
            suffix           integer NOT NULL,
            PRIMARY KEY (configuration_id, person_kind, person_id),
            UNIQUE (configuration_id, local_part)
        ) ON COMMIT DROP;
        -- People still without a name in a suffix round, ranked per base.
        CREATE TEMP TABLE m365_generation_waiting (
            configuration_id bigint, person_kind text, person_id bigint, base text, rn bigint
        ) ON COMMIT DROP;
        CREATE TEMP TABLE m365_generation_cursor (
            configuration_id bigint NOT NULL,
            base             text NOT NULL,
            next_suffix      bigint NOT NULL,
            PRIMARY KEY (configuration_id, base)
        ) ON COMMIT DROP;
        -- Who this chunk is about: queue entries, or people of a deferred call.
        CREATE TEMP TABLE m365_generation_claimed (
            configuration_id bigint NOT NULL,
            person_kind      text NOT NULL,
            person_id        bigint NOT NULL,
            queued_at        timestamptz NOT NULL
        ) ON COMMIT DROP;
    ELSE
        TRUNCATE pg_temp.m365_generation_batch, pg_temp.m365_generation_name, pg_temp.m365_generation_cursor,
                 pg_temp.m365_generation_claimed;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION m365.generation_claim(wanted integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    PERFORM m365.generation_begin_chunk();
    INSERT INTO pg_temp.m365_generation_claimed (configuration_id, person_kind, person_id, queued_at)
    SELECT q.configuration_id, q.person_kind, q.person_id, q.queued_at
      FROM m365.username_queue AS q
     -- Not twice in one run: a failed entry is stamped with now().
     WHERE q.last_attempt_at IS DISTINCT FROM pg_catalog.now()
     ORDER BY (q.last_error IS NOT NULL), q.queued_at, q.configuration_id, q.person_kind, q.person_id
     LIMIT wanted
       FOR UPDATE SKIP LOCKED;
    RETURN m365.generation_fill_batch();
END
$$;

CREATE FUNCTION m365.generation_claim_deferred(deferred m365.username_queue_deferred, first integer, last integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    PERFORM m365.generation_begin_chunk();
    INSERT INTO pg_temp.m365_generation_claimed (configuration_id, person_kind, person_id, queued_at)
    SELECT DISTINCT p.configuration_id, deferred.person_kind, p.person_id, deferred.deferred_at
      FROM unnest(deferred.configuration_ids[first:last], deferred.person_ids[first:last]) AS p(configuration_id, person_id)
     WHERE p.configuration_id IS NOT NULL AND p.person_id IS NOT NULL;
    RETURN m365.generation_fill_batch();
END
$$;

CREATE FUNCTION m365.generation_fill_batch()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The plans are costed high (per-row subplans) and run once: JIT compiling
-- them took a second per call, longer than running them.
SET jit = off
AS $$
DECLARE
    claimed integer;
BEGIN
    INSERT INTO pg_temp.m365_generation_batch
           (configuration_id, person_kind, person_id, queued_at, first_name, last_name, domain, formats,
            base, outcome, error)
    SELECT c.configuration_id, c.person_kind, c.person_id, c.queued_at, c.first_name, c.last_name, c.domain,
           c.formats, c.base,
           CASE WHEN c.has_username THEN 'had_username'
                WHEN NOT c.eligible THEN 'not_needed'
                WHEN c.base IS NULL THEN 'failed'
                ELSE 'pending' END,
           CASE WHEN NOT c.has_username AND c.eligible AND c.base IS NULL THEN
               'the official first and last name yield no username (nothing is left after transliteration to a-z, 0-9 and -)'
           END
      FROM (
    SELECT q.configuration_id, q.person_kind, q.person_id, q.queued_at,
           coalesce(st.first_name, sf.first_name) AS first_name, coalesce(st.last_name, sf.last_name) AS last_name,
           -- Staff: the domain of the school they were linked to first.
           CASE WHEN q.person_kind OPERATOR(pg_catalog.=) 'staff' THEN
               (SELECT sc.staff_domain
                  FROM m365.staff_school AS ss
                  JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
                 WHERE ss.staff_id OPERATOR(pg_catalog.=) q.person_id
                   AND sc.configuration_id OPERATOR(pg_catalog.=) q.configuration_id
                 ORDER BY ss.linked_at, ss.school_id
                 LIMIT 1)
           END AS domain,
           ARRAY[cf.username_format] OPERATOR(pg_catalog.||) cf.fallback_formats AS formats,
           m365.make_username(cf.username_format, coalesce(st.first_name, sf.first_name),
                              coalesce(st.last_name, sf.last_name)) AS base,
           CASE q.person_kind
               WHEN 'student' THEN EXISTS (
                   SELECT FROM m365.enrolment AS e
                     JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
                    WHERE e.student_id OPERATOR(pg_catalog.=) q.person_id
                      AND l.configuration_id OPERATOR(pg_catalog.=) q.configuration_id)
               ELSE coalesce(sf.active, false) AND EXISTS (
                   SELECT FROM m365.staff_school AS ss
                     JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
                    WHERE ss.staff_id OPERATOR(pg_catalog.=) q.person_id
                      AND sc.configuration_id OPERATOR(pg_catalog.=) q.configuration_id)
           END AS eligible,
           EXISTS (SELECT FROM m365.username AS u
                    WHERE u.configuration_id OPERATOR(pg_catalog.=) q.configuration_id
                      AND u.person_kind OPERATOR(pg_catalog.=) q.person_kind
                      AND u.person_id OPERATOR(pg_catalog.=) q.person_id) AS has_username
      FROM pg_temp.m365_generation_claimed AS q
      JOIN m365.configuration AS cf ON cf.id OPERATOR(pg_catalog.=) q.configuration_id
      LEFT JOIN m365.student AS st
             ON q.person_kind OPERATOR(pg_catalog.=) 'student' AND st.id OPERATOR(pg_catalog.=) q.person_id
      LEFT JOIN m365.staff AS sf
             ON q.person_kind OPERATOR(pg_catalog.=) 'staff' AND sf.id OPERATOR(pg_catalog.=) q.person_id
    -- A fence: the outer CASEs name base, eligible and has_username more than
    -- once, and flattened each mention ran make_username or its subplan again.
    OFFSET 0
    ) AS c;
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF claimed OPERATOR(pg_catalog.>) 0 THEN
        -- Temporary tables are never analysed by autovacuum.
        ANALYZE pg_temp.m365_generation_batch;
    END IF;
    RETURN claimed;
END
$$;

DROP FUNCTION m365.generation_store();
CREATE FUNCTION m365.generation_store(from_queue boolean)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    created integer;
BEGIN
    BEGIN
        INSERT INTO m365.issued_username (configuration_id, local_part, person_kind, person_id, base, suffix)
        SELECT g.configuration_id, g.local_part, g.person_kind, g.person_id, g.issued_base, g.suffix
          FROM pg_temp.m365_generation_name AS g;
        -- The ledger rows were just written, with their owners: the ledger
        -- trigger may skip these usernames (see m365.username_check_ledger).
        PERFORM pg_catalog.set_config('m365.ledger_written_by', pg_catalog.txid_current()::text, true);
        INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
        SELECT g.configuration_id, g.person_kind, g.person_id,
               CASE WHEN b.domain IS NULL THEN g.local_part
                    ELSE g.local_part OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) b.domain END
          FROM pg_temp.m365_generation_name AS g
          JOIN pg_temp.m365_generation_batch AS b
            ON b.configuration_id OPERATOR(pg_catalog.=) g.configuration_id
           AND b.person_kind OPERATOR(pg_catalog.=) g.person_kind
           AND b.person_id OPERATOR(pg_catalog.=) g.person_id;
        GET DIAGNOSTICS created = ROW_COUNT;
        PERFORM pg_catalog.set_config('m365.ledger_written_by', '', true);
    EXCEPTION WHEN OTHERS THEN
        PERFORM pg_catalog.set_config('m365.ledger_written_by', '', true);
        PERFORM m365.generation_store_one_by_one();
        SELECT pg_catalog.count(*) INTO created
          FROM pg_temp.m365_generation_batch WHERE outcome OPERATOR(pg_catalog.=) 'created';
    END;

    IF NOT from_queue THEN
        -- Failed entries stay queued, with the reason, as if they had been.
        INSERT INTO m365.username_queue AS q
               (configuration_id, person_kind, person_id, queued_at, attempts, last_attempt_at, last_error)
        SELECT b.configuration_id, b.person_kind, b.person_id, b.queued_at, 1, pg_catalog.now(), b.error
          FROM pg_temp.m365_generation_batch AS b
         WHERE b.outcome OPERATOR(pg_catalog.=) 'failed'
        ON CONFLICT (configuration_id, person_kind, person_id) DO UPDATE
           SET attempts = q.attempts OPERATOR(pg_catalog.+) 1, last_attempt_at = pg_catalog.now(),
               last_error = excluded.last_error
         -- Unless the queue part of this run tried it already.
         WHERE q.last_attempt_at IS DISTINCT FROM pg_catalog.now();
        RETURN created;
    END IF;
    DELETE FROM m365.username_queue AS q
     USING pg_temp.m365_generation_batch AS b
     WHERE b.outcome OPERATOR(pg_catalog.<>) 'failed'
       AND q.configuration_id OPERATOR(pg_catalog.=) b.configuration_id
       AND q.person_kind OPERATOR(pg_catalog.=) b.person_kind
       AND q.person_id OPERATOR(pg_catalog.=) b.person_id;
    UPDATE m365.username_queue AS q
       SET attempts = q.attempts OPERATOR(pg_catalog.+) 1, last_attempt_at = pg_catalog.now(), last_error = b.error
      FROM pg_temp.m365_generation_batch AS b
     WHERE b.outcome OPERATOR(pg_catalog.=) 'failed'
       AND q.configuration_id OPERATOR(pg_catalog.=) b.configuration_id
       AND q.person_kind OPERATOR(pg_catalog.=) b.person_kind
       AND q.person_id OPERATOR(pg_catalog.=) b.person_id;
    RETURN created;
END
$$;

REVOKE ALL ON FUNCTION m365.generation_begin_chunk(), m365.generation_claim_deferred(m365.username_queue_deferred, integer, integer),
                       m365.generation_fill_batch(), m365.generation_store(boolean) FROM PUBLIC;

-- Faster in 0.2.0: orgs asks the roles' joins without numbering every role.
CREATE OR REPLACE VIEW m365_sds.orgs AS
SELECT 'location-' OPERATOR(pg_catalog.||) l.id AS "sourcedId", l.name AS "name", 'school'::text AS "type",
       NULL::text AS "parentSourcedId"
  FROM m365.location AS l
 WHERE l.id OPERATOR(pg_catalog.=) ANY (
           SELECT e.location_id
             FROM m365.sds_scope AS scope
             JOIN m365.enrolment AS e ON e.start_date OPERATOR(pg_catalog.<=) scope.on_date
                                     AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) scope.on_date)
             JOIN m365.location AS el ON el.id OPERATOR(pg_catalog.=) e.location_id
                                     AND el.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
             JOIN m365.sds_user AS u ON u.person_kind OPERATOR(pg_catalog.=) 'student'
                                    AND u.person_id OPERATOR(pg_catalog.=) e.student_id
           UNION ALL
           SELECT sl.id
             FROM m365.sds_scope AS scope
             JOIN m365.school AS sc ON sc.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
             JOIN m365.staff_school AS ss ON ss.school_id OPERATOR(pg_catalog.=) sc.id
             JOIN m365.location AS sl ON sl.school_id OPERATOR(pg_catalog.=) sc.id
             JOIN m365.sds_user AS u ON u.person_kind OPERATOR(pg_catalog.=) 'staff'
                                    AND u.person_id OPERATOR(pg_catalog.=) ss.staff_id)
   AND l.name OPERATOR(pg_catalog.!~) '[\r\n]';

-- Faster in 0.2.0: suffix windows of one candidate per waiting person and two
-- spare (16 spare probed about 12 names per person); the job's sorts and hashes
-- in memory (work_mem 32MB, on generate_usernames above).
CREATE OR REPLACE FUNCTION m365.generation_assign()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    levels integer;
    round  integer := 0;
BEGIN
    -- The format, then each fallback format: a name nobody has, one winner per name.
    SELECT pg_catalog.max(pg_catalog.cardinality(formats)) INTO levels
      FROM pg_temp.m365_generation_batch WHERE outcome OPERATOR(pg_catalog.=) 'pending';
    FOR level IN 1 .. coalesce(levels, 0) LOOP
        INSERT INTO pg_temp.m365_generation_name
               (configuration_id, person_kind, person_id, local_part, issued_base, suffix)
        SELECT DISTINCT ON (c.configuration_id, c.name)
               c.configuration_id, c.person_kind, c.person_id, c.name, c.name, 1
          FROM (SELECT b.configuration_id, b.person_kind, b.person_id, b.queued_at,
                       CASE WHEN level OPERATOR(pg_catalog.=) 1 THEN b.base
                            ELSE m365.make_username(b.formats[level], b.first_name, b.last_name) END AS name
                  FROM pg_temp.m365_generation_batch AS b
                 WHERE b.outcome OPERATOR(pg_catalog.=) 'pending'
                   AND pg_catalog.cardinality(b.formats) OPERATOR(pg_catalog.>=) level
                   AND NOT EXISTS (SELECT FROM pg_temp.m365_generation_name AS g
                                    WHERE g.configuration_id OPERATOR(pg_catalog.=) b.configuration_id
                                      AND g.person_kind OPERATOR(pg_catalog.=) b.person_kind
                                      AND g.person_id OPERATOR(pg_catalog.=) b.person_id)) AS c
         WHERE c.name IS NOT NULL
           -- A probe of the ledger's index per candidate: as an anti-join the
           -- planner hashes the whole ledger, which grows with every chunk.
           AND (SELECT true FROM m365.issued_username AS i
                 WHERE i.configuration_id OPERATOR(pg_catalog.=) c.configuration_id
                   AND i.local_part OPERATOR(pg_catalog.=) c.name) IS NULL
           AND NOT EXISTS (SELECT FROM m365.reserved_username AS r
                            WHERE r.configuration_id OPERATOR(pg_catalog.=) c.configuration_id
                              AND r.local_part OPERATOR(pg_catalog.=) c.name)
           AND NOT EXISTS (SELECT FROM pg_temp.m365_generation_name AS o
                            WHERE o.configuration_id OPERATOR(pg_catalog.=) c.configuration_id
                              AND o.local_part OPERATOR(pg_catalog.=) c.name)
         ORDER BY c.configuration_id, c.name, c.queued_at, c.person_kind, c.person_id;
    END LOOP;

    -- Numeric suffixes on the format's name: base2, base3, ... Each base has a
    -- cursor that starts above the highest suffix ever generated for it and
    -- moves past every window it has probed, so 10,000 people with one name
    -- cost a few windows, not 10,000 searches from base2. A window holds one
    -- candidate per waiting person and two spare: above the cursor only edited
    -- or reserved names can be taken (16 spare probed 12 names per person).
    LOOP
        TRUNCATE pg_temp.m365_generation_waiting;
        INSERT INTO pg_temp.m365_generation_waiting
        SELECT b.configuration_id, b.person_kind, b.person_id, b.base,
               pg_catalog.row_number() OVER (PARTITION BY b.configuration_id, b.base
                                             ORDER BY b.queued_at, b.person_kind, b.person_id)
          FROM pg_temp.m365_generation_batch AS b
         WHERE b.outcome OPERATOR(pg_catalog.=) 'pending'
           AND NOT EXISTS (SELECT FROM pg_temp.m365_generation_name AS g
                            WHERE g.configuration_id OPERATOR(pg_catalog.=) b.configuration_id
                              AND g.person_kind OPERATOR(pg_catalog.=) b.person_kind
                              AND g.person_id OPERATOR(pg_catalog.=) b.person_id);
        EXIT WHEN NOT FOUND;
        round := round OPERATOR(pg_catalog.+) 1;
        IF round OPERATOR(pg_catalog.>) 1000 THEN
            RAISE EXCEPTION 'm365.generate_usernames: no free suffix found after 1000 rounds'
                USING ERRCODE = 'internal_error';
        END IF;

        INSERT INTO pg_temp.m365_generation_cursor (configuration_id, base, next_suffix)
        SELECT g.configuration_id, g.base,
               coalesce((SELECT pg_catalog.max(i.suffix) FROM m365.issued_username AS i
                          WHERE i.configuration_id OPERATOR(pg_catalog.=) g.configuration_id
                            AND i.base OPERATOR(pg_catalog.=) g.base), 1) OPERATOR(pg_catalog.+) 1
          FROM (SELECT DISTINCT w.configuration_id, w.base FROM pg_temp.m365_generation_waiting AS w) AS g
        ON CONFLICT DO NOTHING;

        WITH window_ AS (
            SELECT n.configuration_id, n.base, cur.next_suffix AS lo,
                   cur.next_suffix OPERATOR(pg_catalog.+) n.k OPERATOR(pg_catalog.+) 2 AS hi
              FROM (SELECT w.configuration_id, w.base, pg_catalog.count(*) AS k
                      FROM pg_temp.m365_generation_waiting AS w GROUP BY w.configuration_id, w.base) AS n
              JOIN pg_temp.m365_generation_cursor AS cur
                ON cur.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
               AND cur.base OPERATOR(pg_catalog.=) n.base
        ), moved AS (
            UPDATE pg_temp.m365_generation_cursor AS cur SET next_suffix = w.hi
              FROM window_ AS w
             WHERE cur.configuration_id OPERATOR(pg_catalog.=) w.configuration_id
               AND cur.base OPERATOR(pg_catalog.=) w.base
        ), free AS (
            -- One base per name (two bases can meet after cutting to 64 characters).
            SELECT DISTINCT ON (c.configuration_id, c.name) c.*
              FROM (SELECT w.configuration_id, w.base, s AS suffix, m365.username_with_suffix(w.base, s) AS name
                      FROM window_ AS w, pg_catalog.generate_series(w.lo, w.hi OPERATOR(pg_catalog.-) 1) AS s) AS c
             WHERE (SELECT true FROM m365.issued_username AS i
                     WHERE i.configuration_id OPERATOR(pg_catalog.=) c.configuration_id
                       AND i.local_part OPERATOR(pg_catalog.=) c.name) IS NULL
               AND NOT EXISTS (SELECT FROM m365.reserved_username AS r
                                WHERE r.configuration_id OPERATOR(pg_catalog.=) c.configuration_id
                                  AND r.local_part OPERATOR(pg_catalog.=) c.name)
               AND NOT EXISTS (SELECT FROM pg_temp.m365_generation_name AS o
                                WHERE o.configuration_id OPERATOR(pg_catalog.=) c.configuration_id
                                  AND o.local_part OPERATOR(pg_catalog.=) c.name)
             ORDER BY c.configuration_id, c.name, c.base
        ), free_by_base AS (
            -- Each base's free names in suffix order; the n-th person takes the n-th.
            -- (A join on the rank would pair every person with every name of a
            -- popular base: quadratic.)
            SELECT f.configuration_id, f.base,
                   pg_catalog.array_agg(f.name ORDER BY f.suffix) AS names,
                   pg_catalog.array_agg(f.suffix ORDER BY f.suffix) AS suffixes
              FROM free AS f
             GROUP BY f.configuration_id, f.base
        )
        INSERT INTO pg_temp.m365_generation_name
               (configuration_id, person_kind, person_id, local_part, issued_base, suffix)
        SELECT w.configuration_id, w.person_kind, w.person_id, fb.names[w.rn], w.base, fb.suffixes[w.rn]
          FROM pg_temp.m365_generation_waiting AS w
          JOIN free_by_base AS fb
            ON fb.configuration_id OPERATOR(pg_catalog.=) w.configuration_id
           AND fb.base OPERATOR(pg_catalog.=) w.base
         WHERE w.rn OPERATOR(pg_catalog.<=) pg_catalog.cardinality(fb.names);
    END LOOP;
END
$$;
