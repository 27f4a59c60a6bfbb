-- m365_usernames 0.2.0 -> 0.3.0. Committed as it is (never regenerated); the
-- upgrade test (test/shell/upgrade.sh) checks that a database updated with it
-- has exactly the objects, rights and comments of a fresh 0.3.0 install (with
-- the same m365.grant_access calls and SDS readers).

\echo Use "ALTER EXTENSION m365_usernames UPDATE TO '0.3.0'" to load this file. \quit

--------------------------------------------------------------------------------
-- 0.3.0: the extension owns its schema. 0.2.0 (schema = m365 in the control
-- file) adopted an "m365" that existed before it; refuse to go on when that
-- schema belongs to someone else or holds objects that are not the
-- extension's, then make it a member, recorded as the fresh install does.
--------------------------------------------------------------------------------
DO $owner$
DECLARE
    foreign_objects text;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_namespace AS n JOIN pg_catalog.pg_roles AS r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
             WHERE n.nspname OPERATOR(pg_catalog.=) 'm365') THEN
        RAISE EXCEPTION 'schema m365 belongs to role %, not to a superuser: it was not made by m365_usernames',
                        (SELECT n.nspowner::regrole FROM pg_catalog.pg_namespace AS n WHERE n.nspname OPERATOR(pg_catalog.=) 'm365')
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Check what that role put into schema m365, then ALTER SCHEMA m365 OWNER TO the extension''s owner.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(d.classid, d.objid, 0), ', ') INTO foreign_objects
      FROM pg_catalog.pg_depend AS d
     WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) 'm365'::pg_catalog.regnamespace
       AND d.deptype OPERATOR(pg_catalog.=) 'n'
       AND d.classid OPERATOR(pg_catalog.<>) 'pg_catalog.pg_extension'::pg_catalog.regclass
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS e
                        WHERE e.classid OPERATOR(pg_catalog.=) d.classid AND e.objid OPERATOR(pg_catalog.=) d.objid
                          AND e.deptype OPERATOR(pg_catalog.=) 'e');
    IF foreign_objects IS NOT NULL THEN
        RAISE EXCEPTION 'schema m365 holds objects that are not m365_usernames'': %', foreign_objects
            USING ERRCODE = 'object_in_use', HINT = 'Move or drop them, then update again.';
    END IF;
END
$owner$;
DELETE FROM pg_catalog.pg_depend AS d
 WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
   AND d.objid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension AS e WHERE e.extname OPERATOR(pg_catalog.=) 'm365_usernames')
   AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
   AND d.refobjid OPERATOR(pg_catalog.=) 'm365'::pg_catalog.regnamespace;
UPDATE pg_catalog.pg_extension SET extnamespace = 'pg_catalog'::pg_catalog.regnamespace
 WHERE extname OPERATOR(pg_catalog.=) 'm365_usernames';
ALTER EXTENSION m365_usernames ADD SCHEMA m365;
COMMENT ON SCHEMA m365 IS 'm365_usernames: Microsoft 365 usernames for school administrations';

--------------------------------------------------------------------------------
-- 0.3.0: access levels given per database instead of cluster-wide roles
-- (05_access.sql). The roles 0.2.0 created keep what they had, now as roles
-- given a level; the group m365_sds_reader loses its rights here, each reader
-- gets them itself.
--------------------------------------------------------------------------------
-- The rights of each level, one row per GRANT (written by this script only).
CREATE TABLE m365.access_rule (
    level     text NOT NULL CONSTRAINT access_rule_level_known CHECK (level OPERATOR(pg_catalog.=) ANY ('{app,admin,reader}'::text[])),
    privilege text NOT NULL,  -- e.g. SELECT, INSERT
    object    text NOT NULL,  -- e.g. TABLE m365.student
    PRIMARY KEY (level, object, privilege)
);
COMMENT ON TABLE m365.access_rule IS
'The rights each access level gives (app, admin, reader), as declared next to each object by the install script';
-- The roles the DBA gave a level in this database. regrole: bound to the role
-- itself (a role dropped and re-created under the same name has nothing), and
-- dumped as the role's name.
CREATE TABLE m365.access_role (
    role_id    regrole PRIMARY KEY,
    level      text NOT NULL CONSTRAINT access_role_level_known CHECK (level OPERATOR(pg_catalog.=) ANY ('{app,admin}'::text[])),
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE m365.access_role IS 'The roles given access to the extension in this database (m365.grant_access), with their level';
-- The levels a level includes.
CREATE OR REPLACE FUNCTION m365.access_levels(level text)
RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
RETURN CASE level WHEN 'admin' THEN '{app,admin}'::text[] ELSE ARRAY[level] END;
-- Grants (or revokes) the rules of the given levels to (from) a role. The
-- privilege and object texts come from m365.access_rule, which only this
-- script writes; the role is quoted by %I.
CREATE OR REPLACE FUNCTION m365.apply_access(role_id regrole, levels text[], granting boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rule m365.access_rule;
    role_name name := (SELECT r.rolname FROM pg_catalog.pg_roles AS r WHERE r.oid OPERATOR(pg_catalog.=) role_id);
BEGIN
    FOR rule IN SELECT * FROM m365.access_rule AS a WHERE a.level OPERATOR(pg_catalog.=) ANY (levels)
                 ORDER BY a.object, a.privilege LOOP
        IF granting THEN
            EXECUTE pg_catalog.format('GRANT %s ON %s TO %I', rule.privilege, rule.object, role_name);
        ELSE
            EXECUTE pg_catalog.format('REVOKE %s ON %s FROM %I', rule.privilege, rule.object, role_name);
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION m365.apply_access(regrole, text[], boolean) FROM PUBLIC;
-- Declares a right of a level (install and upgrade scripts only), and gives
-- it at once to the roles that have that level already.
CREATE OR REPLACE FUNCTION m365.allow(level text, privilege text, object text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    holder regrole;
BEGIN
    INSERT INTO m365.access_rule (level, privilege, object) VALUES (allow.level, allow.privilege, allow.object)
    ON CONFLICT DO NOTHING;
    -- (Roles dropped since are skipped: m365.forget_dropped_roles forgets them.)
    IF level OPERATOR(pg_catalog.=) 'reader' THEN
        FOR holder IN SELECT r.role_id FROM m365.sds_reader AS r
                        JOIN pg_catalog.pg_roles AS o ON o.oid OPERATOR(pg_catalog.=) r.role_id::oid LOOP
            EXECUTE pg_catalog.format('GRANT %s ON %s TO %s', allow.privilege, allow.object, holder);
        END LOOP;
        RETURN;
    END IF;
    FOR holder IN SELECT a.role_id FROM m365.access_role AS a
                    JOIN pg_catalog.pg_roles AS o ON o.oid OPERATOR(pg_catalog.=) a.role_id::oid
                   WHERE allow.level OPERATOR(pg_catalog.=) ANY (m365.access_levels(a.level)) LOOP
        EXECUTE pg_catalog.format('GRANT %s ON %s TO %s', allow.privilege, allow.object, holder);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION m365.allow(text, text, text) FROM PUBLIC;
-- What makes a role unfit to be given access or to read SDS: it is, or can
-- become, more than one caller (members), or it has rights beyond the
-- extension's (privileged attributes, predefined roles, ownerships).
-- NULL when fit.
CREATE OR REPLACE FUNCTION m365.role_problem(role_id regrole)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolbypassrls OR r.rolreplication
            THEN 'it has SUPERUSER, CREATEROLE, CREATEDB, BYPASSRLS or REPLICATION'
        WHEN r.oid OPERATOR(pg_catalog.<) 16384 THEN 'it is a predefined role'
        WHEN EXISTS (SELECT FROM pg_catalog.pg_roles AS g
                      WHERE g.oid OPERATOR(pg_catalog.<>) r.oid
                        AND pg_catalog.pg_has_role(r.oid, g.oid, 'MEMBER')
                        AND (g.oid OPERATOR(pg_catalog.<) 16384 OR g.rolsuper OR g.rolcreaterole OR g.rolcreatedb
                             OR g.rolbypassrls OR g.rolreplication))
            THEN 'it is a member of a predefined or privileged role'
    END
      FROM pg_catalog.pg_roles AS r
     WHERE r.oid OPERATOR(pg_catalog.=) role_id
$$;
REVOKE ALL ON FUNCTION m365.role_problem(regrole) FROM PUBLIC;
CREATE OR REPLACE FUNCTION m365.grant_access(role_id regrole, level text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text;
BEGIN
    IF role_id IS NULL OR level IS NULL THEN
        RAISE EXCEPTION 'grant_access needs a role and a level' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF level OPERATOR(pg_catalog.<>) ALL ('{app,admin}'::text[]) THEN
        RAISE EXCEPTION 'unknown access level "%"', level
            USING ERRCODE = 'invalid_parameter_value', HINT = 'The levels are app and admin; SDS readers are made with m365.create_sds_reader.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.oid OPERATOR(pg_catalog.=) role_id) THEN
        RAISE EXCEPTION 'role % does not exist', role_id USING ERRCODE = 'undefined_object';
    END IF;
    problem := m365.role_problem(role_id);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'role % cannot be given access: %', role_id, problem USING ERRCODE = 'invalid_grant_operation';
    END IF;
    -- Nor to a group an SDS reader belongs to: the reader would get the level.
    IF EXISTS (SELECT FROM m365.sds_reader AS r
                WHERE pg_catalog.pg_has_role(r.role_id::oid, grant_access.role_id::oid, 'MEMBER')) THEN
        RAISE EXCEPTION 'role % is, or has as a member, an SDS reader: a reader sees one configuration and cannot be given access',
                        role_id
            USING ERRCODE = 'invalid_grant_operation';
    END IF;
    PERFORM m365.forget_dropped_roles();
    -- A change of level takes the other level's rights away first.
    PERFORM m365.apply_access(role_id, '{app,admin}', false);
    INSERT INTO m365.access_role AS a (role_id, level) VALUES (grant_access.role_id, grant_access.level)
    ON CONFLICT ON CONSTRAINT access_role_pkey DO UPDATE SET level = excluded.level, granted_at = excluded.granted_at;
    PERFORM m365.apply_access(role_id, m365.access_levels(level), true);
END
$$;
COMMENT ON FUNCTION m365.grant_access(regrole, text) IS
'Gives a role the rights of an access level in this database: app (the school application) or admin (app, configurations, the job)';
REVOKE ALL ON FUNCTION m365.grant_access(regrole, text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION m365.revoke_access(role_id regrole)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM m365.apply_access(role_id, '{app,admin}', false);
    DELETE FROM m365.access_role AS a WHERE a.role_id OPERATOR(pg_catalog.=) revoke_access.role_id;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION m365.revoke_access(regrole) IS 'Takes the extension''s rights in this database from a role; true when it had a level';
REVOKE ALL ON FUNCTION m365.revoke_access(regrole) FROM PUBLIC;
-- Rights given while an extension script runs (m365.allow reaching roles that
-- hold a level already, in an upgrade) are recorded as the objects' initial
-- privileges, which pg_dump leaves out: a restore would lose them. Every
-- upgrade script ends with this call, so that the initial privileges are a
-- fresh install's (the owner's and PUBLIC's only) and pg_dump writes the
-- levels' grants like any other.
CREATE OR REPLACE FUNCTION m365.forget_granted_init_privs()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed integer;
BEGIN
    UPDATE pg_catalog.pg_init_privs AS p
       SET initprivs = (SELECT pg_catalog.array_agg(a)
                          FROM pg_catalog.unnest(p.initprivs) AS a
                         WHERE NOT EXISTS (SELECT FROM pg_catalog.aclexplode(ARRAY[a]) AS x
                                            WHERE x.grantee OPERATOR(pg_catalog.=) ANY (
                                                      ARRAY(SELECT r.role_id::oid FROM m365.access_role AS r
                                                            UNION ALL SELECT s.role_id::oid FROM m365.sds_reader AS s
                                                            UNION ALL SELECT g.oid FROM pg_catalog.pg_roles AS g
                                                             WHERE g.rolname OPERATOR(pg_catalog.=) ANY ('{m365_app,m365_admin,m365_sds_reader}'::name[])))))
     WHERE p.privtype OPERATOR(pg_catalog.=) 'e'
       AND EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                    WHERE d.classid OPERATOR(pg_catalog.=) p.classoid AND d.objid OPERATOR(pg_catalog.=) p.objoid
                      AND d.deptype OPERATOR(pg_catalog.=) 'e'
                      AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension AS e
                                                              WHERE e.extname OPERATOR(pg_catalog.=) 'm365_usernames'));
    GET DIAGNOSTICS changed = ROW_COUNT;
    -- What is left as the object's default rights, a fresh install records not at all.
    DELETE FROM pg_catalog.pg_init_privs AS p
     WHERE p.privtype OPERATOR(pg_catalog.=) 'e'
       AND p.initprivs OPERATOR(pg_catalog.=) CASE p.classoid
               WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN
                   (SELECT pg_catalog.acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner)
                      FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) p.objoid)
               WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN
                   (SELECT pg_catalog.acldefault('n'::"char", n.nspowner)
                      FROM pg_catalog.pg_namespace AS n WHERE n.oid OPERATOR(pg_catalog.=) p.objoid)
               WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
                   (SELECT pg_catalog.acldefault('f'::"char", f.proowner)
                      FROM pg_catalog.pg_proc AS f WHERE f.oid OPERATOR(pg_catalog.=) p.objoid)
           END
       AND EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                    WHERE d.classid OPERATOR(pg_catalog.=) p.classoid AND d.objid OPERATOR(pg_catalog.=) p.objoid
                      AND d.deptype OPERATOR(pg_catalog.=) 'e'
                      AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension AS e
                                                              WHERE e.extname OPERATOR(pg_catalog.=) 'm365_usernames'));
    RETURN changed;
END
$$;
REVOKE ALL ON FUNCTION m365.forget_granted_init_privs() FROM PUBLIC;
INSERT INTO m365.access_role (role_id, level)
SELECT r.rolname::regrole, CASE r.rolname WHEN 'm365_admin' THEN 'admin' ELSE 'app' END
  FROM pg_catalog.pg_roles AS r
 WHERE r.rolname OPERATOR(pg_catalog.=) ANY ('{m365_app,m365_admin}'::name[]);
DO $reader_group$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'm365_sds_reader') THEN
        REVOKE ALL ON ALL TABLES IN SCHEMA m365_sds FROM m365_sds_reader;
        REVOKE ALL ON SCHEMA m365_sds FROM m365_sds_reader;
    END IF;
END
$reader_group$;

--------------------------------------------------------------------------------
-- 0.3.0: one time zone per configuration for every date decision.
--------------------------------------------------------------------------------
-- Whether a time zone is an Area/Location name of the time zone database, or
-- UTC (for the CHECK below). Not an abbreviation, nor a name that is also one
-- ("EST"): AT TIME ZONE reads those through the session's
-- timezone_abbreviations, which any session may set.
CREATE OR REPLACE FUNCTION m365.time_zone_is_known(time_zone text)
RETURNS boolean
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
RETURN (pg_catalog.strpos(time_zone, '/') OPERATOR(pg_catalog.>) 0 OR time_zone OPERATOR(pg_catalog.=) 'UTC')
   AND EXISTS (SELECT FROM pg_catalog.pg_timezone_names AS z WHERE z.name OPERATOR(pg_catalog.=) time_zone);
ALTER TABLE m365.configuration ADD COLUMN
    time_zone        text NOT NULL DEFAULT 'Europe/Brussels'
                     CONSTRAINT configuration_time_zone_known CHECK (m365.time_zone_is_known(time_zone)),
    ADD COLUMN
    rename_policy    text NOT NULL DEFAULT 'suggest'
                     CONSTRAINT configuration_rename_policy_known
                     CHECK (rename_policy OPERATOR(pg_catalog.=) ANY ('{suggest,automatic_before_sync,never}'::text[]));
COMMENT ON TABLE m365.configuration IS
'A link to one Microsoft 365 tenant: the username format, fallback formats, accepted domains and time zone';
-- Today in a time zone. SQL-standard bodies, bound at CREATE and inlined:
-- they run per row in the lists and the feed.
CREATE OR REPLACE FUNCTION m365.local_date(time_zone text)
RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.timezone(time_zone, pg_catalog.now())::date;
COMMENT ON FUNCTION m365.local_date(text) IS 'Today in a time zone (not the session''s TimeZone)';
-- Today for a configuration (Europe/Brussels for none).
CREATE OR REPLACE FUNCTION m365.configuration_today(configuration_id bigint)
RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE
RETURN m365.local_date(coalesce((SELECT c.time_zone FROM m365.configuration AS c
                                  WHERE c.id OPERATOR(pg_catalog.=) configuration_today.configuration_id),
                                'Europe/Brussels'));
COMMENT ON FUNCTION m365.configuration_today(bigint) IS 'Today in the configuration''s time zone: the date its decisions use';
CREATE OR REPLACE FUNCTION m365.staff_before_write()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.active THEN
        NEW.inactive_since := NULL;
    ELSIF NEW.inactive_since IS NULL THEN
        -- Today where the staff member's first school is (not the session's TimeZone).
        NEW.inactive_since := m365.configuration_today(
            (SELECT sc.configuration_id
               FROM m365.staff_school AS ss
               JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
              WHERE ss.staff_id OPERATOR(pg_catalog.=) NEW.id
              ORDER BY ss.linked_at, ss.school_id
              LIMIT 1));
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION m365.staff_before_write() FROM PUBLIC;
--------------------------------------------------------------------------------
-- 0.3.0: the generation job redesigned. Triggers append to a log, one rule
-- decides who needs a username, the job commits per chunk, and a username is
-- written once: its row records base, suffix and format, and the ledger keeps
-- only names that left their owner. The queue of 0.2.0 becomes log rows.
--------------------------------------------------------------------------------
REVOKE ALL ON FUNCTION m365.touch_updated_at(), m365.username_audit() FROM PUBLIC;

-- What 0.2.0 queued with, and its job.
DROP TRIGGER enrolment_queue_students_insert ON m365.enrolment;
DROP TRIGGER enrolment_queue_students_update ON m365.enrolment;
DROP TRIGGER staff_queue_insert ON m365.staff;
DROP TRIGGER staff_queue_update ON m365.staff;
DROP TRIGGER staff_school_queue_insert ON m365.staff_school;
DROP TRIGGER staff_school_queue_update ON m365.staff_school;
DROP TRIGGER location_queue_update ON m365.location;
DROP TRIGGER school_queue_update ON m365.school;
DROP TRIGGER student_name_changed ON m365.student;
DROP TRIGGER staff_name_changed ON m365.staff;
DROP TRIGGER username_check_ledger_insert ON m365.username;
DROP TRIGGER username_check_ledger_update ON m365.username;
DROP FUNCTION m365.enrolment_queue_students(), m365.staff_queue(), m365.staff_school_queue(), m365.location_queue(),
              m365.school_queue(), m365.person_name_changed(), m365.queue_missing_usernames(),
              m365.queue_staff(bigint[]), m365.queue_or_defer(bigint[], text, bigint[]), m365.queue_deferred(),
              m365.queue_people(bigint[], text, bigint[]), m365.username_check_ledger(),
              m365.generate_usernames(integer), m365.generation_begin_chunk(), m365.generation_claim(integer),
              m365.generation_claim_deferred(m365.username_queue_deferred, integer, integer),
              m365.generation_fill_batch(), m365.generation_assign(), m365.generation_store_one_by_one(),
              m365.generation_store(boolean);

-- Written once: how the job made a username goes on its row. A 0.2.0 name
-- counts as made by the configuration's format when that format makes its
-- base from the person's names today.
ALTER TABLE m365.username
    ADD COLUMN base text,
    ADD COLUMN suffix integer CONSTRAINT username_suffix_from_two CHECK (suffix OPERATOR(pg_catalog.>=) 2),
    ADD COLUMN format text,
    ADD COLUMN names_digest bytea,
    ADD CONSTRAINT username_suffix_with_base CHECK (suffix IS NULL OR base IS NOT NULL);
-- A digest of a person's official names as the job reads them: whether they
-- changed since the username was made (no name is kept on the row). NUL
-- cannot occur in text, so it separates the two.
CREATE FUNCTION m365.names_digest(first_name text, last_name text)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.sha256(pg_catalog.convert_to(coalesce(first_name, ''), 'UTF8') OPERATOR(pg_catalog.||) pg_catalog.decode('00', 'hex')
                         OPERATOR(pg_catalog.||) pg_catalog.convert_to(coalesce(last_name, ''), 'UTF8'));
COMMENT ON TABLE m365.username IS
'The Microsoft 365 username of each student and staff member, one per person and configuration (with the base, suffix and format the job made it from)';

--------------------------------------------------------------------------------
-- The uniqueness key, the same in every database. 0.2.0 keyed a local part
-- with lower(), which follows the locale: in a Turkish one "IVO.X" became
-- "ıvo.x", a name of its own beside "ivo.x", while Microsoft 365 sees one.
-- First stop, listing them, when names would be one under the new key
-- (docs/dba-guide.md gives the query); then re-create the generated columns
-- (PostgreSQL 15 has no SET EXPRESSION), last, as a fresh install has them.
--------------------------------------------------------------------------------
CREATE FUNCTION m365.local_part_key(username text)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_local_part_key';
COMMENT ON FUNCTION m365.local_part_key(text) IS
'The uniqueness key of a username: the part before "@" with ASCII letters in lower case, whatever the database''s locale';

-- A ledger row of 0.2.0 holds lower()'s output: "ı" where the name had "I"
-- (no other locale makes anything else of an ASCII letter). In UTF-8 only:
-- another encoding has no "ı".
DO $key$
DECLARE
    ledger_key text := CASE WHEN pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.=) 'UTF8'
                            THEN $e$m365.local_part_key(pg_catalog.translate(i.local_part, U&'\0131', 'i'))$e$
                            ELSE 'm365.local_part_key(i.local_part)' END;
    clashes text;
BEGIN
    EXECUTE pg_catalog.format($q$
    SELECT pg_catalog.string_agg(pg_catalog.format('%%s in configuration %%s: %%s', c.source, c.configuration_id, c.names), '; '
                                 ORDER BY c.source, c.configuration_id, c.names)
      FROM (SELECT 'm365.username' AS source, u.configuration_id,
                   pg_catalog.string_agg(u.username, ', ' ORDER BY u.username) AS names
              FROM m365.username AS u GROUP BY u.configuration_id, m365.local_part_key(u.username)
            HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1
            UNION ALL
            SELECT 'm365.reserved_username', r.configuration_id, pg_catalog.string_agg(r.username, ', ' ORDER BY r.username)
              FROM m365.reserved_username AS r GROUP BY r.configuration_id, m365.local_part_key(r.username)
            HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1
            UNION ALL
            SELECT 'm365.issued_username', i.configuration_id, pg_catalog.string_agg(i.local_part, ', ' ORDER BY i.local_part)
              FROM m365.issued_username AS i GROUP BY i.configuration_id, %1$s
            HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1
            UNION ALL
            -- A name held by one person and reserved, or issued to another.
            SELECT 'm365.username and m365.reserved_username', u.configuration_id, u.username OPERATOR(pg_catalog.||) ', ' OPERATOR(pg_catalog.||) r.username
              FROM m365.username AS u JOIN m365.reserved_username AS r
                ON r.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
               AND m365.local_part_key(r.username) OPERATOR(pg_catalog.=) m365.local_part_key(u.username)
            UNION ALL
            SELECT 'm365.username and m365.issued_username', u.configuration_id,
                   pg_catalog.format('%%s (%%s %%s), %%s (%%s %%s)', u.username, u.person_kind, u.person_id, i.local_part, i.person_kind, i.person_id)
              FROM m365.username AS u JOIN m365.issued_username AS i
                ON i.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
               AND %1$s OPERATOR(pg_catalog.=) m365.local_part_key(u.username)
               AND (i.person_kind OPERATOR(pg_catalog.<>) u.person_kind OR i.person_id OPERATOR(pg_catalog.<>) u.person_id)) AS c$q$, ledger_key)
    INTO clashes;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION 'these names would be one name under the uniqueness key of 0.3.0 (ASCII letters compared case-insensitively): %', clashes
            USING ERRCODE = 'unique_violation',
                  HINT = 'Keep one of each: rename the others with m365.set_username, delete the reserved ones (a name this database gave out needs no reservation); then update again. docs/dba-guide.md (Upgrade) has the query that lists them.';
    END IF;
    EXECUTE pg_catalog.format('UPDATE m365.issued_username AS i SET local_part = %1$s WHERE %1$s OPERATOR(pg_catalog.<>) i.local_part',
                              ledger_key);
END
$key$;

DROP FUNCTION m365.username_is_taken(bigint, text);  -- a SQL body that reads the old columns; made again below
ALTER TABLE m365.username DROP COLUMN local_part;  -- and username_unique_in_configuration with it
ALTER TABLE m365.username
    ADD COLUMN local_part text NOT NULL GENERATED ALWAYS AS (m365.local_part_key(username)) STORED,
    ADD CONSTRAINT username_unique_in_configuration UNIQUE (configuration_id, local_part);
ALTER TABLE m365.reserved_username DROP COLUMN local_part;  -- and the primary key with it
ALTER TABLE m365.reserved_username
    ADD COLUMN local_part text NOT NULL GENERATED ALWAYS AS (m365.local_part_key(username)) STORED,
    ADD PRIMARY KEY (configuration_id, local_part);

-- The other case-insensitive comparisons, the same in every locale too.
CREATE OR REPLACE FUNCTION m365.language()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN pg_catalog.lower(coalesce(pg_catalog.current_setting('m365.language', true), '') COLLATE "C")
                 OPERATOR(pg_catalog.=) ANY ('{nl,fr,en}'::text[])
            THEN pg_catalog.lower(pg_catalog.current_setting('m365.language', true) COLLATE "C")
            ELSE 'nl' END;
