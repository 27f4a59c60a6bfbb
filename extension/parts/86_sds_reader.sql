--------------------------------------------------------------------------------
-- Read-only SDS roles, one per configuration. A reader can read m365_sds and
-- nothing else of the extension, and sees its own configuration only.
--------------------------------------------------------------------------------

-- Why a role cannot be (or stay) an SDS reader; NULL when it is a plain login
-- role, one caller and nothing more: a role with members would open the
-- configuration to each of them (SET ROLE), and any other right would reach
-- beyond the feed. Used by create_sds_reader and by the update from 0.2.0.
CREATE FUNCTION m365.reader_problem(reader regrole)
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

-- Readers and levels of roles dropped since: their OIDs would be written by
-- pg_dump as bare numbers, which a restore binds to whatever role has that
-- OID in the other cluster. Forgotten whenever readers or levels change and
-- by the daily removal of old SDS records.
CREATE FUNCTION m365.forget_dropped_roles()
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

CREATE FUNCTION m365.create_sds_reader(role_name name, configuration_id bigint)
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
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.create_sds_reader(name, bigint)');

