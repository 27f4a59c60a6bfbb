--------------------------------------------------------------------------------
-- The generation job: CALL m365.generate_usernames().
--
-- A run serves the log (m365.username_request) in chunks of 50,000 rows, one
-- transaction each: it reads a chunk's rows, decides with the one rule who
-- needs a username, makes the names as a set in the job's working tables
-- (the format, the fallback formats, then numeric suffixes, all checked
-- against the names in use, issued and reserved by index probes), stores
-- them (one row per new name), records failures, and deletes exactly the log
-- rows it read. A crash or cancel loses the chunk in flight only, whose rows
-- are still in the log. What is appended during a run is served next time.
--
-- Who waits for whom: the application appends to the log and never waits
-- for a run. A run holds, per chunk, the lease row, its working tables and
-- a SHARE lock on reserved_username and tenant_account (an administrator
-- reserving a name or importing the tenant waits for at most one chunk); a session taking the very name the chunk
-- stores waits on that name's index entry for at most one chunk.
--------------------------------------------------------------------------------

-- The job's working tables, in a schema of their own that nobody but the
-- extension's owner may use. Not temporary tables: those live in the caller's
-- temporary schema, where the caller can create one first, with a trigger that
-- the job would fire with the owner's rights. Not in schema m365 either: a
-- role that can name a table can hold a lock on it without any right on it
-- (PREPARE parses, and locks, before rights are checked), and the TRUNCATE of
-- each chunk would wait for it. One chunk at a time (the lease in
-- m365.job_lease), so one set of tables serves every run; UNLOGGED, as their
-- rows never outlive the chunk's transaction.
CREATE SCHEMA m365_work;
COMMENT ON SCHEMA m365_work IS 'm365_usernames: the generation job''s working tables (the extension''s owner only)';
-- The log rows of this chunk.
CREATE UNLOGGED TABLE m365_work.claimed (
    request_id   bigint NOT NULL,
    person_kind  text NOT NULL,
    person_id    bigint NOT NULL
);
-- A person's first row, by an index probe: joined as a set, the planner
-- (which cannot estimate the rule's output) looped 50,000 x 50,000.
CREATE INDEX claimed_person ON m365_work.claimed (person_kind, person_id, request_id);
-- Who of them needs a username now, and what to make it from.
CREATE UNLOGGED TABLE m365_work.batch (
    configuration_id bigint NOT NULL,
    person_kind      text NOT NULL,
    person_id        bigint NOT NULL,
    first_request    bigint NOT NULL,  -- first come, first served
    first_name       text,
    last_name        text,
    domain           text,
    formats          text[] NOT NULL,
    base             text,     -- the name in the configuration's format
    -- pending: to be stored (and so left once stored at the store's first
    -- try); done: has a username now; failed: none can be made (error);
    -- retry: still colliding, stays in the log for the next run
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
    suffix           integer,
    format           text,     -- NULL: the configuration's format (suffixed names)
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

-- Step 1: read a chunk of the log into m365_work.claimed, then work out into
-- m365_work.batch who of them needs a username (the rule) and has none.
CREATE FUNCTION m365.generation_claim(read_to bigint, up_to bigint, wanted integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The plans are costed high (per-row subplans) and run once: JIT compiling
-- them took a second per call, longer than running them.
SET jit = off
AS $$
DECLARE
    served   integer;
    students bigint[];
    staff    bigint[];
BEGIN
    TRUNCATE m365_work.claimed, m365_work.batch, m365_work.given_name, m365_work.suffix_cursor;
    INSERT INTO m365_work.claimed (request_id, person_kind, person_id)
    SELECT r.id, r.person_kind, r.person_id
      FROM m365.username_request AS r
     WHERE r.id OPERATOR(pg_catalog.>) coalesce(read_to, 0) AND r.id OPERATOR(pg_catalog.<=) up_to
     ORDER BY r.id
     LIMIT wanted;
    GET DIAGNOSTICS served = ROW_COUNT;
    IF served OPERATOR(pg_catalog.=) 0 THEN
        RETURN 0;
    END IF;
    SELECT pg_catalog.array_agg(DISTINCT c.person_id) FILTER (WHERE c.person_kind OPERATOR(pg_catalog.=) 'student'),
           pg_catalog.array_agg(DISTINCT c.person_id) FILTER (WHERE c.person_kind OPERATOR(pg_catalog.=) 'staff')
      INTO students, staff
      FROM m365_work.claimed AS c;

    INSERT INTO m365_work.batch
           (configuration_id, person_kind, person_id, first_request, first_name, last_name, domain, formats,
            base, outcome, error)
    SELECT c.configuration_id, c.person_kind, c.person_id, c.first_request, c.first_name, c.last_name, c.domain,
           c.formats, c.base,
           CASE WHEN c.base IS NULL THEN 'failed' ELSE 'pending' END,
           CASE WHEN c.base IS NULL THEN
               'the official first and last name yield no username (nothing is left after transliteration to a-z, 0-9 and -)'
           END
      FROM (
    SELECT n.configuration_id, n.person_kind, n.person_id,
           (SELECT pg_catalog.min(q.request_id) FROM m365_work.claimed AS q
             WHERE q.person_kind OPERATOR(pg_catalog.=) n.person_kind
               AND q.person_id OPERATOR(pg_catalog.=) n.person_id) AS first_request,
           coalesce(st.first_name, sf.first_name) AS first_name, coalesce(st.last_name, sf.last_name) AS last_name,
           -- Staff: the domain of the school they were linked to first.
           CASE WHEN n.person_kind OPERATOR(pg_catalog.=) 'staff' THEN
               (SELECT sc.staff_domain
                  FROM m365.staff_school AS ss
                  JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
                 WHERE ss.staff_id OPERATOR(pg_catalog.=) n.person_id
                   AND sc.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                 ORDER BY ss.linked_at, ss.school_id
                 LIMIT 1)
           END AS domain,
           ARRAY[cf.username_format] OPERATOR(pg_catalog.||) cf.fallback_formats AS formats,
           m365.make_username(cf.username_format, coalesce(st.first_name, sf.first_name),
                              coalesce(st.last_name, sf.last_name)) AS base
      FROM m365.people_needing_username(students, staff) AS n
      JOIN m365.configuration AS cf ON cf.id OPERATOR(pg_catalog.=) n.configuration_id
      LEFT JOIN m365.student AS st
             ON n.person_kind OPERATOR(pg_catalog.=) 'student' AND st.id OPERATOR(pg_catalog.=) n.person_id
      LEFT JOIN m365.staff AS sf
             ON n.person_kind OPERATOR(pg_catalog.=) 'staff' AND sf.id OPERATOR(pg_catalog.=) n.person_id
     WHERE (SELECT true FROM m365.username AS u
             WHERE u.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
               AND u.person_kind OPERATOR(pg_catalog.=) n.person_kind
               AND u.person_id OPERATOR(pg_catalog.=) n.person_id) IS NULL
    -- A fence: the outer CASEs name base twice, and flattened each mention
    -- ran make_username again.
    OFFSET 0
    ) AS c;
    -- Never analysed by autovacuum within the chunk.
    ANALYZE m365_work.batch;
    RETURN served;
END
$$;

-- Step 2: give every pending person of the batch without a name a free one,
-- into m365_work.given_name.
CREATE FUNCTION m365.generation_assign()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    levels  integer;
    round   integer := 0;
    waiting integer;
    placed  integer;
BEGIN
    -- The format, then each fallback format: a name free for the person
    -- (their own old name included), one winner per name.
    SELECT pg_catalog.max(pg_catalog.cardinality(formats)) INTO levels
      FROM m365_work.batch WHERE outcome OPERATOR(pg_catalog.=) 'pending';
    FOR level IN 1 .. coalesce(levels, 0) LOOP
        INSERT INTO m365_work.given_name
               (configuration_id, person_kind, person_id, local_part, issued_base, suffix, format)
        SELECT DISTINCT ON (c.configuration_id, c.name)
               c.configuration_id, c.person_kind, c.person_id, c.name, c.name, NULL, c.format
          FROM (SELECT b.configuration_id, b.person_kind, b.person_id, b.first_request, b.formats[level] AS format,
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
           AND (SELECT f.is_free FROM m365.username_freedom(c.configuration_id, c.name, c.person_kind, c.person_id) AS f)
           AND NOT EXISTS (SELECT FROM m365_work.given_name AS o
                            WHERE o.configuration_id OPERATOR(pg_catalog.=) c.configuration_id
                              AND o.local_part OPERATOR(pg_catalog.=) c.name)
         ORDER BY c.configuration_id, c.name, c.first_request, c.person_kind, c.person_id;
    END LOOP;

    -- Numeric suffixes on the format's name: base2, base3, ... Each base has a
    -- cursor that starts above the highest suffix ever generated for it and
    -- moves past every suffix it has probed, so 10,000 people with one name
    -- cost a few windows, not 10,000 searches from base2. A window holds one
    -- candidate per waiting person and two spare: above the cursor only edited
    -- or reserved names can be taken (16 spare probed 12 names per person).
    -- A base still waiting after a round doubles its window: thousands of
    -- names taken by edits or reserved (which carry no suffix for the cursor)
    -- cost a dozen rounds. Probing stops at the base's last free name needed,
    -- so the doubling costs nothing past the taken names (a red team reserved
    -- suffixes 2 to 100,000: the last window probed 96,000 names to place
    -- 3,000). Whoever has no name after 40 rounds fails alone, with the
    -- reason; the run goes on.
    LOOP
        TRUNCATE m365_work.waiting;
        INSERT INTO m365_work.waiting
        SELECT b.configuration_id, b.person_kind, b.person_id, b.base,
               pg_catalog.row_number() OVER (PARTITION BY b.configuration_id, b.base
                                             ORDER BY b.first_request, b.person_kind, b.person_id)
          FROM m365_work.batch AS b
         WHERE b.outcome OPERATOR(pg_catalog.=) 'pending'
           AND NOT EXISTS (SELECT FROM m365_work.given_name AS g
                            WHERE g.configuration_id OPERATOR(pg_catalog.=) b.configuration_id
                              AND g.person_kind OPERATOR(pg_catalog.=) b.person_kind
                              AND g.person_id OPERATOR(pg_catalog.=) b.person_id);
        GET DIAGNOSTICS waiting = ROW_COUNT;
        EXIT WHEN waiting OPERATOR(pg_catalog.=) 0;
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
               coalesce((SELECT h.highest FROM m365.highest_suffix_row(g.configuration_id, g.base) AS h), 1) OPERATOR(pg_catalog.+) 1
          FROM (SELECT DISTINCT w.configuration_id, w.base FROM m365_work.waiting AS w) AS g
        ON CONFLICT DO NOTHING;

        WITH window_ AS (
            SELECT n.configuration_id, n.base, n.k, cur.next_suffix AS lo,
                   cur.next_suffix OPERATOR(pg_catalog.+)
                   (n.k OPERATOR(pg_catalog.+) 2) OPERATOR(pg_catalog.*) (1::bigint OPERATOR(pg_catalog.<<) pg_catalog.int4smaller(round OPERATOR(pg_catalog.-) 1, 20)) AS hi
              FROM (SELECT w.configuration_id, w.base, pg_catalog.count(*) AS k
                      FROM m365_work.waiting AS w GROUP BY w.configuration_id, w.base) AS n
              JOIN m365_work.suffix_cursor AS cur
                ON cur.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
               AND cur.base OPERATOR(pg_catalog.=) n.base
        ), probed AS (
            -- Each base's first k free names in its window, in suffix order
            -- (generate_series yields them so; an ORDER BY would probe them all).
            -- Both checks are scalar subqueries, probed per name: as NOT
            -- EXISTS the planner made an anti join that hashed all of
            -- given_name once per base (a 200,000 run did not end in 2 min).
            SELECT w.configuration_id, w.base, c.suffix, c.name
              FROM window_ AS w
             CROSS JOIN LATERAL
                   (SELECT s.suffix, s.name
                      FROM (SELECT n AS suffix, m365.username_with_suffix(w.base, n) AS name
                              FROM pg_catalog.generate_series(w.lo, w.hi OPERATOR(pg_catalog.-) 1) AS n) AS s
                     WHERE (SELECT f.is_free FROM m365.username_freedom(w.configuration_id, s.name, NULL, NULL) AS f)
                       AND (SELECT true FROM m365_work.given_name AS o
                             WHERE o.configuration_id OPERATOR(pg_catalog.=) w.configuration_id
                               AND o.local_part OPERATOR(pg_catalog.=) s.name) IS NULL
                     LIMIT w.k) AS c
        ), moved AS (
            -- Past the last name probed: the k-th free one, or the window's end.
            UPDATE m365_work.suffix_cursor AS cur
               SET next_suffix = CASE WHEN p.found OPERATOR(pg_catalog.=) w.k THEN p.last OPERATOR(pg_catalog.+) 1 ELSE w.hi END
              FROM window_ AS w
              LEFT JOIN (SELECT p.configuration_id, p.base, pg_catalog.count(*) AS found, pg_catalog.max(p.suffix) AS last
                           FROM probed AS p GROUP BY p.configuration_id, p.base) AS p
                ON p.configuration_id OPERATOR(pg_catalog.=) w.configuration_id AND p.base OPERATOR(pg_catalog.=) w.base
             WHERE cur.configuration_id OPERATOR(pg_catalog.=) w.configuration_id
               AND cur.base OPERATOR(pg_catalog.=) w.base
        ), free AS (
            -- One base per name (two bases can meet after cutting to 64 characters).
            SELECT DISTINCT ON (p.configuration_id, p.name) p.*
              FROM probed AS p
             ORDER BY p.configuration_id, p.name, p.base
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
               (configuration_id, person_kind, person_id, local_part, issued_base, suffix, format)
        SELECT w.configuration_id, w.person_kind, w.person_id, fb.names[w.rn], w.base, fb.suffixes[w.rn], NULL
          FROM m365_work.waiting AS w
          JOIN free_by_base AS fb
            ON fb.configuration_id OPERATOR(pg_catalog.=) w.configuration_id
           AND fb.base OPERATOR(pg_catalog.=) w.base
         WHERE w.rn OPERATOR(pg_catalog.<=) pg_catalog.cardinality(fb.names);
        -- Everyone placed: no round to find that out.
        GET DIAGNOSTICS placed = ROW_COUNT;
        EXIT WHEN placed OPERATOR(pg_catalog.=) waiting;
    END LOOP;
END
$$;

-- The rows step 3 stores: each given name, with its person's domain.
CREATE FUNCTION m365.generation_names_to_store()
RETURNS TABLE (configuration_id bigint, person_kind text, person_id bigint, username text, base text,
               suffix integer, format text, names_digest bytea)
LANGUAGE sql STABLE
-- A SQL-standard body without SET, inlined into both INSERTs of step 3.
BEGIN ATOMIC
    SELECT g.configuration_id, g.person_kind, g.person_id,
           CASE WHEN b.domain IS NULL THEN g.local_part
                ELSE g.local_part OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) b.domain END,
           g.issued_base, g.suffix, coalesce(g.format, b.formats[1]), m365.names_digest(b.first_name, b.last_name)
      FROM m365_work.given_name AS g
      JOIN m365_work.batch AS b
        ON b.configuration_id OPERATOR(pg_catalog.=) g.configuration_id
       AND b.person_kind OPERATOR(pg_catalog.=) g.person_kind
       AND b.person_id OPERATOR(pg_catalog.=) g.person_id
     WHERE b.outcome OPERATOR(pg_catalog.=) 'pending';
END;

-- Step 3: store the given names, one row each in m365.username, and answer
-- how many were stored and how many collided. First as one plain INSERT:
-- the names were free when given, and a plain insert costs less than ON
-- CONFLICT's speculative one. If another session took one of the names since
-- (an edit, a reserved name) or retired one (the ledger check of
-- m365.username_keep_ledger), that INSERT is undone, one subtransaction for
-- the chunk, and the store goes on name by name with ON CONFLICT DO NOTHING:
-- only the people whose names are no longer free are given a name again.
CREATE FUNCTION m365.generation_store(OUT created integer, OUT collisions integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    stored integer;
    lost   integer;
BEGIN
    created := 0;
    collisions := 0;
    FOR attempt IN 1 .. 10 LOOP
        PERFORM m365.generation_assign();
        stored := NULL;
        BEGIN
            IF attempt OPERATOR(pg_catalog.=) 1 THEN
                INSERT INTO m365.username (configuration_id, person_kind, person_id, username, base, suffix, format, names_digest)
                SELECT s.configuration_id, s.person_kind, s.person_id, s.username, s.base, s.suffix, s.format, s.names_digest
                  FROM m365.generation_names_to_store() AS s;
            ELSE
                INSERT INTO m365.username (configuration_id, person_kind, person_id, username, base, suffix, format, names_digest)
                SELECT s.configuration_id, s.person_kind, s.person_id, s.username, s.base, s.suffix, s.format, s.names_digest
                  FROM m365.generation_names_to_store() AS s
                ON CONFLICT DO NOTHING;
            END IF;
            GET DIAGNOSTICS stored = ROW_COUNT;
            created := created OPERATOR(pg_catalog.+) stored;
        EXCEPTION
            WHEN unique_violation THEN
                -- A name of the chunk was taken or retired by a session that
                -- committed while the store ran: nothing of this attempt is stored.
                NULL;
            WHEN lock_not_available THEN
                -- A session holds one of these names uncommitted for longer than
                -- lock_timeout (a red-team find: it made every run fail). Which
                -- name cannot be told; the chunk's unstored people stay in the
                -- log for the next run, and the run goes on.
                UPDATE m365_work.batch AS b SET outcome = 'retry'
                 WHERE b.outcome OPERATOR(pg_catalog.=) 'pending';
                collisions := collisions OPERATOR(pg_catalog.+) 1;
                RETURN;
        END;
        -- Everyone stored at the first try: the usual case, done without
        -- rewriting the batch (marking 50,000 rows cost a quarter second).
        IF attempt OPERATOR(pg_catalog.=) 1 AND stored IS NOT NULL THEN
            RETURN;
        END IF;
        -- Whoever has a username now (stored by this attempt, or made
        -- elsewhere meanwhile) is done.
        UPDATE m365_work.batch AS b SET outcome = 'done'
         WHERE b.outcome OPERATOR(pg_catalog.=) 'pending'
           AND EXISTS (SELECT FROM m365.username AS u
                        WHERE u.configuration_id OPERATOR(pg_catalog.=) b.configuration_id
                          AND u.person_kind OPERATOR(pg_catalog.=) b.person_kind
                          AND u.person_id OPERATOR(pg_catalog.=) b.person_id);
        -- Of those still pending, forget only the names no longer free (an
        -- attempt undone by the ledger check leaves the others' names good).
        DELETE FROM m365_work.given_name AS g
         USING m365_work.batch AS b
         WHERE b.outcome OPERATOR(pg_catalog.=) 'pending'
           AND b.configuration_id OPERATOR(pg_catalog.=) g.configuration_id
           AND b.person_kind OPERATOR(pg_catalog.=) g.person_kind
           AND b.person_id OPERATOR(pg_catalog.=) g.person_id
           AND NOT (SELECT f.is_free FROM m365.username_freedom(g.configuration_id, g.local_part, g.person_kind, g.person_id) AS f);
        GET DIAGNOSTICS lost = ROW_COUNT;
        collisions := collisions OPERATOR(pg_catalog.+) lost;
        IF NOT EXISTS (SELECT FROM m365_work.batch AS b WHERE b.outcome OPERATOR(pg_catalog.=) 'pending') THEN
            RETURN;
        END IF;
    END LOOP;
    -- Still colliding after ten attempts: not a failure of the person; they
    -- stay in the log for the next run.
    UPDATE m365_work.batch AS b SET outcome = 'retry'
     WHERE b.outcome OPERATOR(pg_catalog.=) 'pending';
END
$$;

-- Step 4: the failures of the chunk's people, and the log rows it read.
CREATE FUNCTION m365.generation_settle()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    keep_unneeded boolean;
BEGIN
    -- Failures of the people read that are over (a username, or none needed).
    DELETE FROM m365.username_failure AS f
     USING (SELECT DISTINCT c.person_kind, c.person_id FROM m365_work.claimed AS c) AS c
     WHERE f.person_kind OPERATOR(pg_catalog.=) c.person_kind
       AND f.person_id OPERATOR(pg_catalog.=) c.person_id
       AND NOT EXISTS (SELECT FROM m365_work.batch AS b
                        WHERE b.outcome OPERATOR(pg_catalog.=) 'failed'
                          AND b.configuration_id OPERATOR(pg_catalog.=) f.configuration_id
                          AND b.person_kind OPERATOR(pg_catalog.=) f.person_kind
                          AND b.person_id OPERATOR(pg_catalog.=) f.person_id);
    INSERT INTO m365.username_failure AS f (configuration_id, person_kind, person_id, reason)
    SELECT b.configuration_id, b.person_kind, b.person_id, b.error
      FROM m365_work.batch AS b
     WHERE b.outcome OPERATOR(pg_catalog.=) 'failed'
    ON CONFLICT (configuration_id, person_kind, person_id) DO UPDATE
       SET reason = excluded.reason, attempts = f.attempts OPERATOR(pg_catalog.+) 1,
           last_failed_at = pg_catalog.now();
    -- Exactly the rows read: a row appended meanwhile, even with a lower id
    -- (committed after this chunk read the log), stays for the next run; so
    -- do the rows of people whose names kept colliding. And while another
    -- transaction writes locations or schools, so do the rows of the people
    -- the rule found nothing for: a link not yet committed may make them
    -- need a username, and its own trigger may not see them (REPEATABLE
    -- READ, SET CONSTRAINTS ... IMMEDIATE, a commit held up after it: red-team
    -- finds). The next run decides again.
    keep_unneeded := EXISTS (
        SELECT FROM pg_catalog.pg_locks AS l
         WHERE l.locktype OPERATOR(pg_catalog.=) 'relation'
           AND l.relation OPERATOR(pg_catalog.=) ANY (ARRAY['m365.location'::pg_catalog.regclass, 'm365.school'::pg_catalog.regclass])
           AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database AS d
                                                   WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
           AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
           AND l.mode OPERATOR(pg_catalog.=) ANY ('{RowExclusiveLock,ShareUpdateExclusiveLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}'::text[]));
    DELETE FROM m365.username_request AS r
     USING m365_work.claimed AS c
     WHERE r.id OPERATOR(pg_catalog.=) c.request_id
       AND NOT EXISTS (SELECT FROM m365_work.batch AS b
                        WHERE b.outcome OPERATOR(pg_catalog.=) 'retry'
                          AND b.person_kind OPERATOR(pg_catalog.=) c.person_kind
                          AND b.person_id OPERATOR(pg_catalog.=) c.person_id)
       AND NOT (keep_unneeded
                AND NOT EXISTS (SELECT FROM m365_work.batch AS b
                                 WHERE b.person_kind OPERATOR(pg_catalog.=) c.person_kind
                                   AND b.person_id OPERATOR(pg_catalog.=) c.person_id));
END
$$;

-- One run at a time, by a lease row only the job (the extension's owner) can
-- lock or write: an advisory lock can be taken by any session, which could
-- make every run quietly do nothing. A chunk holds the row locked; between
-- chunks (committed) the row names the run, and another run gives way while
-- that run's session is still running the statement that started it.
CREATE TABLE m365.job_lease (
    job                 text PRIMARY KEY,
    run_id              bigint,
    run_pid             integer,
    run_backend_start   timestamptz,
    run_began_at        timestamptz,
    -- The last log row of the run: what is appended later is the next run's.
    run_up_to           bigint,
    -- The last log row its chunks have read: each chunk reads past it, so a
    -- row kept for the next run (collisions) is not read again by this one.
    run_read_to         bigint,
    -- A test hook only the owner can set: each chunk sleeps this long before
    -- it commits (holding what a chunk holds), to show that nobody waits.
    pause_in_chunk      interval
);
COMMENT ON TABLE m365.job_lease IS 'One row per job: the run that holds it, and its chunk holds the row locked (FOR UPDATE) while it works';
INSERT INTO m365.job_lease (job) VALUES ('generate_usernames');

CREATE TABLE m365.job_run (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job          text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at  timestamptz,
    -- running; done; skipped (another run held the lease); blocked (a lock on
    -- the extension's tables was not granted within the job's lock_timeout);
    -- failed (an error: the chunk in flight is rolled back, detail says why);
    -- interrupted (the session ended or was cancelled mid-run)
    outcome      text NOT NULL CONSTRAINT job_run_outcome_known CHECK (outcome OPERATOR(pg_catalog.=) ANY ('{running,done,skipped,blocked,failed,interrupted}'::text[])),
    created      integer,
    run_by       name NOT NULL DEFAULT SESSION_USER,
    blocker_pid  integer,
    blocker_role name,
    detail       text,
    -- Log rows served, and names found taken by another session at store time.
    served       integer,
    collisions   integer
);
CREATE INDEX job_run_job ON m365.job_run (job, started_at);
COMMENT ON TABLE m365.job_run IS 'Every run of the generation job: when, by whom, how it ended, what it served and created, and why a run did nothing (who held it up, or the error; kept 90 days)';
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.job_run');

-- Whether the run named in a lease row is still going: its session (pid and
-- backend start) is still running the statement that began the run, one that
-- started no later than the run began (a cancelled run's session has moved on
-- to later statements, or is idle).
CREATE FUNCTION m365.lease_run_is_alive(lease m365.job_lease)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN lease.run_id IS NOT NULL
   AND EXISTS (SELECT FROM pg_catalog.pg_stat_activity AS a
                WHERE a.pid OPERATOR(pg_catalog.=) lease.run_pid
                  AND a.backend_start OPERATOR(pg_catalog.=) lease.run_backend_start
                  AND a.query_start OPERATOR(pg_catalog.<=) lease.run_began_at
                  AND a.state OPERATOR(pg_catalog.=) 'active');
REVOKE ALL ON FUNCTION m365.lease_run_is_alive(m365.job_lease) FROM PUBLIC;

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

-- The locks a chunk takes before it works, in the order it takes them, with
-- the pg_locks modes that stand in their way (PostgreSQL's conflict table for
-- these three modes). Names reserved or imported from the tenant while a
-- chunk runs wait for it (SHARE): what it checked stays true.
CREATE FUNCTION m365.generation_locks(OUT relation pg_catalog.regclass, OUT lock_mode text, OUT conflicts text[])
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.relation::pg_catalog.regclass, m.lock_mode, m.conflicts
      FROM (VALUES ('SHARE', '{RowExclusiveLock,ShareUpdateExclusiveLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}'::text[], 1),
                   ('ROW EXCLUSIVE', '{ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock}'::text[], 2),
                   ('ACCESS SHARE', '{AccessExclusiveLock}'::text[], 3)) AS m (lock_mode, conflicts, step)
      JOIN (VALUES ('m365.reserved_username', 1), ('m365.tenant_account', 1),
                   ('m365.username', 2), ('m365.issued_username', 2), ('m365.username_request', 2),
                   ('m365.username_failure', 2),
                   ('m365.configuration', 3), ('m365.school', 3), ('m365.location', 3), ('m365.student', 3),
                   ('m365.enrolment', 3), ('m365.staff', 3), ('m365.staff_school', 3)) AS t (relation, step)
        ON t.step OPERATOR(pg_catalog.=) m.step
     ORDER BY m.step, t.relation
$$;
REVOKE ALL ON FUNCTION m365.generation_locks() FROM PUBLIC;

-- Who holds, or waits ahead of the job for, a lock that conflicts with one
-- the chunk takes (the first such session; one that holds comes before one
-- that waits). Locks that do not conflict (autovacuum's SHARE UPDATE
-- EXCLUSIVE on a table the job writes, say) are not named: CI once named an
-- autovacuum worker.
CREATE FUNCTION m365.table_lock_holder(OUT pid integer, OUT role name, OUT relation text, OUT mode text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.pid, a.usename, g.relation::text,
           l.mode OPERATOR(pg_catalog.||) CASE WHEN l.granted THEN '' ELSE ' (waiting, ahead of the job)' END
      FROM m365.generation_locks() AS g
      JOIN pg_catalog.pg_locks AS l
        ON l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.relation OPERATOR(pg_catalog.=) g.relation
       AND l.mode OPERATOR(pg_catalog.=) ANY (g.conflicts)
      LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid OPERATOR(pg_catalog.=) l.pid
     WHERE l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database AS d
                                               WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
       AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
     ORDER BY l.granted DESC, l.pid
     LIMIT 1
$$;
REVOKE ALL ON FUNCTION m365.table_lock_holder() FROM PUBLIC;


-- Starts a run: takes the lease, or records why not (skipped) and answers
-- NULL. A run whose session is gone is recorded as interrupted.
CREATE FUNCTION m365.generation_begin(OUT run_id bigint, OUT up_to bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lease  m365.job_lease;
    holder record;
BEGIN
    DELETE FROM m365.job_run AS r
     WHERE r.started_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) '90 days'::interval);
    -- SKIP LOCKED, not a wait: a second run returns at once. (Not a
    -- subtransaction either: the lease then carries this transaction's id,
    -- which m365.lease_holder finds in pg_locks.)
    SELECT * INTO lease FROM m365.job_lease AS j WHERE j.job OPERATOR(pg_catalog.=) 'generate_usernames'
       FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR m365.lease_run_is_alive(lease) THEN
        IF FOUND THEN
            SELECT lease.run_pid AS pid, a.usename AS role INTO holder
              FROM pg_catalog.pg_stat_activity AS a WHERE a.pid OPERATOR(pg_catalog.=) lease.run_pid;
        ELSE
            SELECT * INTO holder FROM m365.lease_holder('generate_usernames');
        END IF;
        INSERT INTO m365.job_run (job, finished_at, outcome, created, served, blocker_pid, blocker_role, detail)
        VALUES ('generate_usernames', pg_catalog.clock_timestamp(), 'skipped', 0, 0, holder.pid, holder.role,
                'another run of the job was running');
        RAISE NOTICE 'm365.generate_usernames is already running (pid %, role %); nothing done', holder.pid, holder.role;
        RETURN;
    END IF;
    UPDATE m365.job_run AS r SET outcome = 'interrupted', finished_at = pg_catalog.clock_timestamp(),
                                 detail = 'the run''s session ended or cancelled it; its last chunk was rolled back'
     WHERE r.id OPERATOR(pg_catalog.=) lease.run_id AND r.outcome OPERATOR(pg_catalog.=) 'running';
    INSERT INTO m365.job_run (job, outcome, created, served, collisions)
    VALUES ('generate_usernames', 'running', 0, 0, 0)
    RETURNING id INTO run_id;
    up_to := (SELECT pg_catalog.max(r.id) FROM m365.username_request AS r);
    UPDATE m365.job_lease AS j
       SET run_id = generation_begin.run_id, run_pid = pg_catalog.pg_backend_pid(),
           run_backend_start = (SELECT a.backend_start FROM pg_catalog.pg_stat_activity AS a
                                 WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()),
           run_began_at = pg_catalog.clock_timestamp(),
           run_up_to = generation_begin.up_to, run_read_to = NULL
     WHERE j.job OPERATOR(pg_catalog.=) 'generate_usernames';
END
$$;
REVOKE ALL ON FUNCTION m365.generation_begin() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.generation_begin()');

-- One chunk of a run, in the caller's transaction: served is the number of
-- log rows read (0: the run is over), or NULL when the run must stop
-- (the lease is another's now, or a lock was not granted: recorded).
CREATE FUNCTION m365.generation_chunk(run_id bigint, OUT served integer, OUT created integer)
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
    lease  m365.job_lease;
    holder record;
    needed record;
    chunk_collisions integer;
BEGIN
    SELECT * INTO lease FROM m365.job_lease AS j WHERE j.job OPERATOR(pg_catalog.=) 'generate_usernames'
       FOR UPDATE SKIP LOCKED;
    -- Only the session that began the run works for it.
    IF NOT FOUND OR lease.run_id IS DISTINCT FROM generation_chunk.run_id
       OR lease.run_pid IS DISTINCT FROM pg_catalog.pg_backend_pid() THEN
        UPDATE m365.job_run AS r SET outcome = 'skipped', finished_at = pg_catalog.clock_timestamp(),
                                     detail = 'another run took the lease'
         WHERE r.id OPERATOR(pg_catalog.=) generation_chunk.run_id AND r.outcome OPERATOR(pg_catalog.=) 'running';
        RETURN;
    END IF;
    -- Every lock the chunk needs, up front and within lock_timeout: whoever
    -- holds one up is recorded instead of the run failing somewhere later.
    BEGIN
        FOR needed IN SELECT g.relation, g.lock_mode FROM m365.generation_locks() AS g LOOP
            EXECUTE pg_catalog.format('LOCK TABLE %s IN %s MODE', needed.relation, needed.lock_mode);
        END LOOP;
    EXCEPTION WHEN lock_not_available THEN
        SELECT * INTO holder FROM m365.table_lock_holder();
        UPDATE m365.job_run AS r
           SET outcome = 'blocked', finished_at = pg_catalog.clock_timestamp(),
               blocker_pid = holder.pid, blocker_role = holder.role,
               detail = pg_catalog.format('%s held %s on %s for longer than lock_timeout (%s)',
                                          coalesce(holder.role::text, 'a session'), holder.mode, holder.relation,
                                          pg_catalog.current_setting('lock_timeout'))
         WHERE r.id OPERATOR(pg_catalog.=) generation_chunk.run_id;
        RAISE WARNING 'm365.generate_usernames was held up by pid % (role %); it stops here', holder.pid, holder.role
            USING DETAIL = pg_catalog.format('%s on %s', holder.mode, holder.relation);
        RETURN;
    END;
    served := m365.generation_claim(lease.run_read_to, lease.run_up_to, chunk_size);
    UPDATE m365.job_lease AS j SET run_read_to = (SELECT pg_catalog.max(c.request_id) FROM m365_work.claimed AS c)
     WHERE j.job OPERATOR(pg_catalog.=) 'generate_usernames' AND served OPERATOR(pg_catalog.>) 0;
    created := 0;
    IF served OPERATOR(pg_catalog.=) 0 THEN
        RETURN;
    END IF;
    SELECT s.created, s.collisions INTO created, chunk_collisions FROM m365.generation_store() AS s;
    PERFORM m365.generation_settle();
    UPDATE m365.job_run AS r
       SET served = r.served OPERATOR(pg_catalog.+) generation_chunk.served,
           created = r.created OPERATOR(pg_catalog.+) generation_chunk.created,
           collisions = r.collisions OPERATOR(pg_catalog.+) chunk_collisions
     WHERE r.id OPERATOR(pg_catalog.=) generation_chunk.run_id;
    IF lease.pause_in_chunk IS NOT NULL THEN
        PERFORM pg_catalog.pg_sleep(pg_catalog.date_part('epoch', lease.pause_in_chunk));
    END IF;
END
$$;
REVOKE ALL ON FUNCTION m365.generation_chunk(bigint) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.generation_chunk(bigint)');

-- Ends a run: done, or failed with the error of the chunk that failed.
CREATE FUNCTION m365.generation_end(run_id bigint, error text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run m365.job_run;
BEGIN
    -- Only the session that began the run ends it.
    PERFORM FROM m365.job_lease AS j
      WHERE j.job OPERATOR(pg_catalog.=) 'generate_usernames'
        AND j.run_id OPERATOR(pg_catalog.=) generation_end.run_id
        AND j.run_pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
        FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    UPDATE m365.job_run AS r
       SET outcome = CASE WHEN error IS NULL THEN 'done' ELSE 'failed' END,
           finished_at = pg_catalog.clock_timestamp(), detail = error
     WHERE r.id OPERATOR(pg_catalog.=) generation_end.run_id AND r.outcome OPERATOR(pg_catalog.=) 'running'
    RETURNING * INTO run;
    UPDATE m365.job_lease AS j
       SET run_id = NULL, run_pid = NULL, run_backend_start = NULL, run_began_at = NULL, run_up_to = NULL, run_read_to = NULL
     WHERE j.job OPERATOR(pg_catalog.=) 'generate_usernames' AND j.run_id OPERATOR(pg_catalog.=) generation_end.run_id;
    IF error IS NOT NULL THEN
        RAISE WARNING 'm365.generate_usernames failed; its last chunk was rolled back: %', error;
    ELSE
        -- Where a configuration lets them, usernames never in a feed SDS
        -- received follow their person's corrected names (65_renames.sql).
        -- Whatever stops that (a row an administrator holds) waits for the
        -- next run; the run itself is done.
        BEGIN
            PERFORM m365.follow_name_corrections();
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'm365.generate_usernames: corrected names not followed this run: %', SQLERRM;
        END;
    END IF;
    -- After a bulk run (1 September) the planner would otherwise plan the
    -- lists and the SDS feed with the statistics of a nearly empty table until
    -- autovacuum comes by.
    IF run.created OPERATOR(pg_catalog.>=) 1000 THEN
        ANALYZE m365.username;
    END IF;
    -- Nothing of the run stays behind in the working tables.
    TRUNCATE m365_work.claimed, m365_work.batch, m365_work.given_name, m365_work.waiting, m365_work.suffix_cursor;
    RETURN coalesce(run.created, 0);
END
$$;
REVOKE ALL ON FUNCTION m365.generation_end(bigint, text) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.generation_end(bigint, text)');

-- The job. A procedure, so that each chunk commits: it cannot be SECURITY
-- DEFINER nor carry SET clauses (those forbid COMMIT), so it runs as its
-- caller, names everything in full, and leaves the work to the owner's
-- functions above, which carry the settings. Call it on its own, outside a
-- transaction block (pg_cron's command is this CALL alone).
CREATE PROCEDURE m365.generate_usernames()
LANGUAGE plpgsql
AS $$
DECLARE
    run    record;
    served integer;
    error  pg_catalog.text;   -- (in full: this procedure has no search_path of its own)
BEGIN
    -- Rows of attached sources that waited for a parent committed meanwhile.
    PERFORM m365.retry_waiting_sources();
    COMMIT;
    SELECT * INTO run FROM m365.generation_begin();
    IF run.run_id IS NULL THEN
        RETURN;
    END IF;
    COMMIT;
    LOOP
        served := NULL;
        BEGIN
            SELECT c.served INTO served FROM m365.generation_chunk(run.run_id) AS c;
        EXCEPTION WHEN OTHERS THEN
            error := SQLSTATE OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||) SQLERRM;
        END;
        -- served NULL: the chunk stopped the run and recorded why.
        EXIT WHEN error IS NOT NULL OR served IS NULL OR served OPERATOR(pg_catalog.=) 0;
        COMMIT;
    END LOOP;
    PERFORM m365.generation_end(run.run_id, error);
    COMMIT;
END
$$;
COMMENT ON PROCEDURE m365.generate_usernames() IS
'The job: makes the usernames of the people in the log, committing per chunk of 50,000 (CALL it outside a transaction block)';
REVOKE ALL ON PROCEDURE m365.generate_usernames() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'PROCEDURE m365.generate_usernames()');

-- The same run inside the caller's transaction, all chunks in it (tests,
-- and whoever must see the names in their own transaction). Returns how
-- many usernames were created.
CREATE FUNCTION m365.generate_usernames_in_transaction()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run    record;
    served integer;
BEGIN
    PERFORM m365.retry_waiting_sources();
    SELECT * INTO run FROM m365.generation_begin();
    IF run.run_id IS NULL THEN
        RETURN 0;
    END IF;
    LOOP
        SELECT c.served INTO served FROM m365.generation_chunk(run.run_id) AS c;
        EXIT WHEN served IS NULL OR served OPERATOR(pg_catalog.=) 0;
    END LOOP;
    RETURN m365.generation_end(run.run_id);
END
$$;
COMMENT ON FUNCTION m365.generate_usernames_in_transaction() IS
'The job in the caller''s transaction (no commit per chunk); returns how many usernames were created';
REVOKE ALL ON FUNCTION m365.generate_usernames_in_transaction() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.generate_usernames_in_transaction()');

REVOKE ALL ON FUNCTION m365.generation_claim(bigint, bigint, integer), m365.generation_assign(),
                       m365.generation_names_to_store(), m365.generation_store(), m365.generation_settle() FROM PUBLIC;
