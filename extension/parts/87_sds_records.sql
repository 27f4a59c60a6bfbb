--------------------------------------------------------------------------------
-- What SDS received: the export records each feed it hands over, stored by
-- change. A row version holds for every record of its configuration from
-- first_record to last_record (NULL: up to the newest), so a record of an
-- unchanged feed adds one row to m365.sds_record and nothing else.
--------------------------------------------------------------------------------

-- The folder SDS reads (as the export names it: an absolute path); an export
-- to another folder is a preview and records nothing. NULL: the first export
-- that records sets it. Records older than the current school year and the
-- ones before it (sds_record_school_years in all) are removed, their counts
-- kept; the newest is never removed.
ALTER TABLE m365.configuration
    ADD COLUMN sds_folder text
        -- As the export names it: absolute, no "." or ".." part, no "//", no "/" at the end.
        CONSTRAINT configuration_sds_folder_absolute
            CHECK (sds_folder OPERATOR(pg_catalog.~) '^(/[^/]+)+$' AND sds_folder OPERATOR(pg_catalog.!~) '/\.\.?(/|$)')
        -- One configuration's feed per folder (a red-team find: another's export claimed it).
        CONSTRAINT configuration_sds_folder_unique UNIQUE,
    ADD COLUMN sds_record_school_years integer NOT NULL DEFAULT 2
        CONSTRAINT configuration_sds_record_school_years_positive CHECK (sds_record_school_years OPERATOR(pg_catalog.>=) 1),
    -- Retention of the history and of leavers' usernames (91_retention.sql); NULL: off.
    ADD COLUMN history_school_years integer
        CONSTRAINT configuration_history_school_years_positive CHECK (history_school_years OPERATOR(pg_catalog.>=) 1),
    ADD COLUMN leaver_school_years integer
        CONSTRAINT configuration_leaver_school_years_positive CHECK (leaver_school_years OPERATOR(pg_catalog.>=) 1);

CREATE TABLE m365.sds_record (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    recorded_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    on_date          date NOT NULL,
    counts           jsonb NOT NULL,  -- users, roles and enrollments (records from 0.2.0's snapshots: rows per file)
    folder           text,            -- where the export wrote it (NULL: a 0.2.0 snapshot)
    recorded_by      text NOT NULL DEFAULT SESSION_USER,
    removed_at       timestamptz      -- its rows were removed (retention); the counts stay
);
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_record');
CREATE INDEX sds_record_configuration ON m365.sds_record (configuration_id, id);
COMMENT ON TABLE m365.sds_record IS 'Each feed of a configuration that SDS received (the export records it): when, which day, counts';

-- The newest record of each configuration. A recording locks its row before
-- it takes a record id and updates it, so that two recordings cannot build
-- on the same newest one: the second fails with 40001 (or 23505 for a first
-- record) and swaps nothing.
CREATE TABLE m365.sds_record_head (
    configuration_id bigint PRIMARY KEY REFERENCES m365.configuration (id) ON DELETE CASCADE,
    newest_record    bigint           -- NULL: none yet
);

CREATE TABLE m365.sds_record_user (
    configuration_id bigint NOT NULL,
    sourced_id       text NOT NULL,
    username         text NOT NULL,
    first_record     bigint NOT NULL,
    last_record      bigint,
    PRIMARY KEY (configuration_id, sourced_id, first_record)
);
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_record_user');
COMMENT ON TABLE m365.sds_record_user IS 'The users of the recorded feeds, one row per version: in every record from first_record to last_record (NULL: the newest)';

-- Group memberships: a location's security group, a class team.
CREATE TABLE m365.sds_record_membership (
    configuration_id bigint NOT NULL,
    group_id         text NOT NULL,   -- location-<id> or class-<id>
    user_sourced_id  text NOT NULL,
    role             text NOT NULL,
    first_record     bigint NOT NULL,
    last_record      bigint,
    PRIMARY KEY (configuration_id, group_id, user_sourced_id, role, first_record)
);
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_record_membership');
COMMENT ON TABLE m365.sds_record_membership IS 'The group memberships of the recorded feeds, one row per version (see sds_record_user)';

-- The versions carry no foreign key (one check per row would cost more than
-- the record); a configuration deleted takes them along here.
CREATE FUNCTION m365.sds_record_versions_go()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM m365.sds_record_user AS v USING gone WHERE v.configuration_id OPERATOR(pg_catalog.=) gone.id;
    DELETE FROM m365.sds_record_membership AS v USING gone WHERE v.configuration_id OPERATOR(pg_catalog.=) gone.id;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.sds_record_versions_go() FROM PUBLIC;
CREATE TRIGGER configuration_sds_record_versions_go
    AFTER DELETE ON m365.configuration REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION m365.sds_record_versions_go();

-- The configuration whose feed this session may record, by the role that
-- logged in (SESSION_USER: a definer function sees itself as CURRENT_USER,
-- and a session cannot change who logged in): a reader its own; the
-- superuser or a member of an admin-level role the one it names. The rule
-- of m365.sds_scope, which asks it of CURRENT_USER for the views (a view
-- cannot call a function of schema m365 on a reader's behalf).
CREATE FUNCTION m365.sds_session_configuration(chosen bigint)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT r.configuration_id FROM m365.sds_reader AS r
          WHERE r.role_id::oid OPERATOR(pg_catalog.=) (SELECT o.oid FROM pg_catalog.pg_roles AS o
                                                       WHERE o.rolname OPERATOR(pg_catalog.=) SESSION_USER)),
        CASE WHEN (SELECT o.rolsuper FROM pg_catalog.pg_roles AS o WHERE o.rolname OPERATOR(pg_catalog.=) SESSION_USER)
                OR EXISTS (SELECT FROM m365.access_role AS a
                            WHERE a.level OPERATOR(pg_catalog.=) 'admin'
                              AND pg_catalog.pg_has_role(SESSION_USER, a.role_id::oid, 'MEMBER'))
             THEN chosen END)