CREATE OR REPLACE FUNCTION m365.list_row_matches(filter text, username text, first_name text, last_name text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN filter IS NULL
    OR pg_catalog.strpos(pg_catalog.lower(pg_catalog.concat_ws(' ', username, first_name, last_name) COLLATE "und-x-icu"),
                         pg_catalog.lower(filter COLLATE "und-x-icu")) OPERATOR(pg_catalog.>) 0;

ALTER TABLE m365.username DISABLE TRIGGER USER;  -- not an edit: no history row, updated_at kept
UPDATE m365.username AS u
   SET base = i.base,
       suffix = CASE WHEN i.suffix OPERATOR(pg_catalog.>=) 2 THEN i.suffix END,
       format = CASE WHEN i.base OPERATOR(pg_catalog.=) m365.make_username(cf.username_format,
                                                                          coalesce(st.first_name, sf.first_name),
                                                                          coalesce(st.last_name, sf.last_name))
                     THEN cf.username_format END,
       -- What a later correction of the names is compared with (65_renames.sql).
       names_digest = CASE WHEN i.base OPERATOR(pg_catalog.=) m365.make_username(cf.username_format,
                                                                                coalesce(st.first_name, sf.first_name),
                                                                                coalesce(st.last_name, sf.last_name))
                           THEN m365.names_digest(coalesce(st.first_name, sf.first_name), coalesce(st.last_name, sf.last_name)) END
  FROM m365.issued_username AS i, m365.configuration AS cf,
       m365.username AS x
       LEFT JOIN m365.student AS st ON x.person_kind OPERATOR(pg_catalog.=) 'student' AND st.id OPERATOR(pg_catalog.=) x.person_id
       LEFT JOIN m365.staff AS sf ON x.person_kind OPERATOR(pg_catalog.=) 'staff' AND sf.id OPERATOR(pg_catalog.=) x.person_id
 WHERE x.id OPERATOR(pg_catalog.=) u.id
   AND i.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
   AND i.local_part OPERATOR(pg_catalog.=) u.local_part
   AND i.person_kind OPERATOR(pg_catalog.=) u.person_kind
   AND i.person_id OPERATOR(pg_catalog.=) u.person_id
   AND i.base IS NOT NULL
   AND cf.id OPERATOR(pg_catalog.=) u.configuration_id;
ALTER TABLE m365.username ENABLE TRIGGER USER;
-- The highest suffix of a base: where the job's suffix search starts.
CREATE INDEX username_suffix ON m365.username (configuration_id, base, suffix) WHERE suffix IS NOT NULL;

-- The ledger keeps the names no longer held by the person they were issued to.
DELETE FROM m365.issued_username AS i
 USING m365.username AS u
 WHERE i.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
   AND i.local_part OPERATOR(pg_catalog.=) u.local_part
   AND i.person_kind OPERATOR(pg_catalog.=) u.person_kind
   AND i.person_id OPERATOR(pg_catalog.=) u.person_id;
ALTER TABLE m365.issued_username DROP CONSTRAINT issued_username_suffix_with_base;
UPDATE m365.issued_username SET suffix = NULL WHERE suffix OPERATOR(pg_catalog.<) 2;
ALTER TABLE m365.issued_username
    ADD CONSTRAINT issued_username_suffix_with_base CHECK (suffix IS NULL OR base IS NOT NULL);
DROP INDEX m365.issued_username_base;
CREATE INDEX issued_username_base ON m365.issued_username (configuration_id, base, suffix)
    WHERE suffix IS NOT NULL;
COMMENT ON TABLE m365.issued_username IS
'Names no longer held by the person they were issued to (renamed away, deleted): never handed to anyone else';

-- The accounts the tenant has in the configuration's domains, as the last
-- tenant import listed them (bin/m365-tenant-import, 67_tenant_accounts.sql).
-- Each is a name nobody here gets but its owner: the person the import
-- found by employeeId, or an administrator adopted it for (NULL: nobody
-- known, so nobody). A local part may be in two domains of one configuration
-- (jan@school.be, jan@leerling.school.be): uniqueness here is by local part,
-- so both keep the one name.
CREATE TABLE m365.tenant_account (
    configuration_id    bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    -- As the tenant spells it, the domain in lower case.
    user_principal_name text NOT NULL,
    given_name          text,
    surname             text,
    display_name        text,
    -- Often the school application's id of the person (employeeId in Entra).
    employee_id         text,
    department          text,
    account_enabled     boolean,
    created_in_tenant   timestamptz,
    imported_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Whose it is, and how that is known ('employee id' or 'adoption').
    owner_kind          text,
    owner_id            bigint,
    owned_by            text CONSTRAINT tenant_account_owned_by_known
                        CHECK (owned_by OPERATOR(pg_catalog.=) ANY ('{employee id,adoption}'::text[])),
    local_part          text NOT NULL GENERATED ALWAYS AS (m365.local_part_key(user_principal_name)) STORED,
    domain              text NOT NULL GENERATED ALWAYS AS (pg_catalog.split_part(user_principal_name, '@', 2)) STORED,
    PRIMARY KEY (configuration_id, local_part, domain),
    CONSTRAINT tenant_account_owner_whole CHECK ((owner_kind IS NULL) OPERATOR(pg_catalog.=) (owner_id IS NULL)
                                                 AND (owner_kind IS NULL) OPERATOR(pg_catalog.=) (owned_by IS NULL))
);
COMMENT ON TABLE m365.tenant_account IS
'The accounts the tenant has in the configuration''s domains, as bin/m365-tenant-import last read them: each name is kept from everyone but the account''s owner (owner_kind, owner_id)';
-- Admins read it, and delete an account the tenant no longer has (its name is then free).
CREATE INDEX tenant_account_owner ON m365.tenant_account (configuration_id, owner_kind, owner_id) WHERE owner_kind IS NOT NULL;
-- Whether a tenant account is not this person's: nobody's known, or another
-- person's. The one rule; every check of an account against a person asks it
-- (plain SQL, no SET, not STRICT: inlined where it is called).
CREATE FUNCTION m365.tenant_account_is_not_theirs(owner_kind text, owner_id bigint, person_kind text, person_id bigint)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN owner_kind IS NULL OR owner_kind IS DISTINCT FROM person_kind OR owner_id IS DISTINCT FROM person_id;
COMMENT ON FUNCTION m365.tenant_account_is_not_theirs(text, bigint, text, bigint) IS
'Whether a tenant account with this owner is not the given person''s (nobody''s known, or someone else''s): its name is kept from them';

-- Names of people forgotten (m365.forget_person, 58_forgetting.sql): the
-- ledger keeps no name of theirs, only what stops it from being handed to
-- someone else: HMAC-SHA-256 (RFC 2104) of the local part's key, with a key
-- of this database that only the owner reads. Pseudonymisation kept for that
-- one purpose, not erasure: whoever has the key can test a guessed name.
-- The key is made when the extension is created: a transaction that began
-- before a key existed would see no hash to check (a red-team find: under
-- REPEATABLE READ it gave out a name the first forgetting had just hashed).
-- pg_dump carries it; a restore adds the dumped, older key beside the new
-- install's, and the oldest is the one used.
CREATE TABLE m365.forget_key (
    made_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    inner_pad  bytea PRIMARY KEY,  -- the 64-byte key XOR 0x36 (ipad)
    outer_pad  bytea NOT NULL      -- the key XOR 0x5c (opad)
);
COMMENT ON TABLE m365.forget_key IS 'The key of the forgotten names'' hashes: the oldest row (owner only; in pg_dump, so that a restore keeps it)';
-- 64 random bytes from four version 4 UUIDs (122 random bits each), as RFC 2104's two pads.
DO $$
DECLARE
    k bytea := pg_catalog.decode(pg_catalog.replace(
                   pg_catalog.gen_random_uuid()::text OPERATOR(pg_catalog.||) pg_catalog.gen_random_uuid()::text
                   OPERATOR(pg_catalog.||) pg_catalog.gen_random_uuid()::text
                   OPERATOR(pg_catalog.||) pg_catalog.gen_random_uuid()::text, '-', ''), 'hex');
    i bytea := k;
    o bytea := k;
BEGIN
    FOR b IN 0 .. 63 LOOP
        i := pg_catalog.set_byte(i, b, pg_catalog.get_byte(k, b) OPERATOR(pg_catalog.#) 54);
        o := pg_catalog.set_byte(o, b, pg_catalog.get_byte(k, b) OPERATOR(pg_catalog.#) 92);
    END LOOP;
    INSERT INTO m365.forget_key (inner_pad, outer_pad) VALUES (i, o);
END
$$;
CREATE TABLE m365.forgotten_username (
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    name_hash        bytea NOT NULL,  -- m365.forgotten_name_hash(local part key)
    forgotten_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (configuration_id, name_hash)
);
COMMENT ON TABLE m365.forgotten_username IS 'Keyed hashes of the names of people forgotten: never handed to anyone else';

-- The hash of a local part's key, as m365.forgotten_username holds it, under
-- the key in use (the oldest row): one row. For the owner's code only: a
-- caller who could hash could test a list of guessed names against the
-- table at once. A set-returning plain SQL function without SET, so that the
-- planner takes its body into the query that asks (scalar:
-- (SELECT h FROM m365.forgotten_name_hash(x) AS h)): m365.username_is_free
-- asks it for every candidate name, where a call as the owner with a pinned
-- search_path cost 31 µs a probe and a nested SQL call 15 µs.
CREATE FUNCTION m365.forgotten_name_hash(local_part text)
RETURNS SETOF bytea
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
BEGIN ATOMIC
    SELECT pg_catalog.sha256(k.outer_pad OPERATOR(pg_catalog.||)
                             pg_catalog.sha256(k.inner_pad OPERATOR(pg_catalog.||)
                                               pg_catalog.convert_to(forgotten_name_hash.local_part, 'UTF8')))
      FROM m365.forget_key AS k ORDER BY k.made_at, k.inner_pad LIMIT 1;
END;
REVOKE ALL ON FUNCTION m365.forgotten_name_hash(text) FROM PUBLIC;

-- "Never reused", written once: a local part (its key, m365.local_part_key) is free for a
-- person when nobody else holds it, it was not issued to anyone else before,
-- it is not reserved, it is not a tenant account of anyone else (or of
-- nobody known), and it is not the name of someone forgotten (its hash
-- reads the key: only the owner's code may ask, so the application's entry
-- points run as the owner). The job, set_username, the preview and the
-- username triggers all ask this. One row, so that a set query takes the
-- body in, as (SELECT f.is_free FROM m365.username_freedom(...) AS f): the
-- planner inlines a set-returning plain SQL function without SET, but never
-- a scalar one whose body has a subquery, and a call per candidate cost
-- 21 µs against 5 µs inlined. (Not as a LATERAL join filtered on is_free:
-- its five conjuncts made the planner expect one free name in 50,000 and
-- loop over the working tables.) Scalar subqueries, so that
-- each candidate is an index probe (as NOT EXISTS the planner turned it into
-- an anti-join that hashed all usernames for every chunk). NULL person: free
-- for anyone.
CREATE FUNCTION m365.username_freedom(configuration_id bigint, local_part text, person_kind text, person_id bigint)
RETURNS TABLE (is_free boolean)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
BEGIN ATOMIC
SELECT (SELECT true FROM m365.username AS u
         WHERE u.configuration_id OPERATOR(pg_catalog.=) username_freedom.configuration_id
           AND u.local_part OPERATOR(pg_catalog.=) username_freedom.local_part
           AND (u.person_kind IS DISTINCT FROM username_freedom.person_kind
                OR u.person_id IS DISTINCT FROM username_freedom.person_id)) IS NULL
   AND (SELECT true FROM m365.issued_username AS i
         WHERE i.configuration_id OPERATOR(pg_catalog.=) username_freedom.configuration_id
           AND i.local_part OPERATOR(pg_catalog.=) username_freedom.local_part
           AND (i.person_kind IS DISTINCT FROM username_freedom.person_kind
                OR i.person_id IS DISTINCT FROM username_freedom.person_id)) IS NULL
   AND (SELECT true FROM m365.reserved_username AS r
         WHERE r.configuration_id OPERATOR(pg_catalog.=) username_freedom.configuration_id
           AND r.local_part OPERATOR(pg_catalog.=) username_freedom.local_part) IS NULL
   AND (SELECT true FROM m365.tenant_account AS t
         WHERE t.configuration_id OPERATOR(pg_catalog.=) username_freedom.configuration_id
           AND t.local_part OPERATOR(pg_catalog.=) username_freedom.local_part
           AND m365.tenant_account_is_not_theirs(t.owner_kind, t.owner_id, username_freedom.person_kind, username_freedom.person_id)
         LIMIT 1) IS NULL
   AND (SELECT true FROM m365.forgotten_username AS f
         WHERE f.configuration_id OPERATOR(pg_catalog.=) username_freedom.configuration_id
           AND f.name_hash OPERATOR(pg_catalog.=) (SELECT h FROM m365.forgotten_name_hash(username_freedom.local_part) AS h)) IS NULL;
END;
COMMENT ON FUNCTION m365.username_freedom(bigint, text, text, bigint) IS
'Whether a local part (its key) is free for the person, as one row (is_free) that a set query inlines; m365.username_is_free is the same answer for one name';
REVOKE ALL ON FUNCTION m365.username_freedom(bigint, text, text, bigint) FROM PUBLIC;

-- The same answer for one name (plpgsql callers, the app's entry points).
CREATE FUNCTION m365.username_is_free(configuration_id bigint, local_part text, person_kind text, person_id bigint)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT f.is_free FROM m365.username_freedom(username_is_free.configuration_id, username_is_free.local_part,
                                                    username_is_free.person_kind, username_is_free.person_id) AS f);
COMMENT ON FUNCTION m365.username_is_free(bigint, text, text, bigint) IS
'Whether a local part (its key, m365.local_part_key) is free for the person: held by nobody else, never issued to anyone else, not reserved, not a tenant account of anyone else, not a forgotten person''s (NULL person: free for anyone)';
REVOKE ALL ON FUNCTION m365.username_is_free(bigint, text, text, bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION m365.username_is_taken(configuration_id bigint, local_part text)
RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
RETURN NOT m365.username_is_free(configuration_id, m365.local_part_key(local_part), NULL, NULL);
COMMENT ON FUNCTION m365.username_is_taken(bigint, text) IS
'Whether a local part is in use, was issued before, is reserved, is a tenant account or a forgotten person''s in the configuration (case-insensitive)';
REVOKE ALL ON FUNCTION m365.username_is_taken(bigint, text) FROM PUBLIC;

-- The highest numeric suffix generated for a base, in use or in the ledger:
-- one row, so that the job's set query takes the body in (as
-- m365.username_freedom); m365.highest_suffix is the answer for one base.
CREATE FUNCTION m365.highest_suffix_row(configuration_id bigint, base text)
RETURNS TABLE (highest integer)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
BEGIN ATOMIC
-- (GREATEST, not int4larger: a base with suffixes in one place only must not
-- answer NULL, which restarted every chunk's search at 2.)
SELECT GREATEST(
    (SELECT pg_catalog.max(u.suffix) FROM m365.username AS u
      WHERE u.configuration_id OPERATOR(pg_catalog.=) highest_suffix_row.configuration_id
        AND u.base OPERATOR(pg_catalog.=) highest_suffix_row.base AND u.suffix IS NOT NULL),
    (SELECT pg_catalog.max(i.suffix) FROM m365.issued_username AS i
      WHERE i.configuration_id OPERATOR(pg_catalog.=) highest_suffix_row.configuration_id
        AND i.base OPERATOR(pg_catalog.=) highest_suffix_row.base AND i.suffix IS NOT NULL));
END;
CREATE FUNCTION m365.highest_suffix(configuration_id bigint, base text)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT h.highest FROM m365.highest_suffix_row(highest_suffix.configuration_id, highest_suffix.base) AS h);

-- The first free name for a base, for a person (NULL: for anyone, as
-- username_is_free): base, else base + n from just above the highest suffix
-- the generator already issued for that base. One probe for the base, one
-- index lookup for that highest suffix, then a probe per candidate: a
-- handful, however many people share the name. With the suffix it took
-- (NULL: the base itself). The owner's code only (it asks username_is_free).
CREATE FUNCTION m365.first_free_name(configuration_id bigint, base text, person_kind text, person_id bigint,
                                     OUT local_part text, OUT suffix integer)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted    text := m365.local_part_key(base);
    n         bigint;
BEGIN
    IF pg_catalog.strpos(base, '@') OPERATOR(pg_catalog.>) 0 OR NOT m365.username_is_valid(base) THEN
        -- (The base cut short: a red-team round sent 100 MB, and the message carried it all.)
        RAISE EXCEPTION 'invalid username base "%"', pg_catalog.left(base, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = coalesce(m365.username_problem(base), 'a base is a local part, without "@"');
    END IF;
    IF m365.username_is_free(configuration_id, wanted, person_kind, person_id) THEN
        local_part := wanted;
        RETURN;
    END IF;
    n := coalesce(m365.highest_suffix(configuration_id, wanted), 1);
    LOOP
        n := n OPERATOR(pg_catalog.+) 1;
        local_part := m365.username_with_suffix(wanted, n);
        IF m365.username_is_free(configuration_id, local_part, person_kind, person_id) THEN
            suffix := n;
            RETURN;
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION m365.first_free_name(bigint, text, text, bigint) FROM PUBLIC;

-- For anyone, as the owner (as m365.username_is_taken).
CREATE OR REPLACE FUNCTION m365.first_free_username(configuration_id bigint, base text)
RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
RETURN (SELECT f.local_part FROM m365.first_free_name(configuration_id, base, NULL, NULL) AS f);
COMMENT ON FUNCTION m365.first_free_username(bigint, text) IS
'The first name not in use, issued or reserved in the configuration: base, base2, base3, ... (from above the highest suffix already generated for base)';
REVOKE ALL ON FUNCTION m365.first_free_username(bigint, text) FROM PUBLIC;

-- Keeps "never reused" for every write to m365.username, whoever makes it.
-- A name that leaves its owner (renamed away, deleted) goes to the ledger; a
-- new name must be free for its person. AFTER, so that NOT NULL, CHECK and
-- the unique indexes have spoken already; per statement, with transition
-- tables, so that the job's 50,000 usernames are checked as one set.
--
-- Race-proof: a session renaming A away from x writes the ledger row in the
-- transaction that frees x in username_unique_in_configuration. Whoever
-- inserts x for B meanwhile waits on that index entry until the rename
-- commits, and this check, run after the insert with a new snapshot, then
-- sees A's ledger row and refuses.
CREATE FUNCTION m365.username_keep_ledger()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off  -- bulk statements would JIT-compile these small set queries
AS $$
DECLARE
    clash     record;
    new_cfg   bigint[];
    new_key   text[];
    new_kind  text[];
    new_id    bigint[];
    probe_cfg bigint[];
    probe_key text[];
    probe_hash bytea[];
BEGIN
    -- Names that left their owner: deleted rows' names, renamed rows' old names.
    IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        INSERT INTO m365.issued_username AS i (configuration_id, local_part, person_kind, person_id, base, suffix)
        SELECT o.configuration_id, o.local_part, o.person_kind, o.person_id, o.base, o.suffix
          FROM old_rows AS o
        ON CONFLICT (configuration_id, local_part) DO NOTHING;
        RETURN NULL;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
        INSERT INTO m365.issued_username AS i (configuration_id, local_part, person_kind, person_id, base, suffix)
        SELECT o.configuration_id, o.local_part, o.person_kind, o.person_id, o.base, o.suffix
          FROM old_rows AS o
         WHERE NOT EXISTS (SELECT FROM new_rows AS n
                            WHERE n.id OPERATOR(pg_catalog.=) o.id
                              AND n.configuration_id OPERATOR(pg_catalog.=) o.configuration_id
                              AND n.local_part OPERATOR(pg_catalog.=) o.local_part
                              AND n.person_kind OPERATOR(pg_catalog.=) o.person_kind
                              AND n.person_id OPERATOR(pg_catalog.=) o.person_id)
        ON CONFLICT (configuration_id, local_part) DO NOTHING;
    END IF;

    -- New names (all on INSERT, the renamed ones on UPDATE) must be free for their person.
    IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        -- m365.username_is_free for rows already written, as joins: the half
        -- "held by nobody else" is username_unique_in_configuration's own,
        -- and the ledger and the reserved names, small beside 50,000 new
        -- rows of the job, are hashed instead of probed once per row.
        SELECT c.username, c.configuration_id, c.person_kind, c.person_id INTO clash
          FROM (SELECT n.username, n.configuration_id, n.person_kind, n.person_id
                  FROM new_rows AS n
                  JOIN m365.issued_username AS i
                    ON i.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                   AND i.local_part OPERATOR(pg_catalog.=) n.local_part
                 WHERE i.person_kind OPERATOR(pg_catalog.<>) n.person_kind
                    OR i.person_id OPERATOR(pg_catalog.<>) n.person_id
                UNION ALL
                SELECT n.username, n.configuration_id, n.person_kind, n.person_id
                  FROM new_rows AS n
                  JOIN m365.reserved_username AS r
                    ON r.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                   AND r.local_part OPERATOR(pg_catalog.=) n.local_part
                UNION ALL
                SELECT n.username, n.configuration_id, n.person_kind, n.person_id
                  FROM new_rows AS n
                  JOIN m365.tenant_account AS t
                    ON t.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                   AND t.local_part OPERATOR(pg_catalog.=) n.local_part
                 WHERE m365.tenant_account_is_not_theirs(t.owner_kind, t.owner_id, n.person_kind, n.person_id)) AS c
         LIMIT 1;
        -- Forgotten names: hashed only where a configuration has some.
        IF NOT FOUND AND EXISTS (SELECT FROM m365.forgotten_username AS f
                                  WHERE f.configuration_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT DISTINCT n.configuration_id FROM new_rows AS n))) THEN
            SELECT n.username, n.configuration_id, n.person_kind, n.person_id INTO clash
              FROM new_rows AS n
              JOIN m365.forgotten_username AS f
                ON f.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
               AND f.name_hash OPERATOR(pg_catalog.=) (SELECT h FROM m365.forgotten_name_hash(n.local_part) AS h)
             LIMIT 1;
        END IF;
    ELSE
        SELECT n.username, n.configuration_id, n.person_kind, n.person_id INTO clash
          FROM new_rows AS n
         WHERE NOT EXISTS (SELECT FROM old_rows AS o
                            WHERE o.id OPERATOR(pg_catalog.=) n.id
                              AND o.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                              AND o.local_part OPERATOR(pg_catalog.=) n.local_part
                              AND o.person_kind OPERATOR(pg_catalog.=) n.person_kind
                              AND o.person_id OPERATOR(pg_catalog.=) n.person_id)
           AND NOT (SELECT f.is_free FROM m365.username_freedom(n.configuration_id, n.local_part, n.person_kind, n.person_id) AS f)
         LIMIT 1;
    END IF;
    IF FOUND THEN
        IF EXISTS (SELECT FROM m365.reserved_username AS r
                    WHERE r.configuration_id OPERATOR(pg_catalog.=) clash.configuration_id
                      AND r.local_part OPERATOR(pg_catalog.=) m365.local_part_key(clash.username)) THEN
            RAISE EXCEPTION 'username "%" is reserved in configuration %', clash.username, clash.configuration_id
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'reserved_username_pkey';
        END IF;
        IF EXISTS (SELECT FROM m365.tenant_account AS t
                    WHERE t.configuration_id OPERATOR(pg_catalog.=) clash.configuration_id
                      AND t.local_part OPERATOR(pg_catalog.=) m365.local_part_key(clash.username)
                      AND m365.tenant_account_is_not_theirs(t.owner_kind, t.owner_id, clash.person_kind, clash.person_id)) THEN
            RAISE EXCEPTION 'username "%" is an account of someone else in the tenant of configuration %', clash.username, clash.configuration_id
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'tenant_account_pkey',
                      DETAIL = 'A tenant account''s name goes to its owner only (m365.tenant_account).';
        END IF;
        RAISE EXCEPTION 'username "%" was issued before in configuration %', clash.username, clash.configuration_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'issued_username_pkey',
                  DETAIL = 'An issued name is never given to anyone else.';
    END IF;
    -- Under REPEATABLE READ or SERIALIZABLE the check above reads the caller's
    -- old snapshot, which cannot see a name retired or reserved since (red-team
    -- finds). There the new names probe the keys of the ledger and of the
    -- reserved names: a committed row the snapshot cannot see fails the write
    -- with 40001 (the caller retries and is then refused); the probe rows are
    -- removed just below.
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
        IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
            SELECT pg_catalog.array_agg(n.configuration_id), pg_catalog.array_agg(n.local_part),
                   pg_catalog.array_agg(n.person_kind), pg_catalog.array_agg(n.person_id)
              INTO new_cfg, new_key, new_kind, new_id FROM new_rows AS n;
        ELSE
            SELECT pg_catalog.array_agg(n.configuration_id), pg_catalog.array_agg(n.local_part),
                   pg_catalog.array_agg(n.person_kind), pg_catalog.array_agg(n.person_id)
              INTO new_cfg, new_key, new_kind, new_id
              FROM new_rows AS n
             WHERE NOT EXISTS (SELECT FROM old_rows AS o
                                WHERE o.id OPERATOR(pg_catalog.=) n.id
                                  AND o.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                                  AND o.local_part OPERATOR(pg_catalog.=) n.local_part
                                  AND o.person_kind OPERATOR(pg_catalog.=) n.person_kind
                                  AND o.person_id OPERATOR(pg_catalog.=) n.person_id);
        END IF;
        IF new_cfg IS NOT NULL THEN
            -- Only the probe's own rows are removed again (a red-team find: a
            -- real reservation was deleted with them).
            WITH probe AS (
                INSERT INTO m365.reserved_username (configuration_id, username, note)
                SELECT t.configuration_id, t.local_part, 'probe'
                  FROM ROWS FROM (pg_catalog.unnest(new_cfg), pg_catalog.unnest(new_key)) AS t(configuration_id, local_part)
                ON CONFLICT (configuration_id, local_part) DO NOTHING
                RETURNING configuration_id, local_part)
            SELECT pg_catalog.array_agg(p.configuration_id), pg_catalog.array_agg(p.local_part) INTO probe_cfg, probe_key FROM probe AS p;
            DELETE FROM m365.reserved_username AS r
             USING ROWS FROM (pg_catalog.unnest(probe_cfg), pg_catalog.unnest(probe_key)) AS t(configuration_id, local_part)
             WHERE r.configuration_id OPERATOR(pg_catalog.=) t.configuration_id
               AND r.local_part OPERATOR(pg_catalog.=) t.local_part;
            INSERT INTO m365.issued_username (configuration_id, local_part, person_kind, person_id)
            SELECT t.configuration_id, t.local_part, t.person_kind, t.person_id
              FROM ROWS FROM (pg_catalog.unnest(new_cfg), pg_catalog.unnest(new_key), pg_catalog.unnest(new_kind), pg_catalog.unnest(new_id))
                   AS t(configuration_id, local_part, person_kind, person_id)
            ON CONFLICT (configuration_id, local_part) DO NOTHING;
            -- And the forgotten names' hashes, removed again the same way.
            WITH probe AS (
                INSERT INTO m365.forgotten_username (configuration_id, name_hash)
                SELECT t.configuration_id, (SELECT h FROM m365.forgotten_name_hash(t.local_part) AS h)
                  FROM ROWS FROM (pg_catalog.unnest(new_cfg), pg_catalog.unnest(new_key)) AS t(configuration_id, local_part)
                ON CONFLICT (configuration_id, name_hash) DO NOTHING
                RETURNING configuration_id, name_hash)
            SELECT pg_catalog.array_agg(p.configuration_id), pg_catalog.array_agg(p.name_hash) INTO probe_cfg, probe_hash FROM probe AS p;
            DELETE FROM m365.forgotten_username AS f
             USING ROWS FROM (pg_catalog.unnest(probe_cfg), pg_catalog.unnest(probe_hash)) AS t(configuration_id, name_hash)
             WHERE f.configuration_id OPERATOR(pg_catalog.=) t.configuration_id
               AND f.name_hash OPERATOR(pg_catalog.=) t.name_hash;
        END IF;
    END IF;
    -- A name taken back by the person it was issued to is theirs again, not retired.
    DELETE FROM m365.issued_username AS i
     USING new_rows AS n
     WHERE i.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
       AND i.local_part OPERATOR(pg_catalog.=) n.local_part
       AND i.person_kind OPERATOR(pg_catalog.=) n.person_kind
       AND i.person_id OPERATOR(pg_catalog.=) n.person_id;
    RETURN NULL;
END
$$;
-- A trigger function runs for whoever may create a trigger with it: EXECUTE
-- is checked at CREATE TRIGGER. Left to PUBLIC, a caller could put this one on
-- a temporary table of its own and have it write, as the owner, rows it chose.
-- Every trigger function of the extension is revoked the same way.
REVOKE ALL ON FUNCTION m365.username_keep_ledger() FROM PUBLIC;

CREATE TRIGGER username_keep_ledger_insert
    AFTER INSERT ON m365.username
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.username_keep_ledger();
CREATE TRIGGER username_keep_ledger_update
    AFTER UPDATE ON m365.username
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.username_keep_ledger();
CREATE TRIGGER username_keep_ledger_delete
    AFTER DELETE ON m365.username
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.username_keep_ledger();

-- The one rule. Needs a username in a configuration:
--  * a student with an enrolment that has not ended (future starters too: the
--    August list shows them) in a location of the configuration;
--  * an active staff member linked to a school of the configuration;
-- "has not ended" by today in the configuration's time zone. For the given
-- people (NULL array: nobody of that kind). Plain SQL without SET, fully
-- qualified: inlined into the caller's query, so the job's 50,000 people are
-- one join, not 50,000 calls. (IN (unnest), not = ANY: a cached plan compares
-- every enrolment with every element of an = ANY array; this is a join.)
CREATE FUNCTION m365.people_needing_username(student_ids bigint[], staff_ids bigint[])
RETURNS TABLE (configuration_id bigint, person_kind text, person_id bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT DISTINCT l.configuration_id, 'student'::text, e.student_id
      FROM m365.enrolment AS e
      JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
      JOIN m365.configuration AS cf ON cf.id OPERATOR(pg_catalog.=) l.configuration_id
     WHERE e.student_id IN (SELECT pg_catalog.unnest(people_needing_username.student_ids))
       AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) m365.local_date(cf.time_zone))
    UNION ALL
    SELECT DISTINCT sc.configuration_id, 'staff'::text, s.id
      FROM m365.staff AS s
      JOIN m365.staff_school AS ss ON ss.staff_id OPERATOR(pg_catalog.=) s.id
      JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
     WHERE s.id IN (SELECT pg_catalog.unnest(people_needing_username.staff_ids))
       AND s.active
       AND sc.configuration_id IS NOT NULL;
END;
COMMENT ON FUNCTION m365.people_needing_username(bigint[], bigint[]) IS
'The rule: of the given students and staff, who needs a username in which configuration (an enrolment that has not ended in a linked location; active staff of a linked school)';

CREATE TABLE m365.username_request (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_kind  text NOT NULL
                 CONSTRAINT username_request_person_kind_known CHECK (person_kind OPERATOR(pg_catalog.=) ANY ('{student,staff}'::text[])),
    person_id    bigint NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE m365.username_request IS
'People a write touched, for the next run of the job to look at (appended by triggers, deleted by the run that read them)';

-- People the job could not make a username for, with the reason. Only the
-- job writes here; a correction of the name appends to the log, and the run
-- that reads it tries again.
CREATE TABLE m365.username_failure (
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    person_kind      text NOT NULL,
    person_id        bigint NOT NULL,
    reason           text NOT NULL,
    attempts         integer NOT NULL DEFAULT 1,
    first_failed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_failed_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (configuration_id, person_kind, person_id)
);
COMMENT ON TABLE m365.username_failure IS
'People who need a username the job could not make, with the reason (tried again when their data changes)';

-- The appending triggers: statement-level, with transition tables, so a
-- load of 200,000 enrolments appends its rows in one INSERT ... SELECT. (A
-- trigger with transition tables cannot name columns: an UPDATE compares the
-- old and new rows itself.)
CREATE FUNCTION m365.request_students()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'enrolment' THEN
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'student', n.student_id FROM new_rows AS n;
    ELSE  -- student: a corrected name
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'student', n.id
          FROM new_rows AS n JOIN old_rows AS o ON o.id OPERATOR(pg_catalog.=) n.id
         WHERE (n.first_name, n.last_name) IS DISTINCT FROM (o.first_name, o.last_name);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.request_students() FROM PUBLIC;

CREATE TRIGGER enrolment_request_insert
    AFTER INSERT ON m365.enrolment
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_students();
CREATE TRIGGER enrolment_request_update
    AFTER UPDATE ON m365.enrolment
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_students();
CREATE TRIGGER student_request_update
    AFTER UPDATE ON m365.student
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_students();

CREATE FUNCTION m365.request_staff()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'staff_school' THEN
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'staff', n.staff_id FROM new_rows AS n;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'staff', n.id FROM new_rows AS n;
    ELSE  -- staff: (de)activated, or a corrected name
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT 'staff', n.id
          FROM new_rows AS n JOIN old_rows AS o ON o.id OPERATOR(pg_catalog.=) n.id
         WHERE (n.active, n.first_name, n.last_name) IS DISTINCT FROM (o.active, o.first_name, o.last_name);
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.request_staff() FROM PUBLIC;

CREATE TRIGGER staff_request_insert
    AFTER INSERT ON m365.staff
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_staff();
CREATE TRIGGER staff_request_update
    AFTER UPDATE ON m365.staff
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_staff();
CREATE TRIGGER staff_school_request_insert
    AFTER INSERT ON m365.staff_school
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_staff();
CREATE TRIGGER staff_school_request_update
    AFTER UPDATE ON m365.staff_school
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_staff();

-- A location or school linked to a configuration later: its people. At
-- commit (a deferred constraint trigger, per linked row): an enrolment or link
-- committed while the linking transaction was open is seen then, and its
-- person logged (at statement time it was not, and a run that read that
-- enrolment's own row before the link committed found nothing to do: a
-- red-team find against the first redesign).
CREATE FUNCTION m365.request_linked_people()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.configuration_id IS NULL OR NEW.configuration_id IS NOT DISTINCT FROM OLD.configuration_id THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME OPERATOR(pg_catalog.=) 'location' THEN
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT DISTINCT 'student', e.student_id
          FROM m365.enrolment AS e
         WHERE e.location_id OPERATOR(pg_catalog.=) NEW.id;
    ELSE
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT DISTINCT 'staff', ss.staff_id
          FROM m365.staff_school AS ss
         WHERE ss.school_id OPERATOR(pg_catalog.=) NEW.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.request_linked_people() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER location_request_update
    AFTER UPDATE OF configuration_id ON m365.location
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION m365.request_linked_people();
CREATE CONSTRAINT TRIGGER school_request_update
    AFTER UPDATE OF configuration_id ON m365.school
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION m365.request_linked_people();

-- A configuration changed (other formats, say): whoever failed there is tried again.
CREATE FUNCTION m365.request_failed_people()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO m365.username_request (person_kind, person_id)
    SELECT f.person_kind, f.person_id
      FROM new_rows AS n
      JOIN m365.username_failure AS f ON f.configuration_id OPERATOR(pg_catalog.=) n.id;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.request_failed_people() FROM PUBLIC;

CREATE TRIGGER configuration_request_update
    AFTER UPDATE ON m365.configuration
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.request_failed_people();

-- Logs everyone who needs a username and has none: after a restore without
-- the log, after loading data with triggers disabled. Returns how many.
CREATE FUNCTION m365.queue_missing_usernames()
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
    WITH missing AS (
        SELECT DISTINCT n.person_kind, n.person_id
          FROM m365.people_needing_username((SELECT pg_catalog.array_agg(s.id) FROM m365.student AS s),
                                            (SELECT pg_catalog.array_agg(s.id) FROM m365.staff AS s)) AS n
         WHERE NOT EXISTS (SELECT FROM m365.username AS u
                            WHERE u.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                              AND u.person_kind OPERATOR(pg_catalog.=) n.person_kind
                              AND u.person_id OPERATOR(pg_catalog.=) n.person_id)
    ), logged AS (
        INSERT INTO m365.username_request (person_kind, person_id)
        SELECT m.person_kind, m.person_id FROM missing AS m
        RETURNING 1
    )
    SELECT pg_catalog.count(*)::integer FROM logged
$$;
COMMENT ON FUNCTION m365.queue_missing_usernames() IS
'Logs for the job everyone who needs a username and has none (after a load with triggers disabled); returns how many';
REVOKE ALL ON FUNCTION m365.queue_missing_usernames() FROM PUBLIC;

-- The queue of 0.2.0 becomes log rows, oldest first (failed entries too: the
-- next run tries them again and records the reason), and goes.
INSERT INTO m365.username_request (person_kind, person_id, requested_at)
SELECT q.person_kind, q.person_id, q.queued_at
  FROM m365.username_queue AS q
 ORDER BY q.queued_at, q.person_kind, q.person_id;
INSERT INTO m365.username_request (person_kind, person_id, requested_at)
SELECT d.person_kind, p.person_id, d.deferred_at
  FROM m365.username_queue_deferred AS d, pg_catalog.unnest(d.person_ids) AS p(person_id)
 ORDER BY d.id;
DROP VIEW m365.status;  -- made again below, without the queue
DELETE FROM m365.message WHERE code OPERATOR(pg_catalog.=) 'queued_in_bulk';  -- no bulk deferral any more
INSERT INTO m365.message (code, language, text) VALUES
    ('tenant_account_unknown', 'nl', 'het account staat niet in de geïmporteerde tenant van deze configuratie'),
    ('tenant_account_unknown', 'fr', 'le compte ne figure pas dans le tenant importé de cette configuration'),
    ('tenant_account_unknown', 'en', 'the account is not in the imported tenant of this configuration'),
    ('person_not_in_configuration', 'nl', 'de persoon heeft geen gebruikersnaam nodig in deze configuratie'),
    ('person_not_in_configuration', 'fr', 'la personne n''a pas besoin de nom d''utilisateur dans cette configuration'),
    ('person_not_in_configuration', 'en', 'the person needs no username in this configuration'),
    ('person_given_twice', 'nl', 'de persoon staat meer dan eens in de lijst'),
    ('person_given_twice', 'fr', 'la personne figure plus d''une fois dans la liste'),
    ('person_given_twice', 'en', 'the person is in the list more than once'),
    ('no_suggested_username', 'nl', 'er is geen voorgestelde gebruikersnaam (de officiële namen zijn niet verbeterd, of de gebruikersnaam is met de hand getypt)'),
    ('no_suggested_username', 'fr', 'il n''y a pas de nom d''utilisateur suggéré (les noms officiels n''ont pas été corrigés, ou le nom d''utilisateur a été saisi à la main)'),
    ('no_suggested_username', 'en', 'there is no suggested username (the official names were not corrected, or the username was typed by hand)'),
    ('domain_removed', 'nl', 'De gebruikersnaam heeft geen domein meer (de school heeft er wel een: <reason>): SDS slaat de gebruiker over. Geef het domein opnieuw in.'),
    ('domain_removed', 'fr', 'Le nom d''utilisateur n''a plus de domaine (l''école en a un : <reason>) : SDS ignore l''utilisateur. Saisissez à nouveau le domaine.'),
    ('domain_removed', 'en', 'The username no longer has a domain (the school has one: <reason>): SDS leaves the user out. Type the domain again.'),
    ('username_held', 'nl', 'De gebruikersnaam hoorde bij <reason>, die onder dezelfde id werd verwijderd: hij blijft buiten M365 tot een beheerder bevestigt dat het dezelfde persoon is (m365.confirm_held_username) of hem vrijgeeft (m365.release_held_username).'),
    ('username_held', 'fr', 'Le nom d''utilisateur appartenait à <reason>, supprimé sous le même identifiant : il reste hors de M365 jusqu''à ce qu''un administrateur confirme qu''il s''agit de la même personne (m365.confirm_held_username) ou le libère (m365.release_held_username).'),
    ('username_held', 'en', 'The username belonged to <reason>, deleted under the same id: it stays out of M365 until an administrator confirms it is the same person (m365.confirm_held_username) or releases it (m365.release_held_username).'),
    ('edit_leaves_feed', 'nl', 'De gebruikersnaam ''$$$'' is opgeslagen zonder domein: SDS slaat deze gebruiker over tot er een domein is.'),
    ('edit_leaves_feed', 'fr', 'Le nom d''utilisateur ''$$$'' est enregistré sans domaine : SDS ignore cet utilisateur tant qu''il n''a pas de domaine.'),
    ('edit_leaves_feed', 'en', 'The username ''$$$'' was saved without a domain: SDS leaves this user out until it has one.');
DROP TABLE m365.username_queue, m365.username_queue_deferred;

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

REVOKE ALL ON FUNCTION m365.generation_claim(bigint, bigint, integer), m365.generation_assign(),
                       m365.generation_names_to_store(), m365.generation_store(), m365.generation_settle() FROM PUBLIC;
-- Shared by both diagnoses: a person's username, failure and log state.
CREATE OR REPLACE FUNCTION m365.diagnose_generation(configuration_id bigint, person_kind text, person_id bigint)
RETURNS TABLE (code text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    failure   m365.username_failure;
    logged_at timestamptz;
    next_run  timestamptz;
BEGIN
    IF EXISTS (SELECT FROM m365.username AS u
                WHERE u.configuration_id OPERATOR(pg_catalog.=) diagnose_generation.configuration_id
                  AND u.person_kind OPERATOR(pg_catalog.=) diagnose_generation.person_kind
                  AND u.person_id OPERATOR(pg_catalog.=) diagnose_generation.person_id) THEN
        RETURN;
    END IF;
    SELECT pg_catalog.min(r.requested_at) INTO logged_at FROM m365.username_request AS r
     WHERE r.person_kind OPERATOR(pg_catalog.=) diagnose_generation.person_kind
       AND r.person_id OPERATOR(pg_catalog.=) diagnose_generation.person_id;
    SELECT * INTO failure FROM m365.username_failure AS f
     WHERE f.configuration_id OPERATOR(pg_catalog.=) diagnose_generation.configuration_id
       AND f.person_kind OPERATOR(pg_catalog.=) diagnose_generation.person_kind
       AND f.person_id OPERATOR(pg_catalog.=) diagnose_generation.person_id;
    IF logged_at IS NOT NULL THEN
        next_run := m365.next_generation_run();
        RETURN QUERY SELECT 'queued', m365.message('queued', NULL,
            pg_catalog.to_char(logged_at, 'YYYY-MM-DD HH24:MI')
            OPERATOR(pg_catalog.||) coalesce(' (' OPERATOR(pg_catalog.||) pg_catalog.to_char(next_run, 'HH24:MI')
                                             OPERATOR(pg_catalog.||) ')', ''));
    ELSIF failure.reason IS NOT NULL THEN
        RETURN QUERY SELECT 'generation_failed', m365.message('generation_failed', NULL, failure.reason);
    ELSIF EXISTS (SELECT FROM m365.people_needing_username(
                                  CASE WHEN diagnose_generation.person_kind OPERATOR(pg_catalog.=) 'student'
                                       THEN ARRAY[diagnose_generation.person_id] END,
                                  CASE WHEN diagnose_generation.person_kind OPERATOR(pg_catalog.=) 'staff'
                                       THEN ARRAY[diagnose_generation.person_id] END) AS n
                   WHERE n.configuration_id OPERATOR(pg_catalog.=) diagnose_generation.configuration_id) THEN
        -- Needs one, and nothing tells the job (data loaded with triggers off).
        RETURN QUERY SELECT 'not_queued', m365.message('not_queued');
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION m365.preview_format(configuration_id bigint, format text)
RETURNS TABLE (person_kind text, person_id bigint, first_name text, last_name text, current_username text,
               preview_username text, clash text)
LANGUAGE sql STABLE
-- As the owner: "never reused" reads the forgotten names' key.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH people AS (
        SELECT u.person_kind, u.person_id, u.username,
               coalesce(st.first_name, sf.first_name) AS first_name,
               coalesce(st.last_name, sf.last_name) AS last_name
          FROM m365.username AS u
          LEFT JOIN m365.student AS st
                 ON u.person_kind OPERATOR(pg_catalog.=) 'student' AND st.id OPERATOR(pg_catalog.=) u.person_id
          LEFT JOIN m365.staff AS sf
                 ON u.person_kind OPERATOR(pg_catalog.=) 'staff' AND sf.id OPERATOR(pg_catalog.=) u.person_id
         WHERE u.configuration_id OPERATOR(pg_catalog.=) preview_format.configuration_id
           AND m365.check_username_format(preview_format.format)
    ), previewed AS (
        SELECT p.*, m365.make_username(preview_format.format, p.first_name, p.last_name) AS preview,
               pg_catalog.count(*) OVER (PARTITION BY m365.make_username(preview_format.format, p.first_name, p.last_name)) AS sharing
          FROM people AS p
    )
    SELECT p.person_kind, p.person_id, p.first_name, p.last_name, p.username, p.preview,
           CASE
               WHEN p.preview IS NULL THEN 'the names yield no username'
               WHEN p.sharing OPERATOR(pg_catalog.>) 1 THEN pg_catalog.format('%s people would get this name', p.sharing)
               WHEN EXISTS (SELECT FROM m365.reserved_username AS r
                             WHERE r.configuration_id OPERATOR(pg_catalog.=) preview_format.configuration_id
                               AND r.local_part OPERATOR(pg_catalog.=) p.preview) THEN 'reserved'
               WHEN EXISTS (SELECT FROM m365.tenant_account AS t
                             WHERE t.configuration_id OPERATOR(pg_catalog.=) preview_format.configuration_id
                               AND t.local_part OPERATOR(pg_catalog.=) p.preview
                               AND m365.tenant_account_is_not_theirs(t.owner_kind, t.owner_id, p.person_kind, p.person_id))
                    THEN 'an account in the tenant'
               WHEN NOT (SELECT f.is_free FROM m365.username_freedom(preview_format.configuration_id, p.preview,
                                                                     p.person_kind, p.person_id) AS f)
                    THEN 'issued before to someone else'
           END
      FROM previewed AS p
     ORDER BY p.person_kind, p.person_id
$$;
COMMENT ON FUNCTION m365.preview_format(bigint, text) IS
'What the configuration''s usernames would be under another format, and which would clash; writes nothing';

--------------------------------------------------------------------------------
-- 0.3.0: scheduling is explicit and job names carry the database; the DROP
-- EXTENSION event trigger is gone (unschedule first, docs/scheduling.md).
--------------------------------------------------------------------------------
DROP EVENT TRIGGER m365_usernames_before_drop;
DROP FUNCTION m365.before_drop_extension();
DROP FUNCTION m365.schedule_jobs_elsewhere();
DROP FUNCTION m365.job_definitions();
-- pg_cron job names are unique per user across the cluster, at most 63
-- bytes: the database's name makes them unique, a hash keeps a long one short.
CREATE OR REPLACE FUNCTION m365.job_name(job text, database_name text DEFAULT pg_catalog.current_database())
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN pg_catalog.octet_length(job OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) database_name)
                 OPERATOR(pg_catalog.<=) 63
            THEN job OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) database_name
            ELSE job OPERATOR(pg_catalog.||) '@db-' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.md5(database_name), 16)
       END;
