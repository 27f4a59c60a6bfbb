--------------------------------------------------------------------------------
-- The generation job: m365.generate_usernames().
--
-- One run is one transaction: a crash or a cancel rolls it back and every
-- queued person is still queued. Within the run the queue is taken in chunks
-- (FOR UPDATE SKIP LOCKED), and each chunk is worked as a set in the job's
-- working tables: names from the format, then from the fallback formats, then with
-- numeric suffixes, all checked against the issued and reserved names by
-- joins, not one query per person.
--------------------------------------------------------------------------------

-- The job's working tables, in a schema of their own that nobody but the
-- extension's owner may use. Not temporary tables: those live in the caller's
-- temporary schema, where the caller can create one first, with a trigger that
-- the job would fire with the owner's rights. Not in schema m365 either: a
-- role that can name a table can hold a lock on it without any right on it
-- (PREPARE parses, and locks, before rights are checked), and the TRUNCATE of
-- each chunk would wait for it. One run at a time (the lease in
-- m365.job_lease), so one set of tables serves every run; UNLOGGED, as their
-- rows never outlive the run's transaction.
CREATE SCHEMA m365_work;
COMMENT ON SCHEMA m365_work IS 'm365_usernames: the generation job''s working tables (the extension''s owner only)';
CREATE UNLOGGED TABLE m365_work.batch (
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
);
-- The names given, written once (inserts are cheaper than updates).
CREATE UNLOGGED TABLE m365_work.given_name (
    configuration_id bigint NOT NULL,
    person_kind      text NOT NULL,
    person_id        bigint NOT NULL,
    local_part       text NOT NULL,
    issued_base      text NOT NULL,
    suffix           integer NOT NULL,
    PRIMARY KEY (configuration_id, person_kind, person_id),
    UNIQUE (configuration_id, local_part)
);
-- People still without a name in a suffix round, ranked per base.
CREATE UNLOGGED TABLE m365_work.waiting (
    configuration_id bigint, person_kind text, person_id bigint, base text, rn bigint
);
CREATE UNLOGGED TABLE m365_work.suffix_cursor (
    configuration_id bigint NOT NULL,
    base             text NOT NULL,
    next_suffix      bigint NOT NULL,
    PRIMARY KEY (configuration_id, base)
);
-- Who this chunk is about: queue entries, or people of a deferred call.
CREATE UNLOGGED TABLE m365_work.claimed (
    configuration_id bigint NOT NULL,
    person_kind      text NOT NULL,
    person_id        bigint NOT NULL,
    queued_at        timestamptz NOT NULL
);

-- Step 1: claim the people of one chunk into m365_work.claimed
-- (m365.generation_claim: queue entries; m365.generation_claim_deferred: the
-- people of a bulk statement, who never pass through the queue), then work out
-- into m365_work.batch what each needs.
CREATE FUNCTION m365.generation_begin_chunk()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    TRUNCATE m365_work.batch, m365_work.given_name, m365_work.suffix_cursor, m365_work.claimed;
END
$$;

