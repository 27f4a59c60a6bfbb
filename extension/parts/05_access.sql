--------------------------------------------------------------------------------
-- Who may do what. The extension creates no role: roles are cluster-wide, and
-- a role it created would carry one database's rights into every other
-- database of the cluster. The DBA gives roles of their choice a level, per
-- database:
--
--   SELECT m365.grant_access('school_app', 'app');    -- the school application
--   SELECT m365.grant_access('school_dba', 'admin');  -- app, plus configurations and the job
--
-- SDS readers get the level 'reader' from m365.create_sds_reader. What each
-- level gives is declared next to the object it governs, with m365.allow().
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
CREATE FUNCTION m365.access_levels(level text)
RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
RETURN CASE level WHEN 'admin' THEN '{app,admin}'::text[] ELSE ARRAY[level] END;

-- Grants (or revokes) the rules of the given levels to (from) a role. The
-- privilege and object texts come from m365.access_rule, which only this
-- script writes; the role is quoted by %I.
CREATE FUNCTION m365.apply_access(role_id regrole, levels text[], granting boolean)
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
CREATE FUNCTION m365.allow(level text, privilege text, object text)
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

-- Rights given while an extension script runs (m365.allow reaching roles that
-- hold a level already, in an upgrade) are recorded as the objects' initial
-- privileges, which pg_dump leaves out: a restore would lose them. Every
-- upgrade script ends with this call, so that the initial privileges are a
-- fresh install's (the owner's and PUBLIC's only) and pg_dump writes the
-- levels' grants like any other.
CREATE FUNCTION m365.forget_granted_init_privs()
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

-- What makes a role unfit to be given access or to read SDS: it is, or can
-- become, more than one caller (members), or it has rights beyond the
-- extension's (privileged attributes, predefined roles, ownerships).
-- NULL when fit.
CREATE FUNCTION m365.role_problem(role_id regrole)
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

CREATE FUNCTION m365.grant_access(role_id regrole, level text)
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

CREATE FUNCTION m365.revoke_access(role_id regrole)
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

SELECT m365.allow('app', 'USAGE', 'SCHEMA m365');