COMMENT ON FUNCTION m365.job_name(text, text) IS 'The pg_cron job name of one of the extension''s jobs in a database (this one): job@database';
-- The extension's jobs: name, schedule, command; and the name 0.2.0 gave them.
CREATE FUNCTION m365.job_definitions()
RETURNS TABLE (job_name text, schedule text, command text, old_name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m365.job_name(d.job), d.schedule, d.command, d.old_name
      FROM (VALUES ('m365_generate_usernames', '*/15 * * * *', 'CALL m365.generate_usernames()', 'm365_generate_usernames'),
                   ('m365_retention', '30 3 * * *', 'SELECT m365.apply_retention()', 'm365_sds_snapshot'))
           AS d(job, schedule, command, old_name)
$$;
COMMENT ON FUNCTION m365.job_definitions() IS 'The pg_cron jobs of m365_usernames in this database: name, schedule, command, and the name before 0.3.0';
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
-- Gives this database's jobs scheduled under a name of 0.2.0 their name and
-- command of today (0.2.0 ran SELECT m365.generate_usernames(), which is now
-- CALL m365.generate_usernames()), keeping their ids. Returns how many.
-- (Also run by the upgrade.)
CREATE OR REPLACE FUNCTION m365.rename_old_jobs()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    renamed integer := 0;
BEGIN
    IF m365.pg_cron_is_here() THEN
        EXECUTE 'UPDATE cron.job AS j SET jobname = d.job_name, command = d.command
                   FROM m365.job_definitions() AS d
                  WHERE j.jobname = d.old_name AND j.database = pg_catalog.current_database()
                    AND NOT EXISTS (SELECT FROM cron.job AS o WHERE o.jobname = d.job_name AND o.username = j.username)';
        GET DIAGNOSTICS renamed = ROW_COUNT;
    END IF;
    RETURN renamed;
END
$$;
REVOKE ALL ON FUNCTION m365.rename_old_jobs() FROM PUBLIC;
-- Schedules (or reschedules) every job. Returns the job ids. Without pg_cron
-- in this database it schedules nothing and says what to run where pg_cron is.
-- Jobs under the names of 0.2.0 are renamed (same ids).
CREATE OR REPLACE FUNCTION m365.schedule_jobs()
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
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
    PERFORM m365.rename_old_jobs();
    FOR job IN SELECT * FROM m365.job_definitions() LOOP
        RETURN QUERY EXECUTE 'SELECT cron.schedule($1, $2, $3)' USING job.job_name, job.schedule, job.command;
    END LOOP;
END
$$;
COMMENT ON FUNCTION m365.schedule_jobs() IS
'Schedules the extension''s pg_cron jobs (generation every 15 minutes); without pg_cron here, says what to run instead';
REVOKE ALL ON FUNCTION m365.schedule_jobs() FROM PUBLIC;
CREATE OR REPLACE FUNCTION m365.unschedule_jobs()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer := 0;
    job_id bigint;
    names text[] := (SELECT pg_catalog.array_agg(n) FROM m365.job_definitions() AS d, LATERAL (VALUES (d.job_name), (d.old_name)) AS x(n));
BEGIN
    IF NOT m365.pg_cron_is_here() THEN
        RETURN 0;
    END IF;
    FOR job_id IN EXECUTE
        'SELECT j.jobid FROM cron.job AS j WHERE j.jobname = ANY ($1) AND j.database = pg_catalog.current_database()'
        USING names
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING job_id;
        removed := removed OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION m365.unschedule_jobs() IS
'Removes the extension''s pg_cron jobs of this database; returns how many. Run it before DROP EXTENSION';
REVOKE ALL ON FUNCTION m365.unschedule_jobs() FROM PUBLIC;
DO $jobs$
BEGIN
    IF m365.pg_cron_is_here() THEN
        PERFORM m365.rename_old_jobs();
    ELSE
        RAISE NOTICE 'if pg_cron runs the jobs of m365_usernames from another database, rename them there'
            USING DETAIL = pg_catalog.format('In the database named by cron.database_name: %s',
                               (SELECT pg_catalog.string_agg(pg_catalog.format(
                                           'UPDATE cron.job SET jobname = %L WHERE jobname = %L AND database = %L;',
                                           d.job_name, d.old_name, pg_catalog.current_database()), ' ')
                                  FROM m365.job_definitions() AS d));
    END IF;
END
$jobs$;

--------------------------------------------------------------------------------
-- 0.3.0: lists, edits and diagnostics decide dates in the configuration's
-- time zone; edits keep retryable SQLSTATEs; diagnostics read pg_cron as the
-- owner.
--------------------------------------------------------------------------------
-- (65_renames.sql begins)
--------------------------------------------------------------------------------
-- Official names corrected after the username was made: approved renames.
-- The job keeps on each username the format that made it and a digest of the
-- names it was made from. A new name is suggested only when the person's
-- names differ from those and make another base with that format: a change
-- of the configuration's format, an ICU upgrade or a suffix never suggests
-- one, and a name typed by hand (no format on its row) is never suggested
-- over. The configuration's rename_policy decides (20_configuration.sql):
--   suggest                the lists show suggested_username; an administrator
--                          applies it (m365.apply_suggested_usernames)
--   automatic_before_sync  a username never in a feed SDS received follows the
--                          correction at the job's next run (Microsoft 365 has
--                          not seen it); once in a feed, it is only suggested
--   never                  nothing is suggested
--------------------------------------------------------------------------------

-- The people whose username has been in a feed SDS received, from the first
-- record that held them (m365_sds.record_feed writes it). By person, not by
-- username row: a username deleted and given back (the ledger returns the
-- same name) is the same account in Microsoft 365 (a red-team find). Kept
-- when sync is turned off and when the records are removed: "never in a
-- feed" stays true only of people Microsoft 365 never received.
CREATE TABLE m365.person_in_feed (
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    person_kind      text NOT NULL,
    person_id        bigint NOT NULL,
    first_record     bigint NOT NULL,
    -- The name SDS received last for them (its key): a username that is a
    -- tenant account of someone else goes out only if it is this one
    -- (67_tenant_accounts.sql).
    local_part       text,
    PRIMARY KEY (configuration_id, person_kind, person_id)
);
COMMENT ON TABLE m365.person_in_feed IS
'The people whose username has been in a feed SDS received (from which record, and the name it received last): renamed only by an approved suggestion';

-- The base a person's names make now, when that is a correction: the job
-- made the username (format and names digest on its row), the names differ
-- from the ones it was made from, and the format that made it gives another
-- base from them. NULL otherwise. Plain SQL without SET, inlined where the
-- lists ask it of every row (the transliteration runs only for changed names).
CREATE FUNCTION m365.corrected_base(username text, format text, base text, suffix integer, names_digest bytea,
                                    first_name text, last_name text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN format IS NOT NULL AND base IS NOT NULL AND names_digest IS NOT NULL
             -- Still the name the job made (a direct UPDATE of the name leaves
             -- its row's format: a red-team find).
             AND m365.local_part_key(username) OPERATOR(pg_catalog.=)
                 m365.local_part_key(CASE WHEN suffix IS NULL THEN base ELSE m365.username_with_suffix(base, suffix) END)
             AND names_digest OPERATOR(pg_catalog.<>) m365.names_digest(first_name, last_name)
             AND m365.local_part_key(m365.make_username(format, first_name, last_name))
                 OPERATOR(pg_catalog.<>) m365.local_part_key(base)
            THEN m365.make_username(format, first_name, last_name) END;
COMMENT ON FUNCTION m365.corrected_base(text, text, text, integer, bytea, text, text) IS
'The base corrected names make with the format that made a username (NULL: no correction: names unchanged, the same base, or a name not made by the job)';

-- A username's suggestion as things are now: the first name free for its
-- person from the corrected base (their own old names included), with the
-- domain the username has, and what its row would then say. No row: no
-- suggestion (policy never, names unchanged, typed by hand, no such username,
-- or held because its id came back with other names: that may be someone
-- else, whom a rename would hand the account). The owner's code only (it
-- asks m365.first_free_name).
CREATE FUNCTION m365.name_suggestion(username_id bigint,
                                     OUT username text, OUT base text, OUT suffix integer, OUT names_digest bytea)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.local_part OPERATOR(pg_catalog.||)
           coalesce('@' OPERATOR(pg_catalog.||) NULLIF(pg_catalog.split_part(c.username, '@', 2), ''), ''),
           m365.local_part_key(c.corrected), f.suffix, m365.names_digest(c.first_name, c.last_name)
      FROM (SELECT u.configuration_id, u.person_kind, u.person_id, u.username, p.first_name, p.last_name,
                   m365.corrected_base(u.username, u.format, u.base, u.suffix, u.names_digest, p.first_name, p.last_name) AS corrected
              FROM m365.username AS u
              JOIN m365.configuration AS cf ON cf.id OPERATOR(pg_catalog.=) u.configuration_id
              JOIN (SELECT 'student'::text AS kind, s.id, s.first_name, s.last_name FROM m365.student AS s
                    UNION ALL
                    SELECT 'staff', st.id, st.first_name, st.last_name FROM m365.staff AS st) AS p
                ON p.kind OPERATOR(pg_catalog.=) u.person_kind AND p.id OPERATOR(pg_catalog.=) u.person_id
             WHERE u.id OPERATOR(pg_catalog.=) name_suggestion.username_id
               AND cf.rename_policy OPERATOR(pg_catalog.<>) 'never'
               AND NOT EXISTS (SELECT FROM m365.username_hold AS h WHERE h.username_id OPERATOR(pg_catalog.=) u.id)) AS c
     CROSS JOIN LATERAL m365.first_free_name(c.configuration_id, c.corrected, c.person_kind, c.person_id) AS f
     WHERE c.corrected IS NOT NULL AND m365.username_is_valid(c.corrected)
       -- (Not the name it has: a digit in a corrected name can make that.)
       AND f.local_part OPERATOR(pg_catalog.<>) m365.local_part_key(c.username)
$$;
REVOKE ALL ON FUNCTION m365.name_suggestion(bigint) FROM PUBLIC;

-- What the lists show: the suggested username, NULL when there is none. As
-- the owner ("free" reads the forgotten names' key).
CREATE FUNCTION m365.suggested_username(username_id bigint)
RETURNS text
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
RETURN (SELECT s.username FROM m365.name_suggestion(suggested_username.username_id) AS s);
COMMENT ON FUNCTION m365.suggested_username(bigint) IS
'The username a correction of the person''s official names suggests (NULL: none), as m365.apply_suggested_usernames would save it';
REVOKE ALL ON FUNCTION m365.suggested_username(bigint) FROM PUBLIC;

-- Renames usernames to their suggestions, validated as one set: per id
-- 'done' or the message set_username would give (unknown id; no suggestion;
-- two suggestions of one name: the lower id gets it, the other "in use").
-- The old name goes to the ledger as its owner's (they may take it back,
-- nobody else), the history records who (m365.username_audit), and a rename
-- of a name SDS received counts for the brake like any other. Rows locked in
-- id order, as set_username locks its one. Should a session take one of the
-- names between the check and the update, nothing of the call is saved and
-- each id it would have renamed answers "in use" (one subtransaction for the
-- call, not one per id).
CREATE FUNCTION m365.rename_to_suggestions(username_ids bigint[])
RETURNS TABLE (username_id bigint, outcome text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids         bigint[];
    suggestions text[];
    bases       text[];
    suffixes    integer[];
    digests     bytea[];
    problems    text[];
BEGIN
    PERFORM FROM m365.username AS u WHERE u.id OPERATOR(pg_catalog.=) ANY (username_ids) ORDER BY u.id FOR UPDATE;
    WITH asked AS (
        SELECT DISTINCT a.id FROM pg_catalog.unnest(username_ids) AS a(id) WHERE a.id IS NOT NULL
    ), suggested AS (
        SELECT a.id, u.username AS current, u.configuration_id, s.username AS suggestion, s.base, s.suffix, s.names_digest
          FROM asked AS a
          LEFT JOIN m365.username AS u ON u.id OPERATOR(pg_catalog.=) a.id
          LEFT JOIN LATERAL m365.name_suggestion(u.id) AS s ON true
    ), judged AS (
        SELECT g.*,
               CASE WHEN g.current IS NULL
                    THEN m365.message('username_not_saved', NULL, m365.message('unknown_username_id', NULL, g.id::text))
                    WHEN g.suggestion IS NULL
                    THEN m365.message('username_not_saved', g.current, m365.message('no_suggested_username', NULL, NULL))
                    WHEN pg_catalog.row_number() OVER (PARTITION BY g.configuration_id, m365.local_part_key(g.suggestion)
                                                       ORDER BY g.id) OPERATOR(pg_catalog.>) 1
                    THEN m365.message('username_in_use', g.suggestion, NULL)
               END AS problem
          FROM suggested AS g
    )
    SELECT pg_catalog.array_agg(j.id ORDER BY j.id), pg_catalog.array_agg(j.suggestion ORDER BY j.id),
           pg_catalog.array_agg(j.base ORDER BY j.id), pg_catalog.array_agg(j.suffix ORDER BY j.id),
           pg_catalog.array_agg(j.names_digest ORDER BY j.id), pg_catalog.array_agg(j.problem ORDER BY j.id)
      INTO ids, suggestions, bases, suffixes, digests, problems
      FROM judged AS j;
    BEGIN
        UPDATE m365.username AS u
           SET username = r.suggestion, base = r.base, suffix = r.suffix, names_digest = r.digest
          FROM ROWS FROM (pg_catalog.unnest(ids), pg_catalog.unnest(suggestions), pg_catalog.unnest(bases),
                          pg_catalog.unnest(suffixes), pg_catalog.unnest(digests), pg_catalog.unnest(problems))
               AS r(id, suggestion, base, suffix, digest, problem)
         WHERE r.problem IS NULL AND u.id OPERATOR(pg_catalog.=) r.id;
    EXCEPTION
        WHEN unique_violation THEN
            SELECT pg_catalog.array_agg(coalesce(r.problem, m365.message('username_in_use', r.suggestion, NULL)) ORDER BY r.n)
              INTO problems
              FROM ROWS FROM (pg_catalog.unnest(suggestions), pg_catalog.unnest(problems)) WITH ORDINALITY AS r(suggestion, problem, n);
    END;
    RETURN QUERY SELECT r.id, coalesce(r.problem, 'done')
                   FROM ROWS FROM (pg_catalog.unnest(ids), pg_catalog.unnest(problems)) AS r(id, problem);
END
$$;
REVOKE ALL ON FUNCTION m365.rename_to_suggestions(bigint[]) FROM PUBLIC;

-- An administrator applies suggestions (the application's "rename" button).
CREATE FUNCTION m365.apply_suggested_usernames(username_ids bigint[])
RETURNS TABLE (username_id bigint, outcome text)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.username_id, r.outcome FROM m365.rename_to_suggestions(apply_suggested_usernames.username_ids) AS r
$$;
COMMENT ON FUNCTION m365.apply_suggested_usernames(bigint[]) IS
'Renames the given usernames to their suggestions (m365.suggested_username): per id ''done'' or the message set_username would give, in the language of m365.language';
REVOKE ALL ON FUNCTION m365.apply_suggested_usernames(bigint[]) FROM PUBLIC;

-- rename_policy automatic_before_sync: the usernames never in a feed SDS
-- received whose person's names were corrected (the job follows them).
CREATE VIEW m365.name_correction_to_follow AS
SELECT u.id AS username_id, u.configuration_id
  FROM m365.username AS u
  JOIN m365.configuration AS c ON c.id OPERATOR(pg_catalog.=) u.configuration_id
                              AND c.rename_policy OPERATOR(pg_catalog.=) 'automatic_before_sync'
  LEFT JOIN m365.student AS s ON u.person_kind OPERATOR(pg_catalog.=) 'student' AND s.id OPERATOR(pg_catalog.=) u.person_id
  LEFT JOIN m365.staff AS st ON u.person_kind OPERATOR(pg_catalog.=) 'staff' AND st.id OPERATOR(pg_catalog.=) u.person_id
 WHERE NOT EXISTS (SELECT FROM m365.person_in_feed AS f
                    WHERE f.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
                      AND f.person_kind OPERATOR(pg_catalog.=) u.person_kind AND f.person_id OPERATOR(pg_catalog.=) u.person_id)
   AND m365.corrected_base(u.username, u.format, u.base, u.suffix, u.names_digest, coalesce(s.first_name, st.first_name),
                           coalesce(s.last_name, st.last_name)) IS NOT NULL;

-- Renames them (the job calls this at the end of each run); answers how
-- many. An export recording one of their configurations meanwhile would hand
-- SDS the old name while the job renames it, silently: so the job first
-- writes those configurations' record heads (87_sds_records.sql), as a
-- recording does. A recording that holds a head is waited for, and the names
-- it recorded are then no longer followed (the candidates are read again
-- after the lock); one whose snapshot is older than this run's commit fails
-- with 40001 and swaps nothing. A row or head held longer than lock_timeout
-- waits for the next run (a red-team find: the run waited, and the next one
-- was skipped).
CREATE FUNCTION m365.follow_name_corrections()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    renamed integer;
BEGIN
    IF NOT EXISTS (SELECT FROM m365.name_correction_to_follow) THEN
        RETURN 0;
    END IF;
    INSERT INTO m365.sds_record_head AS h (configuration_id)
    SELECT DISTINCT c.configuration_id FROM m365.name_correction_to_follow AS c ORDER BY c.configuration_id
    ON CONFLICT ON CONSTRAINT sds_record_head_pkey DO UPDATE SET newest_record = h.newest_record;
    SELECT pg_catalog.count(*)::integer INTO renamed
      FROM m365.rename_to_suggestions(ARRAY(SELECT c.username_id FROM m365.name_correction_to_follow AS c)) AS r
     WHERE r.outcome OPERATOR(pg_catalog.=) 'done';
    RETURN renamed;
END
$$;
REVOKE ALL ON FUNCTION m365.follow_name_corrections() FROM PUBLIC;
-- (65_renames.sql ends)
-- (67_tenant_accounts.sql begins)
--------------------------------------------------------------------------------
-- The tenant's existing accounts (onboarding a tenant that already has users).
-- bin/m365-tenant-import reads the users CSV of the Entra admin center
-- ("Download users") or of the Microsoft 365 admin center ("Export users")
-- into m365.tenant_account (30_username_store.sql), whose every name
-- m365.username_is_free keeps from everyone but the account's owner: SDS
-- links a username to the account with that name, and a generated
-- jan.peeters would take over the account of another Jan Peeters. The owner
-- is the person the account's employeeId names, or whom an administrator
-- adopted it for. m365.tenant_collision lists the usernames made here that
-- are an account of someone else (or of nobody known);
-- m365.match_tenant_accounts proposes whose account is whose;
-- m365.adopt_usernames gives chosen accounts to their people.
--------------------------------------------------------------------------------

-- The CSV reader (src/core/csv_reader.hpp): one row per record, the first
-- being the header, with the line it starts on.
CREATE FUNCTION m365.csv_records(csv text)
RETURNS TABLE (line integer, fields text[])
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_csv_records';
COMMENT ON FUNCTION m365.csv_records(text) IS
'The records of a CSV text (RFC 4180; a UTF-8 BOM skipped; semicolons when the header has no comma): the first is the header; errors 22P04 name the line';
REVOKE ALL ON FUNCTION m365.csv_records(text) FROM PUBLIC;

-- Who adopted which account for whom (audit; forgetting a person removes theirs).
CREATE TABLE m365.tenant_adoption (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    configuration_id    bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    user_principal_name text NOT NULL,
    person_kind         text NOT NULL,
    person_id           bigint NOT NULL,
    username_id         bigint NOT NULL,
    previous_username   text,
    adopted_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    adopted_by          name NOT NULL DEFAULT SESSION_USER,
    app_user            text DEFAULT NULLIF(pg_catalog.current_setting('m365.app_user', true), '')
);
CREATE INDEX tenant_adoption_person ON m365.tenant_adoption (configuration_id, person_kind, person_id);
COMMENT ON TABLE m365.tenant_adoption IS
'Audit: every tenant account adopted as a person''s username, with the database user and the application user (m365.app_user)';

-- Names as the comparison of a person with an account reads them: the
-- transliterated "voornaam.naam" (case, accents, spaces and scripts aside).
CREATE FUNCTION m365.name_key(first_name text, last_name text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN NULLIF(pg_catalog.btrim(first_name), '') IS NOT NULL AND NULLIF(pg_catalog.btrim(last_name), '') IS NOT NULL
            THEN m365.local_part_key(m365.make_username('voornaam.naam', first_name, last_name)) END;
COMMENT ON FUNCTION m365.name_key(text, text) IS
'The key two sets of names are compared by when a tenant account is matched to a person (transliterated voornaam.naam; NULL without both names)';

-- The usernames of this database that are the name of a tenant account that
-- is not their person's (someone else's, or nobody's known): SDS would link
-- the username to that account.
CREATE VIEW m365.tenant_collision AS
SELECT u.configuration_id, u.id AS username_id, u.person_kind, u.person_id,
       coalesce(s.first_name, st.first_name) AS first_name, coalesce(s.last_name, st.last_name) AS last_name,
       u.username, t.user_principal_name, t.given_name, t.surname, t.display_name, t.employee_id,
       t.owner_kind, t.owner_id, t.account_enabled, t.created_in_tenant,
       coalesce(m365.name_key(coalesce(s.first_name, st.first_name), coalesce(s.last_name, st.last_name))
                OPERATOR(pg_catalog.=) m365.name_key(t.given_name, t.surname), false) AS names_match,
       -- Whether SDS received this very name for the person (their last one).
       EXISTS (SELECT FROM m365.person_in_feed AS f
                WHERE f.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
                  AND f.person_kind OPERATOR(pg_catalog.=) u.person_kind
                  AND f.person_id OPERATOR(pg_catalog.=) u.person_id
                  AND f.local_part OPERATOR(pg_catalog.=) u.local_part) AS in_feed
  FROM m365.username AS u
  JOIN m365.tenant_account AS t ON t.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
                               AND t.local_part OPERATOR(pg_catalog.=) u.local_part
  LEFT JOIN m365.student AS s ON u.person_kind OPERATOR(pg_catalog.=) 'student' AND s.id OPERATOR(pg_catalog.=) u.person_id
  LEFT JOIN m365.staff AS st ON u.person_kind OPERATOR(pg_catalog.=) 'staff' AND st.id OPERATOR(pg_catalog.=) u.person_id
 WHERE m365.tenant_account_is_not_theirs(t.owner_kind, t.owner_id, u.person_kind, u.person_id);
COMMENT ON VIEW m365.tenant_collision IS
'Usernames of this database that are the name of a tenant account that is not their person''s (SDS would link them): adopt the account for its person, or rename the username';

-- The colliding usernames SDS has not received (as the person's last name
-- there): held out of the feed (85_sds_feed.sql) until an administrator
-- adopts the account or renames the username, so that SDS never links one to
-- someone else's account, even for a person SDS knows by another name (a
-- red-team find). One that SDS received already stays in the feed (taking it
-- out would take the person out of their classes): it is listed, not held.
CREATE VIEW m365.tenant_collision_held AS
SELECT DISTINCT c.username_id FROM m365.tenant_collision AS c WHERE NOT c.in_feed;
COMMENT ON VIEW m365.tenant_collision_held IS
'Usernames held out of the SDS feed: the name of a tenant account that is not their person''s, and never in a feed SDS received';

-- A creation time as the admin centers write it: ISO 8601 (Entra, UTC
-- unless it says otherwise) or M/D/YYYY h:mm:ss AM (the Microsoft 365 admin
-- center, UTC; D/M/YYYY when day_first: a file Excel saved again in a Dutch
-- or French locale). Read by pattern, never through the session's DateStyle.
-- NULL: neither, or no such day or time (2021-02-30). Matched without
-- capturing groups and cut by position (a regexp_match per row cost 20 µs),
-- and its fields checked rather than an error caught (an exception block is
-- a subtransaction per row).
CREATE FUNCTION m365.tenant_timestamp(value text, day_first boolean)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    y int; mo int; d int; h int := 0; mi int := 0; sec numeric := 0;
    zone text;
    clock text;
BEGIN
    IF value OPERATOR(pg_catalog.~) '^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?$' THEN
        y := pg_catalog.substr(value, 1, 4)::int; mo := pg_catalog.substr(value, 6, 2)::int; d := pg_catalog.substr(value, 9, 2)::int;
        IF pg_catalog.length(value) OPERATOR(pg_catalog.>=) 16 AND pg_catalog.substr(value, 14, 1) OPERATOR(pg_catalog.=) ':' THEN
            h := pg_catalog.substr(value, 12, 2)::int; mi := pg_catalog.substr(value, 15, 2)::int;
            IF pg_catalog.substr(value, 17, 1) OPERATOR(pg_catalog.=) ':' THEN
                sec := pg_catalog.substr(value, 18, 2)::numeric;
            END IF;
            zone := pg_catalog.substr(value, 17);
        ELSE
            zone := pg_catalog.substr(value, 11);
        END IF;
        zone := pg_catalog.ltrim(zone, ':.0123456789');
    ELSIF value OPERATOR(pg_catalog.~) '^[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}(?: [0-9]{1,2}:[0-9]{2}(?::[0-9]{2})? ?(?:[AaPp][Mm])?)?$' THEN
        IF day_first IS NULL THEN
            RETURN NULL;
        ELSIF day_first THEN
            d := pg_catalog.split_part(value, '/', 1)::int; mo := pg_catalog.split_part(value, '/', 2)::int;
        ELSE
            mo := pg_catalog.split_part(value, '/', 1)::int; d := pg_catalog.split_part(value, '/', 2)::int;
        END IF;
        y := pg_catalog.left(pg_catalog.split_part(value, '/', 3), 4)::int;
        clock := NULLIF(pg_catalog.substr(value, pg_catalog.strpos(value, ' ') OPERATOR(pg_catalog.+) 1), value);
        IF clock IS NOT NULL THEN
            h := pg_catalog.split_part(clock, ':', 1)::int; mi := pg_catalog.left(pg_catalog.split_part(clock, ':', 2), 2)::int;
            sec := coalesce(NULLIF(pg_catalog.left(pg_catalog.split_part(clock, ':', 3), 2), ''), '0')::numeric;
            CASE pg_catalog.upper(pg_catalog.right(clock, 2) COLLATE "C")
                WHEN 'AM' THEN
                    IF h OPERATOR(pg_catalog.<) 1 OR h OPERATOR(pg_catalog.>) 12 THEN RETURN NULL; END IF;
                    h := h OPERATOR(pg_catalog.%) 12;
                WHEN 'PM' THEN
                    IF h OPERATOR(pg_catalog.<) 1 OR h OPERATOR(pg_catalog.>) 12 THEN RETURN NULL; END IF;
                    h := h OPERATOR(pg_catalog.%) 12 OPERATOR(pg_catalog.+) 12;
                ELSE NULL;
            END CASE;
        END IF;
        zone := '';
    ELSE
        RETURN NULL;
    END IF;
    IF y OPERATOR(pg_catalog.<) 1 OR mo OPERATOR(pg_catalog.<) 1 OR mo OPERATOR(pg_catalog.>) 12 OR d OPERATOR(pg_catalog.<) 1
       OR d OPERATOR(pg_catalog.>) pg_catalog.date_part('day', pg_catalog.make_date(y, mo, 1) OPERATOR(pg_catalog.+) '1 month - 1 day'::interval)
       OR h OPERATOR(pg_catalog.>) 23 OR mi OPERATOR(pg_catalog.>) 59 OR sec OPERATOR(pg_catalog.>=) 60 THEN
        RETURN NULL;
    END IF;
    IF zone NOT IN ('', 'Z') THEN
        -- With its offset (at most 14 hours, as the time zones have):
        -- ISO 8601 reads the same in every DateStyle.
        IF pg_catalog.substr(zone, 2, 2)::int OPERATOR(pg_catalog.>) 14
           OR pg_catalog.right(zone, 2)::int OPERATOR(pg_catalog.>) 59 THEN
            RETURN NULL;
        END IF;
        RETURN value::timestamptz;
    END IF;
    RETURN pg_catalog.make_timestamptz(y, mo, d, h, mi, sec::double precision, 'UTC');
END
$$;
REVOKE ALL ON FUNCTION m365.tenant_timestamp(text, boolean) FROM PUBLIC;

-- The rows of a tenant users export, by header name: the Entra admin center's
-- camelCase (userPrincipalName, givenName, surname, accountEnabled, ...) or
-- the Microsoft 365 admin center's ("User principal name", "First name",
-- "Last name", "Block credential", "When created", ...). Extra and reordered
-- columns are ignored. Each row with what is wrong with it (NULL: nothing).
-- Names are read as the feed sends them (m365.feed_text: no control or
-- bidi character reaches a report or a terminal).
CREATE TYPE m365.tenant_file_row AS (
    line integer, user_principal_name text, given_name text, surname text, display_name text,
    employee_id text, department text, account_enabled boolean, created_in_tenant timestamptz, problem text);
CREATE FUNCTION m365.tenant_file_rows(csv text)
RETURNS SETOF m365.tenant_file_row
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    header text[];
    keys   text[];
    twice  text;
    c_upn int; c_given int; c_surname int; c_display int; c_employee int; c_department int;
    c_enabled int; c_blocked int; c_created int;
    -- Separated by semicolons (the reader's rule: a header without a comma).
    semicolons boolean := pg_catalog.strpos(pg_catalog.split_part(csv, E'\n', 1), ',') OPERATOR(pg_catalog.=) 0;
BEGIN
    SELECT r.fields INTO header FROM m365.csv_records(csv) AS r ORDER BY r.line LIMIT 1;
    -- Header names compared by their ASCII letters, in lower case whatever the collation.
    keys := ARRAY(SELECT pg_catalog.lower(pg_catalog.regexp_replace(h.name, '[^A-Za-z]', '', 'g') COLLATE "C")
                    FROM pg_catalog.unnest(header) WITH ORDINALITY AS h(name, n) ORDER BY h.n);
    SELECT k INTO twice FROM pg_catalog.unnest(keys) AS k
     WHERE k OPERATOR(pg_catalog.=) ANY ('{userprincipalname,givenname,firstname,surname,lastname,displayname,employeeid,
                                           department,accountenabled,blockcredential,createddatetime,whencreated}'::text[])
     GROUP BY k HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1 LIMIT 1;
    IF twice IS NOT NULL THEN
        RAISE EXCEPTION 'the file names the column "%" more than once', twice USING ERRCODE = 'M3T01';
    END IF;
    c_upn := pg_catalog.array_position(keys, 'userprincipalname');
    IF c_upn IS NULL THEN
        RAISE EXCEPTION 'the file is not a users export: it has no column userPrincipalName (Entra admin center) or "User principal name" (Microsoft 365 admin center)'
            USING ERRCODE = 'M3T01',
                  DETAIL = 'Its columns: ' OPERATOR(pg_catalog.||) pg_catalog.left(m365.feed_text(pg_catalog.array_to_string(header, ', ')), 500),
                  HINT = 'Entra admin center: Users, Download users. Microsoft 365 admin center: Active users, Export users.';
    END IF;
    c_given := coalesce(pg_catalog.array_position(keys, 'givenname'), pg_catalog.array_position(keys, 'firstname'));
    c_surname := coalesce(pg_catalog.array_position(keys, 'surname'), pg_catalog.array_position(keys, 'lastname'));
    c_display := pg_catalog.array_position(keys, 'displayname');
    c_employee := pg_catalog.array_position(keys, 'employeeid');
    c_department := pg_catalog.array_position(keys, 'department');
    c_enabled := pg_catalog.array_position(keys, 'accountenabled');
    c_blocked := pg_catalog.array_position(keys, 'blockcredential');
    c_created := coalesce(pg_catalog.array_position(keys, 'createddatetime'), pg_catalog.array_position(keys, 'whencreated'));

    RETURN QUERY
    WITH raw AS (
        SELECT r.line, pg_catalog.btrim(r.fields[c_upn]) AS upn,
               NULLIF(m365.feed_text(r.fields[c_given]), '') AS given,
               NULLIF(m365.feed_text(r.fields[c_surname]), '') AS surname,
               NULLIF(m365.feed_text(r.fields[c_display]), '') AS display,
               NULLIF(m365.feed_text(r.fields[c_employee]), '') AS employee,
               NULLIF(m365.feed_text(r.fields[c_department]), '') AS department,
               pg_catalog.lower(NULLIF(pg_catalog.btrim(r.fields[c_enabled]), '') COLLATE "C") AS enabled,
               pg_catalog.lower(NULLIF(pg_catalog.btrim(r.fields[c_blocked]), '') COLLATE "C") AS blocked,
               NULLIF(pg_catalog.btrim(r.fields[c_created]), '') AS created
          FROM m365.csv_records(csv) WITH ORDINALITY AS r(line, fields, n)
         WHERE r.n OPERATOR(pg_catalog.>) 1
    ), slashed AS (
        -- Dates with slashes: month first as the admin center writes them, or
        -- day first after Excel saved the file again in a European locale.
        -- Decided for the whole file: a first number above 12 means day
        -- first, a second one month first, both cannot be read; neither: the
        -- separator decides (semicolons are that European save).
        SELECT w.*,
               coalesce(pg_catalog.bool_or(CASE WHEN w.slash THEN pg_catalog.split_part(w.created, '/', 1)::int OPERATOR(pg_catalog.>) 12 END) OVER (), false) AS first_over,
               coalesce(pg_catalog.bool_or(CASE WHEN w.slash THEN pg_catalog.split_part(w.created, '/', 2)::int OPERATOR(pg_catalog.>) 12 END) OVER (), false) AS second_over
          FROM (SELECT w.*, w.created OPERATOR(pg_catalog.~) '^[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}' AS slash FROM raw AS w) AS w
    ), parsed AS (
        SELECT w.*,
               CASE WHEN w.enabled OPERATOR(pg_catalog.=) ANY ('{true,yes,1}'::text[]) THEN true
                    WHEN w.enabled OPERATOR(pg_catalog.=) ANY ('{false,no,0}'::text[]) THEN false END AS is_enabled,
               CASE WHEN w.blocked OPERATOR(pg_catalog.=) ANY ('{true,yes,1}'::text[]) THEN true
                    WHEN w.blocked OPERATOR(pg_catalog.=) ANY ('{false,no,0}'::text[]) THEN false END AS is_blocked,
               m365.tenant_timestamp(w.created, CASE WHEN w.first_over AND w.second_over THEN NULL
                                                      WHEN w.first_over THEN true
                                                      WHEN w.second_over THEN false
                                                      ELSE semicolons END) AS created_at,
               w.slash AND w.first_over AND w.second_over AS mixed
          FROM slashed AS w
    )
    SELECT p.line,
           CASE WHEN pg_catalog.strpos(p.upn, '@') OPERATOR(pg_catalog.>) 0
                THEN pg_catalog.split_part(p.upn, '@', 1) OPERATOR(pg_catalog.||) '@'
                     OPERATOR(pg_catalog.||) m365.lower_domain(pg_catalog.split_part(p.upn, '@', 2))
                ELSE p.upn END,
           p.given, p.surname, p.display, p.employee, p.department,
           coalesce(p.is_enabled, NOT p.is_blocked), p.created_at,
           CASE WHEN p.upn IS NULL OR p.upn OPERATOR(pg_catalog.=) ''
                THEN 'it has no user principal name'
                -- Microsoft's: printable ASCII, one "@", at most 113 characters.
                WHEN p.upn OPERATOR(pg_catalog.!~) '^[!-?A-~]+@[!-?A-~]+$' OR pg_catalog.length(p.upn) OPERATOR(pg_catalog.>) 113
                THEN pg_catalog.format('"%s" is not a user principal name (name@domain, printable ASCII, at most 113 characters; ? marks what is not)',
                                       pg_catalog.left(pg_catalog.regexp_replace(p.upn, '[^ -~]', '?', 'g'), 120))
                WHEN p.enabled IS NOT NULL AND p.is_enabled IS NULL
                THEN pg_catalog.format('%s "%s" is neither true nor false', m365.feed_text(header[c_enabled]), pg_catalog.left(m365.feed_text(p.enabled), 50))
                WHEN p.blocked IS NOT NULL AND p.is_blocked IS NULL
                THEN pg_catalog.format('%s "%s" is neither true nor false', m365.feed_text(header[c_blocked]), pg_catalog.left(m365.feed_text(p.blocked), 50))
                WHEN p.mixed
                THEN pg_catalog.format('%s "%s": the file''s dates put the day first in some lines and the month in others',
                                       m365.feed_text(header[c_created]), pg_catalog.left(m365.feed_text(p.created), 50))
                WHEN p.created IS NOT NULL AND p.created_at IS NULL
                THEN pg_catalog.format('%s "%s" is not a date and time (2021-09-01T08:30:00Z or 9/1/2021 8:30:00 AM)',
                                       m365.feed_text(header[c_created]), pg_catalog.left(m365.feed_text(p.created), 50))
           END
      FROM parsed AS p;
END
$$;
REVOKE ALL ON FUNCTION m365.tenant_file_rows(text) FROM PUBLIC;

-- Imports a tenant users export for a configuration: stores its accounts,
-- those of domains the configuration does not use (yet) too (a location of
-- such a domain added later would otherwise give their names out: a
-- red-team find), each with its owner where the employeeId says whose it
-- is: "student-12" (the feed's sourcedId) is student 12; a plain "12" is the
-- student or staff member 12 whose names the account has (ids of students
-- and staff can meet: a red-team find). All or nothing: a file with a problem
-- stores nothing and names the first line at fault. A later import updates
-- the accounts it lists (an owner an administrator adopted stays) and keeps
-- the others: an account deleted from the tenant stays kept from everyone
-- until an administrator deletes its row.
CREATE FUNCTION m365.import_tenant_accounts(configuration_id bigint, csv text,
                                            OUT accounts integer, OUT other_domain integer, OUT new_accounts integer,
                                            OUT owned integer, OUT usernames_here integer, OUT collisions integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    config   bigint := import_tenant_accounts.configuration_id;
    domains  text[];
    file     m365.tenant_file_row[];
    bad      record;
    seen     text;
BEGIN
    IF config IS NULL OR csv IS NULL THEN
        RAISE EXCEPTION 'the configuration and the file must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) config;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'there is no configuration %', config USING ERRCODE = 'invalid_parameter_value';
    END IF;
    domains := ARRAY(SELECT m365.accepted_domains(config));
    IF pg_catalog.cardinality(domains) OPERATOR(pg_catalog.=) 0 THEN
        RAISE EXCEPTION 'configuration % has no domain: the import keeps the accounts of its domains', config
            USING ERRCODE = 'M3T03',
                  HINT = 'Set its accepted_domains, or the domains of its locations and schools, first.';
    END IF;

    -- Read once: the file's rows, each with what is wrong with it.
    file := ARRAY(SELECT f FROM m365.tenant_file_rows(csv) AS f);
    IF pg_catalog.cardinality(file) OPERATOR(pg_catalog.=) 0 THEN
        RAISE EXCEPTION 'the file has a header and no account' USING ERRCODE = 'M3T02';
    END IF;
    SELECT f.line, f.problem INTO bad FROM pg_catalog.unnest(file) AS f
     WHERE f.problem IS NOT NULL ORDER BY f.line LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'line % of the file: %', bad.line, bad.problem USING ERRCODE = 'M3T02';
    END IF;
    SELECT pg_catalog.min(f.line) AS first_line, (pg_catalog.array_agg(f.line ORDER BY f.line))[2] AS second_line,
           (pg_catalog.array_agg(f.user_principal_name ORDER BY f.line))[2] AS upn
      INTO bad
      FROM pg_catalog.unnest(file) AS f
     GROUP BY m365.local_part_key(f.user_principal_name), pg_catalog.split_part(f.user_principal_name, '@', 2)
    HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1
     ORDER BY 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lines % and % of the file: the same user principal name "%"', bad.first_line, bad.second_line, bad.upn
            USING ERRCODE = 'M3T02', HINT = 'A tenant has each user principal name once: was the file put together from two exports?';
    END IF;

    -- The accounts' table first: a running chunk of the job holds it (SHARE)
    -- and is waited for before the configuration's row is taken, which the
    -- chunk's own writes need (in the other order the two deadlocked: a
    -- red-team find). Then the configuration's row: locked, so that a
    -- username written meanwhile (its foreign key shares the row) is waited
    -- for, and its probe then sees the accounts; and a new version of it, so
    -- that a writer at REPEATABLE READ whose snapshot is older than this
    -- import fails with 40001 rather than miss them.
    LOCK TABLE m365.tenant_account IN ROW EXCLUSIVE MODE;
    PERFORM FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) config FOR UPDATE;
    UPDATE m365.configuration AS c SET name = c.name WHERE c.id OPERATOR(pg_catalog.=) config;
    WITH rows AS (
        SELECT f.*, pg_catalog.split_part(f.user_principal_name, '@', 2) OPERATOR(pg_catalog.=) ANY (domains) AS ours,
               pg_catalog.lower(pg_catalog.substr(f.employee_id, 1, pg_catalog.strpos(f.employee_id, '-')) COLLATE "C") AS id_kind,
               pg_catalog.substr(f.employee_id, pg_catalog.strpos(f.employee_id, '-') OPERATOR(pg_catalog.+) 1) AS id_number
          FROM pg_catalog.unnest(file) AS f
    ), owners AS (
        -- The person an employeeId names: student-12 or staff-12; a plain 12
        -- only when exactly one of student 12 and staff 12 has the account's names.
        SELECT r.user_principal_name, pg_catalog.min(o.kind) AS kind, pg_catalog.min(o.id) AS id
          FROM rows AS r
          JOIN LATERAL (
                SELECT 'student'::text AS kind, s.id, s.first_name, s.last_name FROM m365.student AS s
                 WHERE r.id_number OPERATOR(pg_catalog.~) '^[0-9]{1,18}$' AND s.id OPERATOR(pg_catalog.=) r.id_number::bigint
                   AND r.id_kind OPERATOR(pg_catalog.=) ANY ('{"",student-}'::text[])
                UNION ALL
                SELECT 'staff', st.id, st.first_name, st.last_name FROM m365.staff AS st
                 WHERE r.id_number OPERATOR(pg_catalog.~) '^[0-9]{1,18}$' AND st.id OPERATOR(pg_catalog.=) r.id_number::bigint
                   AND r.id_kind OPERATOR(pg_catalog.=) ANY ('{"",staff-}'::text[])) AS o
            ON r.id_kind OPERATOR(pg_catalog.<>) ''
            OR m365.name_key(o.first_name, o.last_name) OPERATOR(pg_catalog.=) m365.name_key(r.given_name, r.surname)
         GROUP BY r.user_principal_name
        HAVING pg_catalog.count(*) OPERATOR(pg_catalog.=) 1
    ), stored AS (
        INSERT INTO m365.tenant_account AS t (configuration_id, user_principal_name, given_name, surname, display_name,
                                              employee_id, department, account_enabled, created_in_tenant,
                                              owner_kind, owner_id, owned_by)
        SELECT config, r.user_principal_name, r.given_name, r.surname, r.display_name, r.employee_id, r.department,
               r.account_enabled, r.created_in_tenant, o.kind, o.id, CASE WHEN o.kind IS NOT NULL THEN 'employee id' END
          FROM rows AS r
          LEFT JOIN owners AS o ON o.user_principal_name OPERATOR(pg_catalog.=) r.user_principal_name
        ON CONFLICT ON CONSTRAINT tenant_account_pkey DO UPDATE
           SET user_principal_name = excluded.user_principal_name, given_name = excluded.given_name,
               surname = excluded.surname, display_name = excluded.display_name, employee_id = excluded.employee_id,
               department = excluded.department, account_enabled = excluded.account_enabled,
               created_in_tenant = excluded.created_in_tenant, imported_at = pg_catalog.now(),
               owner_kind = CASE WHEN t.owned_by OPERATOR(pg_catalog.=) 'adoption' THEN t.owner_kind ELSE excluded.owner_kind END,
               owner_id = CASE WHEN t.owned_by OPERATOR(pg_catalog.=) 'adoption' THEN t.owner_id ELSE excluded.owner_id END,
               owned_by = CASE WHEN t.owned_by OPERATOR(pg_catalog.=) 'adoption' THEN t.owned_by ELSE excluded.owned_by END
        RETURNING (t.xmax OPERATOR(pg_catalog.=) 0) AS inserted, t.owner_kind IS NOT NULL AS has_owner
    )
    SELECT (SELECT pg_catalog.count(*) FROM rows), (SELECT pg_catalog.count(*) FILTER (WHERE NOT r.ours) FROM rows AS r),
           (SELECT pg_catalog.count(*) FILTER (WHERE s.inserted) FROM stored AS s),
           (SELECT pg_catalog.count(*) FILTER (WHERE s.has_owner) FROM stored AS s)
      INTO accounts, other_domain, new_accounts, owned;
    IF accounts OPERATOR(pg_catalog.=) other_domain THEN
        SELECT pg_catalog.string_agg(d.domain, ', ' ORDER BY d.domain) INTO seen
          FROM (SELECT DISTINCT pg_catalog.split_part(f.user_principal_name, '@', 2) AS domain
                  FROM pg_catalog.unnest(file) AS f LIMIT 20) AS d;
        RAISE EXCEPTION 'none of the % accounts of the file is in a domain of configuration %', accounts, config
            USING ERRCODE = 'M3T03',
                  DETAIL = pg_catalog.format('Its domains: %s. The file''s: %s.', pg_catalog.array_to_string(domains, ', '), seen),
                  HINT = 'Is it the export of this configuration''s tenant?';
    END IF;

    SELECT pg_catalog.count(DISTINCT u.id) INTO usernames_here
      FROM m365.username AS u JOIN m365.tenant_account AS t
        ON t.configuration_id OPERATOR(pg_catalog.=) u.configuration_id AND t.local_part OPERATOR(pg_catalog.=) u.local_part
     WHERE u.configuration_id OPERATOR(pg_catalog.=) config;
    SELECT pg_catalog.count(DISTINCT c.username_id) INTO collisions
      FROM m365.tenant_collision AS c WHERE c.configuration_id OPERATOR(pg_catalog.=) config;
END
$$;
COMMENT ON FUNCTION m365.import_tenant_accounts(bigint, text) IS
'Imports a tenant users export (Entra or Microsoft 365 admin center CSV) for a configuration: stores its accounts, whose names nobody but their owner gets; answers the counts (collisions: see m365.tenant_collision). Errors M3T01 (not a users export), M3T02 (a line at fault), M3T03 (no account in its domains), 22P04 (not valid CSV)';
REVOKE ALL ON FUNCTION m365.import_tenant_accounts(bigint, text) FROM PUBLIC;

-- The people of a configuration who need a username and have none, or whose
-- username is a tenant account that is not theirs, with the accounts that
-- may be theirs. One row per person and candidate:
--   match 'id'         the account's owner is the person (its employeeId, as
--                      the import read it)
--   match 'names'      one account of nobody known has the person's names
--                      (m365.name_key), and no other person of the list has
--                      them: a proposal
--   match 'ambiguous'  several accounts, or several people, fit
--   match 'none'       no account (account columns NULL)
-- Set-based (200,000 people and 100,000 accounts are joins, not probes).
CREATE FUNCTION m365.match_tenant_accounts(configuration_id bigint)
RETURNS TABLE (person_kind text, person_id bigint, first_name text, last_name text, username text,
               match text, user_principal_name text, given_name text, surname text, display_name text,
               employee_id text, department text, account_enabled boolean, created_in_tenant timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH accounts AS MATERIALIZED (
        SELECT t.* FROM m365.tenant_account AS t
         WHERE t.configuration_id OPERATOR(pg_catalog.=) match_tenant_accounts.configuration_id
    ), usernames AS MATERIALIZED (
        SELECT u.* FROM m365.username AS u
         WHERE u.configuration_id OPERATOR(pg_catalog.=) match_tenant_accounts.configuration_id
    ), colliding AS (
        SELECT DISTINCT u.person_kind, u.person_id, u.username
          FROM usernames AS u JOIN accounts AS t ON t.local_part OPERATOR(pg_catalog.=) u.local_part
         WHERE m365.tenant_account_is_not_theirs(t.owner_kind, t.owner_id, u.person_kind, u.person_id)
    ), people AS MATERIALIZED (
        SELECT p.person_kind, p.person_id, p.username,
               coalesce(s.first_name, st.first_name) AS first_name, coalesce(s.last_name, st.last_name) AS last_name
          -- (The arrays as lateral values, not sub-selects: only then is the
          -- rule inlined, a join; called with 200,000 ids it took minutes.)
          FROM (SELECT n.person_kind, n.person_id, NULL::text AS username
                  FROM (SELECT pg_catalog.array_agg(s.id) AS ids FROM m365.student AS s) AS students,
                       (SELECT pg_catalog.array_agg(st.id) AS ids FROM m365.staff AS st) AS staff,
                       LATERAL m365.people_needing_username(students.ids, staff.ids) AS n
                 WHERE n.configuration_id OPERATOR(pg_catalog.=) match_tenant_accounts.configuration_id
                   AND NOT EXISTS (SELECT FROM usernames AS u
                                    WHERE u.person_kind OPERATOR(pg_catalog.=) n.person_kind
                                      AND u.person_id OPERATOR(pg_catalog.=) n.person_id)
                UNION ALL
                SELECT c.person_kind, c.person_id, c.username FROM colliding AS c) AS p
          LEFT JOIN m365.student AS s ON p.person_kind OPERATOR(pg_catalog.=) 'student' AND s.id OPERATOR(pg_catalog.=) p.person_id
          LEFT JOIN m365.staff AS st ON p.person_kind OPERATOR(pg_catalog.=) 'staff' AND st.id OPERATOR(pg_catalog.=) p.person_id
    ), by_id AS (
        SELECT p.person_kind, p.person_id, t.user_principal_name, 'id'::text AS how
          FROM people AS p
          JOIN accounts AS t ON t.owner_kind OPERATOR(pg_catalog.=) p.person_kind AND t.owner_id OPERATOR(pg_catalog.=) p.person_id
         -- (Not the username they have: that one is theirs, no collision.)
    ), by_names AS (
        SELECT p.person_kind, p.person_id, t.user_principal_name, 'names'::text AS how
          FROM (SELECT p.*, m365.name_key(p.first_name, p.last_name) AS k FROM people AS p
                 WHERE NOT EXISTS (SELECT FROM by_id AS i WHERE i.person_kind OPERATOR(pg_catalog.=) p.person_kind
                                                           AND i.person_id OPERATOR(pg_catalog.=) p.person_id)) AS p
          JOIN (SELECT t.*, m365.name_key(t.given_name, t.surname) AS k FROM accounts AS t
                 WHERE t.owner_kind IS NULL) AS t
            ON t.k OPERATOR(pg_catalog.=) p.k
    ), candidate AS (
        SELECT c.*,
               CASE WHEN pg_catalog.count(*) OVER (PARTITION BY c.person_kind, c.person_id) OPERATOR(pg_catalog.>) 1
                      OR pg_catalog.count(*) OVER (PARTITION BY c.user_principal_name) OPERATOR(pg_catalog.>) 1
                    THEN 'ambiguous' ELSE c.how END AS match
          FROM (SELECT * FROM by_id UNION ALL SELECT * FROM by_names) AS c
    )
    SELECT p.person_kind, p.person_id, p.first_name, p.last_name, p.username, coalesce(c.match, 'none'),
           t.user_principal_name, t.given_name, t.surname, t.display_name, t.employee_id, t.department,
           t.account_enabled, t.created_in_tenant
      FROM people AS p
      LEFT JOIN candidate AS c ON c.person_kind OPERATOR(pg_catalog.=) p.person_kind AND c.person_id OPERATOR(pg_catalog.=) p.person_id
      LEFT JOIN accounts AS t ON t.user_principal_name OPERATOR(pg_catalog.=) c.user_principal_name
     ORDER BY p.person_kind, p.last_name, p.first_name, p.person_id, t.user_principal_name
$$;
COMMENT ON FUNCTION m365.match_tenant_accounts(bigint) IS
'Proposes for each person of the configuration without a username (or with one that collides) the tenant account that is theirs: match id, names (a proposal), ambiguous or none, with what tells accounts apart';
REVOKE ALL ON FUNCTION m365.match_tenant_accounts(bigint) FROM PUBLIC;

-- Gives tenant accounts to their people: person_kinds[i], person_ids[i]
-- adopts accounts[i] (a user principal name of m365.tenant_account). Per row
-- 'done' or the message set_username would give. The account becomes the
-- person's (its owner), and their username its name, in lower case with the
-- account's domain (made by nobody: no format, so never suggested over; an
-- old name stays issued to them); a person without a username gets it now,
-- before the job would make one. Validated as one set, in one
-- subtransaction: the owners are set, "free" is asked of the one rule
-- (m365.username_is_free: another holder, the ledger, a reservation, a
-- forgotten name, another owner), the rows it refuses are put back, the rest
-- written. Should a session take one of the names before the write, nothing
-- of the call is saved and each row it would have saved answers "in use".
CREATE FUNCTION m365.adopt_usernames(configuration_id bigint, person_kinds text[], person_ids bigint[], accounts text[])
RETURNS TABLE (person_kind text, person_id bigint, user_principal_name text, outcome text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    config   bigint := adopt_usernames.configuration_id;
    kinds    text[];
    ids      bigint[];
    upns     text[];
    names    text[];
    problems text[];
    refused  text[];
    current  bigint[];
    previous text[];
    owner_kinds text[];
    owner_ids   bigint[];
    owned_bys   text[];
BEGIN
    IF config IS NULL OR person_kinds IS NULL OR person_ids IS NULL OR accounts IS NULL
       OR pg_catalog.cardinality(person_kinds) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(person_ids)
       OR pg_catalog.cardinality(person_kinds) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(accounts) THEN
        RAISE EXCEPTION 'give a configuration and three lists of the same length (kinds, ids, accounts)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- As the import (in its order: a chunk of the job first): its accounts
    -- and their usernames are this call's alone.
    LOCK TABLE m365.tenant_account IN ROW EXCLUSIVE MODE;
    PERFORM FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) config FOR UPDATE;
    PERFORM FROM m365.username AS u
      JOIN ROWS FROM (pg_catalog.unnest(person_kinds), pg_catalog.unnest(person_ids)) AS p(kind, id)
        ON u.person_kind OPERATOR(pg_catalog.=) p.kind AND u.person_id OPERATOR(pg_catalog.=) p.id
     WHERE u.configuration_id OPERATOR(pg_catalog.=) config
     ORDER BY u.id FOR UPDATE OF u;
    WITH asked AS (
        SELECT a.kind, a.id, pg_catalog.btrim(a.upn) AS upn, a.n
          FROM ROWS FROM (pg_catalog.unnest(person_kinds), pg_catalog.unnest(person_ids), pg_catalog.unnest(accounts))
               WITH ORDINALITY AS a(kind, id, upn, n)
    ), found AS (
        SELECT a.*, t.user_principal_name AS account, t.local_part, t.owner_kind, t.owner_id, t.owned_by,
               u.id AS username_id, u.username AS has,
               (u.id IS NOT NULL OR EXISTS (SELECT FROM m365.people_needing_username(
                                                        CASE WHEN a.kind OPERATOR(pg_catalog.=) 'student' THEN ARRAY[a.id] END,
                                                        CASE WHEN a.kind OPERATOR(pg_catalog.=) 'staff' THEN ARRAY[a.id] END) AS p
                                             WHERE p.configuration_id OPERATOR(pg_catalog.=) config)) AS of_configuration
          FROM asked AS a
          LEFT JOIN m365.tenant_account AS t
            ON t.configuration_id OPERATOR(pg_catalog.=) config
           AND t.local_part OPERATOR(pg_catalog.=) m365.local_part_key(a.upn)
           AND t.domain OPERATOR(pg_catalog.=) m365.lower_domain(pg_catalog.split_part(a.upn, '@', 2))
          LEFT JOIN m365.username AS u
            ON u.configuration_id OPERATOR(pg_catalog.=) config
           AND u.person_kind OPERATOR(pg_catalog.=) a.kind AND u.person_id OPERATOR(pg_catalog.=) a.id
    ), judged AS (
        SELECT f.*,
               CASE WHEN f.account IS NULL
                    THEN m365.message('username_not_saved', f.upn, m365.message('tenant_account_unknown', NULL, NULL))
                    WHEN f.kind IS NULL OR f.id IS NULL OR NOT f.of_configuration
                    THEN m365.message('username_not_saved', f.account, m365.message('person_not_in_configuration', NULL, NULL))
                    WHEN pg_catalog.row_number() OVER (PARTITION BY f.kind, f.id ORDER BY f.n) OPERATOR(pg_catalog.>) 1
                    THEN m365.message('username_not_saved', f.account, m365.message('person_given_twice', NULL, NULL))
                    WHEN pg_catalog.row_number() OVER (PARTITION BY f.local_part ORDER BY f.n) OPERATOR(pg_catalog.>) 1
                    THEN m365.message('username_in_use', f.account, NULL)
                    -- Known to be someone else's.
                    WHEN f.owner_kind IS NOT NULL AND (f.owner_kind OPERATOR(pg_catalog.<>) f.kind OR f.owner_id OPERATOR(pg_catalog.<>) f.id)
                    THEN m365.message('username_in_use', f.account, NULL)
                    WHEN NOT m365.username_is_valid(f.account)
                      OR NOT pg_catalog.split_part(f.account, '@', 2) OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT m365.accepted_domains(config)))
                    THEN m365.message('username_invalid', f.account, NULL)
               END AS problem
          FROM found AS f
    )
    SELECT pg_catalog.array_agg(j.kind ORDER BY j.n), pg_catalog.array_agg(j.id ORDER BY j.n),
           pg_catalog.array_agg(coalesce(j.account, j.upn) ORDER BY j.n),
           pg_catalog.array_agg(j.local_part OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) pg_catalog.split_part(j.account, '@', 2) ORDER BY j.n),
           pg_catalog.array_agg(j.problem ORDER BY j.n),
           pg_catalog.array_agg(j.username_id ORDER BY j.n), pg_catalog.array_agg(j.has ORDER BY j.n),
           pg_catalog.array_agg(j.owner_kind ORDER BY j.n), pg_catalog.array_agg(j.owner_id ORDER BY j.n),
           pg_catalog.array_agg(j.owned_by ORDER BY j.n)
      INTO kinds, ids, upns, names, problems, current, previous, owner_kinds, owner_ids, owned_bys
      FROM judged AS j;
    BEGIN
        -- The accounts become their people's, then "free" decides: an
        -- account of nobody known no longer stands in the way, everything
        -- else still does. The accounts of the rows it refuses are put back
        -- as they were.
        UPDATE m365.tenant_account AS t SET owner_kind = a.kind, owner_id = a.id, owned_by = 'adoption'
          FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids), pg_catalog.unnest(upns), pg_catalog.unnest(problems))
               AS a(kind, id, upn, problem)
         WHERE a.problem IS NULL AND t.configuration_id OPERATOR(pg_catalog.=) config
           AND t.user_principal_name OPERATOR(pg_catalog.=) a.upn;
        SELECT pg_catalog.array_agg(CASE WHEN a.problem IS NULL
                                          AND NOT (SELECT f.is_free FROM m365.username_freedom(config, m365.local_part_key(a.upn), a.kind, a.id) AS f)
                                         THEN m365.message('username_in_use', a.upn, NULL) ELSE a.problem END ORDER BY a.n)
          INTO refused
          FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids), pg_catalog.unnest(upns), pg_catalog.unnest(problems))
               WITH ORDINALITY AS a(kind, id, upn, problem, n);
        UPDATE m365.tenant_account AS t
           SET owner_kind = a.owner_kind, owner_id = a.owner_id, owned_by = a.owned_by
          FROM ROWS FROM (pg_catalog.unnest(upns), pg_catalog.unnest(problems), pg_catalog.unnest(refused),
                          pg_catalog.unnest(owner_kinds), pg_catalog.unnest(owner_ids), pg_catalog.unnest(owned_bys))
               AS a(upn, problem, refusal, owner_kind, owner_id, owned_by)
         WHERE a.problem IS NULL AND a.refusal IS NOT NULL
           AND t.configuration_id OPERATOR(pg_catalog.=) config AND t.user_principal_name OPERATOR(pg_catalog.=) a.upn;
        problems := refused;
        -- Adopted: made by nobody (no base, suffix, format or names digest).
        UPDATE m365.username AS u
           SET username = a.name, base = NULL, suffix = NULL, format = NULL, names_digest = NULL
          FROM ROWS FROM (pg_catalog.unnest(current), pg_catalog.unnest(names), pg_catalog.unnest(problems)) AS a(username_id, name, problem)
         WHERE a.problem IS NULL AND u.id OPERATOR(pg_catalog.=) a.username_id
           AND u.username OPERATOR(pg_catalog.<>) a.name;
        INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
        SELECT config, a.kind, a.id, a.name
          FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids), pg_catalog.unnest(names),
                          pg_catalog.unnest(current), pg_catalog.unnest(problems)) AS a(kind, id, name, username_id, problem)
         WHERE a.problem IS NULL AND a.username_id IS NULL;
        INSERT INTO m365.tenant_adoption (configuration_id, user_principal_name, person_kind, person_id, username_id,
                                          previous_username)
        SELECT config, a.upn, a.kind, a.id, u.id, a.previous
          FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids), pg_catalog.unnest(upns),
                          pg_catalog.unnest(previous), pg_catalog.unnest(problems)) AS a(kind, id, upn, previous, problem)
          JOIN m365.username AS u ON u.configuration_id OPERATOR(pg_catalog.=) config
                                 AND u.person_kind OPERATOR(pg_catalog.=) a.kind AND u.person_id OPERATOR(pg_catalog.=) a.id
         WHERE a.problem IS NULL;
    EXCEPTION
        -- A name taken since the check (the username trigger asks again).
        WHEN unique_violation THEN
            SELECT pg_catalog.array_agg(coalesce(a.problem, m365.message('username_in_use', a.upn, NULL)) ORDER BY a.n)
              INTO problems
              FROM ROWS FROM (pg_catalog.unnest(upns), pg_catalog.unnest(problems)) WITH ORDINALITY AS a(upn, problem, n);
    END;
    RETURN QUERY SELECT a.kind, a.id, a.upn, coalesce(a.problem, 'done')
                   FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids), pg_catalog.unnest(upns),
                                   pg_catalog.unnest(problems)) WITH ORDINALITY AS a(kind, id, upn, problem, n)
                  ORDER BY a.n;
