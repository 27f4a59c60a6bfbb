--------------------------------------------------------------------------------
-- The brake on mass changes. SDS takes every upload as the whole truth: a
-- user missing from users.csv is made inactive and taken out of its groups.
-- An export whose feed takes out or renames more users than its configuration
-- allows, compared with the newest record, is held (m365_sds.record_feed asks
-- m365.sds_brake) until an administrator approves that very set of changes.
-- Group changes are listed, not counted.
--------------------------------------------------------------------------------

-- The limit: more than sds_brake_percent of the users of the newest record,
-- and more than sds_brake_minimum, leaving or renamed in one export holds it.
ALTER TABLE m365.configuration
    ADD COLUMN sds_brake_percent numeric NOT NULL DEFAULT 5
        CONSTRAINT configuration_sds_brake_percent_range CHECK (sds_brake_percent BETWEEN 0 AND 100),
    ADD COLUMN sds_brake_minimum integer NOT NULL DEFAULT 25
        CONSTRAINT configuration_sds_brake_minimum_not_negative CHECK (sds_brake_minimum OPERATOR(pg_catalog.>=) 0);

-- How many users may leave or be renamed in one export without an approval.
CREATE FUNCTION m365.sds_brake_limit(previous_users bigint, percent numeric, minimum integer)
RETURNS numeric
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.round(GREATEST(previous_users OPERATOR(pg_catalog.*) percent OPERATOR(pg_catalog./) 100, minimum), 2);
REVOKE ALL ON FUNCTION m365.sds_brake_limit(bigint, numeric, integer) FROM PUBLIC;

-- One user who leaves (new_username NULL) or is renamed, as the digest reads it.
CREATE FUNCTION m365.sds_change_line(sourced_id text, username text, new_username text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN sourced_id OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) username
       OPERATOR(pg_catalog.||) ' -> ' OPERATOR(pg_catalog.||) coalesce(new_username, '');
REVOKE ALL ON FUNCTION m365.sds_change_line(text, text, text) FROM PUBLIC;

-- What an approval is bound to: the set of lines, sorted bytewise (the same
-- digest in a database of any locale), hashed.
CREATE FUNCTION m365.sds_change_digest(lines text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.array_to_string(
           ARRAY(SELECT l FROM pg_catalog.unnest(lines) AS l ORDER BY l COLLATE pg_catalog."C"), E'\n'), 'UTF8')), 'hex');
REVOKE ALL ON FUNCTION m365.sds_change_digest(text[]) FROM PUBLIC;

-- The latest export the brake held, per configuration; gone once an export
-- is recorded. m365.status shows it.
CREATE TABLE m365.sds_hold (
    configuration_id bigint PRIMARY KEY REFERENCES m365.configuration (id) ON DELETE CASCADE,
    held_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    since_record     bigint NOT NULL,    -- the newest record, compared with
    previous_users   bigint NOT NULL,
    leaving          bigint NOT NULL,
    renamed          bigint NOT NULL,
    change_limit     numeric NOT NULL,
    digest           text NOT NULL
);
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_hold');
COMMENT ON TABLE m365.sds_hold IS 'The latest SDS export the brake on mass changes held, per configuration (gone once an export is recorded)';

-- Every approval, kept: who let which set of changes through, and which
-- record used it (once).
CREATE TABLE m365.sds_approval (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    since_record     bigint NOT NULL,    -- the changes are from this record on
    leaving          bigint NOT NULL,
    renamed          bigint NOT NULL,
    digest           text NOT NULL,
    approved_by      text NOT NULL DEFAULT SESSION_USER,
    approved_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    used_by_record   bigint              -- NULL: not used yet
);
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_approval');
CREATE INDEX sds_approval_configuration ON m365.sds_approval (configuration_id, since_record);
COMMENT ON TABLE m365.sds_approval IS 'Approved mass changes of the SDS feed (m365.approve_sds_changes): who, when, which set (digest), the record that used it';

