--------------------------------------------------------------------------------
-- What the feed held, every 12 hours (when SDS reads it), and what changed:
-- what an administrator reads when the procedure says "check the sync logs".
--------------------------------------------------------------------------------

CREATE TABLE m365.sds_snapshot (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    taken_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    on_date          date NOT NULL,
    counts           jsonb NOT NULL,  -- rows per file, and left_out
    digest           text NOT NULL    -- md5 over the six files' rows
);
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_snapshot');
CREATE INDEX sds_snapshot_configuration ON m365.sds_snapshot (configuration_id, taken_at);
COMMENT ON TABLE m365.sds_snapshot IS 'What the SDS feed of a configuration held at a time: rows per file and a digest';

CREATE TABLE m365.sds_snapshot_user (
    snapshot_id bigint NOT NULL REFERENCES m365.sds_snapshot (id) ON DELETE CASCADE,
    sourced_id  text NOT NULL,
    username    text NOT NULL,
    PRIMARY KEY (snapshot_id, sourced_id)
);
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_snapshot_user');
-- Group memberships: a location's security group, a class team.
CREATE TABLE m365.sds_snapshot_membership (
    snapshot_id     bigint NOT NULL REFERENCES m365.sds_snapshot (id) ON DELETE CASCADE,
    group_id        text NOT NULL,   -- location-<id> or class-<id>
    user_sourced_id text NOT NULL,
    role            text NOT NULL,
    PRIMARY KEY (snapshot_id, group_id, user_sourced_id, role)
);
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_snapshot_membership');