END
$$;
COMMENT ON FUNCTION m365.adopt_usernames(bigint, text[], bigint[], text[]) IS
'Gives tenant accounts to their people (kinds[i], ids[i] adopt accounts[i]): per row ''done'' or the message set_username would give, in the language of m365.language; audited in m365.tenant_adoption';
REVOKE ALL ON FUNCTION m365.adopt_usernames(bigint, text[], bigint[], text[]) FROM PUBLIC;
-- (67_tenant_accounts.sql ends)
SELECT pg_catalog.pg_extension_config_dump('m365.tenant_account', '');
SELECT pg_catalog.pg_extension_config_dump('m365.tenant_adoption', '');
SELECT pg_catalog.pg_extension_config_dump('m365.tenant_adoption_id_seq', '');

-- The lists gain the suggested username (a new result column).
DROP FUNCTION m365.student_usernames(bigint, date);
DROP FUNCTION m365.staff_usernames(bigint, date);
CREATE FUNCTION m365.student_usernames(location_id bigint, on_date date DEFAULT NULL)
RETURNS TABLE (student_id bigint, first_name text, last_name text, username_id bigint, username text,
               domain text, sync boolean, suggested_username text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT ON (s.id) s.id, s.first_name, s.last_name, u.id, u.username,
           CASE WHEN pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0
                THEN pg_catalog.split_part(u.username, '@', 2) ELSE l.student_domain END,
           u.sync,
           -- (Asked only where the names were corrected: 65_renames.sql.)
           CASE WHEN m365.corrected_base(u.username, u.format, u.base, u.suffix, u.names_digest, s.first_name, s.last_name) IS NOT NULL
                THEN m365.suggested_username(u.id) END
      FROM m365.location AS l
      JOIN m365.enrolment AS e ON e.location_id OPERATOR(pg_catalog.=) l.id
      JOIN m365.student AS s ON s.id OPERATOR(pg_catalog.=) e.student_id
      JOIN m365.username AS u
        ON u.configuration_id OPERATOR(pg_catalog.=) l.configuration_id
       AND u.person_kind OPERATOR(pg_catalog.=) 'student'
       AND u.person_id OPERATOR(pg_catalog.=) s.id
     WHERE l.id OPERATOR(pg_catalog.=) student_usernames.location_id
       AND m365.enrolment_is_listed(e.start_date, e.end_date, coalesce(student_usernames.on_date, m365.configuration_today(l.configuration_id)))
     ORDER BY s.id
$$;
COMMENT ON FUNCTION m365.student_usernames(bigint, date) IS
'The students of a location listed on a date (NULL: today in the configuration''s time zone), with username, the domain that applies, the sync flag and the username a correction of their names suggests';
REVOKE ALL ON FUNCTION m365.student_usernames(bigint, date) FROM PUBLIC;

CREATE FUNCTION m365.staff_usernames(school_id bigint, on_date date DEFAULT NULL)
RETURNS TABLE (staff_id bigint, first_name text, last_name text, active boolean, inactive_since date,
               username_id bigint, username text, domain text, sync boolean, suggested_username text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT st.id, st.first_name, st.last_name, st.active, st.inactive_since, u.id, u.username,
           CASE WHEN pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0
                THEN pg_catalog.split_part(u.username, '@', 2) END,
           u.sync,
           CASE WHEN m365.corrected_base(u.username, u.format, u.base, u.suffix, u.names_digest, st.first_name, st.last_name) IS NOT NULL
                THEN m365.suggested_username(u.id) END
      FROM m365.school AS sc
      JOIN m365.staff_school AS ss ON ss.school_id OPERATOR(pg_catalog.=) sc.id
      JOIN m365.staff AS st ON st.id OPERATOR(pg_catalog.=) ss.staff_id
      JOIN m365.username AS u
        ON u.configuration_id OPERATOR(pg_catalog.=) sc.configuration_id
       AND u.person_kind OPERATOR(pg_catalog.=) 'staff'
       AND u.person_id OPERATOR(pg_catalog.=) st.id
     WHERE sc.id OPERATOR(pg_catalog.=) staff_usernames.school_id
       AND m365.staff_is_listed(st.active, st.inactive_since, coalesce(staff_usernames.on_date, m365.configuration_today(sc.configuration_id)))
     ORDER BY st.id
$$;
COMMENT ON FUNCTION m365.staff_usernames(bigint, date) IS
'The staff of a school listed on a date (NULL: today in the configuration''s time zone), with username, domain, sync flag, whether they are active and the username a correction of their names suggests';
REVOKE ALL ON FUNCTION m365.staff_usernames(bigint, date) FROM PUBLIC;
-- 0.3.0: an edit without a domain keeps the username's domain (keep_domain).
DROP FUNCTION m365.set_username(bigint, text);
-- Validates and saves a username typed by an administrator; returns the row.
-- A name typed without a domain keeps the domain the username has (a staff
-- member's school domain, a student's fixed one): typing "leaves.later" for
-- "later.leaves@a-staff.be" gives "leaves.later@a-staff.be". A domain is
-- changed by typing it, and removed only with keep_domain => false.
CREATE FUNCTION m365.set_username(username_id bigint, new_username text, keep_domain boolean DEFAULT true)
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
    had_domain  text;
    sets_domain boolean;
BEGIN
    IF wanted OPERATOR(pg_catalog.=) '' THEN
        PERFORM m365.raise_message('M3U01', 'username_empty', typed);
    END IF;
    IF NOT m365.username_is_valid(wanted) THEN
        PERFORM m365.raise_message('M3U02', 'username_invalid', wanted, NULL, m365.username_problem(wanted));
    END IF;
    local := m365.local_part_key(wanted);
    domain := NULLIF(m365.lower_domain(pg_catalog.split_part(wanted, '@', 2)), '');

    SELECT * INTO current FROM m365.username AS u WHERE u.id OPERATOR(pg_catalog.=) set_username.username_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM m365.raise_message('M3U05', 'username_not_saved', wanted,
                                   m365.message('unknown_username_id', NULL, coalesce(username_id::text, 'NULL')));
    END IF;
    SELECT * INTO config FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) current.configuration_id;
    had_domain := NULLIF(pg_catalog.split_part(current.username, '@', 2), '');
    IF domain IS NULL AND keep_domain IS NOT false THEN
        domain := had_domain;
    END IF;
    -- Whether the person's own location (one of a student's enrolments in
    -- the configuration) or school (one of a staff member's in it) sets a
    -- domain: not another location of the configuration.
    sets_domain := CASE current.person_kind
        WHEN 'student' THEN EXISTS (SELECT FROM m365.enrolment AS e
                                      JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
                                     WHERE e.student_id OPERATOR(pg_catalog.=) current.person_id
                                       AND l.configuration_id OPERATOR(pg_catalog.=) config.id
                                       AND l.student_domain IS NOT NULL)
        ELSE EXISTS (SELECT FROM m365.staff_school AS ss
                       JOIN m365.school AS s ON s.id OPERATOR(pg_catalog.=) ss.school_id
                      WHERE ss.staff_id OPERATOR(pg_catalog.=) current.person_id
                        AND s.configuration_id OPERATOR(pg_catalog.=) config.id
                        AND s.staff_domain IS NOT NULL)
    END;

    IF domain IS NOT NULL AND domain IS DISTINCT FROM had_domain THEN
        -- A new domain only where the person's own location or school sets one.
        IF NOT sets_domain THEN
            PERFORM m365.raise_message('M3U04', 'domain_not_allowed', wanted);
        END IF;
        -- Among the configuration's accepted domains (its list, else the
        -- domains of its locations and schools).
        IF NOT domain OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT m365.accepted_domains(config.id))) THEN
            PERFORM m365.raise_message('M3U02', 'username_invalid', wanted, NULL,
                                       m365.message('domain_not_accepted', NULL, domain));
        END IF;
    END IF;

    -- In use: by another username, issued before to someone else, or reserved.
    IF NOT m365.username_is_free(config.id, local, current.person_kind, current.person_id) THEN
        PERFORM m365.raise_message('M3U03', 'username_in_use', wanted);
    END IF;

    BEGIN
        -- The old name goes to the ledger and the new one is checked again
        -- (m365.username_keep_ledger): a session or the job taking the same
        -- name meanwhile waits on its index entry and ends in "in use".
        UPDATE m365.username AS u
           SET username = CASE WHEN domain IS NULL THEN local
                               ELSE local OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) domain END,
               -- A typed name was not made by the job (unless it is the same name).
               base = CASE WHEN local OPERATOR(pg_catalog.=) u.local_part THEN u.base END,
               suffix = CASE WHEN local OPERATOR(pg_catalog.=) u.local_part THEN u.suffix END,
               format = CASE WHEN local OPERATOR(pg_catalog.=) u.local_part THEN u.format END,
               names_digest = CASE WHEN local OPERATOR(pg_catalog.=) u.local_part THEN u.names_digest END
         WHERE u.id OPERATOR(pg_catalog.=) current.id
        RETURNING * INTO saved;
    EXCEPTION
        -- A concurrent session took the name between the check and the update.
        WHEN unique_violation THEN
            PERFORM m365.raise_message('M3U03', 'username_in_use', wanted, NULL, SQLERRM);
        -- A retry would work: the application must see 40P01, 40001, 55P03.
        WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
            RAISE;
        WHEN OTHERS THEN
            PERFORM m365.raise_message('M3U05', 'username_not_saved', wanted, SQLERRM);
    END;
    -- Saved, but SDS will not take it: a synced user without a domain
    -- (a staff member always needs one; a student gets the domain of their
    -- location, so warn when none of their locations in it sets one).
    IF saved.sync AND pg_catalog.strpos(saved.username, '@') OPERATOR(pg_catalog.=) 0
       AND (saved.person_kind OPERATOR(pg_catalog.=) 'staff' OR NOT sets_domain) THEN
        RAISE WARNING USING ERRCODE = 'M3W01', MESSAGE = m365.message('edit_leaves_feed', saved.username, NULL);
    END IF;
    RETURN saved;
END
$$;
COMMENT ON FUNCTION m365.set_username(bigint, text, boolean) IS
'Validates and saves a username typed by an administrator (trimmed, lower case; without a typed domain it keeps its domain unless keep_domain is false); errors M3U01-M3U05 in the language of m365.language, warning M3W01 when SDS will leave the user out';
REVOKE ALL ON FUNCTION m365.set_username(bigint, text, boolean) FROM PUBLIC;
-- Sets the sync flag of the given usernames; returns how many changed.
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
    EXCEPTION
        -- A retry would work: the application must see 40P01, 40001, 55P03.
        WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
            RAISE;
        WHEN OTHERS THEN
            PERFORM m365.raise_message('M3S01', 'sync_not_saved', NULL, NULL, SQLERRM);
    END;
    RETURN changed;
END
$$;
COMMENT ON FUNCTION m365.set_sync(bigint[], boolean) IS
'Sets the sync flag of these usernames; returns how many changed; failures raise M3S01 (Opslaan sync mislukt)';
REVOKE ALL ON FUNCTION m365.set_sync(bigint[], boolean) FROM PUBLIC;
-- The same for every username of a location's (or school's) list on a date,
-- optionally only those whose username or name contains `filter`.
CREATE OR REPLACE FUNCTION m365.set_location_sync(location_id bigint, value boolean, filter text DEFAULT NULL,
                                       on_date date DEFAULT NULL)
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m365.set_sync(coalesce(pg_catalog.array_agg(l.username_id), '{}'), value)
      FROM m365.student_usernames(location_id, on_date) AS l
     WHERE m365.list_row_matches(filter, l.username, l.first_name, l.last_name)
$$;
COMMENT ON FUNCTION m365.set_location_sync(bigint, boolean, text, date) IS
'Sets the sync flag of every student username listed for a location (optionally filtered by text); returns how many changed';
REVOKE ALL ON FUNCTION m365.set_location_sync(bigint, boolean, text, date) FROM PUBLIC;
CREATE OR REPLACE FUNCTION m365.set_school_sync(school_id bigint, value boolean, filter text DEFAULT NULL,
                                     on_date date DEFAULT NULL)
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m365.set_sync(coalesce(pg_catalog.array_agg(l.username_id), '{}'), value)
      FROM m365.staff_usernames(school_id, on_date) AS l
     WHERE m365.list_row_matches(filter, l.username, l.first_name, l.last_name)
$$;
COMMENT ON FUNCTION m365.set_school_sync(bigint, boolean, text, date) IS
'Sets the sync flag of every staff username listed for a school (optionally filtered by text); returns how many changed';
REVOKE ALL ON FUNCTION m365.set_school_sync(bigint, boolean, text, date) FROM PUBLIC;
-- When pg_cron will next run the generation job, if it is scheduled here
-- every 15 minutes (NULL otherwise). As the owner: the application has no
-- rights on schema cron, and pg_cron shows each user only their own jobs.
CREATE OR REPLACE FUNCTION m365.next_generation_run()
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scheduled boolean := false;
BEGIN
    IF m365.pg_cron_is_here() THEN
        EXECUTE 'SELECT EXISTS (SELECT FROM cron.job WHERE jobname = $1 AND schedule = $2 AND active
                                   AND database = pg_catalog.current_database())'
           INTO scheduled USING m365.job_name('m365_generate_usernames'), '*/15 * * * *';
    END IF;
    IF NOT scheduled THEN
        RETURN NULL;
    END IF;
    RETURN pg_catalog.date_trunc('hour', pg_catalog.now())
           OPERATOR(pg_catalog.+) pg_catalog.make_interval(mins =>
               (pg_catalog.floor(pg_catalog.date_part('minute', pg_catalog.now()) OPERATOR(pg_catalog./) 15)::integer
                OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.*) 15);