-- The brake, asked by m365_sds.record_feed before the new record is kept:
-- NULL to go on (within the limit, or an unused approval of exactly these
-- changes since that record, now used by it), else why it is held.
CREATE FUNCTION m365.sds_brake(config bigint, since_record bigint, previous_users bigint, changed bigint,
                               renamed bigint, digest text, record bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c m365.configuration;
    change_limit numeric;
BEGIN
    SELECT * INTO c FROM m365.configuration AS x WHERE x.id OPERATOR(pg_catalog.=) config;
    change_limit := m365.sds_brake_limit(previous_users, c.sds_brake_percent, c.sds_brake_minimum);
    IF changed OPERATOR(pg_catalog.<=) change_limit THEN
        RETURN NULL;
    END IF;
    UPDATE m365.sds_approval AS a SET used_by_record = record
     WHERE a.id OPERATOR(pg_catalog.=) (
         SELECT pg_catalog.max(b.id) FROM m365.sds_approval AS b
          WHERE b.configuration_id OPERATOR(pg_catalog.=) config AND b.since_record OPERATOR(pg_catalog.=) sds_brake.since_record
            AND b.digest OPERATOR(pg_catalog.=) sds_brake.digest AND b.used_by_record IS NULL);
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.format('%s user(s) would leave and %s be renamed since SDS record %s: more than %s (%s%% of %s users, at least %s). '
                             'Nothing recorded; an administrator reviews m365.pending_sds_changes(%s) and approves with m365.approve_sds_changes(%s)',
                             changed OPERATOR(pg_catalog.-) renamed, renamed, since_record, change_limit, c.sds_brake_percent,
                             previous_users, c.sds_brake_minimum, config, config);
END
$$;
REVOKE ALL ON FUNCTION m365.sds_brake(bigint, bigint, bigint, bigint, bigint, text, bigint) FROM PUBLIC;

-- Keeps what a held export saw (its transaction commits, without a record).
CREATE FUNCTION m365.sds_hold_feed(config bigint, since_record bigint, previous_users bigint, changed bigint,
                                   renamed bigint, digest text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO m365.sds_hold AS h (configuration_id, since_record, previous_users, leaving, renamed, change_limit, digest)
    SELECT sds_hold_feed.config, sds_hold_feed.since_record, sds_hold_feed.previous_users,
           sds_hold_feed.changed OPERATOR(pg_catalog.-) sds_hold_feed.renamed, sds_hold_feed.renamed,
           m365.sds_brake_limit(sds_hold_feed.previous_users, c.sds_brake_percent, c.sds_brake_minimum), sds_hold_feed.digest
      FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) sds_hold_feed.config
    ON CONFLICT ON CONSTRAINT sds_hold_pkey DO UPDATE
       SET held_at = pg_catalog.now(), since_record = excluded.since_record, previous_users = excluded.previous_users,
           leaving = excluded.leaving, renamed = excluded.renamed, change_limit = excluded.change_limit,
           digest = excluded.digest;
END;
REVOKE ALL ON FUNCTION m365.sds_hold_feed(bigint, bigint, bigint, bigint, bigint, text) FROM PUBLIC;

-- The users of the scoped configuration's newest record who would leave
-- (new_username NULL) or be renamed in today's feed: what the brake counts.
-- (record_feed finds the same set as the versions it ends.)
CREATE VIEW m365.sds_user_change AS
SELECT v.sourced_id, v.username, f.username AS new_username
  FROM m365.sds_scope AS s
  JOIN m365.sds_record_user AS v ON v.configuration_id OPERATOR(pg_catalog.=) s.configuration_id AND v.last_record IS NULL
  LEFT JOIN m365.sds_user AS f ON f.sourced_id OPERATOR(pg_catalog.=) v.sourced_id
 WHERE f.username IS DISTINCT FROM v.username;

-- Who would leave, be renamed or change group in the next export of a
-- configuration, compared with its newest record, each with the reason.
-- 'user removed' and 'user renamed' count for the brake; 'user added' and
-- the memberships are listed only.
CREATE FUNCTION m365.pending_sds_changes(configuration_id bigint)
RETURNS TABLE (change text, user_sourced_id text, username text, new_username text, group_id text, role text, reason text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_nestloop = off
SET work_mem = '64MB'
SET m365.sds_on_date = ''
SET m365.sds_configuration = ''
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) pending_sds_changes.configuration_id) THEN
        RAISE EXCEPTION 'configuration % does not exist', coalesce(pending_sds_changes.configuration_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.set_config('m365.sds_configuration', pending_sds_changes.configuration_id::text, true);
    RETURN QUERY
    WITH scope AS MATERIALIZED (
        SELECT * FROM m365.sds_scope
    ), feed_user AS MATERIALIZED (
        SELECT u.person_kind, u.person_id, u.sourced_id, u.username FROM m365.sds_user AS u
    ), recorded_user AS MATERIALIZED (
        SELECT v.sourced_id, v.username FROM m365.sds_record_user AS v, scope
         WHERE v.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id AND v.last_record IS NULL
    ), user_change AS MATERIALIZED (
        SELECT c.sourced_id, c.username, c.new_username,
               pg_catalog.substring(c.sourced_id, '^([a-z]+)-') AS kind,
               pg_catalog.substring(c.sourced_id, '^[a-z]+-([0-9]{1,18})$')::bigint AS id
          FROM m365.sds_user_change AS c
    ), left_out AS MATERIALIZED (
        SELECT c.sourced_id, m365.sds_problem(c.username, c.first_name, c.last_name, c.in_a_location, c.held) AS problem
          FROM m365.sds_user_candidate AS c
    ), feed_membership AS MATERIALIZED (
        SELECT c.group_id, c.user_sourced_id, c.role
          FROM m365.sds_membership_candidate AS c
          JOIN feed_user AS u ON u.person_kind OPERATOR(pg_catalog.=) c.person_kind AND u.person_id OPERATOR(pg_catalog.=) c.person_id
    ), recorded_membership AS MATERIALIZED (
        SELECT v.group_id, v.user_sourced_id, v.role FROM m365.sds_record_membership AS v, scope
         WHERE v.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id AND v.last_record IS NULL
    )
    SELECT CASE WHEN uc.new_username IS NULL THEN 'user removed' ELSE 'user renamed' END,
           uc.sourced_id, uc.username, uc.new_username, NULL::text, NULL::text,
           CASE
               WHEN uc.new_username IS NOT NULL THEN 'renamed'
               WHEN lo.problem IS NOT NULL THEN 'left out by the feed rules: ' OPERATOR(pg_catalog.||) lo.problem
               WHEN (uc.kind OPERATOR(pg_catalog.=) 'student' AND NOT EXISTS (SELECT FROM m365.student AS p WHERE p.id OPERATOR(pg_catalog.=) uc.id))
                 OR (uc.kind OPERATOR(pg_catalog.=) 'staff' AND NOT EXISTS (SELECT FROM m365.staff AS p WHERE p.id OPERATOR(pg_catalog.=) uc.id))
                   THEN 'person deleted'
               WHEN NOT EXISTS (SELECT FROM m365.username AS u, scope
                                 WHERE u.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
                                   AND u.person_kind OPERATOR(pg_catalog.=) uc.kind AND u.person_id OPERATOR(pg_catalog.=) uc.id)
                   THEN 'no username in this configuration any more'
               WHEN NOT EXISTS (SELECT FROM m365.username AS u, scope
                                 WHERE u.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
                                   AND u.person_kind OPERATOR(pg_catalog.=) uc.kind AND u.person_id OPERATOR(pg_catalog.=) uc.id AND u.sync)
                   THEN 'sync turned off'
               WHEN uc.kind OPERATOR(pg_catalog.=) 'staff' AND NOT EXISTS (SELECT FROM m365.staff AS p WHERE p.id OPERATOR(pg_catalog.=) uc.id AND p.active)
                   THEN 'staff inactive'
               WHEN uc.kind OPERATOR(pg_catalog.=) 'staff' THEN 'no longer linked to a school of this configuration'
               WHEN EXISTS (SELECT FROM m365.enrolment AS e, m365.location AS l, scope
                             WHERE e.student_id OPERATOR(pg_catalog.=) uc.id AND l.id OPERATOR(pg_catalog.=) e.location_id
                               AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
                               AND e.end_date OPERATOR(pg_catalog.<) scope.on_date)
                   THEN 'enrolment ended'
               ELSE 'no enrolment today in a location of this configuration'
           END
      FROM user_change AS uc
      LEFT JOIN left_out AS lo ON lo.sourced_id OPERATOR(pg_catalog.=) uc.sourced_id
    UNION ALL
    SELECT 'user added', f.sourced_id, NULL, f.username, NULL, NULL, 'new in the feed'
      FROM feed_user AS f
     WHERE NOT EXISTS (SELECT FROM recorded_user AS r WHERE r.sourced_id OPERATOR(pg_catalog.=) f.sourced_id)
    UNION ALL
    SELECT CASE WHEN f.group_id IS NULL THEN 'membership lost' ELSE 'membership gained' END,
           coalesce(r.user_sourced_id, f.user_sourced_id),
           coalesce(ru.username, fu.username), NULL, coalesce(r.group_id, f.group_id), coalesce(r.role, f.role),
           CASE WHEN f.group_id IS NOT NULL THEN 'a new member'
                WHEN fu.sourced_id IS NULL THEN 'the user leaves'
                ELSE 'no longer a member' END
      FROM recorded_membership AS r
      FULL JOIN feed_membership AS f ON f.group_id OPERATOR(pg_catalog.=) r.group_id
                                    AND f.user_sourced_id OPERATOR(pg_catalog.=) r.user_sourced_id
                                    AND f.role OPERATOR(pg_catalog.=) r.role
      LEFT JOIN recorded_user AS ru ON ru.sourced_id OPERATOR(pg_catalog.=) r.user_sourced_id
      LEFT JOIN feed_user AS fu ON fu.sourced_id OPERATOR(pg_catalog.=) coalesce(r.user_sourced_id, f.user_sourced_id)
     WHERE r.group_id IS NULL OR f.group_id IS NULL
     ORDER BY 1 DESC, 2, 5, 6;
END
$$;
COMMENT ON FUNCTION m365.pending_sds_changes(bigint) IS
'Who would leave, be renamed, join or change group in the next SDS export of a configuration, compared with its newest record, with the reason';
REVOKE ALL ON FUNCTION m365.pending_sds_changes(bigint) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.pending_sds_changes(bigint)');

-- Approves the changes m365.pending_sds_changes shows now, once: the next
-- export that finds exactly this set (the digest) since the same record goes
-- through and uses the approval. The set now must be the one reviewed:
-- reviewed_digest, or else the held export's (m365.sds_hold); with neither
-- (approving before an export), the set now.
CREATE FUNCTION m365.approve_sds_changes(configuration_id bigint, reviewed_digest text DEFAULT NULL)
RETURNS TABLE (approval_id bigint, since_record bigint, leaving bigint, renamed bigint, change_limit numeric, digest text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_nestloop = off
SET work_mem = '64MB'
SET m365.sds_on_date = ''
SET m365.sds_configuration = ''
AS $$
DECLARE
    c        m365.configuration;
    newest   bigint;
    previous bigint;
    changed  bigint;
    n_renamed bigint;
    d        text;
    lim      numeric;
    id       bigint;
BEGIN
    SELECT * INTO c FROM m365.configuration AS x WHERE x.id OPERATOR(pg_catalog.=) approve_sds_changes.configuration_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'configuration % does not exist', coalesce(approve_sds_changes.configuration_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT h.newest_record INTO newest FROM m365.sds_record_head AS h WHERE h.configuration_id OPERATOR(pg_catalog.=) c.id;
    IF newest IS NULL THEN
        RAISE EXCEPTION 'nothing to approve: configuration % has no SDS record yet (its first export is never held)', c.id
            USING ERRCODE = 'M3B03';
    END IF;
    PERFORM pg_catalog.set_config('m365.sds_configuration', c.id::text, true);
    SELECT (r.counts OPERATOR(pg_catalog.->>) 'users')::bigint INTO previous FROM m365.sds_record AS r
     WHERE r.id OPERATOR(pg_catalog.=) newest;
    SELECT pg_catalog.count(*), pg_catalog.count(u.new_username),
           m365.sds_change_digest(pg_catalog.array_agg(m365.sds_change_line(u.sourced_id, u.username, u.new_username)))
      INTO changed, n_renamed, d
      FROM m365.sds_user_change AS u;
    lim := m365.sds_brake_limit(previous, c.sds_brake_percent, c.sds_brake_minimum);
    IF changed OPERATOR(pg_catalog.<=) lim THEN
        RAISE EXCEPTION 'nothing to approve: % user(s) would leave or be renamed in configuration %, within its limit of %', changed, c.id, lim
            USING ERRCODE = 'M3B03';
    END IF;
    -- Held: what the held export saw is what may be approved (a red-team
    -- find: changes made after the review were approved with it).
    IF reviewed_digest IS NULL THEN
        SELECT h.digest INTO reviewed_digest FROM m365.sds_hold AS h
         WHERE h.configuration_id OPERATOR(pg_catalog.=) c.id AND h.since_record OPERATOR(pg_catalog.=) newest;
    END IF;
    IF reviewed_digest IS NOT NULL AND reviewed_digest OPERATOR(pg_catalog.<>) d THEN
        RAISE EXCEPTION 'the changes of configuration % are no longer the ones reviewed (digest %)', c.id, reviewed_digest
            USING ERRCODE = 'M3B04', HINT = 'Review m365.pending_sds_changes again; its digest now is ' OPERATOR(pg_catalog.||) d OPERATOR(pg_catalog.||) '.';
    END IF;
    INSERT INTO m365.sds_approval (configuration_id, since_record, leaving, renamed, digest)
    VALUES (c.id, newest, changed OPERATOR(pg_catalog.-) n_renamed, n_renamed, d)
    RETURNING m365.sds_approval.id INTO id;
    RETURN QUERY SELECT id, newest, changed OPERATOR(pg_catalog.-) n_renamed, n_renamed, lim, d;
END
$$;
COMMENT ON FUNCTION m365.approve_sds_changes(bigint, text) IS
'Approves, once, the mass change of the SDS feed that m365.pending_sds_changes shows now (bound to its digest; audited in m365.sds_approval)';
REVOKE ALL ON FUNCTION m365.approve_sds_changes(bigint, text) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.approve_sds_changes(bigint, text)');
