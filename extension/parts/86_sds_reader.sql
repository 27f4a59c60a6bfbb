--------------------------------------------------------------------------------
-- Read-only SDS roles, one per configuration. A reader can read m365_sds and
-- nothing else of the extension, and sees its own configuration only.
--------------------------------------------------------------------------------

CREATE FUNCTION m365.create_sds_reader(role_name name, configuration_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing pg_catalog.pg_roles;
BEGIN
    IF role_name IS NULL OR configuration_id IS NULL THEN
        RAISE EXCEPTION 'create_sds_reader needs a role name and a configuration' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) create_sds_reader.configuration_id) THEN
        RAISE EXCEPTION 'configuration % does not exist', configuration_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT * INTO existing FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) role_name;
    IF NOT FOUND THEN
        -- LOGIN without a password: give it one (ALTER ROLE ... PASSWORD) or a pg_hba rule.
        EXECUTE pg_catalog.format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT', role_name);
    ELSIF existing.rolsuper OR existing.rolbypassrls
          OR pg_catalog.pg_has_role(role_name, 'm365_app', 'MEMBER')
          OR pg_catalog.pg_has_role(role_name, 'm365_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'role "%" can see more than one configuration and cannot be an SDS reader', role_name
            USING ERRCODE = 'invalid_grant_operation';
    ELSIF NOT existing.rolinherit THEN
        RAISE EXCEPTION 'role "%" is NOINHERIT: it would not get the grants of m365_sds_reader', role_name
            USING ERRCODE = 'invalid_grant_operation', HINT = pg_catalog.format('ALTER ROLE %I INHERIT', role_name);
    END IF;
    IF EXISTS (SELECT FROM m365.sds_reader AS r
                WHERE r.role_name OPERATOR(pg_catalog.=) create_sds_reader.role_name
                  AND r.configuration_id OPERATOR(pg_catalog.<>) create_sds_reader.configuration_id) THEN
        RAISE EXCEPTION 'role "%" already reads another configuration', role_name
            USING ERRCODE = 'unique_violation', HINT = 'One reader role per configuration: create another role.';
    END IF;
    IF NOT pg_catalog.pg_has_role(role_name, 'm365_sds_reader', 'MEMBER') THEN
        EXECUTE pg_catalog.format('GRANT m365_sds_reader TO %I', role_name);
    END IF;
    INSERT INTO m365.sds_reader (role_name, configuration_id) VALUES (role_name, configuration_id)
    ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION m365.create_sds_reader(name, bigint) IS
'Creates (or adopts) a read-only role for School Data Sync that sees only m365_sds, for one configuration';