END
$$;
REVOKE ALL ON FUNCTION m365.next_generation_run() FROM PUBLIC;
CREATE OR REPLACE FUNCTION m365.diagnose_student(student_id bigint, location_id bigint, on_date date DEFAULT NULL)
RETURNS TABLE (code text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    loc      m365.location;
    d        date;
    listed   record;
    upcoming date;
    ended    date;
BEGIN
    SELECT * INTO loc FROM m365.location AS l WHERE l.id OPERATOR(pg_catalog.=) diagnose_student.location_id;
    IF NOT FOUND OR loc.configuration_id IS NULL THEN
        RETURN QUERY SELECT 'no_configuration', m365.message('no_configuration');
        RETURN;
    END IF;
    d := coalesce(on_date, m365.configuration_today(loc.configuration_id));
    RETURN QUERY SELECT * FROM m365.diagnose_generation(loc.configuration_id, 'student', student_id);

    SELECT * INTO listed FROM m365.student_usernames(loc.id, d) AS s WHERE s.student_id OPERATOR(pg_catalog.=) diagnose_student.student_id;
    IF NOT FOUND THEN
        SELECT pg_catalog.min(e.start_date) INTO upcoming FROM m365.enrolment AS e
         WHERE e.student_id OPERATOR(pg_catalog.=) diagnose_student.student_id
           AND e.location_id OPERATOR(pg_catalog.=) loc.id AND e.start_date OPERATOR(pg_catalog.>) d;
        SELECT pg_catalog.max(e.end_date) INTO ended FROM m365.enrolment AS e
         WHERE e.student_id OPERATOR(pg_catalog.=) diagnose_student.student_id
           AND e.location_id OPERATOR(pg_catalog.=) loc.id AND e.end_date OPERATOR(pg_catalog.<) d;
        IF upcoming IS NOT NULL THEN
            RETURN QUERY SELECT 'enrolment_in_future', m365.message('enrolment_in_future', NULL, upcoming::text);
        END IF;
        IF ended IS NOT NULL AND m365.school_year(ended) OPERATOR(pg_catalog.=) m365.school_year(d) THEN
            RETURN QUERY SELECT 'enrolment_ended', m365.message('enrolment_ended', NULL, ended::text);
        END IF;
        -- No enrolment overlapping this school year (1 September - 30 June).
        IF NOT EXISTS (SELECT FROM m365.enrolment AS e
                        WHERE e.student_id OPERATOR(pg_catalog.=) diagnose_student.student_id
                          AND e.location_id OPERATOR(pg_catalog.=) loc.id
                          AND e.start_date OPERATOR(pg_catalog.<=) pg_catalog.make_date(m365.school_year(d) OPERATOR(pg_catalog.+) 1, 6, 30)
                          AND (e.end_date IS NULL
                               OR e.end_date OPERATOR(pg_catalog.>=) pg_catalog.make_date(m365.school_year(d), 9, 1))) THEN
            RETURN QUERY SELECT 'no_enrolment_this_school_year',
                                m365.message('no_enrolment_this_school_year', NULL,
                                             m365.school_year(d)::text OPERATOR(pg_catalog.||) '-'
                                             OPERATOR(pg_catalog.||) (m365.school_year(d) OPERATOR(pg_catalog.+) 1)::text);
        END IF;
        RETURN;
    END IF;

    -- Listed: what keeps the username from Microsoft 365?
    RETURN QUERY SELECT * FROM m365.diagnose_hold(listed.username_id);
    IF NOT listed.sync THEN
        RETURN QUERY SELECT 'sync_off', m365.message('sync_off');
    END IF;
    IF listed.domain IS NULL THEN
        RETURN QUERY SELECT 'no_domain', m365.message('no_domain');
    END IF;
    IF NOT EXISTS (SELECT FROM m365.student_usernames(loc.id, d) AS s WHERE s.sync) THEN
        RETURN QUERY SELECT 'no_synced_user_in_location', m365.message('no_synced_user_in_location');
    END IF;
    IF listed.sync AND listed.domain IS NOT NULL THEN
        RETURN QUERY SELECT 'listed_and_synced', m365.message('listed_and_synced');
    END IF;
END
$$;
COMMENT ON FUNCTION m365.diagnose_student(bigint, bigint, date) IS
'Why a student is not (yet) in a location''s list or in Microsoft 365: the reasons that apply, as (code, message)';
REVOKE ALL ON FUNCTION m365.diagnose_student(bigint, bigint, date) FROM PUBLIC;
CREATE OR REPLACE FUNCTION m365.diagnose_staff(staff_id bigint, school_id bigint, on_date date DEFAULT NULL)
RETURNS TABLE (code text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sch    m365.school;
    person m365.staff;
    d      date;
    listed record;
BEGIN
    SELECT * INTO sch FROM m365.school AS s WHERE s.id OPERATOR(pg_catalog.=) diagnose_staff.school_id;
    IF NOT FOUND OR sch.configuration_id IS NULL THEN
        RETURN QUERY SELECT 'no_configuration', m365.message('no_configuration');
        RETURN;
    END IF;
    d := coalesce(on_date, m365.configuration_today(sch.configuration_id));
    SELECT * INTO person FROM m365.staff AS s WHERE s.id OPERATOR(pg_catalog.=) diagnose_staff.staff_id;
    IF NOT EXISTS (SELECT FROM m365.staff_school AS ss
                    WHERE ss.staff_id OPERATOR(pg_catalog.=) diagnose_staff.staff_id
                      AND ss.school_id OPERATOR(pg_catalog.=) sch.id) THEN
        RETURN QUERY SELECT 'not_linked_to_school', m365.message('not_linked_to_school');
        RETURN;
    END IF;
    IF NOT person.active THEN
        IF m365.staff_is_listed(person.active, person.inactive_since, d) THEN
            RETURN QUERY SELECT 'inactive_listed', m365.message('inactive_listed', NULL, person.inactive_since::text);
        ELSE
            RETURN QUERY SELECT 'inactive_not_listed', m365.message('inactive_not_listed', NULL, person.inactive_since::text);
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM m365.diagnose_generation(sch.configuration_id, 'staff', staff_id);

    SELECT * INTO listed FROM m365.staff_usernames(sch.id, d) AS s WHERE s.staff_id OPERATOR(pg_catalog.=) diagnose_staff.staff_id;
    IF FOUND AND person.active THEN
        RETURN QUERY SELECT * FROM m365.diagnose_hold(listed.username_id);
        IF NOT listed.sync THEN
            RETURN QUERY SELECT 'sync_off', m365.message('sync_off');
        END IF;
        IF listed.domain IS NULL AND sch.staff_domain IS NOT NULL THEN
            -- The school has one: the username's was edited away.
            RETURN QUERY SELECT 'no_domain', m365.message('domain_removed', NULL, sch.staff_domain);
        ELSIF listed.domain IS NULL THEN
            RETURN QUERY SELECT 'no_domain', m365.message('no_domain');
        END IF;
        IF listed.sync AND listed.domain IS NOT NULL THEN
            RETURN QUERY SELECT 'listed_and_synced', m365.message('listed_and_synced');
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION m365.diagnose_staff(bigint, bigint, date) IS
'Why a staff member is not (yet) in a school''s list or in Microsoft 365: the reasons that apply, as (code, message)';
REVOKE ALL ON FUNCTION m365.diagnose_staff(bigint, bigint, date) FROM PUBLIC;

-- A name as the SDS feed sends it (NFC, white space collapsed, control and
-- bidi characters removed). STABLE like make_username: NFC follows ICU's
-- Unicode version.
CREATE FUNCTION m365.feed_text(text)
RETURNS text
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_feed_text';
COMMENT ON FUNCTION m365.feed_text(text) IS
'A name as the SDS feed sends it: Unicode NFC, every run of white space (line breaks included) one space, trimmed, control and bidi characters removed (joiners kept)';

--------------------------------------------------------------------------------
-- 0.3.0: the application's id is the person. A student or staff member deleted and
-- inserted again under the same id (a reload) keeps their username. When the
-- id comes back with other official names (no name in common), it may be
-- someone else: their username is held out of the feed and listed for an
-- administrator, who confirms it or releases it. The application's delete
-- and insert are never refused.
--------------------------------------------------------------------------------

-- The words of a person's names as the job reads them (transliterated, lower
-- case ASCII): what "a name in common" compares. Particles that millions
-- share (van, de, el, Vietnamese Van and Thi, ...) do not count, unless
-- they are all there is (a red-team find: "Van Gorp" and "Van An" matched).
CREATE FUNCTION m365.name_words(first_name text, last_name text)
RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (WITH w AS (
            SELECT DISTINCT m365.make_username('voornaam', p.part, '') AS word
              FROM pg_catalog.regexp_split_to_table(
                       m365.feed_text(coalesce(first_name, '') OPERATOR(pg_catalog.||) ' '
                                      OPERATOR(pg_catalog.||) coalesce(last_name, '')), ' ') AS p(part))
        SELECT coalesce(pg_catalog.array_agg(w.word) FILTER (WHERE NOT w.word OPERATOR(pg_catalog.=) ANY (
                            '{van,de,der,den,het,t,ten,ter,te,in,op,la,le,les,du,des,di,da,do,dos,das,del,della,von,vom,zu,
                              el,al,ibn,bin,ben,bint,abu,y,e,thi,mac,mc,o}'::text[])),
                        pg_catalog.array_agg(w.word))
          FROM w
         WHERE w.word IS NOT NULL);
COMMENT ON FUNCTION m365.name_words(text, text) IS
'The words of a person''s names, transliterated to lower-case ASCII as the job reads them (to tell whether two sets of names have one in common)';

-- The names of people deleted while they had a username, until their id
-- comes back (or forever: then the username stays issued, out of the feed).
CREATE TABLE m365.departed_person (
    person_kind  text NOT NULL,
    person_id    bigint NOT NULL,
    first_name   text NOT NULL,
    last_name    text NOT NULL,
    departed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (person_kind, person_id)
);
COMMENT ON TABLE m365.departed_person IS
'Students and staff deleted while they had a username, with their names, until their id is inserted again';

-- Usernames held out of the feed: their id came back with other names.
CREATE TABLE m365.username_hold (
    -- No foreign key: a hold written while an administrator releases the
    -- very username must not fail the application's insert (a red-team find).
    username_id      bigint PRIMARY KEY,
    old_first_name   text NOT NULL,
    old_last_name    text NOT NULL,
    new_first_name   text NOT NULL,
    new_last_name    text NOT NULL,
    held_at          timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE m365.username_hold IS
'Usernames held out of the SDS feed because their person''s id came back with other names: an administrator confirms (m365.confirm_held_username) or releases (m365.release_held_username) each';

-- Statement triggers on m365.student and m365.staff, reconciling with the
-- table as it is after the statement: an id gone from it departs (its names
-- recorded, username or not: the job may be making one that very moment);
-- an id inserted (or moved to) where someone departed, or an id still there
-- whose names all changed in the statement (a writable CTE that deletes and
-- inserts it, a chain of id updates, a wholesale rename), holds its username
-- when the names have no word in common. A TRUNCATE departs everyone.
CREATE FUNCTION m365.person_identity()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    kind  text := CASE TG_TABLE_NAME WHEN 'student' THEN 'student' ELSE 'staff' END;
BEGIN
    -- Who departs: everyone (TRUNCATE: no transition table, the rows are
    -- still there), or the old rows whose id is gone. The table is named with
    -- %I (TG_TABLE_SCHEMA, TG_TABLE_NAME): student or staff.
    IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
        EXECUTE pg_catalog.format($q$
            INSERT INTO m365.departed_person AS d (person_kind, person_id, first_name, last_name)
            SELECT $1, o.id, o.first_name, o.last_name FROM %I.%I AS o
            ON CONFLICT (person_kind, person_id) DO UPDATE
               SET first_name = excluded.first_name, last_name = excluded.last_name, departed_at = excluded.departed_at
            $q$, TG_TABLE_SCHEMA, TG_TABLE_NAME) USING kind;
        RETURN NULL;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN
        EXECUTE pg_catalog.format($q$
            INSERT INTO m365.departed_person AS d (person_kind, person_id, first_name, last_name)
            SELECT $1, o.id, o.first_name, o.last_name FROM old_rows AS o
             WHERE NOT EXISTS (SELECT FROM %I.%I AS t WHERE t.id OPERATOR(pg_catalog.=) o.id)
            ON CONFLICT (person_kind, person_id) DO UPDATE
               SET first_name = excluded.first_name, last_name = excluded.last_name, departed_at = excluded.departed_at
            $q$, TG_TABLE_SCHEMA, TG_TABLE_NAME) USING kind;
        EXECUTE pg_catalog.format($q$
            INSERT INTO m365.username_hold (username_id, old_first_name, old_last_name, new_first_name, new_last_name)
            SELECT u.id, o.first_name, o.last_name, t.first_name, t.last_name
              FROM old_rows AS o
              JOIN %I.%I AS t ON t.id OPERATOR(pg_catalog.=) o.id
              JOIN m365.username AS u ON u.person_kind OPERATOR(pg_catalog.=) $1 AND u.person_id OPERATOR(pg_catalog.=) o.id
             WHERE (o.first_name, o.last_name) IS DISTINCT FROM (t.first_name, t.last_name)
               AND NOT coalesce(m365.name_words(o.first_name, o.last_name) OPERATOR(pg_catalog.&&) m365.name_words(t.first_name, t.last_name), false)
            ON CONFLICT (username_id) DO NOTHING$q$, TG_TABLE_SCHEMA, TG_TABLE_NAME) USING kind;
    END IF;
    IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN
        INSERT INTO m365.username_hold (username_id, old_first_name, old_last_name, new_first_name, new_last_name)
        SELECT u.id, d.first_name, d.last_name, n.first_name, n.last_name
          FROM new_rows AS n
          JOIN m365.departed_person AS d
            ON d.person_kind OPERATOR(pg_catalog.=) kind AND d.person_id OPERATOR(pg_catalog.=) n.id
          JOIN m365.username AS u
            ON u.person_kind OPERATOR(pg_catalog.=) kind AND u.person_id OPERATOR(pg_catalog.=) n.id
         WHERE NOT coalesce(m365.name_words(d.first_name, d.last_name) OPERATOR(pg_catalog.&&) m365.name_words(n.first_name, n.last_name), false)
        ON CONFLICT (username_id) DO NOTHING;
        DELETE FROM m365.departed_person AS d
         USING new_rows AS n
         WHERE d.person_kind OPERATOR(pg_catalog.=) kind AND d.person_id OPERATOR(pg_catalog.=) n.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.person_identity() FROM PUBLIC;

CREATE TRIGGER student_identity_delete
    AFTER DELETE ON m365.student
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_identity();
CREATE TRIGGER student_identity_insert
    AFTER INSERT ON m365.student
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_identity();
CREATE TRIGGER student_identity_update
    AFTER UPDATE ON m365.student
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_identity();
CREATE TRIGGER student_identity_truncate
    BEFORE TRUNCATE ON m365.student
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_identity();
CREATE TRIGGER staff_identity_delete
    AFTER DELETE ON m365.staff
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_identity();
CREATE TRIGGER staff_identity_insert
    AFTER INSERT ON m365.staff
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_identity();
CREATE TRIGGER staff_identity_update
    AFTER UPDATE ON m365.staff
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_identity();
CREATE TRIGGER staff_identity_truncate
    BEFORE TRUNCATE ON m365.staff
    FOR EACH STATEMENT EXECUTE FUNCTION m365.person_identity();

-- The administrator's answers to a hold.
-- Confirm: the newcomer is the same person; the username goes back into the feed.
CREATE FUNCTION m365.confirm_held_username(username_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM m365.username_hold AS h WHERE h.username_id OPERATOR(pg_catalog.=) confirm_held_username.username_id;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION m365.confirm_held_username(bigint) IS
'The person whose id came back with other names is the same person: their username goes back into the feed (true when it was held)';
REVOKE ALL ON FUNCTION m365.confirm_held_username(bigint) FROM PUBLIC;

-- Release: the newcomer is someone else. The name stays issued to the one
-- who had it, recorded in the ledger under a person that is no longer the
-- id's ("former student"), so that nobody gets it, the newcomer included;
-- the newcomer is logged, and the next run makes them a name of their own.
CREATE FUNCTION m365.release_held_username(username_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    held m365.username;
BEGIN
    SELECT u.* INTO held
      FROM m365.username AS u
      JOIN m365.username_hold AS h ON h.username_id OPERATOR(pg_catalog.=) u.id
     WHERE u.id OPERATOR(pg_catalog.=) release_held_username.username_id
       FOR UPDATE OF u;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- Every name issued to the id before (renamed away, a red-team find) and
    -- the held one: in the ledger under the former person, so that the delete's
    -- own ledger row (under the id) finds the name there and adds nothing.
    UPDATE m365.issued_username AS i SET person_kind = 'former ' OPERATOR(pg_catalog.||) held.person_kind
     WHERE i.configuration_id OPERATOR(pg_catalog.=) held.configuration_id
       AND i.person_kind OPERATOR(pg_catalog.=) held.person_kind
       AND i.person_id OPERATOR(pg_catalog.=) held.person_id;
    INSERT INTO m365.issued_username (configuration_id, local_part, person_kind, person_id, base, suffix)
    VALUES (held.configuration_id, held.local_part, 'former ' OPERATOR(pg_catalog.||) held.person_kind, held.person_id,
            held.base, held.suffix)
    ON CONFLICT (configuration_id, local_part) DO UPDATE SET person_kind = excluded.person_kind;
    DELETE FROM m365.username_hold AS h WHERE h.username_id OPERATOR(pg_catalog.=) held.id;
    DELETE FROM m365.username AS u WHERE u.id OPERATOR(pg_catalog.=) held.id;
    INSERT INTO m365.username_request (person_kind, person_id) VALUES (held.person_kind, held.person_id);
    RETURN true;
END
$$;
COMMENT ON FUNCTION m365.release_held_username(bigint) IS
'The person whose id came back with other names is someone else: the held name stays issued to its former owner (never handed to anyone, the newcomer included) and the newcomer gets a new username at the next run';
REVOKE ALL ON FUNCTION m365.release_held_username(bigint) FROM PUBLIC;

-- A held username (its person's id came back with other names), and whose it was.
CREATE FUNCTION m365.diagnose_hold(username_id bigint, OUT code text, OUT message text)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'held', m365.message('username_held', NULL, h.old_first_name OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) h.old_last_name)
      FROM m365.username_hold AS h
     WHERE h.username_id OPERATOR(pg_catalog.=) diagnose_hold.username_id
$$;
COMMENT ON FUNCTION m365.diagnose_hold(bigint) IS 'The diagnosis row of a held username (code held), naming whose it was; no row when it is not held';
REVOKE ALL ON FUNCTION m365.diagnose_hold(bigint) FROM PUBLIC;

-- (58_forgetting.sql begins)
--------------------------------------------------------------------------------
-- 0.3.0: forgetting people. On request: after the school has deleted a pupil or
-- staff member, an administrator removes what the extension still keeps of
-- them (their usernames, the history of those, their rows in the records of
-- what SDS received). By retention (91_retention.sql): the usernames of
-- people who left, after some school years. Of forgotten names only what
-- stops them from being handed to someone else stays: keyed hashes
-- (m365.forgotten_username, 30_username_store.sql). Pseudonymisation kept for
-- that one purpose, not erasure (docs/privacy.md).
--------------------------------------------------------------------------------

-- Who was forgotten, when, by whom, and how many rows went; never a name.
CREATE TABLE m365.forgotten_person (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_kind  text NOT NULL,
    person_id    bigint NOT NULL,
    forgotten_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    forgotten_by text NOT NULL DEFAULT SESSION_USER,
    removed      jsonb NOT NULL,
    -- Forgotten at the school's request: should the id come back, the
    -- username it gets is held out of the feed until an administrator
    -- confirms it (m365.confirm_returning_id). SDS knows a user by that id;
    -- the new person would take over the forgotten one's account (a
    -- red-team find).
    hold_if_back boolean NOT NULL DEFAULT false,
    back_confirmed_at timestamptz
);
CREATE INDEX forgotten_person_person ON m365.forgotten_person (person_kind, person_id);
COMMENT ON TABLE m365.forgotten_person IS 'The audit of m365.forget_person: who was forgotten, when, by whom, how many rows went (no name)';

-- Forgets the names of people in one configuration (NULL: in all): their
-- usernames and the ledger's names of theirs become keyed hashes and go, with
-- the history of them, their failures and their holds. Returns how many rows
-- went. The configurations are locked first, as a reservation locks them: a
-- username being written there is waited for, and one written later sees
-- the hashes.
CREATE FUNCTION m365.forget_names(config bigint, kinds text[], ids bigint[])
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed jsonb := '{}';
    n       bigint;
BEGIN
    PERFORM FROM m365.configuration AS c
     WHERE c.id OPERATOR(pg_catalog.=) ANY (ARRAY(
               SELECT u.configuration_id FROM m365.username AS u
                JOIN ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
                  ON u.person_kind OPERATOR(pg_catalog.=) p.kind AND u.person_id OPERATOR(pg_catalog.=) p.id
               UNION
               SELECT i.configuration_id FROM m365.issued_username AS i
                JOIN ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
                  ON i.person_kind OPERATOR(pg_catalog.=) p.kind AND i.person_id OPERATOR(pg_catalog.=) p.id))
       AND (config IS NULL OR c.id OPERATOR(pg_catalog.=) config)
     ORDER BY c.id FOR UPDATE;
    INSERT INTO m365.forgotten_username (configuration_id, name_hash)
    SELECT x.configuration_id, (SELECT h FROM m365.forgotten_name_hash(x.local_part) AS h)
      FROM (SELECT u.configuration_id, u.local_part FROM m365.username AS u
              JOIN ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
                ON u.person_kind OPERATOR(pg_catalog.=) p.kind AND u.person_id OPERATOR(pg_catalog.=) p.id
            UNION
            SELECT i.configuration_id, i.local_part FROM m365.issued_username AS i
              JOIN ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
                ON i.person_kind OPERATOR(pg_catalog.=) p.kind AND i.person_id OPERATOR(pg_catalog.=) p.id
            -- Their tenant accounts: the rows go below, the names stay nobody
            -- else's (a red-team find: forgetting freed them).
            UNION
            SELECT t.configuration_id, t.local_part FROM m365.tenant_account AS t
              JOIN ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
                ON t.owner_kind OPERATOR(pg_catalog.=) p.kind AND t.owner_id OPERATOR(pg_catalog.=) p.id) AS x
     WHERE config IS NULL OR x.configuration_id OPERATOR(pg_catalog.=) config
    ON CONFLICT ON CONSTRAINT forgotten_username_pkey DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('names_hashed', n);

    -- The tenant accounts that are theirs or bear their names (hashed above:
    -- nobody else gets them; the tenant's copy goes when the account is
    -- deleted there), and who adopted them.
    DELETE FROM m365.tenant_account AS t
     USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE (config IS NULL OR t.configuration_id OPERATOR(pg_catalog.=) config)
       AND ((t.owner_kind OPERATOR(pg_catalog.=) p.kind AND t.owner_id OPERATOR(pg_catalog.=) p.id)
            OR EXISTS (SELECT FROM m365.username AS u
                        WHERE u.person_kind OPERATOR(pg_catalog.=) p.kind AND u.person_id OPERATOR(pg_catalog.=) p.id
                          AND u.configuration_id OPERATOR(pg_catalog.=) t.configuration_id
                          AND u.local_part OPERATOR(pg_catalog.=) t.local_part));
    DELETE FROM m365.tenant_adoption AS a
     USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE a.person_kind OPERATOR(pg_catalog.=) p.kind AND a.person_id OPERATOR(pg_catalog.=) p.id
       AND (config IS NULL OR a.configuration_id OPERATOR(pg_catalog.=) config);

    -- What an interrupted run of the job left in its work tables (the next
    -- run empties them): their rows, and the bases of their names.
    DELETE FROM m365_work.suffix_cursor AS w
     USING m365.username AS u, ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE u.person_kind OPERATOR(pg_catalog.=) p.kind AND u.person_id OPERATOR(pg_catalog.=) p.id
       AND w.configuration_id OPERATOR(pg_catalog.=) u.configuration_id AND w.base OPERATOR(pg_catalog.=) u.base;
    DELETE FROM m365_work.batch AS w USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE w.person_kind OPERATOR(pg_catalog.=) p.kind AND w.person_id OPERATOR(pg_catalog.=) p.id;
    DELETE FROM m365_work.given_name AS w USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE w.person_kind OPERATOR(pg_catalog.=) p.kind AND w.person_id OPERATOR(pg_catalog.=) p.id;
    DELETE FROM m365_work.waiting AS w USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE w.person_kind OPERATOR(pg_catalog.=) p.kind AND w.person_id OPERATOR(pg_catalog.=) p.id;
    DELETE FROM m365_work.claimed AS w USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE w.person_kind OPERATOR(pg_catalog.=) p.kind AND w.person_id OPERATOR(pg_catalog.=) p.id;

    DELETE FROM m365.username_hold AS h
     USING m365.username AS u, ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE h.username_id OPERATOR(pg_catalog.=) u.id
       AND u.person_kind OPERATOR(pg_catalog.=) p.kind AND u.person_id OPERATOR(pg_catalog.=) p.id
       AND (config IS NULL OR u.configuration_id OPERATOR(pg_catalog.=) config);
    -- (The username triggers put the names in the ledger and the history; both go below.)
    DELETE FROM m365.username AS u
     USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE u.person_kind OPERATOR(pg_catalog.=) p.kind AND u.person_id OPERATOR(pg_catalog.=) p.id
       AND (config IS NULL OR u.configuration_id OPERATOR(pg_catalog.=) config);
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('usernames', n);
    DELETE FROM m365.issued_username AS i
     USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE i.person_kind OPERATOR(pg_catalog.=) p.kind AND i.person_id OPERATOR(pg_catalog.=) p.id
       AND (config IS NULL OR i.configuration_id OPERATOR(pg_catalog.=) config);
    DELETE FROM m365.username_history AS h
     USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE h.person_kind OPERATOR(pg_catalog.=) p.kind AND h.person_id OPERATOR(pg_catalog.=) p.id
       AND (config IS NULL OR h.configuration_id OPERATOR(pg_catalog.=) config);
    GET DIAGNOSTICS n = ROW_COUNT;
    removed := removed OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('history_rows', n);
    DELETE FROM m365.username_failure AS f
     USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE f.person_kind OPERATOR(pg_catalog.=) p.kind AND f.person_id OPERATOR(pg_catalog.=) p.id
       AND (config IS NULL OR f.configuration_id OPERATOR(pg_catalog.=) config);
    DELETE FROM m365.person_in_feed AS f
     USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
     WHERE f.person_kind OPERATOR(pg_catalog.=) p.kind AND f.person_id OPERATOR(pg_catalog.=) p.id
       AND (config IS NULL OR f.configuration_id OPERATOR(pg_catalog.=) config);
    RETURN removed;
END
$$;
REVOKE ALL ON FUNCTION m365.forget_names(bigint, text[], bigint[]) FROM PUBLIC;

CREATE FUNCTION m365.forget_person(person_kind text, person_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind     text := forget_person.person_kind;
    person   bigint := forget_person.person_id;
    sourced  text;
    removed  jsonb := '{}';
    n        bigint;
BEGIN
    IF kind IS NULL OR kind OPERATOR(pg_catalog.<>) ALL ('{student,staff}'::text[]) OR person IS NULL THEN
        RAISE EXCEPTION 'forget_person needs a person kind (student or staff) and an id'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The school data first: what it still holds, the next run would make again.
    IF (kind OPERATOR(pg_catalog.=) 'student' AND EXISTS (SELECT FROM m365.student AS s WHERE s.id OPERATOR(pg_catalog.=) person))
       OR (kind OPERATOR(pg_catalog.=) 'staff' AND EXISTS (SELECT FROM m365.staff AS s WHERE s.id OPERATOR(pg_catalog.=) person)) THEN
        RAISE EXCEPTION '% % is still in the school data: delete them there first', kind, person
            USING ERRCODE = 'M3P01', HINT = 'docs/privacy.md gives the order of the steps.';
    END IF;
    IF EXISTS (SELECT FROM m365.source_waiting AS w
                WHERE w.entity OPERATOR(pg_catalog.=) kind AND w.key OPERATOR(pg_catalog.=) ARRAY[person]) THEN
        RAISE EXCEPTION '% % is still in an attached source (m365.source_drift() lists it): delete them there first', kind, person
            USING ERRCODE = 'M3P01', HINT = 'docs/privacy.md gives the order of the steps.';
    END IF;
    -- Then the export that takes them out of SDS: the newest record of what
    -- SDS received is what the brake compares with. The records' heads are
    -- written first, as a recording writes them: a recording under way is
    -- waited for (and then seen), and one whose snapshot is older than this
    -- forgetting fails with 40001 instead of recording them again (a red-team
    -- find).
    INSERT INTO m365.sds_record_head AS h (configuration_id) SELECT c.id FROM m365.configuration AS c
    ON CONFLICT ON CONSTRAINT sds_record_head_pkey DO UPDATE SET newest_record = h.newest_record;
    IF EXISTS (SELECT FROM m365.sds_record_user AS v
                WHERE v.configuration_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT c.id FROM m365.configuration AS c))
                  AND v.sourced_id OPERATOR(pg_catalog.=) (kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) person)
                  AND v.last_record IS NULL) THEN
        RAISE EXCEPTION '% % is still in the feed SDS received last: let the next export take them out first', kind, person
            USING ERRCODE = 'M3P01', HINT = 'docs/privacy.md gives the order of the steps.';
    END IF;
    sourced := kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) person;
    removed := m365.forget_names(NULL, ARRAY[kind], ARRAY[person]);
    DELETE FROM m365.username_request AS r
     WHERE r.person_kind OPERATOR(pg_catalog.=) kind AND r.person_id OPERATOR(pg_catalog.=) person;
    DELETE FROM m365.departed_person AS d
     WHERE d.person_kind OPERATOR(pg_catalog.=) kind AND d.person_id OPERATOR(pg_catalog.=) person;

    -- Every record of what SDS received loses them (none holds them now).
    DELETE FROM m365.sds_record_user AS v
     WHERE v.configuration_id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT c.id FROM m365.configuration AS c))
       AND v.sourced_id OPERATOR(pg_catalog.=) sourced;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM m365.sds_record_membership AS v
     WHERE v.user_sourced_id OPERATOR(pg_catalog.=) sourced;
    removed := removed OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('record_versions', n);

    INSERT INTO m365.forgotten_person (person_kind, person_id, removed, hold_if_back) VALUES (kind, person, removed, true);
    RETURN removed;
END
$$;
COMMENT ON FUNCTION m365.forget_person(text, bigint) IS
'Forgets a student or staff member the school data no longer holds: usernames, history, failures and record rows go; only keyed hashes of their names stay, so that no one else gets them';
REVOKE ALL ON FUNCTION m365.forget_person(text, bigint) FROM PUBLIC;

-- A forgotten id that came back is someone new to the extension: its
-- username stays out of the feed until an administrator confirms that SDS
-- may take it (after deleting the forgotten person's account in Microsoft
-- 365, or knowing it is the same person). Returns whether there was one to confirm.
CREATE FUNCTION m365.confirm_returning_id(person_kind text, person_id bigint)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH confirmed AS (
        UPDATE m365.forgotten_person AS f SET back_confirmed_at = pg_catalog.now()
         WHERE f.person_kind OPERATOR(pg_catalog.=) confirm_returning_id.person_kind
           AND f.person_id OPERATOR(pg_catalog.=) confirm_returning_id.person_id
           AND f.hold_if_back AND f.back_confirmed_at IS NULL
        RETURNING 1
    )
    SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM confirmed;
END;
COMMENT ON FUNCTION m365.confirm_returning_id(text, bigint) IS
'Lets the username of a forgotten student''s or staff member''s id that came back into the SDS feed (it is held out until then)';
REVOKE ALL ON FUNCTION m365.confirm_returning_id(text, bigint) FROM PUBLIC;
-- (58_forgetting.sql ends)

--------------------------------------------------------------------------------
-- 0.3.0: the feed's views are security barriers; readers are bound by role
-- OID; teachers only in locations of the feed's configuration.
--------------------------------------------------------------------------------
-- VOLATILE: it changes with every new word this backend transliterates.
CREATE FUNCTION m365.name_cache_bytes()
RETURNS bigint
LANGUAGE C VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'm365_name_cache_bytes';
COMMENT ON FUNCTION m365.name_cache_bytes() IS
'Bytes held by this backend''s cache of transliterated words (bounded at 8 MiB; outside PostgreSQL''s memory accounting)';

DROP VIEW m365_sds."academicSessions", m365_sds.enrollments, m365_sds.classes, m365.sds_class_member,
          m365_sds.orgs, m365_sds.roles, m365.sds_role, m365_sds.users, m365.sds_user, m365_sds.left_out,
          m365.sds_user_candidate, m365.sds_scope;
DROP FUNCTION m365.sds_problem(text, text, text);
ALTER TABLE m365.sds_reader RENAME CONSTRAINT sds_reader_pkey TO sds_reader_0_2_0_pkey;
ALTER TABLE m365.sds_reader RENAME CONSTRAINT sds_reader_configuration_id_fkey TO sds_reader_0_2_0_configuration_id_fkey;
ALTER TABLE m365.sds_reader RENAME TO sds_reader_0_2_0;
-- Bound by role OID (regrole): a reader dropped and re-created under the
-- same name reads nothing until it is made a reader again; pg_dump writes the
-- role's name, so a restore binds the restored cluster's role.
CREATE TABLE m365.sds_reader (
    role_id          regrole PRIMARY KEY,
    configuration_id bigint NOT NULL REFERENCES m365.configuration (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE m365.sds_reader IS 'The read-only SDS roles, each bound to one configuration';
INSERT INTO m365.sds_reader (role_id, configuration_id, created_at)
SELECT r.oid::regrole, o.configuration_id, o.created_at
  FROM m365.sds_reader_0_2_0 AS o
  JOIN pg_catalog.pg_roles AS r ON r.rolname OPERATOR(pg_catalog.=) o.role_name;
-- Out of the extension first: that takes it out of what pg_dump keeps, too.
ALTER EXTENSION m365_usernames DROP TABLE m365.sds_reader_0_2_0;
DROP TABLE m365.sds_reader_0_2_0;
-- Readers and levels of roles dropped since: their OIDs would be written by
-- pg_dump as bare numbers, which a restore binds to whatever role has that
-- OID in the other cluster. Forgotten whenever readers or levels change and
-- by the daily removal of old SDS records.
CREATE OR REPLACE FUNCTION m365.forget_dropped_roles()
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH readers AS (
        DELETE FROM m365.sds_reader AS s
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS o WHERE o.oid OPERATOR(pg_catalog.=) s.role_id::oid)
        RETURNING 1
    ), levels AS (
        DELETE FROM m365.access_role AS a
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles AS o WHERE o.oid OPERATOR(pg_catalog.=) a.role_id::oid)
        RETURNING 1
    )
    SELECT ((SELECT pg_catalog.count(*) FROM readers) OPERATOR(pg_catalog.+) (SELECT pg_catalog.count(*) FROM levels))::integer
$$;
REVOKE ALL ON FUNCTION m365.forget_dropped_roles() FROM PUBLIC;
-- Why a role cannot be (or stay) an SDS reader; NULL when it is a plain login
-- role, one caller and nothing more: a role with members would open the
-- configuration to each of them (SET ROLE), and any other right would reach
-- beyond the feed. Used by create_sds_reader and by the update from 0.2.0.
CREATE OR REPLACE FUNCTION m365.reader_problem(reader regrole)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        m365.role_problem(reader),
        CASE WHEN NOT (SELECT r.rolcanlogin FROM pg_catalog.pg_roles AS r WHERE r.oid OPERATOR(pg_catalog.=) reader_problem.reader)
             THEN 'it cannot log in (NOLOGIN): a reader is a login role, not a group' END,
        CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_auth_members AS m WHERE m.roleid OPERATOR(pg_catalog.=) reader_problem.reader)
             THEN 'other roles are members of it' END,
        CASE WHEN EXISTS (SELECT FROM m365.access_role AS a
                           WHERE pg_catalog.pg_has_role(reader_problem.reader::oid, a.role_id::oid, 'MEMBER'))
             THEN 'it has access to the extension (m365.grant_access) and sees every configuration' END,
        CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_shdepend AS d
                           WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
                             AND d.refobjid OPERATOR(pg_catalog.=) reader_problem.reader::oid
                             AND d.deptype OPERATOR(pg_catalog.=) 'o')
               OR EXISTS (SELECT FROM pg_catalog.pg_database AS db WHERE db.datdba OPERATOR(pg_catalog.=) reader_problem.reader::oid)
             THEN 'it owns objects' END,
        -- Rights of its own here or on shared objects (databases,
        -- tablespaces), but the feed's (which a reader made before has). Other
        -- databases' grants are theirs to judge: a role may read another
        -- database's feed too.
        CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_shdepend AS d
                           WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass
                             AND d.refobjid OPERATOR(pg_catalog.=) reader_problem.reader::oid
                             AND d.deptype OPERATOR(pg_catalog.=) 'a'
                             AND d.dbid OPERATOR(pg_catalog.=) ANY (ARRAY[0::oid, (SELECT db.oid FROM pg_catalog.pg_database AS db
                                                                                   WHERE db.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())])
                             AND NOT (d.dbid OPERATOR(pg_catalog.<>) 0
                                      AND ((d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                                            AND d.objid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT c.oid FROM pg_catalog.pg_class AS c
                                                                                          WHERE c.relnamespace OPERATOR(pg_catalog.=) 'm365_sds'::pg_catalog.regnamespace)))
                                           OR (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                                               AND d.objid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT p.oid FROM pg_catalog.pg_proc AS p
                                                                                             WHERE p.pronamespace OPERATOR(pg_catalog.=) 'm365_sds'::pg_catalog.regnamespace)))
                                           OR (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass
                                               AND d.objid OPERATOR(pg_catalog.=) 'm365_sds'::pg_catalog.regnamespace::oid))))
             THEN 'it has been granted rights of its own (GRANT ... TO it); a reader has the feed''s only' END)
$$;
REVOKE ALL ON FUNCTION m365.reader_problem(regrole) FROM PUBLIC;
-- 0.2.0 made readers of roles 0.3.0 refuses (groups with members, privileged
-- roles): they read no more, and the update says which and why.
DO $readers$
DECLARE
    refused record;