CREATE FUNCTION m365.generation_claim(wanted integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    PERFORM m365.generation_begin_chunk();
    INSERT INTO m365_work.claimed (configuration_id, person_kind, person_id, queued_at)
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

-- People first..last of a deferred call (m365.queue_or_defer), whose row the
-- job has deleted: the queue entries they would have had are skipped, writing
-- and then deleting 200,000 of them was a quarter of a 1 September run.
CREATE FUNCTION m365.generation_claim_deferred(deferred m365.username_queue_deferred, first integer, last integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    PERFORM m365.generation_begin_chunk();
    INSERT INTO m365_work.claimed (configuration_id, person_kind, person_id, queued_at)
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
    INSERT INTO m365_work.batch
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
      FROM m365_work.claimed AS q
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
        ANALYZE m365_work.batch;
    END IF;
    RETURN claimed;
END
$$;

-- Step 2: give every pending person of the batch a free name, into
-- m365_work.given_name.
CREATE FUNCTION m365.generation_assign()
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
      FROM m365_work.batch WHERE outcome OPERATOR(pg_catalog.=) 'pending';
    FOR level IN 1 .. coalesce(levels, 0) LOOP
        INSERT INTO m365_work.given_name
               (configuration_id, person_kind, person_id, local_part, issued_base, suffix)
        SELECT DISTINCT ON (c.configuration_id, c.name)
               c.configuration_id, c.person_kind, c.person_id, c.name, c.name, 1
          FROM (SELECT b.configuration_id, b.person_kind, b.person_id, b.queued_at,
                       CASE WHEN level OPERATOR(pg_catalog.=) 1 THEN b.base
                            ELSE m365.make_username(b.formats[level], b.first_name, b.last_name) END AS name
                  FROM m365_work.batch AS b
                 WHERE b.outcome OPERATOR(pg_catalog.=) 'pending'
                   AND pg_catalog.cardinality(b.formats) OPERATOR(pg_catalog.>=) level
                   AND NOT EXISTS (SELECT FROM m365_work.given_name AS g
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
           AND NOT EXISTS (SELECT FROM m365_work.given_name AS o
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
    -- A base still waiting after a round doubles its window: thousands of
    -- names taken by edits (whose ledger rows carry no suffix for the cursor)
    -- cost a dozen rounds. Whoever has no name after 40 rounds fails alone,
    -- with the reason; the run goes on.
    LOOP
        TRUNCATE m365_work.waiting;
        INSERT INTO m365_work.waiting
        SELECT b.configuration_id, b.person_kind, b.person_id, b.base,
               pg_catalog.row_number() OVER (PARTITION BY b.configuration_id, b.base
                                             ORDER BY b.queued_at, b.person_kind, b.person_id)
          FROM m365_work.batch AS b
         WHERE b.outcome OPERATOR(pg_catalog.=) 'pending'
           AND NOT EXISTS (SELECT FROM m365_work.given_name AS g
                            WHERE g.configuration_id OPERATOR(pg_catalog.=) b.configuration_id
                              AND g.person_kind OPERATOR(pg_catalog.=) b.person_kind
                              AND g.person_id OPERATOR(pg_catalog.=) b.person_id);
        EXIT WHEN NOT FOUND;
        round := round OPERATOR(pg_catalog.+) 1;
        IF round OPERATOR(pg_catalog.>) 40 THEN
            UPDATE m365_work.batch AS b
               SET outcome = 'failed', error = pg_catalog.format('no free numeric suffix found for "%s"', b.base)
              FROM m365_work.waiting AS w
             WHERE b.configuration_id OPERATOR(pg_catalog.=) w.configuration_id
               AND b.person_kind OPERATOR(pg_catalog.=) w.person_kind
               AND b.person_id OPERATOR(pg_catalog.=) w.person_id;
            EXIT;
        END IF;

        INSERT INTO m365_work.suffix_cursor (configuration_id, base, next_suffix)
        SELECT g.configuration_id, g.base,
               coalesce((SELECT pg_catalog.max(i.suffix) FROM m365.issued_username AS i
                          WHERE i.configuration_id OPERATOR(pg_catalog.=) g.configuration_id
                            AND i.base OPERATOR(pg_catalog.=) g.base), 1) OPERATOR(pg_catalog.+) 1
          FROM (SELECT DISTINCT w.configuration_id, w.base FROM m365_work.waiting AS w) AS g
        ON CONFLICT DO NOTHING;

        WITH window_ AS (
            SELECT n.configuration_id, n.base, cur.next_suffix AS lo,
                   cur.next_suffix OPERATOR(pg_catalog.+)
                   (n.k OPERATOR(pg_catalog.+) 2) OPERATOR(pg_catalog.*) (1::bigint OPERATOR(pg_catalog.<<) pg_catalog.int4smaller(round OPERATOR(pg_catalog.-) 1, 20)) AS hi
              FROM (SELECT w.configuration_id, w.base, pg_catalog.count(*) AS k
                      FROM m365_work.waiting AS w GROUP BY w.configuration_id, w.base) AS n
              JOIN m365_work.suffix_cursor AS cur
                ON cur.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
               AND cur.base OPERATOR(pg_catalog.=) n.base
        ), moved AS (
            UPDATE m365_work.suffix_cursor AS cur SET next_suffix = w.hi
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
               AND NOT EXISTS (SELECT FROM m365_work.given_name AS o
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
        INSERT INTO m365_work.given_name
               (configuration_id, person_kind, person_id, local_part, issued_base, suffix)
        SELECT w.configuration_id, w.person_kind, w.person_id, fb.names[w.rn], w.base, fb.suffixes[w.rn]
          FROM m365_work.waiting AS w
          JOIN free_by_base AS fb
            ON fb.configuration_id OPERATOR(pg_catalog.=) w.configuration_id
           AND fb.base OPERATOR(pg_catalog.=) w.base
         WHERE w.rn OPERATOR(pg_catalog.<=) pg_catalog.cardinality(fb.names);
    END LOOP;
END
$$;

-- Step 3, the slow path: one person at a time, each in its own
-- subtransaction, when storing the batch as a set failed (a name taken by a
-- concurrent edit, say). A person that still fails keeps the reason.
CREATE FUNCTION m365.generation_store_one_by_one()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    person record;
    format text;
    candidate text;
    chosen text;
BEGIN
    FOR person IN
        SELECT * FROM m365_work.batch
         WHERE outcome OPERATOR(pg_catalog.=) 'pending'
         ORDER BY queued_at, person_kind, person_id
    LOOP
        BEGIN
            chosen := NULL;
            FOREACH format IN ARRAY person.formats LOOP
                candidate := m365.make_username(format, person.first_name, person.last_name);
                IF candidate IS NOT NULL AND NOT m365.username_is_taken(person.configuration_id, candidate) THEN
                    chosen := candidate;
                    EXIT;
                END IF;
            END LOOP;
            chosen := coalesce(chosen, m365.first_free_username(person.configuration_id, person.base));
            INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
            VALUES (person.configuration_id, person.person_kind, person.person_id,
                    CASE WHEN person.domain IS NULL THEN chosen ELSE chosen OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) person.domain END);
            UPDATE m365_work.batch SET outcome = 'created'
             WHERE configuration_id OPERATOR(pg_catalog.=) person.configuration_id
               AND person_kind OPERATOR(pg_catalog.=) person.person_kind
               AND person_id OPERATOR(pg_catalog.=) person.person_id;
        EXCEPTION WHEN OTHERS THEN
            UPDATE m365_work.batch SET outcome = 'failed', error = SQLERRM
             WHERE configuration_id OPERATOR(pg_catalog.=) person.configuration_id
               AND person_kind OPERATOR(pg_catalog.=) person.person_kind
               AND person_id OPERATOR(pg_catalog.=) person.person_id;
        END;
    END LOOP;
END
$$;

-- Step 3: store the batch, then settle its queue entries (from_queue), or
-- queue the people of a deferred call it failed for. Returns how many
-- usernames were created.
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
          FROM m365_work.given_name AS g;
        INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
        SELECT g.configuration_id, g.person_kind, g.person_id,
               CASE WHEN b.domain IS NULL THEN g.local_part
                    ELSE g.local_part OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) b.domain END
          FROM m365_work.given_name AS g
          JOIN m365_work.batch AS b
            ON b.configuration_id OPERATOR(pg_catalog.=) g.configuration_id
           AND b.person_kind OPERATOR(pg_catalog.=) g.person_kind
           AND b.person_id OPERATOR(pg_catalog.=) g.person_id;
        GET DIAGNOSTICS created = ROW_COUNT;
    EXCEPTION WHEN OTHERS THEN
        PERFORM m365.generation_store_one_by_one();
        SELECT pg_catalog.count(*) INTO created
          FROM m365_work.batch WHERE outcome OPERATOR(pg_catalog.=) 'created';
    END;

    IF NOT from_queue THEN
        -- Failed entries stay queued, with the reason, as if they had been.
        BEGIN
            INSERT INTO m365.username_queue AS q
                   (configuration_id, person_kind, person_id, queued_at, attempts, last_attempt_at, last_error)
            SELECT b.configuration_id, b.person_kind, b.person_id, b.queued_at, 1, pg_catalog.now(), b.error
              FROM m365_work.batch AS b
             WHERE b.outcome OPERATOR(pg_catalog.=) 'failed'
            ON CONFLICT (configuration_id, person_kind, person_id) DO UPDATE
               SET attempts = q.attempts OPERATOR(pg_catalog.+) 1, last_attempt_at = pg_catalog.now(),
                   last_error = excluded.last_error
             -- Unless the queue part of this run tried it already.
             WHERE q.last_attempt_at IS DISTINCT FROM pg_catalog.now();
        EXCEPTION WHEN lock_not_available THEN
            -- A session is queueing one of them right now and has not committed
            -- (an application's open transaction): rather than wait for it,
            -- they stay a deferred call, which the next run serves.
            INSERT INTO m365.username_queue_deferred (person_kind, configuration_ids, person_ids, deferred_at)
            SELECT b.person_kind, pg_catalog.array_agg(b.configuration_id), pg_catalog.array_agg(b.person_id),
                   pg_catalog.min(b.queued_at)
              FROM m365_work.batch AS b
             WHERE b.outcome OPERATOR(pg_catalog.=) 'failed'
             GROUP BY b.person_kind;
        END;
        RETURN created;
    END IF;
    DELETE FROM m365.username_queue AS q
     USING m365_work.batch AS b
     WHERE b.outcome OPERATOR(pg_catalog.<>) 'failed'
       AND q.configuration_id OPERATOR(pg_catalog.=) b.configuration_id
       AND q.person_kind OPERATOR(pg_catalog.=) b.person_kind
       AND q.person_id OPERATOR(pg_catalog.=) b.person_id;
    UPDATE m365.username_queue AS q
       SET attempts = q.attempts OPERATOR(pg_catalog.+) 1, last_attempt_at = pg_catalog.now(), last_error = b.error
      FROM m365_work.batch AS b
     WHERE b.outcome OPERATOR(pg_catalog.=) 'failed'
       AND q.configuration_id OPERATOR(pg_catalog.=) b.configuration_id
       AND q.person_kind OPERATOR(pg_catalog.=) b.person_kind
       AND q.person_id OPERATOR(pg_catalog.=) b.person_id;
    RETURN created;
END
$$;

-- One run at a time, by a lease row that only the job (the extension's owner)
-- can lock: an advisory lock can be taken by any session, which could make
-- every run quietly do nothing. Every run is recorded, and a run that had to
-- give way says who held it up (m365.job_status(), m365.status).
CREATE TABLE m365.job_lease (
    job text PRIMARY KEY
);
COMMENT ON TABLE m365.job_lease IS 'One row per job: a run holds its row locked (FOR UPDATE) while it runs';
INSERT INTO m365.job_lease (job) VALUES ('generate_usernames');

CREATE TABLE m365.job_run (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job          text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at  timestamptz,
    -- done; skipped (another run held the lease); blocked (a lock on the
    -- extension's tables was not granted within the job's lock_timeout);
    -- failed (an error: the run's work is rolled back, detail says why)
    outcome      text NOT NULL CONSTRAINT job_run_outcome_known CHECK (outcome OPERATOR(pg_catalog.=) ANY ('{done,skipped,blocked,failed}'::text[])),
    created      integer,
    run_by       name NOT NULL DEFAULT SESSION_USER,
    blocker_pid  integer,
    blocker_role name,
    detail       text
);
CREATE INDEX job_run_job ON m365.job_run (job, started_at);
COMMENT ON TABLE m365.job_run IS 'Every run of the generation job: when, by whom, how it ended, and why a run did nothing (who held it up, or the error; kept 90 days)';
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.job_run');

-- Who holds the lease of a job now: the transaction whose id is in the
-- locked row's xmax, found in pg_locks and pg_stat_activity.
CREATE FUNCTION m365.lease_holder(job text, OUT pid integer, OUT role name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.pid, a.usename
      FROM m365.job_lease AS j
      JOIN pg_catalog.pg_locks AS l
        ON l.locktype OPERATOR(pg_catalog.=) 'transactionid' AND l.transactionid OPERATOR(pg_catalog.=) j.xmax
       AND l.granted AND l.mode OPERATOR(pg_catalog.=) 'ExclusiveLock'
      LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid OPERATOR(pg_catalog.=) l.pid
     WHERE j.job OPERATOR(pg_catalog.=) lease_holder.job
     LIMIT 1
$$;
REVOKE ALL ON FUNCTION m365.lease_holder(text) FROM PUBLIC;

-- Who holds, or waits ahead of the job for, a lock on one of the extension's
-- tables that the job's locks conflict with (the first such session; one that
-- holds comes before one that waits).
CREATE FUNCTION m365.table_lock_holder(OUT pid integer, OUT role name, OUT relation text, OUT mode text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.pid, a.usename, c.oid::pg_catalog.regclass::text,
           l.mode OPERATOR(pg_catalog.||) CASE WHEN l.granted THEN '' ELSE ' (waiting, ahead of the job)' END
      FROM pg_catalog.pg_locks AS l
      JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) l.relation
      LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid OPERATOR(pg_catalog.=) l.pid
     WHERE l.locktype OPERATOR(pg_catalog.=) 'relation'
       AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database AS d
                                               WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
       AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
       AND c.relnamespace OPERATOR(pg_catalog.=) 'm365'::pg_catalog.regnamespace
       AND (l.mode OPERATOR(pg_catalog.=) ANY ('{ShareUpdateExclusiveLock,ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}'::text[])
            OR (l.mode OPERATOR(pg_catalog.=) 'RowExclusiveLock' AND c.relname OPERATOR(pg_catalog.=) 'reserved_username'))
     ORDER BY l.granted DESC, l.pid
     LIMIT 1
$$;
REVOKE ALL ON FUNCTION m365.table_lock_holder() FROM PUBLIC;

CREATE FUNCTION m365.generate_usernames(max_count integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
-- The chunk's sorts and hashes (50,000 rows) in memory, not spilled to disk.
SET work_mem = '32MB'
-- A lock held elsewhere makes the run give way (recorded), not wait forever.
SET lock_timeout = '5s'
AS $$
DECLARE
    chunk_size constant integer := 50000;
    processed integer := 0;
    created   integer := 0;
    claimed   integer;
    deferred  m365.username_queue_deferred;
    first     integer;
    holder    record;
    started   timestamptz := pg_catalog.clock_timestamp();
    last_deferred bigint;
BEGIN
    IF max_count OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'max_count must not be negative, got %', max_count USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM m365.job_run AS r
     WHERE r.started_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) '90 days'::interval);
    -- One run at a time; a second one returns at once instead of waiting.
    -- (SKIP LOCKED, not a subtransaction: the lease then carries the run's
    -- own transaction id, which m365.lease_holder finds in pg_locks.)
    PERFORM FROM m365.job_lease AS j WHERE j.job OPERATOR(pg_catalog.=) 'generate_usernames' FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        SELECT * INTO holder FROM m365.lease_holder('generate_usernames');
        INSERT INTO m365.job_run (job, started_at, finished_at, outcome, created, blocker_pid, blocker_role, detail)
        VALUES ('generate_usernames', started, pg_catalog.clock_timestamp(), 'skipped', 0, holder.pid, holder.role,
                'another run of the job was running');
        RAISE NOTICE 'm365.generate_usernames is already running (pid %, role %); nothing done', holder.pid, holder.role;
        RETURN 0;
    END IF;
    -- Every lock the run needs, up front and within lock_timeout: whoever
    -- holds one up is recorded instead of the run failing somewhere later.
    -- Names reserved while the job runs wait for it: what it checked stays true.
    BEGIN
        LOCK TABLE m365.reserved_username IN SHARE MODE;
        LOCK TABLE m365.username, m365.issued_username, m365.username_queue, m365.username_queue_deferred
            IN ROW EXCLUSIVE MODE;
        LOCK TABLE m365.configuration, m365.school, m365.location, m365.student, m365.enrolment, m365.staff,
                   m365.staff_school IN ACCESS SHARE MODE;
    EXCEPTION WHEN lock_not_available THEN
        SELECT * INTO holder FROM m365.table_lock_holder();
        INSERT INTO m365.job_run (job, started_at, finished_at, outcome, created, blocker_pid, blocker_role, detail)
        VALUES ('generate_usernames', started, pg_catalog.clock_timestamp(), 'blocked', 0, holder.pid, holder.role,
                pg_catalog.format('%s held %s on %s for longer than lock_timeout (%s)',
                                  coalesce(holder.role::text, 'a session'), holder.mode, holder.relation,
                                  pg_catalog.current_setting('lock_timeout')));
        RAISE WARNING 'm365.generate_usernames was held up by pid % (role %); nothing done', holder.pid, holder.role
            USING DETAIL = pg_catalog.format('%s on %s', holder.mode, holder.relation);
        RETURN 0;
    END;
    -- A run that fails rolls its work back but is recorded, with the error:
    -- an application's lock or data must never make runs fail unseen.
    BEGIN
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
    -- (uncommitted) is not seen and waits for the next run, and so does a call
    -- this run writes itself (m365.generation_store).
    last_deferred := (SELECT pg_catalog.max(d.id) FROM m365.username_queue_deferred AS d);
    LOOP
        EXIT WHEN max_count IS NOT NULL;
        DELETE FROM m365.username_queue_deferred AS d
         WHERE d.id OPERATOR(pg_catalog.=) (SELECT pg_catalog.min(d2.id) FROM m365.username_queue_deferred AS d2)
           AND d.id OPERATOR(pg_catalog.<=) last_deferred
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
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO m365.job_run (job, started_at, finished_at, outcome, created, detail)
        VALUES ('generate_usernames', started, pg_catalog.clock_timestamp(), 'failed', 0,
                SQLSTATE OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||) SQLERRM);
        RAISE WARNING 'm365.generate_usernames failed; nothing done: %', SQLERRM USING DETAIL = SQLSTATE;
        RETURN 0;
    END;
    -- After a bulk run (1 September) the planner would otherwise plan the
    -- lists and the SDS feed with the statistics of a nearly empty table until
    -- autovacuum comes by.
    IF created OPERATOR(pg_catalog.>=) 1000 THEN
        ANALYZE m365.username, m365.issued_username;
    END IF;
    -- Nothing of the run stays behind in the working tables.
    TRUNCATE m365_work.batch, m365_work.given_name, m365_work.waiting, m365_work.suffix_cursor,
             m365_work.claimed;
    INSERT INTO m365.job_run (job, started_at, finished_at, outcome, created)
    VALUES ('generate_usernames', started, pg_catalog.clock_timestamp(), 'done', created);
    RETURN created;
END
$$;
COMMENT ON FUNCTION m365.generate_usernames(integer) IS
'The job: makes the usernames of queued people (at most max_count queue entries; NULL: all); returns how many were created';
REVOKE ALL ON FUNCTION m365.generate_usernames(integer) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.generate_usernames(integer)');

REVOKE ALL ON FUNCTION m365.generation_begin_chunk(), m365.generation_claim(integer),
                       m365.generation_claim_deferred(m365.username_queue_deferred, integer, integer),
                       m365.generation_fill_batch(), m365.generation_assign(), m365.generation_store(boolean),
                       m365.generation_store_one_by_one() FROM PUBLIC;