$$;
REVOKE ALL ON FUNCTION m365.sds_session_configuration(bigint) FROM PUBLIC;

-- The feed's group memberships before its user set is joined to them: a
-- location's security group and a class team, as the record names them.
CREATE VIEW m365.sds_membership_candidate AS
SELECT 'location-' OPERATOR(pg_catalog.||) c.location_id AS group_id, c.user_sourced_id, c.role, c.person_kind, c.person_id
  FROM m365.sds_role_place AS c
UNION ALL
SELECT 'class-' OPERATOR(pg_catalog.||) c.class_id, c.user_sourced_id, c.role, c.person_kind, c.person_id
  FROM m365.sds_class_member_candidate AS c;

-- Records the feed of today as the export has just written it into folder
-- (the caller's transaction commits it once the files are in place).
-- outcome: 'recorded' (record: its id); 'preview' when folder is not the
-- configuration's SDS folder, or preview is true (detail says why); 'held'
-- when the brake holds it (88_sds_brake.sql: nothing is recorded, the hold
-- is, and detail says how many and why). A preview into the SDS folder is
-- refused: SDS would take it as the truth without a brake. A reader records
-- its own configuration; an admin names one. In a REPEATABLE READ
-- transaction only: the export's, whose snapshot the files come from (under
-- READ COMMITTED each statement would see another moment, and two calls at
-- once interleaved their versions: a red-team find).
CREATE FUNCTION m365_sds.record_feed(folder text, configuration_id bigint DEFAULT NULL, preview boolean DEFAULT false,
                                     OUT outcome text, OUT record bigint, OUT detail text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_nestloop = off
SET work_mem = '64MB'
-- Today, whatever the caller's session says: a preview's day is not recorded.
SET m365.sds_on_date = ''
SET m365.sds_configuration = ''
AS $$
DECLARE
    config    bigint := m365.sds_session_configuration(record_feed.configuration_id);
    kept      text;
    newest    bigint;
    previous  bigint;
    feed_counts jsonb;
    changed   bigint;
    renamed   bigint;
    digest    text;
BEGIN
    IF config IS NULL OR (record_feed.configuration_id IS NOT NULL
                          AND config OPERATOR(pg_catalog.<>) record_feed.configuration_id) THEN
        RAISE EXCEPTION 'this session may not record the SDS feed of configuration %', coalesce(record_feed.configuration_id::text, '(none)')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'An SDS reader records its own configuration; a superuser or m365_admin member names one.';
    END IF;
    IF folder IS NULL OR folder OPERATOR(pg_catalog.!~) '^(/[^/]+)+$' OR folder OPERATOR(pg_catalog.~) '/\.\.?(/|$)' THEN
        RAISE EXCEPTION 'record_feed needs the absolute path of the folder the feed was written to, as the export names it'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed' THEN
        RAISE EXCEPTION 'record_feed runs in a REPEATABLE READ transaction, whose snapshot the files were written from'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT c.sds_folder INTO kept FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) config;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'configuration % does not exist', config USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF preview OR preview IS NULL THEN
        IF kept OPERATOR(pg_catalog.=) folder THEN
            RAISE EXCEPTION 'a preview is never written to the SDS folder of configuration % (%): SDS would take it as the truth', config, folder
                USING ERRCODE = 'M3B01',
                      HINT = 'Write the preview (--on-date) to another folder.';
        END IF;
        outcome := 'preview';
        detail := 'not recorded: a preview of another day';
        RETURN;
    END IF;
    IF kept IS NOT NULL AND kept OPERATOR(pg_catalog.<>) folder THEN
        outcome := 'preview';
        detail := pg_catalog.format('not recorded: %s is not the SDS folder of configuration %s (%s)', folder, config, kept);
        RETURN;
    END IF;
    -- One record at a time per configuration, locked before the record's id
    -- is taken (see sds_record_head).
    INSERT INTO m365.sds_record_head (configuration_id) VALUES (config) ON CONFLICT ON CONSTRAINT sds_record_head_pkey DO NOTHING;
    SELECT h.newest_record INTO newest FROM m365.sds_record_head AS h
     WHERE h.configuration_id OPERATOR(pg_catalog.=) config FOR UPDATE;
    -- The users of the newest record: its count (every record has one).
    SELECT (r.counts OPERATOR(pg_catalog.->>) 'users')::bigint INTO previous FROM m365.sds_record AS r
     WHERE r.id OPERATOR(pg_catalog.=) newest;
    PERFORM pg_catalog.set_config('m365.sds_configuration', config::text, true);
    BEGIN
        INSERT INTO m365.sds_record (configuration_id, on_date, counts, folder)
        SELECT config, s.on_date, '{}', folder FROM m365.sds_scope AS s
        RETURNING id INTO record;
        UPDATE m365.sds_record_head AS h SET newest_record = record WHERE h.configuration_id OPERATOR(pg_catalog.=) config;
        IF kept IS NULL THEN
            UPDATE m365.configuration AS c SET sds_folder = folder WHERE c.id OPERATOR(pg_catalog.=) config;
        END IF;

        -- A version that is not in this feed ends with the newest record
        -- before it; what is new starts with this one. One statement, so that
        -- the feed's user set is computed once (m365.sds_role and
        -- sds_class_member are their candidates joined to it) and every part
        -- reads the versions as they were before it. The feed's rows are those
        -- the files are made of, unformatted; a user, group and role stands
        -- once in each part. A user version that ends is a user who leaves or
        -- is renamed: what the brake counts.
        WITH feed_user AS MATERIALIZED (
            SELECT u.person_kind, u.person_id, u.sourced_id, u.username FROM m365.sds_user AS u
        ), feed_membership AS MATERIALIZED (
            SELECT c.group_id, c.user_sourced_id, c.role
              FROM m365.sds_membership_candidate AS c
              JOIN feed_user AS u ON u.person_kind OPERATOR(pg_catalog.=) c.person_kind AND u.person_id OPERATOR(pg_catalog.=) c.person_id
        ), user_change AS MATERIALIZED (
            -- The open versions against the feed, one full join per kind
            -- (two anti-joins hashed each side once more): what ends, what is new.
            SELECT v.sourced_id AS old_id, v.username AS old_name, f.sourced_id AS new_id, f.username AS new_name
              FROM (SELECT o.sourced_id, o.username FROM m365.sds_record_user AS o
                     WHERE o.configuration_id OPERATOR(pg_catalog.=) config AND o.last_record IS NULL) AS v
              FULL JOIN feed_user AS f ON f.sourced_id OPERATOR(pg_catalog.=) v.sourced_id
                                      AND f.username OPERATOR(pg_catalog.=) v.username
             WHERE v.sourced_id IS NULL OR f.sourced_id IS NULL
        ), users_ended AS (
            UPDATE m365.sds_record_user AS v SET last_record = newest
              FROM user_change AS c
             WHERE c.new_id IS NULL AND v.configuration_id OPERATOR(pg_catalog.=) config AND v.last_record IS NULL
               AND v.sourced_id OPERATOR(pg_catalog.=) c.old_id AND v.username OPERATOR(pg_catalog.=) c.old_name
            RETURNING v.sourced_id, v.username
        ), users_new AS (
            INSERT INTO m365.sds_record_user (configuration_id, sourced_id, username, first_record)
            SELECT config, c.new_id, c.new_name, record FROM user_change AS c WHERE c.old_id IS NULL
            RETURNING sourced_id, username
        ), people_reached AS (
            -- In a feed SDS received from now on: renamed only by an approved
            -- suggestion (65_renames.sql).
            INSERT INTO m365.person_in_feed AS p (configuration_id, person_kind, person_id, first_record, local_part)
            SELECT config, f.person_kind, f.person_id, record, m365.local_part_key(n.username)
              FROM users_new AS n
              JOIN feed_user AS f ON f.sourced_id OPERATOR(pg_catalog.=) n.sourced_id
            ON CONFLICT ON CONSTRAINT person_in_feed_pkey DO UPDATE SET local_part = excluded.local_part
             WHERE p.local_part IS DISTINCT FROM excluded.local_part
        ), membership_change AS MATERIALIZED (
            SELECT v.group_id AS old_group, v.user_sourced_id AS old_user, v.role AS old_role,
                   f.group_id AS new_group, f.user_sourced_id AS new_user, f.role AS new_role
              FROM (SELECT o.group_id, o.user_sourced_id, o.role FROM m365.sds_record_membership AS o
                     WHERE o.configuration_id OPERATOR(pg_catalog.=) config AND o.last_record IS NULL) AS v
              FULL JOIN feed_membership AS f ON f.group_id OPERATOR(pg_catalog.=) v.group_id
                                            AND f.user_sourced_id OPERATOR(pg_catalog.=) v.user_sourced_id
                                            AND f.role OPERATOR(pg_catalog.=) v.role
             WHERE v.group_id IS NULL OR f.group_id IS NULL
        ), memberships_ended AS (
            UPDATE m365.sds_record_membership AS v SET last_record = newest
              FROM membership_change AS c
             WHERE c.new_group IS NULL AND v.configuration_id OPERATOR(pg_catalog.=) config AND v.last_record IS NULL
               AND v.group_id OPERATOR(pg_catalog.=) c.old_group AND v.user_sourced_id OPERATOR(pg_catalog.=) c.old_user
               AND v.role OPERATOR(pg_catalog.=) c.old_role
        ), memberships_new AS (
            INSERT INTO m365.sds_record_membership (configuration_id, group_id, user_sourced_id, role, first_record)
            SELECT config, c.new_group, c.new_user, c.new_role, record FROM membership_change AS c WHERE c.old_group IS NULL
        )
        -- What the brake counts, and the record's counts (of the feed's
        -- rows, which the open versions now are).
        SELECT c.changed, c.renamed, c.digest,
               pg_catalog.jsonb_build_object('users', f.users, 'roles', f.roles, 'enrollments', f.enrollments)
          INTO changed, renamed, digest, feed_counts
          FROM (SELECT pg_catalog.count(*) AS changed, pg_catalog.count(n.sourced_id) AS renamed,
                       m365.sds_change_digest(pg_catalog.array_agg(m365.sds_change_line(e.sourced_id, e.username, n.username))) AS digest
                  FROM users_ended AS e
                  LEFT JOIN users_new AS n ON n.sourced_id OPERATOR(pg_catalog.=) e.sourced_id) AS c,
               (SELECT (SELECT pg_catalog.count(*) FROM feed_user) AS users,
                       pg_catalog.count(*) FILTER (WHERE m.group_id OPERATOR(pg_catalog.^@) 'location-') AS roles,
                       pg_catalog.count(*) FILTER (WHERE m.group_id OPERATOR(pg_catalog.^@) 'class-') AS enrollments
                  FROM feed_membership AS m) AS f;

        IF newest IS NOT NULL THEN
            detail := m365.sds_brake(config, newest, previous, changed, renamed, digest, record);
            IF detail IS NOT NULL THEN
                -- Undoes the record and its versions (this block's subtransaction).
                RAISE EXCEPTION USING ERRCODE = 'M3B02';
            END IF;
        END IF;
    EXCEPTION WHEN SQLSTATE 'M3B02' THEN
        PERFORM m365.sds_hold_feed(config, newest, previous, changed, renamed, digest);
        outcome := 'held';
        record := NULL;
        RETURN;
    END;

    UPDATE m365.sds_record AS r SET counts = feed_counts WHERE r.id OPERATOR(pg_catalog.=) record;
    DELETE FROM m365.sds_hold AS h WHERE h.configuration_id OPERATOR(pg_catalog.=) config;
    outcome := 'recorded';
END
$$;
COMMENT ON FUNCTION m365_sds.record_feed(text, bigint, boolean) IS
'Records today''s SDS feed as written into folder (the export calls it): recorded, a preview (not the configuration''s SDS folder), or held by the brake on mass changes';
REVOKE ALL ON FUNCTION m365_sds.record_feed(text, bigint, boolean) FROM PUBLIC;
SELECT m365.allow('reader', 'EXECUTE', 'FUNCTION m365_sds.record_feed(text, bigint, boolean)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365_sds.record_feed(text, bigint, boolean)');

-- The users and memberships of one record (it must be kept: not removed).
CREATE FUNCTION m365.sds_record_rows(record bigint)
RETURNS TABLE (kind text, user_sourced_id text, value text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    config bigint;
BEGIN
    SELECT r.configuration_id INTO config FROM m365.sds_record AS r
     WHERE r.id OPERATOR(pg_catalog.=) record AND r.removed_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'there is no kept SDS record %', record USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Records older than the configuration''s sds_record_school_years are removed; their counts stay in m365.sds_record.';
    END IF;
    RETURN QUERY
    SELECT 'user', v.sourced_id, v.username FROM m365.sds_record_user AS v
     WHERE v.configuration_id OPERATOR(pg_catalog.=) config
       AND v.first_record OPERATOR(pg_catalog.<=) record AND (v.last_record IS NULL OR v.last_record OPERATOR(pg_catalog.>=) record)
    UNION ALL
    SELECT 'membership', v.user_sourced_id, v.group_id OPERATOR(pg_catalog.||) ' as ' OPERATOR(pg_catalog.||) v.role
      FROM m365.sds_record_membership AS v
     WHERE v.configuration_id OPERATOR(pg_catalog.=) config
       AND v.first_record OPERATOR(pg_catalog.<=) record AND (v.last_record IS NULL OR v.last_record OPERATOR(pg_catalog.>=) record);
END
$$;
COMMENT ON FUNCTION m365.sds_record_rows(bigint) IS 'The users (sourcedId, username) and group memberships of one SDS record';
REVOKE ALL ON FUNCTION m365.sds_record_rows(bigint) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.sds_record_rows(bigint)');

-- What changed between two records of one configuration.
CREATE FUNCTION m365.sds_changes(from_record bigint, to_record bigint)
RETURNS TABLE (change text, user_sourced_id text, detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM m365.sds_record AS a
                     JOIN m365.sds_record AS b ON b.configuration_id OPERATOR(pg_catalog.=) a.configuration_id
                    WHERE a.id OPERATOR(pg_catalog.=) from_record AND b.id OPERATOR(pg_catalog.=) to_record) THEN
        RAISE EXCEPTION 'records % and % are not two SDS records of one configuration', from_record, to_record
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH a AS (SELECT * FROM m365.sds_record_rows(from_record)),
         b AS (SELECT * FROM m365.sds_record_rows(to_record))
    SELECT CASE WHEN a.user_sourced_id IS NULL THEN 'user added'
                WHEN b.user_sourced_id IS NULL THEN 'user removed'
                ELSE 'user renamed' END,
           coalesce(a.user_sourced_id, b.user_sourced_id),
           CASE WHEN a.user_sourced_id IS NULL THEN b.value
                WHEN b.user_sourced_id IS NULL THEN a.value
                ELSE a.value OPERATOR(pg_catalog.||) ' -> ' OPERATOR(pg_catalog.||) b.value END
      FROM (SELECT * FROM a WHERE a.kind OPERATOR(pg_catalog.=) 'user') AS a
      FULL JOIN (SELECT * FROM b WHERE b.kind OPERATOR(pg_catalog.=) 'user') AS b
        ON a.user_sourced_id OPERATOR(pg_catalog.=) b.user_sourced_id
     WHERE a.user_sourced_id IS NULL OR b.user_sourced_id IS NULL OR a.value OPERATOR(pg_catalog.<>) b.value
    UNION ALL
    SELECT CASE WHEN a.user_sourced_id IS NULL THEN 'membership gained' ELSE 'membership lost' END,
           coalesce(a.user_sourced_id, b.user_sourced_id), coalesce(a.value, b.value)
      FROM (SELECT * FROM a WHERE a.kind OPERATOR(pg_catalog.=) 'membership') AS a
      FULL JOIN (SELECT * FROM b WHERE b.kind OPERATOR(pg_catalog.=) 'membership') AS b
        ON a.user_sourced_id OPERATOR(pg_catalog.=) b.user_sourced_id AND a.value OPERATOR(pg_catalog.=) b.value
     WHERE a.user_sourced_id IS NULL OR b.user_sourced_id IS NULL
     ORDER BY 2, 1, 3;
END
$$;
COMMENT ON FUNCTION m365.sds_changes(bigint, bigint) IS
'What changed in the SDS feed between two records: users added, removed, renamed; group memberships gained or lost';
REVOKE ALL ON FUNCTION m365.sds_changes(bigint, bigint) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.sds_changes(bigint, bigint)');

-- Retention: a record whose day is before the first school year kept (the
-- current one and sds_record_school_years - 1 before it) loses its rows and
-- keeps its counts; the newest record of a configuration always stays.
-- Returns how many records were removed. Scheduled daily.
CREATE FUNCTION m365.remove_old_sds_records()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer;
BEGIN
    PERFORM m365.forget_dropped_roles();
    WITH cutoff AS (
        SELECT c.id, m365.kept_from(c.time_zone, c.sds_record_school_years) AS keep_from
          FROM m365.configuration AS c
    ), gone AS (
        UPDATE m365.sds_record AS r SET removed_at = pg_catalog.now()
          FROM cutoff
         WHERE r.configuration_id OPERATOR(pg_catalog.=) cutoff.id AND r.removed_at IS NULL
           AND r.on_date OPERATOR(pg_catalog.<) cutoff.keep_from
           AND r.id OPERATOR(pg_catalog.<) (SELECT h.newest_record FROM m365.sds_record_head AS h
                                             WHERE h.configuration_id OPERATOR(pg_catalog.=) r.configuration_id)
        RETURNING 1
    )
    SELECT pg_catalog.count(*) INTO removed FROM gone;
    -- Versions that end before the oldest kept record belong to removed ones only.
    WITH oldest AS (
        SELECT r.configuration_id, pg_catalog.min(r.id) AS id FROM m365.sds_record AS r
         WHERE r.removed_at IS NULL GROUP BY r.configuration_id
    ), users AS (
        DELETE FROM m365.sds_record_user AS v USING oldest
         WHERE v.configuration_id OPERATOR(pg_catalog.=) oldest.configuration_id
           AND v.last_record OPERATOR(pg_catalog.<) oldest.id
    )
    DELETE FROM m365.sds_record_membership AS v USING oldest
     WHERE v.configuration_id OPERATOR(pg_catalog.=) oldest.configuration_id
       AND v.last_record OPERATOR(pg_catalog.<) oldest.id;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION m365.remove_old_sds_records() IS
'Removes the rows of SDS records older than each configuration''s retention (counts kept; never the newest); m365.apply_retention runs it nightly';
REVOKE ALL ON FUNCTION m365.remove_old_sds_records() FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.remove_old_sds_records()');