BEGIN
    FOR refused IN SELECT s.role_id, m365.reader_problem(s.role_id) AS problem
                     FROM m365.sds_reader AS s
                    WHERE m365.reader_problem(s.role_id) IS NOT NULL LOOP
        DELETE FROM m365.sds_reader AS s WHERE s.role_id OPERATOR(pg_catalog.=) refused.role_id;
        RAISE WARNING 'role % no longer reads the SDS feed: %', refused.role_id, refused.problem
            USING HINT = 'Make a plain login role the reader: SELECT m365.create_sds_reader(''<new role>'', <configuration>)';
    END LOOP;
END
$readers$;
-- The configuration and day the feed is about, for whoever is asking: a
-- reader's own configuration; for a role with the admin level, the one it
-- chose with m365.sds_configuration. The day is today in the configuration's
-- time zone, or m365.sds_on_date.
CREATE VIEW m365.sds_scope AS
SELECT c.id AS configuration_id,
       coalesce(NULLIF(pg_catalog.current_setting('m365.sds_on_date', true), '')::date,
                m365.local_date(c.time_zone)) AS on_date
  FROM m365.configuration AS c
 WHERE c.id OPERATOR(pg_catalog.=) coalesce(
           -- By OID: to_regrole() would read the name as an identifier and fold its case.
           (SELECT r.configuration_id FROM m365.sds_reader AS r
             WHERE r.role_id::oid OPERATOR(pg_catalog.=) (SELECT o.oid FROM pg_catalog.pg_roles AS o
                                                          WHERE o.rolname OPERATOR(pg_catalog.=) CURRENT_USER)),
           CASE WHEN (SELECT o.rolsuper FROM pg_catalog.pg_roles AS o WHERE o.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
                   OR EXISTS (SELECT FROM m365.access_role AS a
                               WHERE a.level OPERATOR(pg_catalog.=) 'admin'
                                 AND pg_catalog.pg_has_role(CURRENT_USER, a.role_id::oid, 'MEMBER'))
                THEN NULLIF(pg_catalog.current_setting('m365.sds_configuration', true), '')::bigint END);
-- Which configuration and day the asking role gets (not an SDS file): no row
-- when it gets none (a reader whose configuration was deleted, an admin that
-- chose none), which the export command refuses to write as an empty feed.
CREATE VIEW m365_sds.scope WITH (security_barrier) AS
SELECT s.configuration_id, s.on_date FROM m365.sds_scope AS s;
COMMENT ON VIEW m365_sds.scope IS 'The configuration and day the feed is about for the asking role (not an SDS file); no row: none';
-- The users SDS gets, and the ones it cannot get (with the reason).
CREATE VIEW m365.sds_user_candidate AS
WITH scope AS (SELECT * FROM m365.sds_scope),
student_enrolment AS (
    -- The enrolment active today in a location of the configuration; the
    -- latest started one when there are several.
    SELECT DISTINCT ON (e.student_id) e.student_id, e.location_id, l.student_domain
      FROM m365.enrolment AS e
      JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
      JOIN scope ON l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
     WHERE e.start_date OPERATOR(pg_catalog.<=) scope.on_date
       AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) scope.on_date)
     ORDER BY e.student_id, e.start_date DESC, e.location_id
)
SELECT 'student-' OPERATOR(pg_catalog.||) s.id AS sourced_id, 'student'::text AS person_kind, s.id AS person_id,
       CASE WHEN pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0 THEN u.username
            WHEN se.student_domain IS NOT NULL THEN u.username OPERATOR(pg_catalog.||) '@' OPERATOR(pg_catalog.||) se.student_domain
       END AS username,
       m365.feed_text(s.first_name) AS first_name, m365.feed_text(s.last_name) AS last_name, true AS in_a_location,
       h.username_id IS NOT NULL OR fh.person_id IS NOT NULL OR th.username_id IS NOT NULL AS held
  FROM scope
  JOIN m365.username AS u ON u.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
                         AND u.person_kind OPERATOR(pg_catalog.=) 'student' AND u.sync
  JOIN m365.student AS s ON s.id OPERATOR(pg_catalog.=) u.person_id
  JOIN student_enrolment AS se ON se.student_id OPERATOR(pg_catalog.=) s.id
  -- Held: joins, not EXISTS per row (twice 200,000 subplan runs cost a
  -- quarter of a second of every file's user set).
  LEFT JOIN m365.username_hold AS h ON h.username_id OPERATOR(pg_catalog.=) u.id
  LEFT JOIN (SELECT DISTINCT f.person_id FROM m365.forgotten_person AS f
              WHERE f.person_kind OPERATOR(pg_catalog.=) 'student' AND f.hold_if_back AND f.back_confirmed_at IS NULL) AS fh
         ON fh.person_id OPERATOR(pg_catalog.=) s.id
  LEFT JOIN m365.tenant_collision_held AS th ON th.username_id OPERATOR(pg_catalog.=) u.id
UNION ALL
SELECT 'staff-' OPERATOR(pg_catalog.||) st.id, 'staff', st.id,
       CASE WHEN pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0 THEN u.username END,
       m365.feed_text(st.first_name), m365.feed_text(st.last_name),
       -- A teacher's roles and groups are the locations of the configuration
       -- in their schools; a school none of whose locations is in it gives none.
       EXISTS (SELECT FROM m365.staff_school AS ss
                 JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
                 JOIN m365.location AS l ON l.school_id OPERATOR(pg_catalog.=) sc.id
                WHERE ss.staff_id OPERATOR(pg_catalog.=) st.id
                  AND sc.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
                  AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id),
       h.username_id IS NOT NULL OR fh.person_id IS NOT NULL OR th.username_id IS NOT NULL
  FROM scope
  JOIN m365.username AS u ON u.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
                         AND u.person_kind OPERATOR(pg_catalog.=) 'staff' AND u.sync
  JOIN m365.staff AS st ON st.id OPERATOR(pg_catalog.=) u.person_id AND st.active
  LEFT JOIN m365.username_hold AS h ON h.username_id OPERATOR(pg_catalog.=) u.id
  LEFT JOIN (SELECT DISTINCT f.person_id FROM m365.forgotten_person AS f
              WHERE f.person_kind OPERATOR(pg_catalog.=) 'staff' AND f.hold_if_back AND f.back_confirmed_at IS NULL) AS fh
         ON fh.person_id OPERATOR(pg_catalog.=) st.id
  LEFT JOIN m365.tenant_collision_held AS th ON th.username_id OPERATOR(pg_catalog.=) u.id
 WHERE EXISTS (SELECT FROM m365.staff_school AS ss
                 JOIN m365.school AS sc ON sc.id OPERATOR(pg_catalog.=) ss.school_id
                WHERE ss.staff_id OPERATOR(pg_catalog.=) st.id
                  AND sc.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id);

-- Why a candidate is left out of users.csv; NULL when it goes in.
-- No SET search_path here, on purpose: a SQL function with a SET clause is
-- never inlined, and this one runs for every user of every file. Its body is
-- schema-qualified throughout, so the caller's search_path cannot change it.
CREATE FUNCTION m365.sds_problem(username text, first_name text, last_name text, in_a_location boolean, held boolean)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN held THEN 'held: the person''s id came back, maybe as someone else (m365.username_hold; m365.forgotten_person), or the username is a tenant account of someone else that SDS never received (m365.tenant_collision)'
    WHEN NOT in_a_location THEN 'no location of the staff member''s schools belongs to this configuration'
    WHEN username IS NULL THEN 'no domain: SDS needs local@domain'
    WHEN pg_catalog.strpos(username, '@') OPERATOR(pg_catalog.=) 0 OR NOT m365.username_is_valid(username)
        THEN 'invalid username'
    WHEN coalesce(first_name, '') OPERATOR(pg_catalog.=) '' AND coalesce(last_name, '') OPERATOR(pg_catalog.=) ''
        THEN 'no name: the official first and last name are blank'
END;

-- The users SDS gets (the candidates it can take): what the record of what
-- SDS received and the brake compare (m365.sds_feed makes users.csv of the
-- same candidates and rule).
CREATE VIEW m365.sds_user AS
SELECT c.* FROM m365.sds_user_candidate AS c WHERE m365.sds_problem(c.username, c.first_name, c.last_name, c.in_a_location, c.held) IS NULL;
-- Roles: a student per location of their active enrolments, teachers in each
-- location of their schools. One row per user, org and role: a class change
-- inside a location (one enrolment ends the day the next starts) is one role,
-- from the first start to the last end (open when one is open).
-- The rule without the feed's user set (m365.sds_feed joins it): the record
-- of what SDS received computes that set once for both (87_sds_records.sql),
-- and without the primary flag, which the record does not keep (its sort
-- cost a quarter of a second there for 200,000 students): the columns it is
-- ordered by instead.
CREATE VIEW m365.sds_role_place AS
-- The day's school year computed once (per enrolment it cost 0.45 s of a
-- 200,000-student feed); materialized, so that no scan recomputes the day.
WITH scope AS MATERIALIZED (SELECT s.configuration_id, s.on_date, m365.school_year(s.on_date) AS school_year FROM m365.sds_scope AS s),
-- A student's active enrolments, one row per location (no join outside it
-- without an equality: with nested loops switched off, as the export does,
-- such a join costs 1e10 and JIT-compiles the feed for seconds).
student_location AS (
    SELECT e.student_id, e.location_id, scope.school_year AS school_year,
           pg_catalog.min(e.start_date) AS start_date, pg_catalog.max(e.start_date) AS latest_start,
           CASE WHEN pg_catalog.bool_or(e.end_date IS NULL) THEN NULL ELSE pg_catalog.max(e.end_date) END AS end_date
      FROM scope
      JOIN m365.enrolment AS e ON e.start_date OPERATOR(pg_catalog.<=) scope.on_date
                              AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) scope.on_date)
      JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
                             AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
     GROUP BY e.student_id, e.location_id, scope.school_year
)
-- primary_*: a student's primary location is the one of the latest start; a
-- teacher's the first linked school's first location.
SELECT 'student'::text AS person_kind, g.student_id AS person_id,
       'student-' OPERATOR(pg_catalog.||) g.student_id AS user_sourced_id, g.location_id,
       'student'::text AS role, g.school_year, g.start_date, g.end_date,
       g.latest_start AS primary_latest_start, NULL::timestamptz AS primary_linked_at, NULL::bigint AS primary_school_id
  FROM student_location AS g
UNION ALL
SELECT 'staff', ss.staff_id, 'staff-' OPERATOR(pg_catalog.||) ss.staff_id, l.id, 'teacher', scope.school_year,
       NULL::date, NULL::date, NULL::date, ss.linked_at, ss.school_id
  FROM scope
  JOIN m365.school AS sc ON sc.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
  JOIN m365.staff_school AS ss ON ss.school_id OPERATOR(pg_catalog.=) sc.id
  JOIN m365.location AS l ON l.school_id OPERATOR(pg_catalog.=) sc.id
                         AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id;
-- A person's rows are numbered among their own, so leaving out whole people
-- afterwards numbers the rest the same; per kind (the other kind's half of
-- m365.sds_role_place is pruned), so that the sort is by number, not text.
CREATE VIEW m365.sds_role_candidate AS
SELECT p.person_kind, p.person_id, p.user_sourced_id, p.location_id, p.role, p.school_year,
       pg_catalog.row_number() OVER (PARTITION BY p.person_id ORDER BY p.primary_latest_start DESC, p.location_id)
           OPERATOR(pg_catalog.=) 1 AS is_primary,
       p.start_date, p.end_date
  FROM m365.sds_role_place AS p
 WHERE p.person_kind OPERATOR(pg_catalog.=) 'student'
UNION ALL
SELECT p.person_kind, p.person_id, p.user_sourced_id, p.location_id, p.role, p.school_year,
       pg_catalog.row_number() OVER (PARTITION BY p.person_id ORDER BY p.primary_linked_at, p.primary_school_id, p.location_id)
           OPERATOR(pg_catalog.=) 1,
       p.start_date, p.end_date
  FROM m365.sds_role_place AS p
 WHERE p.person_kind OPERATOR(pg_catalog.=) 'staff';
-- Class members: students by active enrolment, assigned teachers. The rule
-- without the feed's user set first (see m365.sds_role_candidate).
CREATE VIEW m365.sds_class_member_candidate AS
WITH scope AS MATERIALIZED (SELECT s.configuration_id, s.on_date, m365.school_year(s.on_date) AS school_year FROM m365.sds_scope AS s)
SELECT c.id AS class_id, c.location_id, c.name, c.school_year, 'student'::text AS person_kind, e.student_id AS person_id,
       'student-' OPERATOR(pg_catalog.||) e.student_id AS user_sourced_id, 'student'::text AS role
  FROM scope
  JOIN m365.class AS c ON c.school_year OPERATOR(pg_catalog.=) scope.school_year
  JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) c.location_id
                         AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
  JOIN m365.enrolment AS e ON e.class_id OPERATOR(pg_catalog.=) c.id
                          AND e.start_date OPERATOR(pg_catalog.<=) scope.on_date
                          AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) scope.on_date)
UNION
SELECT c.id, c.location_id, c.name, c.school_year, 'staff', ct.staff_id, 'staff-' OPERATOR(pg_catalog.||) ct.staff_id, 'teacher'
  FROM scope
  JOIN m365.class AS c ON c.school_year OPERATOR(pg_catalog.=) scope.school_year
  JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) c.location_id
                         AND l.configuration_id OPERATOR(pg_catalog.=) scope.configuration_id
  JOIN m365.class_teacher AS ct ON ct.class_id OPERATOR(pg_catalog.=) c.id;
-- The whole feed in one result: each row is a line of one file (file), its
-- fields in the file's column order (c1 ... c9; NULL past the file's last
-- column). One definition: the user set, the roles and the class members
-- are computed once and every file is made from them, so an export that
-- reads this view computes the feed once (the views of the six files read
-- it too, each pruned to its own rows: a condition on file reaches every
-- branch of the UNION ALL, and a branch that cannot match reads nothing).
-- 'left_out' rows are the candidates SDS would reject, with the reason.
CREATE VIEW m365.sds_feed AS
WITH candidate AS MATERIALIZED (
    SELECT c.*, m365.sds_problem(c.username, c.first_name, c.last_name, c.in_a_location, c.held) AS problem
      FROM m365.sds_user_candidate AS c
), feed_user AS NOT MATERIALIZED (
    SELECT c.* FROM candidate AS c WHERE c.problem IS NULL
), role AS MATERIALIZED (
    SELECT r.user_sourced_id, r.location_id, r.role, r.school_year, r.is_primary, r.start_date, r.end_date
      FROM m365.sds_role_candidate AS r
      JOIN feed_user AS u ON u.person_kind OPERATOR(pg_catalog.=) r.person_kind AND u.person_id OPERATOR(pg_catalog.=) r.person_id
), class_member AS MATERIALIZED (
    SELECT m.class_id, m.location_id, m.name, m.school_year, m.user_sourced_id, m.role
      FROM m365.sds_class_member_candidate AS m
      JOIN feed_user AS u ON u.person_kind OPERATOR(pg_catalog.=) m.person_kind AND u.person_id OPERATOR(pg_catalog.=) m.person_id
)
-- users.csv. SDS needs both names to create a user: a person with one name
-- (a blank first or last name) has it in both.
SELECT 'users'::text AS file, u.sourced_id AS c1, u.username AS c2,
       coalesce(NULLIF(u.first_name, ''), u.last_name) AS c3, coalesce(NULLIF(u.last_name, ''), u.first_name) AS c4,
       NULL::text AS c5, NULL::text AS c6, NULL::text AS c7, NULL::text AS c8, NULL::text AS c9
  FROM feed_user AS u
UNION ALL
SELECT 'left_out', c.sourced_id, c.person_kind, c.problem, NULL, NULL, NULL, NULL, NULL, NULL
  FROM candidate AS c
 WHERE c.problem IS NOT NULL
UNION ALL
-- roles.csv
SELECT 'roles', r.user_sourced_id, 'location-' OPERATOR(pg_catalog.||) r.location_id, r.role,
       'sy-' OPERATOR(pg_catalog.||) r.school_year, NULL, CASE WHEN r.is_primary THEN 'true' ELSE 'false' END,
       pg_catalog.to_char(r.start_date, 'YYYY-MM-DD'), pg_catalog.to_char(r.end_date, 'YYYY-MM-DD'), NULL
  FROM role AS r
UNION ALL
-- orgs.csv: each location with a synced user (a role: one security group
-- each) or a class in classes.csv (even where nobody has a role: a teacher
-- of another school of the configuration). Names normalised like person
-- names: a line break never removes a location.
SELECT 'orgs', 'location-' OPERATOR(pg_catalog.||) l.id,
       coalesce(NULLIF(m365.feed_text(l.name), ''), 'location-' OPERATOR(pg_catalog.||) l.id), 'school', NULL,
       NULL, NULL, NULL, NULL, NULL
  FROM m365.location AS l
 WHERE l.id OPERATOR(pg_catalog.=) ANY (SELECT r.location_id FROM role AS r UNION ALL SELECT m.location_id FROM class_member AS m)
UNION ALL
-- classes.csv: one class per class of the current school year with a synced member.
SELECT 'classes', 'class-' OPERATOR(pg_catalog.||) m.class_id, 'location-' OPERATOR(pg_catalog.||) m.location_id,
       coalesce(NULLIF(m365.feed_text(m.name), ''), 'class-' OPERATOR(pg_catalog.||) m.class_id),
       'sy-' OPERATOR(pg_catalog.||) m.school_year, NULL, NULL, NULL, NULL, NULL
  FROM (SELECT DISTINCT cm.class_id, cm.location_id, cm.name, cm.school_year FROM class_member AS cm) AS m
UNION ALL
-- enrollments.csv
SELECT 'enrollments', 'class-' OPERATOR(pg_catalog.||) m.class_id, m.user_sourced_id, m.role,
       NULL, NULL, NULL, NULL, NULL, NULL
  FROM class_member AS m
UNION ALL
-- academicSessions.csv. Roles and classes only ever use the school year of
-- the day, so that is the one in use (when the configuration has a synced
-- username at all); deriving it from roles and classes would compute both
-- again. As in OneRoster, schoolYear is the year the school year ends in.
SELECT 'academicSessions', 'sy-' OPERATOR(pg_catalog.||) y.y,
       y.y OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) (y.y OPERATOR(pg_catalog.+) 1), 'schoolYear',
       (y.y OPERATOR(pg_catalog.+) 1)::text, pg_catalog.to_char(pg_catalog.make_date(y.y, 9, 1), 'YYYY-MM-DD'),
       pg_catalog.to_char(pg_catalog.make_date(y.y OPERATOR(pg_catalog.+) 1, 6, 30), 'YYYY-MM-DD'), NULL, NULL, NULL
  FROM (SELECT m365.school_year(s.on_date) AS y
          FROM m365.sds_scope AS s
         WHERE EXISTS (SELECT FROM m365.username AS u
                        WHERE u.configuration_id OPERATOR(pg_catalog.=) s.configuration_id AND u.sync)) AS y;
-- The files' views: their columns named as the file's header. Each ends in
-- a fence (OFFSET 0): no condition of the reader's, not even a leakproof one
-- (text =, <, ^@), is pushed below it into the scans of every
-- configuration's people, whose row counts EXPLAIN ANALYZE would show.
CREATE VIEW m365_sds.feed WITH (security_barrier) AS
SELECT f.file, f.c1, f.c2, f.c3, f.c4, f.c5, f.c6, f.c7, f.c8, f.c9 FROM m365.sds_feed AS f
OFFSET 0;
COMMENT ON VIEW m365_sds.feed IS 'The whole feed computed once, a row per line of a file (file; its fields c1..c9 in the file''s column order, NULL past its last): what the export writes';
CREATE VIEW m365_sds.left_out WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "kind", f.c3 AS "reason"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'left_out'
OFFSET 0;
COMMENT ON VIEW m365_sds.left_out IS 'Synced users that SDS would reject, left out of users.csv, with the reason (not an SDS file)';
CREATE VIEW m365_sds.users WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "username", f.c3 AS "givenName", f.c4 AS "familyName", f.c5 AS "password",
       f.c6 AS "activeDirectoryMatchId", f.c7 AS "email", f.c8 AS "phone", f.c9 AS "sms"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'users'
OFFSET 0;
COMMENT ON VIEW m365_sds.users IS 'users.csv: every synced, active user with a full local@domain username';
CREATE VIEW m365_sds.roles WITH (security_barrier) AS
SELECT f.c1 AS "userSourcedId", f.c2 AS "orgSourcedId", f.c3 AS "role", f.c4 AS "sessionSourcedId", f.c5 AS "grade",
       f.c6 AS "isPrimary", f.c7 AS "roleStartDate", f.c8 AS "roleEndDate"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'roles'
OFFSET 0;
COMMENT ON VIEW m365_sds.roles IS 'roles.csv: a student role per active enrolment, a teacher role per location of the staff member''s schools';
CREATE VIEW m365_sds.orgs WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "name", f.c3 AS "type", f.c4 AS "parentSourcedId"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'orgs'
OFFSET 0;
COMMENT ON VIEW m365_sds.orgs IS 'orgs.csv: one org (type school) per location with a synced user or a class';
CREATE VIEW m365_sds.classes WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "orgSourcedId", f.c3 AS "title", f.c4 AS "sessionSourcedIds", f.c5 AS "courseSourcedId"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'classes'
OFFSET 0;
COMMENT ON VIEW m365_sds.classes IS 'classes.csv: one class per class of the current school year with a synced member';
CREATE VIEW m365_sds.enrollments WITH (security_barrier) AS
SELECT f.c1 AS "classSourcedId", f.c2 AS "userSourcedId", f.c3 AS "role"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'enrollments'
OFFSET 0;
COMMENT ON VIEW m365_sds.enrollments IS 'enrollments.csv: students as student, assigned teachers as teacher';
CREATE VIEW m365_sds."academicSessions" WITH (security_barrier) AS
SELECT f.c1 AS "sourcedId", f.c2 AS "title", f.c3 AS "type", f.c4 AS "schoolYear", f.c5 AS "startDate", f.c6 AS "endDate"
  FROM m365.sds_feed AS f WHERE f.file OPERATOR(pg_catalog.=) 'academicSessions'
OFFSET 0;
COMMENT ON VIEW m365_sds."academicSessions" IS 'academicSessions.csv: the school years in use (1 September - 30 June)';
CREATE OR REPLACE FUNCTION m365.create_sds_reader(role_name name, configuration_id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reader  regrole;
    problem text;
BEGIN
    IF role_name IS NULL OR configuration_id IS NULL THEN
        RAISE EXCEPTION 'create_sds_reader needs a role name and a configuration' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) create_sds_reader.configuration_id) THEN
        RAISE EXCEPTION 'configuration % does not exist', configuration_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    PERFORM m365.forget_dropped_roles();
    reader := pg_catalog.to_regrole(pg_catalog.quote_ident(role_name));
    IF reader IS NULL THEN
        -- LOGIN without a password: give it one (ALTER ROLE ... PASSWORD) or a pg_hba rule.
        EXECUTE pg_catalog.format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION',
                                  role_name);
        reader := pg_catalog.to_regrole(pg_catalog.quote_ident(role_name));
    END IF;
    problem := m365.reader_problem(reader);
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'role "%" cannot be an SDS reader: %', role_name, problem
            USING ERRCODE = 'invalid_grant_operation',
                  HINT = 'Give m365.create_sds_reader the name of a new role, or of a plain login role of its own.';
    END IF;
    IF EXISTS (SELECT FROM m365.sds_reader AS r
                WHERE r.role_id OPERATOR(pg_catalog.=) reader
                  AND r.configuration_id OPERATOR(pg_catalog.<>) create_sds_reader.configuration_id) THEN
        RAISE EXCEPTION 'role "%" already reads another configuration', role_name
            USING ERRCODE = 'unique_violation', HINT = 'One reader role per configuration: create another role.';
    END IF;
    INSERT INTO m365.sds_reader (role_id, configuration_id) VALUES (reader, configuration_id)
    ON CONFLICT DO NOTHING;
    PERFORM m365.apply_access(reader, '{reader}', true);
END
$$;
COMMENT ON FUNCTION m365.create_sds_reader(name, bigint) IS
'Creates (or adopts) a read-only role for School Data Sync that sees only m365_sds, for one configuration';
REVOKE ALL ON FUNCTION m365.create_sds_reader(name, bigint) FROM PUBLIC;
-- 0.3.0: the record of what SDS received (written by the export, stored by
-- change) replaces the snapshots taken every 12 hours.
DROP FUNCTION m365.take_sds_snapshots();
DROP FUNCTION m365.sds_changes(bigint, bigint);

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

-- 0.2.0's snapshots become records: each user and membership becomes one
-- version per run of consecutive snapshots that held it (ending NULL when
-- the run reaches the newest snapshot); the counts and days stay.
INSERT INTO m365.sds_record (id, configuration_id, recorded_at, on_date, counts, recorded_by)
OVERRIDING SYSTEM VALUE
SELECT s.id, s.configuration_id, s.taken_at, s.on_date, s.counts, 'snapshot of 0.2.0'
  FROM m365.sds_snapshot AS s;
SELECT pg_catalog.setval('m365.sds_record_id_seq', max(s.id)) FROM m365.sds_snapshot AS s HAVING pg_catalog.count(*) > 0;
INSERT INTO m365.sds_record_head (configuration_id, newest_record)
SELECT s.configuration_id, max(s.id) FROM m365.sds_snapshot AS s GROUP BY s.configuration_id;
WITH numbered AS (
    SELECT s.id, s.configuration_id, pg_catalog.row_number() OVER (PARTITION BY s.configuration_id ORDER BY s.id) AS k,
           max(s.id) OVER (PARTITION BY s.configuration_id) AS newest
      FROM m365.sds_snapshot AS s
), held AS (
    SELECT n.configuration_id, u.sourced_id, u.username, n.id, n.newest,
           n.k - pg_catalog.row_number() OVER (PARTITION BY n.configuration_id, u.sourced_id, u.username ORDER BY n.k) AS run
      FROM m365.sds_snapshot_user AS u JOIN numbered AS n ON n.id = u.snapshot_id
)
INSERT INTO m365.sds_record_user (configuration_id, sourced_id, username, first_record, last_record)
SELECT h.configuration_id, h.sourced_id, h.username, min(h.id), NULLIF(max(h.id), max(h.newest))
  FROM held AS h GROUP BY h.configuration_id, h.sourced_id, h.username, h.run;
WITH numbered AS (
    SELECT s.id, s.configuration_id, pg_catalog.row_number() OVER (PARTITION BY s.configuration_id ORDER BY s.id) AS k,
           max(s.id) OVER (PARTITION BY s.configuration_id) AS newest
      FROM m365.sds_snapshot AS s
), held AS (
    SELECT n.configuration_id, m.group_id, m.user_sourced_id, m.role, n.id, n.newest,
           n.k - pg_catalog.row_number() OVER (PARTITION BY n.configuration_id, m.group_id, m.user_sourced_id, m.role ORDER BY n.k) AS run
      FROM m365.sds_snapshot_membership AS m JOIN numbered AS n ON n.id = m.snapshot_id
)
INSERT INTO m365.sds_record_membership (configuration_id, group_id, user_sourced_id, role, first_record, last_record)
SELECT h.configuration_id, h.group_id, h.user_sourced_id, h.role, min(h.id), NULLIF(max(h.id), max(h.newest))
  FROM held AS h GROUP BY h.configuration_id, h.group_id, h.user_sourced_id, h.role, h.run;
ALTER EXTENSION m365_usernames DROP TABLE m365.sds_snapshot_membership;
ALTER EXTENSION m365_usernames DROP TABLE m365.sds_snapshot_user;
ALTER EXTENSION m365_usernames DROP SEQUENCE m365.sds_snapshot_id_seq;
ALTER EXTENSION m365_usernames DROP TABLE m365.sds_snapshot;
DROP TABLE m365.sds_snapshot_membership, m365.sds_snapshot_user, m365.sds_snapshot;
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record_head', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record_user', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_record_membership', '');
-- The people those snapshots held have been in a feed SDS received
-- (65_renames.sql): from the first record that held them.
INSERT INTO m365.person_in_feed (configuration_id, person_kind, person_id, first_record, local_part)
SELECT v.configuration_id, pg_catalog.split_part(v.sourced_id, '-', 1), pg_catalog.split_part(v.sourced_id, '-', 2)::bigint,
       pg_catalog.min(v.first_record),
       (pg_catalog.array_agg(m365.local_part_key(v.username) ORDER BY v.first_record DESC))[1]
  FROM m365.sds_record_user AS v
 GROUP BY 1, 2, 3;
SELECT pg_catalog.pg_extension_config_dump('m365.person_in_feed', '');

--------------------------------------------------------------------------------
-- 0.3.0: the brake on mass changes. SDS takes every upload as the whole truth: a
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

--------------------------------------------------------------------------------
-- 0.3.0: retention, per configuration: the records of what SDS received
-- (sds_record_school_years, 87_sds_records.sql), the history
-- (history_school_years) and the usernames of people who left
-- (leaver_school_years, forgotten as 58_forgetting.sql forgets names); the
-- last two off (NULL) by default. pg_cron runs m365.apply_retention nightly.
--------------------------------------------------------------------------------

-- The first day of the oldest school year a retention of `years` school
-- years keeps (the current one and years - 1 before it), in a time zone.
CREATE FUNCTION m365.kept_from(time_zone text, years integer)
RETURNS date
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.make_date(m365.school_year(m365.local_date(time_zone)) OPERATOR(pg_catalog.-) years OPERATOR(pg_catalog.+) 1, 9, 1);
REVOKE ALL ON FUNCTION m365.kept_from(text, integer) FROM PUBLIC;

-- Retention of the history: rows from before the school years a
-- configuration keeps (history_school_years; NULL, the default: all).
CREATE FUNCTION m365.remove_old_history()
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH gone AS (
        DELETE FROM m365.username_history AS h
         USING m365.configuration AS c
         WHERE h.configuration_id OPERATOR(pg_catalog.=) c.id AND c.history_school_years IS NOT NULL
           AND h.changed_at OPERATOR(pg_catalog.<)
               pg_catalog.timezone(c.time_zone, m365.kept_from(c.time_zone, c.history_school_years)::timestamp)
        RETURNING 1
    )
    SELECT pg_catalog.count(*) FROM gone;
END;
REVOKE ALL ON FUNCTION m365.remove_old_history() FROM PUBLIC;

-- Retention of leavers: the usernames of people who left a configuration
-- before the school years it keeps (leaver_school_years; NULL, the default:
-- kept) are forgotten there, as forget_person forgets names. Left: a
-- student whose every enrolment in its locations ended before then (or who
-- has none), a staff member inactive since before then (or deleted); and
-- the username unchanged since then. Never someone who needs a username (the
-- one rule), nor someone the newest record of what SDS received still holds
-- (the brake compares with it). Their rows in older records go too. Each
-- configuration in a subtransaction: after forgetting, the leavers are asked
-- again (the configuration's row locked, a fresh snapshot); when one needs a
-- username by then (re-enrolled while the run chose: a red-team find), the
-- configuration's retention is undone and waits for the next night.
CREATE FUNCTION m365.forget_leavers()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c      record;
    cutoff date;
    kinds  text[];
    ids    bigint[];
    total  bigint := 0;
BEGIN
    FOR c IN SELECT x.id, x.time_zone, x.leaver_school_years FROM m365.configuration AS x
              WHERE x.leaver_school_years IS NOT NULL ORDER BY x.id LOOP
      BEGIN
        -- As forget_person: recordings of this configuration are waited for,
        -- or fail with 40001 when their snapshot is older than this.
        INSERT INTO m365.sds_record_head AS h (configuration_id) VALUES (c.id)
        ON CONFLICT ON CONSTRAINT sds_record_head_pkey DO UPDATE SET newest_record = h.newest_record;
        cutoff := m365.kept_from(c.time_zone, c.leaver_school_years);
        WITH holder AS MATERIALIZED (
            SELECT u.person_kind, u.person_id FROM m365.username AS u
             WHERE u.configuration_id OPERATOR(pg_catalog.=) c.id
               AND u.updated_at OPERATOR(pg_catalog.<) pg_catalog.timezone(c.time_zone, cutoff::timestamp)
               AND NOT EXISTS (SELECT FROM m365.sds_record_user AS v
                                WHERE v.configuration_id OPERATOR(pg_catalog.=) c.id AND v.last_record IS NULL
                                  AND v.sourced_id OPERATOR(pg_catalog.=) (u.person_kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) u.person_id))
        ), needing AS MATERIALIZED (
            SELECT n.person_kind, n.person_id
              FROM m365.people_needing_username(
                       ARRAY(SELECT h.person_id FROM holder AS h WHERE h.person_kind OPERATOR(pg_catalog.=) 'student'),
                       ARRAY(SELECT h.person_id FROM holder AS h WHERE h.person_kind OPERATOR(pg_catalog.=) 'staff')) AS n
             WHERE n.configuration_id OPERATOR(pg_catalog.=) c.id
        )
        SELECT pg_catalog.array_agg(h.person_kind), pg_catalog.array_agg(h.person_id) INTO kinds, ids
          FROM holder AS h
         WHERE NOT EXISTS (SELECT FROM needing AS n
                            WHERE n.person_kind OPERATOR(pg_catalog.=) h.person_kind AND n.person_id OPERATOR(pg_catalog.=) h.person_id)
           AND CASE h.person_kind
                   WHEN 'student' THEN NOT EXISTS (
                       SELECT FROM m365.enrolment AS e JOIN m365.location AS l ON l.id OPERATOR(pg_catalog.=) e.location_id
                        WHERE e.student_id OPERATOR(pg_catalog.=) h.person_id AND l.configuration_id OPERATOR(pg_catalog.=) c.id
                          AND (e.end_date IS NULL OR e.end_date OPERATOR(pg_catalog.>=) cutoff))
                   ELSE NOT EXISTS (
                       SELECT FROM m365.staff AS s
                        WHERE s.id OPERATOR(pg_catalog.=) h.person_id
                          AND (s.active OR s.inactive_since IS NULL OR s.inactive_since OPERATOR(pg_catalog.>=) cutoff))
               END;
        CONTINUE WHEN kinds IS NULL;
        PERFORM m365.forget_names(c.id, kinds, ids);
        IF EXISTS (SELECT FROM m365.people_needing_username(
                                   ARRAY(SELECT p.id FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
                                          WHERE p.kind OPERATOR(pg_catalog.=) 'student'),
                                   ARRAY(SELECT p.id FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
                                          WHERE p.kind OPERATOR(pg_catalog.=) 'staff')) AS n
                    WHERE n.configuration_id OPERATOR(pg_catalog.=) c.id) THEN
            RAISE EXCEPTION USING ERRCODE = 'M3R01';
        END IF;
        DELETE FROM m365.sds_record_user AS v
         USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
         WHERE v.configuration_id OPERATOR(pg_catalog.=) c.id
           AND v.sourced_id OPERATOR(pg_catalog.=) (p.kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) p.id);
        DELETE FROM m365.sds_record_membership AS v
         USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
         WHERE v.configuration_id OPERATOR(pg_catalog.=) c.id
           AND v.user_sourced_id OPERATOR(pg_catalog.=) (p.kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) p.id);
        -- Someone the school data no longer holds, without a username anywhere now: their names go too.
        DELETE FROM m365.departed_person AS d
         USING ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id)
         WHERE d.person_kind OPERATOR(pg_catalog.=) p.kind AND d.person_id OPERATOR(pg_catalog.=) p.id
           AND NOT EXISTS (SELECT FROM m365.username AS u
                            WHERE u.person_kind OPERATOR(pg_catalog.=) p.kind AND u.person_id OPERATOR(pg_catalog.=) p.id);
        INSERT INTO m365.forgotten_person (person_kind, person_id, removed)
        SELECT p.kind, p.id, pg_catalog.jsonb_build_object('retention', 'leaver_school_years', 'configuration', c.id)
          FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids)) AS p(kind, id);
        total := total OPERATOR(pg_catalog.+) pg_catalog.cardinality(ids);
      EXCEPTION WHEN SQLSTATE 'M3R01' THEN
        RAISE NOTICE 'retention of leavers in configuration % waits for tomorrow: one of them needs a username again', c.id;
      END;
    END LOOP;
    RETURN total;
END
$$;
REVOKE ALL ON FUNCTION m365.forget_leavers() FROM PUBLIC;

-- What the nightly job runs (m365_retention@<database>, 70_scheduling.sql):
-- every retention, each per configuration.
CREATE FUNCTION m365.apply_retention()
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    records  integer := m365.remove_old_sds_records();
    history  bigint := m365.remove_old_history();
    leavers  bigint := m365.forget_leavers();
BEGIN
    RETURN pg_catalog.jsonb_build_object('sds_records_removed', records, 'history_rows_removed', history,
                                         'leavers_forgotten', leavers);