-- Records the feed of every configuration; returns the number of snapshots.
-- The day is today in each configuration's time zone, or the one given here
-- (recorded with each snapshot): never one a session has set.
CREATE FUNCTION m365.take_sds_snapshots(on_date date DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
-- Whole-feed reads want hash joins: right after a bulk load, before autovacuum
-- has analyzed, a nested loop over the views took 32 s for 2,000 students.
SET enable_nestloop = off
-- Whatever the caller's session says: its day or configuration would
-- otherwise be recorded as history.
SET m365.sds_on_date = ''
SET m365.sds_configuration = ''
AS $$
DECLARE
    config   bigint;
    snapshot bigint;
    taken    integer := 0;
BEGIN
    PERFORM m365.forget_dropped_roles();
    IF take_sds_snapshots.on_date IS NOT NULL THEN
        PERFORM pg_catalog.set_config('m365.sds_on_date', pg_catalog.to_char(take_sds_snapshots.on_date, 'YYYY-MM-DD'), true);
    END IF;
    FOR config IN SELECT c.id FROM m365.configuration AS c ORDER BY c.id LOOP
        PERFORM pg_catalog.set_config('m365.sds_configuration', config::text, true);
        INSERT INTO m365.sds_snapshot (configuration_id, on_date, counts, digest)
        SELECT config, s.on_date,
               pg_catalog.jsonb_build_object(
                   'orgs', (SELECT pg_catalog.count(*) FROM m365_sds.orgs),
                   'users', (SELECT pg_catalog.count(*) FROM m365_sds.users),
                   'roles', (SELECT pg_catalog.count(*) FROM m365_sds.roles),
                   'classes', (SELECT pg_catalog.count(*) FROM m365_sds.classes),
                   'enrollments', (SELECT pg_catalog.count(*) FROM m365_sds.enrollments),
                   'academicSessions', (SELECT pg_catalog.count(*) FROM m365_sds."academicSessions"),
                   'left_out', (SELECT pg_catalog.count(*) FROM m365_sds.left_out)),
               pg_catalog.md5(coalesce((SELECT pg_catalog.string_agg(t::text, E'\n' ORDER BY t::text) FROM m365_sds.orgs AS t), '')
                   OPERATOR(pg_catalog.||) coalesce((SELECT pg_catalog.string_agg(t::text, E'\n' ORDER BY t::text) FROM m365_sds.users AS t), '')
                   OPERATOR(pg_catalog.||) coalesce((SELECT pg_catalog.string_agg(t::text, E'\n' ORDER BY t::text) FROM m365_sds.roles AS t), '')
                   OPERATOR(pg_catalog.||) coalesce((SELECT pg_catalog.string_agg(t::text, E'\n' ORDER BY t::text) FROM m365_sds.classes AS t), '')
                   OPERATOR(pg_catalog.||) coalesce((SELECT pg_catalog.string_agg(t::text, E'\n' ORDER BY t::text) FROM m365_sds.enrollments AS t), '')
                   OPERATOR(pg_catalog.||) coalesce((SELECT pg_catalog.string_agg(t::text, E'\n' ORDER BY t::text) FROM m365_sds."academicSessions" AS t), ''))
          FROM m365.sds_scope AS s
        RETURNING id INTO snapshot;
        INSERT INTO m365.sds_snapshot_user (snapshot_id, sourced_id, username)
        SELECT snapshot, u."sourcedId", u.username FROM m365_sds.users AS u;
        INSERT INTO m365.sds_snapshot_membership (snapshot_id, group_id, user_sourced_id, role)
        SELECT snapshot, r."orgSourcedId", r."userSourcedId", r.role FROM m365_sds.roles AS r
        UNION
        SELECT snapshot, e."classSourcedId", e."userSourcedId", e.role FROM m365_sds.enrollments AS e;
        taken := taken OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RETURN taken;
END
$$;
COMMENT ON FUNCTION m365.take_sds_snapshots(date) IS
'Records what the SDS feed of every configuration holds today (or on the day given) (pg_cron runs it every 12 hours)';
REVOKE ALL ON FUNCTION m365.take_sds_snapshots(date) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.take_sds_snapshots(date)');

-- What changed between two snapshots of one configuration.
CREATE FUNCTION m365.sds_changes(from_snapshot bigint, to_snapshot bigint)
RETURNS TABLE (change text, user_sourced_id text, detail text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM m365.sds_snapshot AS a
                     JOIN m365.sds_snapshot AS b ON b.configuration_id OPERATOR(pg_catalog.=) a.configuration_id
                    WHERE a.id OPERATOR(pg_catalog.=) from_snapshot AND b.id OPERATOR(pg_catalog.=) to_snapshot) THEN
        RAISE EXCEPTION 'snapshots % and % are not two snapshots of one configuration', from_snapshot, to_snapshot
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT CASE WHEN a.sourced_id IS NULL THEN 'user added'
                WHEN b.sourced_id IS NULL THEN 'user removed'
                ELSE 'user renamed' END,
           coalesce(a.sourced_id, b.sourced_id),
           CASE WHEN a.sourced_id IS NULL THEN b.username
                WHEN b.sourced_id IS NULL THEN a.username
                ELSE a.username OPERATOR(pg_catalog.||) ' -> ' OPERATOR(pg_catalog.||) b.username END
      FROM (SELECT * FROM m365.sds_snapshot_user AS x WHERE x.snapshot_id OPERATOR(pg_catalog.=) from_snapshot) AS a
      FULL JOIN (SELECT * FROM m365.sds_snapshot_user AS y WHERE y.snapshot_id OPERATOR(pg_catalog.=) to_snapshot) AS b
        ON a.sourced_id OPERATOR(pg_catalog.=) b.sourced_id
     WHERE a.sourced_id IS NULL OR b.sourced_id IS NULL OR a.username OPERATOR(pg_catalog.<>) b.username
    UNION ALL
    SELECT CASE WHEN a.group_id IS NULL THEN 'membership gained' ELSE 'membership lost' END,
           coalesce(a.user_sourced_id, b.user_sourced_id),
           coalesce(a.group_id, b.group_id) OPERATOR(pg_catalog.||) ' as ' OPERATOR(pg_catalog.||) coalesce(a.role, b.role)
      FROM (SELECT * FROM m365.sds_snapshot_membership AS x WHERE x.snapshot_id OPERATOR(pg_catalog.=) from_snapshot) AS a
      FULL JOIN (SELECT * FROM m365.sds_snapshot_membership AS y WHERE y.snapshot_id OPERATOR(pg_catalog.=) to_snapshot) AS b
        ON a.group_id OPERATOR(pg_catalog.=) b.group_id AND a.user_sourced_id OPERATOR(pg_catalog.=) b.user_sourced_id
       AND a.role OPERATOR(pg_catalog.=) b.role
     WHERE a.group_id IS NULL OR b.group_id IS NULL
     ORDER BY 2, 1, 3;
END
$$;
COMMENT ON FUNCTION m365.sds_changes(bigint, bigint) IS
'What changed in the SDS feed between two snapshots: users added, removed, renamed; group memberships gained or lost';