END
$$;
COMMENT ON FUNCTION m365.apply_retention() IS
'Applies every retention of each configuration (records of what SDS received, history, usernames of leavers); pg_cron runs it nightly';
REVOKE ALL ON FUNCTION m365.apply_retention() FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('m365.sds_hold', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_approval', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_approval_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('m365.forget_key', '');
SELECT pg_catalog.pg_extension_config_dump('m365.forgotten_username', '');
SELECT pg_catalog.pg_extension_config_dump('m365.forgotten_person', '');
SELECT pg_catalog.pg_extension_config_dump('m365.forgotten_person_id_seq', '');

--------------------------------------------------------------------------------
-- 0.3.0: monitoring shows who held up a run, and stale jobs.
--------------------------------------------------------------------------------
-- Why a run of the job did nothing or stopped; NULL when it ran (or runs).
CREATE OR REPLACE FUNCTION m365.run_problem(run m365.job_run)
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
DROP FUNCTION m365.job_status();
-- pg_cron's jobs of this database with their last run (none without pg_cron here).
CREATE OR REPLACE FUNCTION m365.cron_jobs_here()
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

--------------------------------------------------------------------------------
-- 0.3.0: domains in lower case; a domain typed only where the person's own
-- location or school sets one, and among the configuration's accepted domains
-- (by default those of its locations and schools); fixed domains no longer
-- accepted are reported.
--------------------------------------------------------------------------------
-- Domains are case-insensitive: they are stored in lower case (ASCII, whatever
-- the database's collation: a Turkish locale lowers "I" to a dotless i), so
-- that "School.BE" is exported, compared and accepted as school.be.
CREATE FUNCTION m365.lower_domain(domain text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.lower(domain COLLATE "C");
COMMENT ON FUNCTION m365.lower_domain(text) IS 'A domain in lower case (ASCII letters only, whatever the collation)';

-- Lower-cases the domains of a written row (configuration, school, location,
-- reserved_username) before its CHECKs run.
CREATE FUNCTION m365.domains_in_lower_case()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    CASE TG_TABLE_NAME
        WHEN 'configuration' THEN
            NEW.accepted_domains := ARRAY(SELECT m365.lower_domain(d.domain)
                                            FROM pg_catalog.unnest(NEW.accepted_domains) WITH ORDINALITY AS d(domain, n)
                                           ORDER BY d.n);
        WHEN 'school' THEN
            NEW.staff_domain := m365.lower_domain(NEW.staff_domain);
        WHEN 'location' THEN
            NEW.student_domain := m365.lower_domain(NEW.student_domain);
        WHEN 'reserved_username' THEN
            IF pg_catalog.strpos(NEW.username, '@') OPERATOR(pg_catalog.>) 0 THEN
                NEW.username := pg_catalog.split_part(NEW.username, '@', 1) OPERATOR(pg_catalog.||) '@'
                                OPERATOR(pg_catalog.||) m365.lower_domain(pg_catalog.split_part(NEW.username, '@', 2));
            END IF;
    END CASE;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION m365.domains_in_lower_case() FROM PUBLIC;

CREATE TRIGGER configuration_domains_in_lower_case
    BEFORE INSERT OR UPDATE OF accepted_domains ON m365.configuration
    FOR EACH ROW EXECUTE FUNCTION m365.domains_in_lower_case();
CREATE TRIGGER school_domains_in_lower_case
    BEFORE INSERT OR UPDATE OF staff_domain ON m365.school
    FOR EACH ROW EXECUTE FUNCTION m365.domains_in_lower_case();
CREATE TRIGGER location_domains_in_lower_case
    BEFORE INSERT OR UPDATE OF student_domain ON m365.location
    FOR EACH ROW EXECUTE FUNCTION m365.domains_in_lower_case();
CREATE TRIGGER reserved_username_domains_in_lower_case
    BEFORE INSERT OR UPDATE OF username ON m365.reserved_username
    FOR EACH ROW EXECUTE FUNCTION m365.domains_in_lower_case();
-- What was stored as typed comes out in lower case (the triggers above do it).
UPDATE m365.configuration SET accepted_domains = accepted_domains
 WHERE accepted_domains::text OPERATOR(pg_catalog.<>) m365.lower_domain(accepted_domains::text);
UPDATE m365.school SET staff_domain = staff_domain
 WHERE staff_domain OPERATOR(pg_catalog.<>) m365.lower_domain(staff_domain);
UPDATE m365.location SET student_domain = student_domain
 WHERE student_domain OPERATOR(pg_catalog.<>) m365.lower_domain(student_domain);
UPDATE m365.reserved_username SET username = username
 WHERE username OPERATOR(pg_catalog.<>) (pg_catalog.split_part(username, '@', 1) OPERATOR(pg_catalog.||)
                                         m365.lower_domain(pg_catalog.substr(username, pg_catalog.strpos(username, '@'))));
-- Usernames with a domain typed in capitals (0.2.0 stored "School.BE" as
-- typed): the domain lower-cased, the local part as it was (recorded in
-- username_history by the upgrade's role).
UPDATE m365.username
   SET username = pg_catalog.split_part(username, '@', 1) OPERATOR(pg_catalog.||) '@'
                  OPERATOR(pg_catalog.||) m365.lower_domain(pg_catalog.split_part(username, '@', 2))
 WHERE pg_catalog.strpos(username, '@') OPERATOR(pg_catalog.>) 0
   AND pg_catalog.split_part(username, '@', 2) OPERATOR(pg_catalog.<>) m365.lower_domain(pg_catalog.split_part(username, '@', 2));
-- The domains a username of the configuration may carry: its
-- accepted_domains when set, else the domains set on its locations and
-- schools, as they are now. Microsoft 365 only takes a tenant's verified
-- domains; gmail.com or school.local never are.
CREATE FUNCTION m365.accepted_domains(configuration_id bigint)
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d FROM m365.configuration AS c, pg_catalog.unnest(c.accepted_domains) AS d
     WHERE c.id OPERATOR(pg_catalog.=) accepted_domains.configuration_id
    UNION
    SELECT s.domain
      FROM (SELECT l.student_domain FROM m365.location AS l
             WHERE l.configuration_id OPERATOR(pg_catalog.=) accepted_domains.configuration_id
            UNION ALL
            SELECT sc.staff_domain FROM m365.school AS sc
             WHERE sc.configuration_id OPERATOR(pg_catalog.=) accepted_domains.configuration_id) AS s(domain)
     WHERE s.domain IS NOT NULL
       -- Only when the configuration lists none.
       AND NOT EXISTS (SELECT FROM m365.configuration AS c
                        WHERE c.id OPERATOR(pg_catalog.=) accepted_domains.configuration_id
                          AND pg_catalog.cardinality(c.accepted_domains) OPERATOR(pg_catalog.>) 0)
$$;
COMMENT ON FUNCTION m365.accepted_domains(bigint) IS
'The domains a username of the configuration may carry: accepted_domains when set, else the domains of its locations and schools (live)';
REVOKE ALL ON FUNCTION m365.accepted_domains(bigint) FROM PUBLIC;
-- Usernames with a fixed domain the configuration no longer accepts (its
-- accepted_domains changed, or the location or school that set the domain
-- no longer does): reported, never changed.
CREATE VIEW m365.username_domain_not_accepted AS
SELECT u.id AS username_id, u.configuration_id, u.person_kind, u.person_id, u.username,
       pg_catalog.split_part(u.username, '@', 2) AS domain
  FROM m365.username AS u
 WHERE pg_catalog.strpos(u.username, '@') OPERATOR(pg_catalog.>) 0
   AND NOT pg_catalog.split_part(u.username, '@', 2) OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT m365.accepted_domains(u.configuration_id)));
COMMENT ON VIEW m365.username_domain_not_accepted IS
'Usernames whose domain is not (or no longer) among the configuration''s accepted domains: to be looked at, never changed by the extension';

SELECT pg_catalog.pg_extension_config_dump('m365.departed_person', '');
SELECT pg_catalog.pg_extension_config_dump('m365.username_hold', '');
SELECT pg_catalog.pg_extension_config_dump('m365.sds_reader', '');
SELECT pg_catalog.pg_extension_config_dump('m365.access_role', '');
SELECT pg_catalog.pg_extension_config_dump('m365.job_run', '');
SELECT pg_catalog.pg_extension_config_dump('m365.job_run_id_seq', '');

-- A reserved name is one the tenant has outside this database. A name this
-- database gave out is no such name (its username or the ledger keeps it from
-- anyone else), and a reservation of it made a restore fail and give names
-- out again (a red-team find). Race-proof: the reservation locks its
-- configurations' rows, which every username write's foreign key check
-- shares, so it waits for usernames being written and they wait for it; the
-- check then runs with a new snapshot. So READ COMMITTED only. It runs as
-- the writer (an administrator may lock its configurations' rows), so that it
-- knows the username trigger's probe, which writes here as the owner.
CREATE FUNCTION m365.reserved_username_is_new()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    clash record;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
        -- The username trigger's probe under REPEATABLE READ (from inside that
        -- trigger, as the owner; its rows removed again at once): not a
        -- reservation. The owner's own statements are checked like anyone's
        -- (a red-team find).
        IF pg_catalog.pg_trigger_depth() OPERATOR(pg_catalog.>) 1
           AND CURRENT_USER OPERATOR(pg_catalog.=) (SELECT e.extowner::regrole::name FROM pg_catalog.pg_extension AS e
                                                    WHERE e.extname OPERATOR(pg_catalog.=) 'm365_usernames') THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'reserved usernames are written at READ COMMITTED'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'At REPEATABLE READ or SERIALIZABLE the check against the usernames given out could miss one.';
    END IF;
    PERFORM FROM m365.configuration AS c
     WHERE c.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT DISTINCT n.configuration_id FROM new_rows AS n))
     ORDER BY c.id FOR UPDATE;
    SELECT n.username, n.configuration_id, u.username AS held, u.person_kind, u.person_id INTO clash
      FROM new_rows AS n
      JOIN m365.username AS u ON u.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                             AND u.local_part OPERATOR(pg_catalog.=) n.local_part
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'username "%" is not reserved: % % holds it in configuration %',
                        clash.username, clash.person_kind, clash.person_id, clash.configuration_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'username_unique_in_configuration',
                  HINT = 'A name this database gave out is kept from anyone else already.';
    END IF;
    SELECT n.username, n.configuration_id, i.person_kind, i.person_id INTO clash
      FROM new_rows AS n
      JOIN m365.issued_username AS i ON i.configuration_id OPERATOR(pg_catalog.=) n.configuration_id
                                    AND i.local_part OPERATOR(pg_catalog.=) n.local_part
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'username "%" is not reserved: it was issued to % % in configuration %',
                        clash.username, clash.person_kind, clash.person_id, clash.configuration_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'issued_username_pkey',
                  HINT = 'A name this database gave out is kept from anyone else already.';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.reserved_username_is_new() FROM PUBLIC;
CREATE TRIGGER reserved_username_is_new_insert
    AFTER INSERT ON m365.reserved_username
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.reserved_username_is_new();
CREATE TRIGGER reserved_username_is_new_update
    AFTER UPDATE ON m365.reserved_username
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.reserved_username_is_new();

--------------------------------------------------------------------------------
-- Attached sources: the school application's own tables (leerling,
-- inschrijving, personeel, ...) feed the school data above. Statement
-- triggers on the application's table keep the extension's copy equal to it
-- in the same transaction. A row the copy cannot take waits, with its reason,
-- and never fails the application's write. docs/attach.md.
--------------------------------------------------------------------------------

-- The entities an application table can feed, written once.
CREATE FUNCTION m365.source_entities()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN '{school,location,student,class,enrolment,staff,staff_school,class_teacher}'::text[];
COMMENT ON FUNCTION m365.source_entities() IS 'The entities an application table can be attached to (m365.attach_source)';

-- Every read of an application's table goes through these two (C++,
-- src/pg/source_functions.cpp): the table is locked by its OID and named as
-- the catalog names it now (a name read through an older snapshot can be a
-- view of someone else's by then), and it is read as its owner, in a
-- security-restricted operation with pinned settings: reading a table can
-- run its owner's code (its statistics expressions, its casts), and that
-- must never run with the extension's rights (red-team finds).
CREATE FUNCTION m365.source_lock(source regclass)
RETURNS text
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'm365_source_lock';
REVOKE ALL ON FUNCTION m365.source_lock(regclass) FROM PUBLIC;
CREATE FUNCTION m365.source_read(source regclass, query text, k1 bigint[], k2 bigint[])
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'm365_source_read';
REVOKE ALL ON FUNCTION m365.source_read(regclass, text, bigint[], bigint[]) FROM PUBLIC;
-- Whether code runs inside such a read (or another security-restricted
-- operation): the session's user is not who runs it, so nothing audited
-- happens there (m365.username_audit).
CREATE FUNCTION m365.in_restricted_operation()
RETURNS boolean
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'm365_in_restricted_operation';
REVOKE ALL ON FUNCTION m365.in_restricted_operation() FROM PUBLIC;

CREATE TABLE m365.source (
    entity         text PRIMARY KEY
                   CONSTRAINT source_entity_known CHECK (entity OPERATOR(pg_catalog.=) ANY (m365.source_entities())),
    source         regclass NOT NULL,
    -- The copy's columns and, in the same order, the source's columns that
    -- feed them, by name: a renamed or dropped column breaks the attachment
    -- (by number it would survive a rename, but not a dump and restore).
    copy_columns   name[] NOT NULL,
    source_columns name[] NOT NULL,
    attached_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    attached_by    text NOT NULL DEFAULT SESSION_USER,
    -- Why the copy no longer follows the source (NULL: it does).
    broken         text,
    CONSTRAINT source_columns_paired CHECK (pg_catalog.cardinality(copy_columns) OPERATOR(pg_catalog.=)
                                            pg_catalog.cardinality(source_columns))
);
COMMENT ON TABLE m365.source IS
'The application''s tables attached to the school data (m365.attach_source): which table feeds which entity, column by column';

-- Rows of a source the copy could not take (or, deleted in the source, could
-- not give up), and why. Each is tried again when its entity or a related one
-- changes, and by m365.resync_source.
CREATE TABLE m365.source_waiting (
    entity text NOT NULL REFERENCES m365.source (entity) ON DELETE CASCADE,
    key    bigint[] NOT NULL,
    reason text NOT NULL,
    since  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (entity, key)
);
-- (A write tries again the rows its own transaction left waiting, if any.)
CREATE INDEX source_waiting_since ON m365.source_waiting (since);
COMMENT ON TABLE m365.source_waiting IS
'Rows of an attached source that the copy does not hold as they are (or still holds), with the reason; tried again on every change';

-- What administrators decided for a school or location whose row left the
-- copy (its configuration and domain), given back when the row comes back:
-- an application that reloads its locations (delete, insert) must not move
-- them out of their tenant (a red-team find).
CREATE TABLE m365.source_decided (
    entity           text NOT NULL CONSTRAINT source_decided_entity CHECK (entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[])),
    id               bigint NOT NULL,
    configuration_id bigint,
    domain           text,
    PRIMARY KEY (entity, id)
);
COMMENT ON TABLE m365.source_decided IS
'The configuration and domain of schools and locations that left an attached copy, given back when they return';

-- Before a write: what administrators decided for these schools or locations.
CREATE FUNCTION m365.source_keep_decided(entity text, ids bigint[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO m365.source_decided AS d (entity, id, configuration_id, domain)
    SELECT 'school', sc.id, sc.configuration_id, sc.staff_domain FROM m365.school AS sc
     WHERE entity OPERATOR(pg_catalog.=) 'school' AND sc.id OPERATOR(pg_catalog.=) ANY (ids)
       AND (sc.configuration_id IS NOT NULL OR sc.staff_domain IS NOT NULL)
    UNION ALL
    SELECT 'location', l.id, l.configuration_id, l.student_domain FROM m365.location AS l
     WHERE entity OPERATOR(pg_catalog.=) 'location' AND l.id OPERATOR(pg_catalog.=) ANY (ids)
       AND (l.configuration_id IS NOT NULL OR l.student_domain IS NOT NULL)
    ON CONFLICT (entity, id) DO UPDATE SET configuration_id = excluded.configuration_id, domain = excluded.domain
$$;
REVOKE ALL ON FUNCTION m365.source_keep_decided(text, bigint[]) FROM PUBLIC;

-- After a write: rows that came back get what was decided for them; rows in
-- the copy need no memory of it any more.
CREATE FUNCTION m365.source_restore_decided(entity text, ids bigint[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE m365.school AS sc SET configuration_id = d.configuration_id, staff_domain = d.domain
      FROM m365.source_decided AS d
     WHERE entity OPERATOR(pg_catalog.=) 'school' AND d.entity OPERATOR(pg_catalog.=) 'school'
       AND d.id OPERATOR(pg_catalog.=) sc.id AND sc.id OPERATOR(pg_catalog.=) ANY (ids)
       AND sc.configuration_id IS NULL AND sc.staff_domain IS NULL;
    UPDATE m365.location AS l SET configuration_id = d.configuration_id, student_domain = d.domain
      FROM m365.source_decided AS d
     WHERE entity OPERATOR(pg_catalog.=) 'location' AND d.entity OPERATOR(pg_catalog.=) 'location'
       AND d.id OPERATOR(pg_catalog.=) l.id AND l.id OPERATOR(pg_catalog.=) ANY (ids)
       AND l.configuration_id IS NULL AND l.student_domain IS NULL;
    DELETE FROM m365.source_decided AS d
     WHERE d.entity OPERATOR(pg_catalog.=) source_restore_decided.entity AND d.id OPERATOR(pg_catalog.=) ANY (ids)
       AND (EXISTS (SELECT FROM m365.school AS sc WHERE d.entity OPERATOR(pg_catalog.=) 'school' AND sc.id OPERATOR(pg_catalog.=) d.id)
            OR EXISTS (SELECT FROM m365.location AS l WHERE d.entity OPERATOR(pg_catalog.=) 'location' AND l.id OPERATOR(pg_catalog.=) d.id));
$$;
REVOKE ALL ON FUNCTION m365.source_restore_decided(text, bigint[]) FROM PUBLIC;

-- Rows of a source that wait, with the reason; and rows that no longer do
-- (asked after every write: PL/pgSQL keeps its plan). The one place that
-- writes m365.source_waiting.
CREATE FUNCTION m365.source_wait(entity text, k1 bigint[], k2 bigint[], reason text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO m365.source_waiting AS w (entity, key, reason)
    SELECT entity, CASE WHEN t.k2 IS NULL THEN ARRAY[t.k1] ELSE ARRAY[t.k1, t.k2] END, reason
      FROM ROWS FROM (pg_catalog.unnest(k1), pg_catalog.unnest(k2)) AS t(k1, k2)
    ON CONFLICT ON CONSTRAINT source_waiting_pkey DO UPDATE SET reason = excluded.reason
$$;
REVOKE ALL ON FUNCTION m365.source_wait(text, bigint[], bigint[], text) FROM PUBLIC;

CREATE FUNCTION m365.source_unwait(entity text, k1 bigint[], k2 bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM m365.source_waiting AS w
     USING ROWS FROM (pg_catalog.unnest(k1), pg_catalog.unnest(k2)) AS t(k1, k2)
     WHERE w.entity OPERATOR(pg_catalog.=) source_unwait.entity
       AND w.key OPERATOR(pg_catalog.=) CASE WHEN t.k2 IS NULL THEN ARRAY[t.k1] ELSE ARRAY[t.k1, t.k2] END
       -- (Nothing of the entity waits, as a rule: no join then.)
       AND EXISTS (SELECT FROM m365.source_waiting AS x WHERE x.entity OPERATOR(pg_catalog.=) source_unwait.entity);
END
$$;
REVOKE ALL ON FUNCTION m365.source_unwait(text, bigint[], bigint[]) FROM PUBLIC;

-- The columns an entity takes from a source: every column of its copy but
-- those the extension or its administrators decide (which tenant, which
-- domain, when a staff member was linked). Key columns first, in key order.
-- Inlined on purpose into the queries that read a source's mapping (several
-- per statement of the application's): no SET clause, names bound at CREATE.
CREATE FUNCTION m365.source_columns(entity text)
RETURNS TABLE (column_name name, type_name name, required boolean, key_position integer)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT a.attname,
           -- (A subquery: as a join, every call hashed all of pg_type.)
           (SELECT t.typname FROM pg_catalog.pg_type AS t WHERE t.oid OPERATOR(pg_catalog.=) a.atttypid),
           a.attnotnull AND NOT a.atthasdef,
           (SELECT k.n::integer FROM pg_catalog.unnest(i.indkey::smallint[]) WITH ORDINALITY AS k(attnum, n)
             WHERE k.attnum OPERATOR(pg_catalog.=) a.attnum) AS key_position
      FROM pg_catalog.pg_attribute AS a
      JOIN pg_catalog.pg_index AS i ON i.indrelid OPERATOR(pg_catalog.=) a.attrelid AND i.indisprimary
     WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(entity)))
       AND entity OPERATOR(pg_catalog.=) ANY (m365.source_entities())
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
       AND NOT a.attname OPERATOR(pg_catalog.=) ANY ('{configuration_id,staff_domain,student_domain,linked_at}'::name[])
     ORDER BY 4 NULLS LAST, a.attnum;
END;
COMMENT ON FUNCTION m365.source_columns(text) IS
'The columns an entity (student, enrolment, ...) takes from an attached source, with their types; key columns first';
REVOKE ALL ON FUNCTION m365.source_columns(text) FROM PUBLIC;

-- What a source's column must be to feed a copy column: a type of PostgreSQL
-- itself (a cast or operator of a type someone created would run inside the
-- extension's rights), and one whose every value the copy's type takes as it
-- is: a smaller integer for an integer, varchar or name for text, the same
-- type otherwise. (numeric was taken for bigint: 1.5 made every drift query
-- fail, a red-team find.) An integer for a key.
CREATE FUNCTION m365.source_type_fits(source_type oid, copy_type name, is_key boolean)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
    SELECT t.typnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::regnamespace
       AND t.typname OPERATOR(pg_catalog.=) ANY (CASE WHEN is_key OR copy_type OPERATOR(pg_catalog.=) 'int8' THEN '{int2,int4,int8}'::name[]
                                                        WHEN copy_type OPERATOR(pg_catalog.=) 'int4' THEN '{int2,int4}'::name[]
                                                        WHEN copy_type OPERATOR(pg_catalog.=) 'text' THEN '{text,varchar,name}'::name[]
                                                        ELSE ARRAY[copy_type] END)
      FROM pg_catalog.pg_type AS t WHERE t.oid OPERATOR(pg_catalog.=) source_type);
END
$$;
REVOKE ALL ON FUNCTION m365.source_type_fits(oid, name, boolean) FROM PUBLIC;

-- Whether a table is a partition, or has a parent or children by
-- inheritance: a write through one fires the statement triggers of the
-- table written, not the other's, so some of its rows' changes would go
-- unseen.
CREATE FUNCTION m365.source_in_hierarchy(t oid)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (SELECT FROM pg_catalog.pg_inherits AS i
                    WHERE i.inhrelid OPERATOR(pg_catalog.=) t OR i.inhparent OPERATOR(pg_catalog.=) t);
END
$$;
REVOKE ALL ON FUNCTION m365.source_in_hierarchy(oid) FROM PUBLIC;

-- Whether planning a read of the table would run code of its owner's: an
-- index expression or predicate, or an extended statistics expression, that
-- calls a function or operator (or uses an operator class) outside
-- pg_catalog. The planner folds those while it plans any query of the
-- table, in the reading session: such code could read or close that
-- session's cursors, release its locks, or end it with FATAL (red-team
-- round six). Asked with the table locked, right before each read.
CREATE FUNCTION m365.source_runs_code(t oid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT FROM pg_catalog.pg_depend AS d
         WHERE ((d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                 AND d.objid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT i.indexrelid FROM pg_catalog.pg_index AS i
                                                               WHERE i.indrelid OPERATOR(pg_catalog.=) t)))
             OR (d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass
                 AND d.objid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT x.oid FROM pg_catalog.pg_statistic_ext AS x
                                                               WHERE x.stxrelid OPERATOR(pg_catalog.=) t))))
           AND ((d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                 AND EXISTS (SELECT FROM pg_catalog.pg_proc AS p WHERE p.oid OPERATOR(pg_catalog.=) d.refobjid
                                AND p.pronamespace OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace))
             OR (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::pg_catalog.regclass
                 AND EXISTS (SELECT FROM pg_catalog.pg_operator AS o WHERE o.oid OPERATOR(pg_catalog.=) d.refobjid
                                AND o.oprnamespace OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace))
             OR (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_opclass'::pg_catalog.regclass
                 AND EXISTS (SELECT FROM pg_catalog.pg_opclass AS c WHERE c.oid OPERATOR(pg_catalog.=) d.refobjid
                                AND c.opcnamespace OPERATOR(pg_catalog.<>) 'pg_catalog'::pg_catalog.regnamespace))))
$$;
REVOKE ALL ON FUNCTION m365.source_runs_code(oid) FROM PUBLIC;

-- Why a source cannot feed its entity as registered (NULL: it can): the
-- table is gone or no longer a plain table, a column was renamed or dropped,
-- or its type changed to one that does not fit. Asked before every use, so
-- that a change to the application's table never runs someone else's code.
CREATE FUNCTION m365.source_problem(s m365.source)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
    SELECT CASE
        WHEN c.oid IS NULL THEN 'the table is gone'
        WHEN c.relkind OPERATOR(pg_catalog.<>) 'r' THEN pg_catalog.format('%s is no longer a plain table', s.source)
        WHEN m365.source_in_hierarchy(c.oid)
            THEN pg_catalog.format('%s is now a partition, a parent or a child of another table (writes through one fire the other''s triggers)', s.source)
        WHEN c.relforcerowsecurity
            THEN pg_catalog.format('%s now forces row-level security: its owner, who reads it for the copy, may not see every row', s.source)
        WHEN m365.source_runs_code(c.oid)
            THEN pg_catalog.format('an index or statistics object of %s now calls code outside pg_catalog, which reading it would run', s.source)
        ELSE (SELECT pg_catalog.string_agg(
                         CASE WHEN a.attname IS NULL THEN pg_catalog.format('column %I is gone (renamed or dropped)', m.source_column)
                              ELSE pg_catalog.format('column %I is of type %s, which does not fit %s', m.source_column,
                                                     a.atttypid::regtype, m.copy_column) END, '; ')
                FROM ROWS FROM (pg_catalog.unnest(s.copy_columns), pg_catalog.unnest(s.source_columns)) AS m(copy_column, source_column)
                JOIN m365.source_columns(s.entity) AS e ON e.column_name OPERATOR(pg_catalog.=) m.copy_column
                LEFT JOIN pg_catalog.pg_attribute AS a
                       ON a.attrelid OPERATOR(pg_catalog.=) s.source AND a.attname OPERATOR(pg_catalog.=) m.source_column
                      AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
               WHERE a.attname IS NULL OR NOT m365.source_type_fits(a.atttypid, e.type_name, e.key_position IS NOT NULL))
        END
      FROM (SELECT s.source) AS x
      LEFT JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) x.source);
END
$$;
REVOKE ALL ON FUNCTION m365.source_problem(m365.source) FROM PUBLIC;

-- source_problem, asked with the table locked: a change of a column's type
-- waits for the lock to be released, or finishes before it (a red-team find:
-- checked before the lock, a retype committed in between made the read run
-- the application's own cast as the owner). The lock is the read's own.
CREATE FUNCTION m365.source_problem_locked(s m365.source)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF m365.source_lock(s.source) IS NULL THEN
        RETURN 'the table is gone';
    END IF;
    RETURN m365.source_problem(s);
END
$$;
REVOKE ALL ON FUNCTION m365.source_problem_locked(m365.source) FROM PUBLIC;

-- The pieces of SQL that read a source as its copy's rows: identifiers only,
-- each through %I (values never enter them). Key columns are k1 (and k2) in
-- a key list t, given as $1 (and $2). The source is read only through
-- m365.source_read, under the name m365.source_lock gives it.
CREATE TYPE m365.source_sql AS (
    select_list text,   -- CAST(... s.voornaam ... AS pg_catalog.text) AS first_name, ...
    columns     text,   -- first_name, ...
    key_columns text,   -- id
    key_join    text,   -- x.id = t.k1
    key_width   integer,
    set_list    text,   -- first_name = excluded.first_name, ... (NULL: only keys)
    changed     text,   -- (c.first_name, ...) IS DISTINCT FROM (excluded.first_name, ...)
    -- The source's rows as a FROM item x: all of them, or those of the keys in
    -- $1 (and $2), found through the source's own key columns and so through
    -- its index (a one-row statement reads one row, not the whole table).
    all_rows    text,   -- m365.source_read(<oid>, 'SELECT <select_list> FROM ONLY app.leerling AS s', NULL, NULL) AS x(id int8, ...)
    keyed_rows  text,   -- m365.source_read(<oid>, '... JOIN <t> ON s.leerling_nr = t.k1', $1, $2) AS x(id int8, ...)
    key_list    text    -- the key of a row of the source (a transition table) as k1, k2: <leerling_nr as int8>, NULL
);
CREATE FUNCTION m365.source_sql_of(s m365.source)
RETURNS m365.source_sql
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    source_name text := m365.source_lock(s.source);
BEGIN
    RETURN (
    SELECT ROW(p.select_list, p.columns, p.key_columns, p.key_join, p.key_width, p.set_list, p.changed,
               pg_catalog.format('m365.source_read(%s::pg_catalog.regclass, %L, NULL, NULL) AS x(%s)', s.source::oid,
                                 pg_catalog.format('SELECT %s FROM ONLY %s AS s', p.select_list, source_name), p.column_types),
               pg_catalog.format('m365.source_read(%s::pg_catalog.regclass, %L, $1, $2) AS x(%s)', s.source::oid,
                                 pg_catalog.format('SELECT %s FROM ONLY %s AS s JOIN ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS t(k1, k2) ON %s',
                                                   p.select_list, source_name, p.source_key_match), p.column_types),
               p.key_list
              )::m365.source_sql
      FROM (
    SELECT -- Each value goes through its type's output function (format's %s,
           -- NULL kept) and the copy type's input, never through a cast, and
           -- with pinned settings (m365.source_read): a type of the
           -- application's could have casts of its own. Text in the
           -- database's collation: a nondeterministic one of the
           -- application's made every comparison fail.
           -- An optional column the table does not have takes the copy's
           -- default (NULL, or true for active), so that nothing written
           -- before the attachment stays (a red-team find: an old end date
           -- stayed, unseen by the drift). Not inactive_since: the copy's
           -- own trigger derives it from active.
           pg_catalog.string_agg(CASE WHEN m.source_column IS NULL
                                      THEN pg_catalog.format('CAST(%s AS pg_catalog.%I) AS %I', coalesce(e.default_value, 'NULL'), e.type_name, e.column_name)
                                      ELSE pg_catalog.format('CAST(CASE WHEN s.%I IS NULL THEN NULL ELSE pg_catalog.format(''%%s'', s.%I) END AS pg_catalog.%I)%s AS %I',
                                                             m.source_column, m.source_column, e.type_name,
                                                             CASE WHEN e.type_name OPERATOR(pg_catalog.=) 'text'
                                                                  THEN ' COLLATE pg_catalog."default"' ELSE '' END, e.column_name) END,
                                 ', ' ORDER BY e.n) AS select_list,
           pg_catalog.string_agg(pg_catalog.format('%I pg_catalog.%I', e.column_name, e.type_name), ', ' ORDER BY e.n) AS column_types,
           pg_catalog.string_agg(pg_catalog.format('%I', e.column_name), ', ' ORDER BY e.n) AS columns,
           pg_catalog.string_agg(pg_catalog.format('%I', e.column_name), ', ' ORDER BY e.key_position)
               FILTER (WHERE e.key_position IS NOT NULL) AS key_columns,
           pg_catalog.string_agg(pg_catalog.format('x.%I OPERATOR(pg_catalog.=) t.%I', e.column_name,
                                                   'k' OPERATOR(pg_catalog.||) e.key_position), ' AND ')
               FILTER (WHERE e.key_position IS NOT NULL) AS key_join,
           (pg_catalog.count(*) FILTER (WHERE e.key_position IS NOT NULL))::integer AS key_width,
           pg_catalog.string_agg(pg_catalog.format('%I = excluded.%I', e.column_name, e.column_name), ', ' ORDER BY e.n)
               FILTER (WHERE e.key_position IS NULL) AS set_list,
           pg_catalog.format('(%s, NULL) IS DISTINCT FROM (%s, NULL)',
               pg_catalog.string_agg(pg_catalog.format('c.%I', e.column_name), ', ' ORDER BY e.n) FILTER (WHERE e.key_position IS NULL),
               pg_catalog.string_agg(pg_catalog.format('excluded.%I', e.column_name), ', ' ORDER BY e.n) FILTER (WHERE e.key_position IS NULL)) AS changed,
           -- The source's key columns as they are (read as the table's owner).
           pg_catalog.string_agg(pg_catalog.format('s.%I OPERATOR(pg_catalog.=) t.%I', m.source_column,
                                                   'k' OPERATOR(pg_catalog.||) e.key_position), ' AND ')
               FILTER (WHERE e.key_position IS NOT NULL) AS source_key_match,
           pg_catalog.string_agg(pg_catalog.format('CAST(CASE WHEN %I IS NULL THEN NULL ELSE pg_catalog.format(''%%s'', %I) END AS pg_catalog.int8)',
                                                   m.source_column, m.source_column), ', ' ORDER BY e.key_position)
               FILTER (WHERE e.key_position IS NOT NULL)
           OPERATOR(pg_catalog.||) CASE WHEN pg_catalog.count(*) FILTER (WHERE e.key_position IS NOT NULL) OPERATOR(pg_catalog.=) 1
                                        THEN ', NULL::pg_catalog.int8' ELSE '' END AS key_list
      FROM (SELECT c.column_name, c.type_name, c.key_position, c.n,
                   (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef AS d
                      JOIN pg_catalog.pg_attribute AS a ON a.attrelid OPERATOR(pg_catalog.=) d.adrelid AND a.attnum OPERATOR(pg_catalog.=) d.adnum
                     WHERE d.adrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(s.entity)))
                       AND a.attname OPERATOR(pg_catalog.=) c.column_name) AS default_value
              FROM m365.source_columns(s.entity) WITH ORDINALITY AS c(column_name, type_name, required, key_position, n)) AS e
      LEFT JOIN ROWS FROM (pg_catalog.unnest(s.copy_columns), pg_catalog.unnest(s.source_columns)) AS m(copy_column, source_column)
             ON m.copy_column OPERATOR(pg_catalog.=) e.column_name
     WHERE m.copy_column IS NOT NULL OR e.column_name OPERATOR(pg_catalog.<>) 'inactive_since') AS p);
END
$$;
REVOKE ALL ON FUNCTION m365.source_sql_of(m365.source) FROM PUBLIC;

-- The entities whose copy refers to `entity` (a parent: its key is id), and
-- the column that does: from the foreign keys of the copies themselves.
-- Inlined on purpose (asked on every write): no SET clause, names bound at CREATE.
CREATE FUNCTION m365.source_children(entity text)
RETURNS TABLE (child text, child_column name)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT c.relname::text, a.attname
      FROM pg_catalog.pg_constraint AS r
      JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) r.conrelid
      JOIN pg_catalog.pg_attribute AS pk ON pk.attrelid OPERATOR(pg_catalog.=) r.confrelid AND pk.attname OPERATOR(pg_catalog.=) 'id'
      CROSS JOIN LATERAL ROWS FROM (pg_catalog.unnest(r.conkey), pg_catalog.unnest(r.confkey)) AS u(child_attnum, parent_attnum)
      JOIN pg_catalog.pg_attribute AS a ON a.attrelid OPERATOR(pg_catalog.=) r.conrelid AND a.attnum OPERATOR(pg_catalog.=) u.child_attnum
     WHERE r.contype OPERATOR(pg_catalog.=) 'f'
       AND r.confrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(entity)))
       AND u.parent_attnum OPERATOR(pg_catalog.=) pk.attnum
       AND c.relnamespace OPERATOR(pg_catalog.=) 'm365'::regnamespace
       AND c.relname::text OPERATOR(pg_catalog.=) ANY (m365.source_entities());
END;
REVOKE ALL ON FUNCTION m365.source_children(text) FROM PUBLIC;

-- The reason a row waits whose parent left the copy: written here, and
-- looked for when the parent comes back (m365.source_sync).
CREATE FUNCTION m365.source_parent_gone(child_column name, parent text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.format('waits for its %s: not in the copy of %s', child_column, parent);
REVOKE ALL ON FUNCTION m365.source_parent_gone(name, text) FROM PUBLIC;

-- Rows of attached entities that refer to these parents (key: id) leave the
-- copy with them and wait for them.
CREATE FUNCTION m365.source_leave_children(entity text, parents bigint[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    child record;
    keys  text;
    c1    bigint[];
    c2    bigint[];
BEGIN
    FOR child IN SELECT ch.child, ch.child_column FROM m365.source_children(entity) AS ch
                   JOIN m365.source AS a ON a.entity OPERATOR(pg_catalog.=) ch.child LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('r.%I', k.column_name), ', ' ORDER BY k.key_position) INTO keys
          FROM m365.source_columns(child.child) AS k WHERE k.key_position IS NOT NULL;
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.array_agg(k[1] ORDER BY k), pg_catalog.array_agg(k[2] ORDER BY k)
               FROM (SELECT DISTINCT ARRAY[%s]::pg_catalog.int8[] AS k FROM m365.%I AS r
                      WHERE r.%I OPERATOR(pg_catalog.=) ANY ($1)) AS x',
            keys, child.child, child.child_column)
        USING parents INTO c1, c2;
        IF c1 IS NOT NULL THEN
            PERFORM m365.source_leave(child.child, c1, c2,
                                      m365.source_parent_gone(child.child_column, entity));
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION m365.source_leave_children(text, bigint[]) FROM PUBLIC;

-- Takes rows out of the copy that can no longer stay (their parent left) and
-- lists them as waiting, with the reason. A row that something not attached
-- still refers to stays, listed too.
CREATE FUNCTION m365.source_leave(entity text, k1 bigint[], k2 bigint[], reason text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys text;
BEGIN
    IF k2[1] IS NULL THEN
        PERFORM m365.source_leave_children(entity, k1);
    END IF;
    IF entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
        PERFORM m365.source_keep_decided(entity, k1);
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('x.%I OPERATOR(pg_catalog.=) t.%I', k.column_name, 'k' OPERATOR(pg_catalog.||) k.key_position),
                                 ' AND ')
      INTO keys FROM m365.source_columns(entity) AS k WHERE k.key_position IS NOT NULL;
    BEGIN
        EXECUTE pg_catalog.format('DELETE FROM m365.%I AS x USING ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS t(k1, k2) WHERE %s', entity, keys)
        USING k1, k2;
    EXCEPTION WHEN OTHERS THEN
        reason := reason OPERATOR(pg_catalog.||) ' (still in the copy: ' OPERATOR(pg_catalog.||) SQLERRM OPERATOR(pg_catalog.||) ')';
    END;
    PERFORM m365.source_wait(entity, k1, k2, reason);
END
$$;
REVOKE ALL ON FUNCTION m365.source_leave(text, bigint[], bigint[], text) FROM PUBLIC;

-- Writes the source's rows for these keys into the copy: rows the source has
-- are inserted or updated, rows it no longer has are deleted. All at once;
-- when that fails, each half again, down to the row that fails, which waits
-- with the reason (a few subtransactions per bad row, not one per row).
CREATE FUNCTION m365.source_write(s m365.source, q m365.source_sql, k1 bigint[], k2 bigint[], inserted boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n    integer := coalesce(pg_catalog.cardinality(k1), 0);
    half integer;
BEGIN
    IF n OPERATOR(pg_catalog.=) 0 THEN
        RETURN;
    END IF;
    -- Rows the application just inserted are new to the copy as a rule: one
    -- plain INSERT, without ON CONFLICT's speculative insertion and without
    -- looking for rows to delete. Anything else takes the full path.
    IF inserted THEN
        BEGIN
            EXECUTE pg_catalog.format('INSERT INTO m365.%I (%s) SELECT %s FROM %s', s.entity, q.columns, q.columns, q.keyed_rows)
            USING k1, k2;
            IF s.entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
                PERFORM m365.source_restore_decided(s.entity, k1);
            END IF;
            PERFORM m365.source_unwait(s.entity, k1, k2);
            RETURN;
        EXCEPTION WHEN OTHERS THEN
            NULL;  -- the full path below
        END;
    END IF;
    BEGIN
        IF s.entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
            PERFORM m365.source_keep_decided(s.entity, k1);
        END IF;
        -- One statement (one plan per write, one read of the source): the
        -- keys the source no longer has leave the copy, the others are
        -- inserted or updated.
        EXECUTE pg_catalog.format(
            'WITH src AS MATERIALIZED (SELECT * FROM %1$s),
                  gone AS (DELETE FROM m365.%2$I AS x USING ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS t(k1, k2)
                            WHERE %3$s AND NOT EXISTS (SELECT FROM src AS y WHERE %4$s))
             INSERT INTO m365.%2$I AS c (%5$s) SELECT %5$s FROM src AS x ON CONFLICT (%6$s) %7$s',
            q.keyed_rows, s.entity, q.key_join, pg_catalog.replace(q.key_join, 'x.', 'y.'), q.columns, q.key_columns,
            CASE WHEN q.set_list IS NULL THEN 'DO NOTHING'
                 ELSE pg_catalog.format('DO UPDATE SET %s WHERE %s', q.set_list, q.changed) END)
        USING k1, k2;
        IF s.entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
            PERFORM m365.source_restore_decided(s.entity, k1);
        END IF;
        PERFORM m365.source_unwait(s.entity, k1, k2);
    EXCEPTION WHEN OTHERS THEN
        -- One row; or a lock that is not free (each half would wait as long
        -- again: 199 waits of 100 ms, a red-team find).
        IF n OPERATOR(pg_catalog.=) 1 OR SQLSTATE OPERATOR(pg_catalog.=) '55P03' THEN
            PERFORM m365.source_wait(s.entity, k1, k2, SQLERRM);
            RETURN;
        END IF;
        half := n OPERATOR(pg_catalog./) 2;
        PERFORM m365.source_write(s, q, k1[1:half], k2[1:half]);
        PERFORM m365.source_write(s, q, k1[half OPERATOR(pg_catalog.+) 1:n], k2[half OPERATOR(pg_catalog.+) 1:n]);
    END;
END
$$;
REVOKE ALL ON FUNCTION m365.source_write(m365.source, m365.source_sql, bigint[], bigint[], boolean) FROM PUBLIC;

-- Makes the copy of `entity` equal to its source for these keys (NULL: every
-- key of both, and every key that waits: a TRUNCATE left those waiting). Rows of attached entities that refer to a row leaving the
-- copy leave with it and wait; then the waiting rows of other entities are
-- tried again (once: `again` is false for those). `checked`: the source's SQL
-- from a caller that has just checked the source with its table locked.
CREATE FUNCTION m365.source_sync(entity text, k1 bigint[], k2 bigint[], again boolean DEFAULT true, inserted boolean DEFAULT false,
                                 checked m365.source_sql DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off  -- (compiling a large copy's plans took longer than running them)
AS $$
DECLARE
    s       m365.source;
    q       m365.source_sql;
    cq      m365.source_sql;
    problem text;
    gone    bigint[];
    child   record;
    parent  record;
    w1      bigint[];
    w2      bigint[];
BEGIN
    SELECT * INTO s FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) source_sync.entity;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF checked IS NULL THEN
        problem := m365.source_problem_locked(s);
    END IF;
    IF problem IS DISTINCT FROM s.broken THEN
        UPDATE m365.source AS x SET broken = problem WHERE x.entity OPERATOR(pg_catalog.=) s.entity;
    END IF;
    IF problem IS NOT NULL THEN
        RETURN;
    END IF;
    q := coalesce(checked, m365.source_sql_of(s));
    IF k1 IS NULL AND inserted AND NOT s.entity OPERATOR(pg_catalog.=) ANY ('{school,location}'::text[]) THEN
        -- Attaching to an empty copy: the whole table in one INSERT; the keys
        -- are gathered (below) only when some row cannot be taken.
        BEGIN
            EXECUTE pg_catalog.format('INSERT INTO m365.%I (%s) SELECT %s FROM %s', s.entity, q.columns, q.columns, q.all_rows);
            k1 := '{}';
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
    END IF;
    IF k1 IS NULL THEN
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.array_agg(t.k[1] ORDER BY t.k), pg_catalog.array_agg(t.k[2] ORDER BY t.k) FROM (
                 SELECT ARRAY[%s] FROM %s UNION SELECT ARRAY[%s] FROM m365.%I
                 UNION SELECT w.key FROM m365.source_waiting AS w WHERE w.entity OPERATOR(pg_catalog.=) %L) AS t(k)',
            q.key_columns, q.all_rows, q.key_columns, s.entity, s.entity)
        INTO k1, k2;
    END IF;
    IF k1 IS NULL THEN
        RETURN;
    END IF;
    -- A parent (key: id) leaving the copy takes the rows that refer to it along.
    IF q.key_width OPERATOR(pg_catalog.=) 1 AND NOT inserted
       AND EXISTS (SELECT FROM m365.source_children(s.entity) AS ch JOIN m365.source AS a ON a.entity OPERATOR(pg_catalog.=) ch.child) THEN
        EXECUTE pg_catalog.format(
            'WITH src AS MATERIALIZED (SELECT x.id FROM %s)
             SELECT pg_catalog.array_agg(t.k1) FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS t(k1, k2)
              WHERE EXISTS (SELECT FROM m365.%I AS c WHERE c.id OPERATOR(pg_catalog.=) t.k1)
                AND NOT EXISTS (SELECT FROM src AS y WHERE y.id OPERATOR(pg_catalog.=) t.k1)',
            q.keyed_rows, s.entity)
        USING k1, k2 INTO gone;
        IF gone IS NOT NULL THEN
            PERFORM m365.source_leave_children(s.entity, gone);
        END IF;
    END IF;

    PERFORM m365.source_write(s, q, k1, k2, inserted);

    IF again AND EXISTS (SELECT FROM m365.source_waiting AS w WHERE w.since OPERATOR(pg_catalog.=) pg_catalog.now()) THEN
        -- Rows this transaction left waiting are tried again when what they
        -- wait for may have come: rows of a child entity that wait for one of
        -- these keys (their foreign key to this entity failed, and their
        -- column holds one of the keys: an enrolment written before its
        -- student), and rows of a parent entity that could not leave while
        -- rows of this one referred to them. Rows other transactions left
        -- waiting are the job's (m365.retry_waiting_sources). A write never
        -- tries rows that wait for something else (red-team finds: 2,000
        -- waiting rows made every later write take seconds).
        FOR child IN SELECT ch.child, ch.child_column, r.conname
                       FROM m365.source_children(s.entity) AS ch
                       JOIN m365.source AS a ON a.entity OPERATOR(pg_catalog.=) ch.child
                       JOIN pg_catalog.pg_constraint AS r
                         ON r.conrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(ch.child)))
                        AND r.confrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(s.entity)))
                        AND r.contype OPERATOR(pg_catalog.=) 'f'
                        AND (SELECT at.attname FROM pg_catalog.pg_attribute AS at
                              WHERE at.attrelid OPERATOR(pg_catalog.=) r.conrelid AND at.attnum OPERATOR(pg_catalog.=) r.conkey[1])
                            OPERATOR(pg_catalog.=) ch.child_column LOOP
            SELECT pg_catalog.array_agg(w.key[1] ORDER BY w.key), pg_catalog.array_agg(w.key[2] ORDER BY w.key)
              INTO w1, w2 FROM m365.source_waiting AS w
             WHERE w.entity OPERATOR(pg_catalog.=) child.child AND w.since OPERATOR(pg_catalog.=) pg_catalog.now()
               AND (pg_catalog.strpos(w.reason, pg_catalog.format('"%s"', child.conname)) OPERATOR(pg_catalog.>) 0
                    OR w.reason OPERATOR(pg_catalog.=) m365.source_parent_gone(child.child_column, s.entity));
            CONTINUE WHEN w1 IS NULL;
            cq := m365.source_sql_of((SELECT x FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) child.child));
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.array_agg(x.k1 ORDER BY x.k1, x.k2), pg_catalog.array_agg(x.k2 ORDER BY x.k1, x.k2)
                   FROM (SELECT %s FROM %s WHERE x.%I OPERATOR(pg_catalog.=) ANY ($3)) AS x(k1, k2)',
                pg_catalog.concat(cq.key_columns, CASE WHEN cq.key_width OPERATOR(pg_catalog.=) 1 THEN ', NULL::pg_catalog.int8' END),
                cq.keyed_rows, child.child_column)
            USING w1, w2, k1 INTO w1, w2;
            IF w1 IS NOT NULL THEN
                -- (Onwards down: a school reloaded brings back its locations,
                -- and they their enrolments. The entities' foreign keys form
                -- no cycle, so this ends.)
                PERFORM m365.source_sync(child.child, w1, w2, true);
            END IF;
        END LOOP;
        FOR parent IN SELECT e.entity, r.conname
                        FROM pg_catalog.unnest(m365.source_entities()) AS e(entity)
                        JOIN m365.source AS a ON a.entity OPERATOR(pg_catalog.=) e.entity
                        JOIN pg_catalog.pg_constraint AS r
                          ON r.conrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(s.entity)))
                         AND r.confrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.concat('m365.', pg_catalog.quote_ident(e.entity)))
                         AND r.contype OPERATOR(pg_catalog.=) 'f' LOOP
            SELECT pg_catalog.array_agg(w.key[1] ORDER BY w.key), pg_catalog.array_agg(w.key[2] ORDER BY w.key)
              INTO w1, w2 FROM m365.source_waiting AS w
             WHERE w.entity OPERATOR(pg_catalog.=) parent.entity AND w.since OPERATOR(pg_catalog.=) pg_catalog.now()
               AND pg_catalog.strpos(w.reason, pg_catalog.format('"%s"', parent.conname)) OPERATOR(pg_catalog.>) 0;
            IF w1 IS NOT NULL THEN
                PERFORM m365.source_sync(parent.entity, w1, w2, false);
            END IF;
        END LOOP;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION m365.source_sync(text, bigint[], bigint[], boolean, boolean, m365.source_sql) FROM PUBLIC;

-- The trigger on an attached source: the keys the statement touched (old and
-- new, so that a changed key is a delete and an insert), then the copy made
-- equal to the source for them. Runs as the owner, only for the table and
-- entity registered, after m365.source_problem found nothing of someone
-- else's to run. Whatever goes wrong is recorded on the attachment, never
-- raised: the application's write goes on.
-- It never waits long for a lock on the copies: the copies have foreign keys
-- the application's tables may not, and waiting on them could deadlock the
-- application's own statements (a red-team find). What cannot be copied
-- within lock_timeout waits, and the next run of the job takes it in.
CREATE FUNCTION m365.source_changed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
-- Not the writing session's planner settings (enable_nestloop = off made a
-- one-row write scan the copy), nor its exit_on_error (a row the copy cannot
-- take, caught here, ended the session): red-team finds.
SET enable_nestloop = on
SET enable_seqscan = on
SET enable_indexscan = on
SET enable_bitmapscan = on
SET enable_hashjoin = on
SET enable_mergejoin = on
SET exit_on_error = off
AS $$
DECLARE
    s       m365.source;
    q       m365.source_sql;
    problem text;
    k1      bigint[];
    k2      bigint[];
    failure text;
BEGIN
    BEGIN
        -- (Inside the block: a REINDEX of m365.source made this read time out,
        -- and the application's statement failed: a red-team find.)
        SELECT * INTO s FROM m365.source AS x
         WHERE x.entity OPERATOR(pg_catalog.=) TG_ARGV[0] AND x.source OPERATOR(pg_catalog.=) TG_RELID;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        -- (The statement holds its table: the check stands until the end.)
        problem := m365.source_problem_locked(s);
        IF problem IS NULL AND TG_OP OPERATOR(pg_catalog.<>) 'TRUNCATE' THEN
            q := m365.source_sql_of(s);
            EXECUTE pg_catalog.format(
                'SELECT pg_catalog.array_agg(t.k1 ORDER BY t.k1, t.k2), pg_catalog.array_agg(t.k2 ORDER BY t.k1, t.k2) FROM (%s) AS t(k1, k2)',
                CASE TG_OP WHEN 'INSERT' THEN pg_catalog.format('SELECT %s FROM m365_new', q.key_list)
                           WHEN 'DELETE' THEN pg_catalog.format('SELECT %s FROM m365_old', q.key_list)
                           ELSE pg_catalog.format('SELECT %s FROM m365_new UNION SELECT %s FROM m365_old', q.key_list, q.key_list) END)
            INTO k1, k2;
            IF k1 IS NOT NULL THEN
                PERFORM m365.source_sync(s.entity, k1, k2, true, TG_OP OPERATOR(pg_catalog.=) 'INSERT', q);
            END IF;
        ELSE
            -- TRUNCATE, or a problem: source_sync looks at every key, or records the problem.
            PERFORM m365.source_sync(s.entity, NULL, NULL);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        failure := SQLERRM;
    END;
    IF failure IS NOT NULL THEN
        -- Recorded if that can be done at once; if even that waits on a lock,
        -- a WARNING, and source_drift() shows the difference all the same
        -- (it compares copy and source). Never an error here (a red-team find:
        -- this write waited on a row another session held, and failed the
        -- application's statement).
        BEGIN
            IF s.entity IS NULL THEN
                RAISE EXCEPTION USING MESSAGE = failure;   -- (m365.source itself could not be read)
            ELSIF k1 IS NOT NULL THEN
                PERFORM m365.source_wait(s.entity, k1, k2, pg_catalog.concat('could not be copied: ', failure));
            ELSE
                UPDATE m365.source AS x SET broken = 'the last change could not be copied: ' OPERATOR(pg_catalog.||) failure
                 WHERE x.entity OPERATOR(pg_catalog.=) s.entity;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'm365: a change to %.% was not copied to m365.%: %', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], failure
                USING HINT = 'm365.source_drift() lists it; m365.resync_source repairs it.';
        END;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.source_changed() FROM PUBLIC;

-- Attaches an application table to an entity: checks the mapping, copies the
-- rows the copy can take (the others wait, see m365.source_drift), and puts
-- the triggers on it. Run by the owner or an administrator, who must be able
-- to read the table and put triggers on it themselves (SESSION_USER: the
-- role a SET ROLE can always go back to).
CREATE FUNCTION m365.attach_source(entity text, source regclass, columns jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel        pg_catalog.pg_class;
    e          record;
    wanted     name;
    att        pg_catalog.pg_attribute;
    copy_cols  name[] := '{}';
    src_cols   name[] := '{}';
    unknown    text;
    s          m365.source;
    prefix     text := pg_catalog.concat('m365_', entity, '_');
    copy_empty boolean;
BEGIN
    IF entity IS NULL OR source IS NULL OR columns IS NULL THEN
        RAISE EXCEPTION 'attach_source needs an entity, a table and a mapping (''{}'' for none)' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT entity OPERATOR(pg_catalog.=) ANY (m365.source_entities()) THEN
        RAISE EXCEPTION 'unknown entity "%"', entity USING ERRCODE = 'invalid_parameter_value',
            HINT = 'One of school, location, student, class, enrolment, staff, staff_school, class_teacher.';
    END IF;
    IF EXISTS (SELECT FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) attach_source.entity) THEN
        RAISE EXCEPTION '% is attached already (to %)', entity,
              (SELECT x.source FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) attach_source.entity)
            USING ERRCODE = 'duplicate_object', HINT = 'm365.detach_source first.';
    END IF;
    SELECT * INTO rel FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) source;
    IF rel.relkind OPERATOR(pg_catalog.<>) 'r' THEN
        RAISE EXCEPTION '% is not a plain table', source USING ERRCODE = 'wrong_object_type',
            DETAIL = 'Views, partitioned and foreign tables cannot be attached: the copy follows a table''s own triggers.';
    END IF;
    IF rel.relforcerowsecurity THEN
        RAISE EXCEPTION '% forces row-level security', source USING ERRCODE = 'feature_not_supported',
            DETAIL = 'The copy reads the table as its owner, whom FORCE ROW LEVEL SECURITY may hide rows from: the copy would lose them.';
    END IF;
    IF m365.source_runs_code(source) THEN
        RAISE EXCEPTION 'an index or statistics object of % calls code outside pg_catalog', source USING ERRCODE = 'feature_not_supported',
            DETAIL = 'Planning any read of the table runs it, in the session that reads (an administrator''s, the job''s).',
            HINT = 'Index and statistics expressions over pg_catalog''s own functions and operators only.';
    END IF;
    IF m365.source_in_hierarchy(source) THEN
        RAISE EXCEPTION '% is a partition, or a parent or child by inheritance', source USING ERRCODE = 'wrong_object_type',
            DETAIL = 'A write through the parent fires the parent''s statement triggers, not the child''s: the copy would miss it.';
    END IF;
    IF NOT pg_catalog.has_table_privilege(SESSION_USER, source, 'SELECT')
       OR NOT pg_catalog.has_table_privilege(SESSION_USER, source, 'TRIGGER') THEN
        RAISE EXCEPTION 'role % may not attach %: it needs SELECT and TRIGGER on it', SESSION_USER, source
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_catalog.jsonb_typeof(columns) OPERATOR(pg_catalog.<>) 'object'
       OR EXISTS (SELECT FROM pg_catalog.jsonb_each(columns) AS j WHERE pg_catalog.jsonb_typeof(j.value) OPERATOR(pg_catalog.<>) 'string') THEN
        RAISE EXCEPTION 'the mapping is a JSON object of column names: {"first_name": "voornaam", ...}' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.string_agg(j.key, ', ') INTO unknown FROM pg_catalog.jsonb_object_keys(columns) AS j(key)
     WHERE NOT EXISTS (SELECT FROM m365.source_columns(entity) AS c WHERE c.column_name OPERATOR(pg_catalog.=) j.key);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION '% has no column % to map', entity, unknown USING ERRCODE = 'undefined_column',
            HINT = 'A location''s or school''s configuration and domains are the administrators'', set in m365.location and m365.school.';
    END IF;
    FOR e IN SELECT * FROM m365.source_columns(entity) LOOP
        wanted := coalesce(columns OPERATOR(pg_catalog.->>) e.column_name::text, e.column_name);
        SELECT * INTO att FROM pg_catalog.pg_attribute AS a
         WHERE a.attrelid OPERATOR(pg_catalog.=) source AND a.attname OPERATOR(pg_catalog.=) wanted
           AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            IF columns ? e.column_name::text THEN
                RAISE EXCEPTION 'column "%" of % does not exist', wanted, source USING ERRCODE = 'undefined_column';
            ELSIF e.required THEN
                RAISE EXCEPTION '% has no column for %.%', source, entity, e.column_name USING ERRCODE = 'undefined_column',
                    HINT = pg_catalog.format('Map it: {"%s": "<column of %s>"}', e.column_name, source);
            END IF;
            CONTINUE;
        END IF;
        IF NOT m365.source_type_fits(att.atttypid, e.type_name, e.key_position IS NOT NULL) THEN
            RAISE EXCEPTION 'column "%" of % is of type %, which does not fit %.% (%)', wanted, source, att.atttypid::regtype,
                  entity, e.column_name, CASE WHEN e.key_position IS NOT NULL THEN 'an integer key' ELSE e.type_name::text END
                USING ERRCODE = 'datatype_mismatch',
                      HINT = 'Only PostgreSQL''s own types are read; convert in a stored generated column of the table (docs/attach.md).';
        END IF;
        copy_cols := copy_cols OPERATOR(pg_catalog.||) e.column_name;
        src_cols := src_cols OPERATOR(pg_catalog.||) wanted;
    END LOOP;

    INSERT INTO m365.source (entity, source, copy_columns, source_columns)
    VALUES (entity, source, copy_cols, src_cols) RETURNING * INTO s;
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER INSERT ON %I.%I REFERENCING NEW TABLE AS m365_new
                               FOR EACH STATEMENT EXECUTE FUNCTION m365.source_changed(%L)',
                              pg_catalog.concat(prefix, 'insert'),
                              rel.relnamespace::regnamespace::name, rel.relname, entity);
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER UPDATE ON %I.%I REFERENCING OLD TABLE AS m365_old NEW TABLE AS m365_new
                               FOR EACH STATEMENT EXECUTE FUNCTION m365.source_changed(%L)',
                              pg_catalog.concat(prefix, 'update'),
                              rel.relnamespace::regnamespace::name, rel.relname, entity);
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER DELETE ON %I.%I REFERENCING OLD TABLE AS m365_old
                               FOR EACH STATEMENT EXECUTE FUNCTION m365.source_changed(%L)',
                              pg_catalog.concat(prefix, 'delete'),
                              rel.relnamespace::regnamespace::name, rel.relname, entity);
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER TRUNCATE ON %I.%I
                               FOR EACH STATEMENT EXECUTE FUNCTION m365.source_changed(%L)',
                              pg_catalog.concat(prefix, 'truncate'),
                              rel.relnamespace::regnamespace::name, rel.relname, entity);
    -- Into an empty copy every row is new: the plain INSERT path.
    EXECUTE pg_catalog.format('SELECT NOT EXISTS (SELECT FROM m365.%I)', entity) INTO copy_empty;
    PERFORM m365.source_sync(entity, NULL, NULL, true, copy_empty);
END
$$;
COMMENT ON FUNCTION m365.attach_source(text, regclass, jsonb) IS
'Attaches an application table to an entity (student, enrolment, staff, ...): copies its rows and keeps the copy equal to it by triggers; columns maps the entity''s column names to the table''s';
REVOKE ALL ON FUNCTION m365.attach_source(text, regclass, jsonb) FROM PUBLIC;

-- Takes the triggers off and forgets the attachment; the copy keeps its rows
-- and can be written directly again.
CREATE FUNCTION m365.detach_source(entity text)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       m365.source;
    name    text;
    trigger name;
BEGIN
    DELETE FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) detach_source.entity RETURNING * INTO s;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    name := m365.source_lock(s.source);
    -- Its triggers by what they run, not by name: the application may have
    -- renamed one (a red-team find: it stayed, and DROP EXTENSION failed).
    FOR trigger IN SELECT t.tgname FROM pg_catalog.pg_trigger AS t
                    WHERE t.tgrelid OPERATOR(pg_catalog.=) s.source
                      AND t.tgfoid OPERATOR(pg_catalog.=) 'm365.source_changed()'::pg_catalog.regprocedure
                      AND t.tgargs OPERATOR(pg_catalog.=) (pg_catalog.convert_to(s.entity, 'UTF8') OPERATOR(pg_catalog.||) '\x00'::bytea) LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', trigger, name);
    END LOOP;
    RETURN true;
END
$$;
COMMENT ON FUNCTION m365.detach_source(text) IS
'Detaches an entity from its application table: the triggers go, the copy keeps its rows (true when it was attached)';
REVOKE ALL ON FUNCTION m365.detach_source(text) FROM PUBLIC;

-- Every row where a copy and its source disagree, or that waits, and why.
CREATE FUNCTION m365.source_drift()
RETURNS TABLE (entity text, source regclass, key bigint[], problem text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s m365.source;
    q m365.source_sql;
BEGIN
    FOR s IN SELECT * FROM m365.source AS x ORDER BY x.entity LOOP
        entity := s.entity;
        source := s.source;
        problem := m365.source_problem_locked(s);
        IF problem IS NOT NULL OR s.broken IS NOT NULL THEN
            key := NULL;
            problem := 'the attachment is broken: ' OPERATOR(pg_catalog.||) coalesce(problem, s.broken);
            RETURN NEXT;
            CONTINUE;
        END IF;
        RETURN QUERY SELECT s.entity, s.source, w.key, w.reason FROM m365.source_waiting AS w
                      WHERE w.entity OPERATOR(pg_catalog.=) s.entity ORDER BY w.key;
        q := m365.source_sql_of(s);
        BEGIN
            RETURN QUERY EXECUTE pg_catalog.format(
                'SELECT $1, $2, ARRAY[%1$s]::pg_catalog.int8[],
                        CASE WHEN x IS NULL THEN ''in the copy, not in the source''
                             WHEN c IS NULL THEN ''in the source, not in the copy''
                             ELSE ''differs from the source'' END
                   FROM (SELECT * FROM %2$s) AS x
                   FULL JOIN (SELECT %3$s FROM m365.%4$I) AS c USING (%1$s)
                  WHERE (x IS NULL OR c IS NULL OR (x.*) IS DISTINCT FROM (c.*))
                    AND NOT EXISTS (SELECT FROM m365.source_waiting AS w
                                     WHERE w.entity OPERATOR(pg_catalog.=) $1 AND w.key OPERATOR(pg_catalog.=) ARRAY[%1$s]::pg_catalog.int8[])
                  ORDER BY 3',
                q.key_columns, q.all_rows, q.columns, s.entity)
            USING s.entity, s.source;
        EXCEPTION WHEN OTHERS THEN
            -- One table that cannot be read (as its owner) hides no other's drift.
            key := NULL;
            problem := 'the table cannot be read: ' OPERATOR(pg_catalog.||) SQLERRM;
            RETURN NEXT;
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION m365.source_drift() IS
'Every row where an attached source and its copy disagree, or that waits (with the reason), and every broken attachment';
REVOKE ALL ON FUNCTION m365.source_drift() FROM PUBLIC;

-- Makes the copy equal to its source again (after triggers were disabled, a
-- COPY with triggers off, replication in replica mode): the extension's own
-- triggers on the copy log whoever now needs a username. Answers how many
-- rows still disagree or wait.
CREATE FUNCTION m365.resync_source(entity text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) resync_source.entity) THEN
        RAISE EXCEPTION '% is not attached', entity USING ERRCODE = 'undefined_object';
    END IF;
    UPDATE m365.source AS x SET broken = NULL WHERE x.entity OPERATOR(pg_catalog.=) resync_source.entity;
    PERFORM m365.source_sync(entity, NULL, NULL);
    RETURN (SELECT pg_catalog.count(*) FROM m365.source_drift() AS d WHERE d.entity OPERATOR(pg_catalog.=) resync_source.entity);
END
$$;
COMMENT ON FUNCTION m365.resync_source(text) IS
'Makes an attached entity''s copy equal to its source again; returns how many rows still disagree or wait';
REVOKE ALL ON FUNCTION m365.resync_source(text) FROM PUBLIC;

-- Rows that wait are tried again when a related entity changes, but a parent
-- committed by another session while the row's own transaction was still
-- open is not seen by either. The job tries every waiting row again first,
-- so such a row waits at most until the next run. Returns how many of them
-- the copies took.
CREATE FUNCTION m365.retry_waiting_sources()
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'  -- (the application's sessions come first; what is locked waits for the next run)
AS $$
DECLARE
    before  bigint := (SELECT pg_catalog.count(*) FROM m365.source_waiting);
    waiting text;
    k1      bigint[];
    k2      bigint[];
BEGIN
    IF before OPERATOR(pg_catalog.=) 0 THEN
        RETURN 0;
    END IF;
    FOR waiting IN SELECT DISTINCT w.entity FROM m365.source_waiting AS w LOOP
        SELECT pg_catalog.array_agg(w.key[1] ORDER BY w.key), pg_catalog.array_agg(w.key[2] ORDER BY w.key)
          INTO k1, k2 FROM m365.source_waiting AS w WHERE w.entity OPERATOR(pg_catalog.=) waiting;
        BEGIN
            PERFORM m365.source_sync(waiting, k1, k2, false);
        EXCEPTION WHEN OTHERS THEN
            UPDATE m365.source AS x SET broken = 'waiting rows could not be tried again: ' OPERATOR(pg_catalog.||) SQLERRM
             WHERE x.entity OPERATOR(pg_catalog.=) waiting;
        END;
    END LOOP;
    RETURN before OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM m365.source_waiting);
END
$$;
COMMENT ON FUNCTION m365.retry_waiting_sources() IS
'Tries every row of an attached source that waits again (the job does it first); returns how many the copies took';
REVOKE ALL ON FUNCTION m365.retry_waiting_sources() FROM PUBLIC;

-- An attached entity's copy is written by its source only: a direct write
-- would be undone, or kept, by chance. (The owner and superusers may: a
-- restore writes the copies as they were dumped.)
CREATE FUNCTION m365.refuse_write_to_attached_copy()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    attached regclass;
BEGIN
    SELECT x.source INTO attached FROM m365.source AS x WHERE x.entity OPERATOR(pg_catalog.=) TG_TABLE_NAME::text;
    IF FOUND AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
       AND CURRENT_USER OPERATOR(pg_catalog.<>) (SELECT e.extowner::regrole::name FROM pg_catalog.pg_extension AS e
                                                 WHERE e.extname OPERATOR(pg_catalog.=) 'm365_usernames') THEN
        RAISE EXCEPTION 'm365.% is attached to %: write that table', TG_TABLE_NAME, attached
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'm365.detach_source to write m365.' OPERATOR(pg_catalog.||) TG_TABLE_NAME OPERATOR(pg_catalog.||) ' directly again.';
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.refuse_write_to_attached_copy() FROM PUBLIC;
-- A school's or location's configuration and domain stay the administrators'
-- to set on the copy: only the columns its source feeds are refused.
CREATE TRIGGER school_written_by_its_source
    BEFORE INSERT OR UPDATE OF id, name OR DELETE OR TRUNCATE ON m365.school
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER location_written_by_its_source
    BEFORE INSERT OR UPDATE OF id, school_id, name OR DELETE OR TRUNCATE ON m365.location
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER student_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.student
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER class_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.class
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER enrolment_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.enrolment
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER staff_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.staff
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER staff_school_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.staff_school
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();
CREATE TRIGGER class_teacher_written_by_its_source
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON m365.class_teacher
    FOR EACH STATEMENT EXECUTE FUNCTION m365.refuse_write_to_attached_copy();

-- 0.3.0: no audited username change inside a security-restricted operation.
CREATE OR REPLACE FUNCTION m365.username_audit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
BEGIN
    -- Code of an application's that runs while the extension reads its table
    -- runs in an administrator's or the job's session: recorded, its edit
    -- would carry their name (a red-team find).
    IF m365.in_restricted_operation() THEN
        RAISE EXCEPTION 'usernames are not changed inside a security-restricted operation' USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'The session''s user is not who runs this code (an attached table is being read as its owner).';
    END IF;
    INSERT INTO m365.username_history (username_id, configuration_id, person_kind, person_id, changed_by, field,
                                       old_value, new_value)
    SELECT n.id, n.configuration_id, n.person_kind, n.person_id, SESSION_USER, c.field, c.old_value, c.new_value
      FROM new_rows AS n
      JOIN old_rows AS o ON o.id OPERATOR(pg_catalog.=) n.id
     CROSS JOIN LATERAL (VALUES ('username', o.username, n.username),
                                ('sync', o.sync::text, n.sync::text)) AS c(field, old_value, new_value)
     WHERE c.old_value IS DISTINCT FROM c.new_value;
    RETURN NULL;
END
$$;

SELECT pg_catalog.pg_extension_config_dump('m365.source', '');
SELECT pg_catalog.pg_extension_config_dump('m365.source_waiting', '');
SELECT pg_catalog.pg_extension_config_dump('m365.source_decided', '');


--------------------------------------------------------------------------------
-- Every right of every level, as declared next to each object (they reach the
-- roles registered above and every reader).
--------------------------------------------------------------------------------
SELECT m365.allow('app', 'USAGE', 'SCHEMA m365');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.person_in_feed');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.apply_suggested_usernames(bigint[])');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.suggested_username(bigint)');
SELECT m365.allow('admin', 'SELECT, DELETE', 'TABLE m365.tenant_account');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.tenant_adoption');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.tenant_collision');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.import_tenant_accounts(bigint, text)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.match_tenant_accounts(bigint)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.adopt_usernames(bigint, text[], bigint[], text[])');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.configuration');
SELECT m365.allow('admin', 'INSERT, UPDATE, DELETE', 'TABLE m365.configuration');
SELECT m365.allow('admin', 'USAGE', 'SEQUENCE m365.configuration_id_seq');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.issued_username');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.reserved_username');
SELECT m365.allow('admin', 'INSERT, UPDATE, DELETE', 'TABLE m365.reserved_username');
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.school');
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.location');
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.student');
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.class');
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.enrolment');
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.staff');
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.staff_school');
SELECT m365.allow('app', 'SELECT, INSERT, UPDATE, DELETE', 'TABLE m365.class_teacher');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_request');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_failure');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.queue_missing_usernames()');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.job_run');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.generation_begin()');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.generation_chunk(bigint)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.generation_end(bigint, text)');
SELECT m365.allow('admin', 'EXECUTE', 'PROCEDURE m365.generate_usernames()');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.generate_usernames_in_transaction()');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.schedule_jobs()');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.unschedule_jobs()');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.message');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.student_usernames(bigint, date)');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.staff_usernames(bigint, date)');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_history');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.set_username(bigint, text, boolean)');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.set_sync(bigint[], boolean)');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.set_location_sync(bigint, boolean, text, date)');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.set_school_sync(bigint, boolean, text, date)');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.next_generation_run()');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.diagnose_generation(bigint, text, bigint)');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.diagnose_student(bigint, bigint, date)');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.diagnose_staff(bigint, bigint, date)');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.preview_format(bigint, text)');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_reader');
SELECT m365.allow('reader', 'USAGE', 'SCHEMA m365_sds');
SELECT m365.allow('admin', 'USAGE', 'SCHEMA m365_sds');
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.feed');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.feed');
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.left_out');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.left_out');
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.users');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.users');
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.roles');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.roles');
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.orgs');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.orgs');
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.classes');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.classes');
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.enrollments');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.enrollments');
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds."academicSessions"');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds."academicSessions"');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.create_sds_reader(name, bigint)');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_record');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_record_user');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_record_membership');
SELECT m365.allow('reader', 'EXECUTE', 'FUNCTION m365_sds.record_feed(text, bigint, boolean)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365_sds.record_feed(text, bigint, boolean)');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_hold');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.sds_approval');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.pending_sds_changes(bigint)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.approve_sds_changes(bigint, text)');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.forgotten_username');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.username_is_taken(bigint, text)');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.first_free_username(bigint, text)');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.forgotten_person');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.forget_person(text, bigint)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.confirm_returning_id(text, bigint)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.apply_retention()');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.sds_record_rows(bigint)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.sds_changes(bigint, bigint)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.remove_old_sds_records()');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.status');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.job_status()');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.diagnose_hold(bigint)');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.departed_person');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_hold');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.confirm_held_username(bigint)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.release_held_username(bigint)');
SELECT m365.allow('reader', 'SELECT', 'TABLE m365_sds.scope');
SELECT m365.allow('admin', 'SELECT', 'TABLE m365_sds.scope');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.accepted_domains(bigint)');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_domain_not_accepted');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.source');
SELECT m365.allow('app', 'SELECT', 'TABLE m365.source_waiting');
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.source_columns(text)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.attach_source(text, regclass, jsonb)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.detach_source(text)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.source_drift()');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.resync_source(text)');
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.retry_waiting_sources()');

-- Last in every upgrade script: what this script granted to roles that hold a
-- level (and to readers) is not an initial privilege; pg_dump writes it.
SELECT m365.forget_granted_init_privs();
