--------------------------------------------------------------------------------
-- The tenant's existing accounts (onboarding a tenant that already has users).
-- bin/m365-tenant-import reads the users CSV of the Entra admin center
-- ("Download users") or of the Microsoft 365 admin center ("Export users")
-- into m365.tenant_account and reserves every local part it lists, so that
-- the job never hands out a name that exists in the tenant: SDS links a
-- username to the account with that name, and a generated jan.peeters would
-- take over the account of another Jan Peeters. The import reports the
-- usernames this database made already that are such an account of someone
-- else (m365.tenant_collision). m365.match_tenant_accounts proposes whose
-- account is whose; m365.adopt_usernames gives chosen accounts to their
-- people (the reservation becomes the person's own username).
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

-- The accounts of a configuration's domains as the last import listed them.
-- A local part may be in two domains of one configuration (jan@school.be,
-- jan@leerling.school.be): the extension keeps a local part unique in a
-- configuration, so both are one name here.
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
    local_part          text NOT NULL GENERATED ALWAYS AS (m365.local_part_key(user_principal_name)) STORED,
    domain              text NOT NULL GENERATED ALWAYS AS (pg_catalog.split_part(user_principal_name, '@', 2)) STORED,
    PRIMARY KEY (configuration_id, local_part, domain)
);
COMMENT ON TABLE m365.tenant_account IS
'The accounts the tenant has in the configuration''s domains, as bin/m365-tenant-import last read them (each local part reserved unless it is a person''s username here)';
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.tenant_account');
CREATE INDEX tenant_account_employee_id ON m365.tenant_account (configuration_id, employee_id) WHERE employee_id IS NOT NULL;

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
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.tenant_adoption');

-- Whether a tenant account is known to be the person's: its employeeId is
-- the person's id (as the application has it, or as the feed's sourcedId),
-- or an administrator adopted it for them. (Administrators execute it: the
-- view below calls it as its reader.)
CREATE FUNCTION m365.tenant_account_is_theirs(configuration_id bigint, user_principal_name text, employee_id text,
                                              person_kind text, person_id bigint)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce(employee_id OPERATOR(pg_catalog.=) ANY (ARRAY[person_id::text, person_kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) person_id]), false)
    OR EXISTS (SELECT FROM m365.tenant_adoption AS a
                WHERE a.configuration_id OPERATOR(pg_catalog.=) tenant_account_is_theirs.configuration_id
                  AND a.user_principal_name OPERATOR(pg_catalog.=) tenant_account_is_theirs.user_principal_name
                  AND a.person_kind OPERATOR(pg_catalog.=) tenant_account_is_theirs.person_kind
                  AND a.person_id OPERATOR(pg_catalog.=) tenant_account_is_theirs.person_id);
REVOKE ALL ON FUNCTION m365.tenant_account_is_theirs(bigint, text, text, text, bigint) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.tenant_account_is_theirs(bigint, text, text, text, bigint)');

-- Names as the comparison of a person with an account reads them: the
-- transliterated "voornaam.naam" (case, accents, spaces and scripts aside).
CREATE FUNCTION m365.name_key(first_name text, last_name text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN NULLIF(pg_catalog.btrim(first_name), '') IS NOT NULL AND NULLIF(pg_catalog.btrim(last_name), '') IS NOT NULL
            THEN m365.local_part_key(m365.make_username('voornaam.naam', first_name, last_name)) END;
COMMENT ON FUNCTION m365.name_key(text, text) IS
'The key two sets of names are compared by when a tenant account is matched to a person (transliterated voornaam.naam; NULL without both names)';

-- The usernames of this database that are the name of a tenant account not
-- known to be their person's: SDS would link the username to that account.
CREATE VIEW m365.tenant_collision AS
SELECT u.configuration_id, u.id AS username_id, u.person_kind, u.person_id,
       coalesce(s.first_name, st.first_name) AS first_name, coalesce(s.last_name, st.last_name) AS last_name,
       u.username, t.user_principal_name, t.given_name, t.surname, t.display_name, t.employee_id,
       t.account_enabled, t.created_in_tenant,
       m365.name_key(coalesce(s.first_name, st.first_name), coalesce(s.last_name, st.last_name))
           OPERATOR(pg_catalog.=) m365.name_key(t.given_name, t.surname) AS names_match,
       EXISTS (SELECT FROM m365.person_in_feed AS f
                WHERE f.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
                  AND f.person_kind OPERATOR(pg_catalog.=) u.person_kind
                  AND f.person_id OPERATOR(pg_catalog.=) u.person_id) AS in_feed
  FROM m365.username AS u
  JOIN m365.tenant_account AS t ON t.configuration_id OPERATOR(pg_catalog.=) u.configuration_id
                               AND t.local_part OPERATOR(pg_catalog.=) u.local_part
  LEFT JOIN m365.student AS s ON u.person_kind OPERATOR(pg_catalog.=) 'student' AND s.id OPERATOR(pg_catalog.=) u.person_id
  LEFT JOIN m365.staff AS st ON u.person_kind OPERATOR(pg_catalog.=) 'staff' AND st.id OPERATOR(pg_catalog.=) u.person_id
 WHERE NOT m365.tenant_account_is_theirs(t.configuration_id, t.user_principal_name, t.employee_id, u.person_kind, u.person_id);
COMMENT ON VIEW m365.tenant_collision IS
'Usernames of this database that are the name of a tenant account not known to be their person''s (SDS would link them): adopt the account for its person or rename the username';
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.tenant_collision');

-- A creation time as the admin centers write it: ISO 8601 (Entra, UTC
-- unless it says otherwise) or M/D/YYYY h:mm:ss AM (the Microsoft 365 admin
-- center, UTC). Read by pattern, never through the session's DateStyle.
-- NULL: neither.
CREATE FUNCTION m365.tenant_timestamp(value text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text[];
BEGIN
    p := pg_catalog.regexp_match(value, '^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$');
    IF p IS NOT NULL THEN
        IF p[7] IS NOT NULL THEN
            -- With its offset: ISO 8601 reads the same in every DateStyle.
            RETURN value::timestamptz;
        END IF;
        RETURN pg_catalog.make_timestamptz(p[1]::int, p[2]::int, p[3]::int, coalesce(p[4], '0')::int, coalesce(p[5], '0')::int,
                                           coalesce(p[6], '0')::double precision, 'UTC');
    END IF;
    p := pg_catalog.regexp_match(value, '^(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}):(\d{2})(?::(\d{2}))? ?([AaPp][Mm])?)?$');
    IF p IS NOT NULL THEN
        RETURN pg_catalog.make_timestamptz(p[3]::int, p[1]::int, p[2]::int,
                                           (coalesce(p[4], '0')::int OPERATOR(pg_catalog.%) 12)
                                           OPERATOR(pg_catalog.+) CASE WHEN pg_catalog.upper(p[7]) OPERATOR(pg_catalog.=) 'PM' THEN 12
                                                                        WHEN p[7] IS NULL AND coalesce(p[4], '0')::int OPERATOR(pg_catalog.=) 12 THEN 12
                                                                        ELSE 0 END,
                                           coalesce(p[5], '0')::int, coalesce(p[6], '0')::double precision, 'UTC');
    END IF;
    RETURN NULL;
EXCEPTION
    -- 2021-02-30, 13/45/2021: not a date.
    WHEN datetime_field_overflow OR invalid_parameter_value OR numeric_value_out_of_range THEN
        RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION m365.tenant_timestamp(text) FROM PUBLIC;

-- The rows of a tenant users export, by header name: the Entra admin center's
-- camelCase (userPrincipalName, givenName, surname, accountEnabled, ...) or
-- the Microsoft 365 admin center's ("User principal name", "First name",
-- "Last name", "Block credential", "When created", ...). Extra and reordered
-- columns are ignored. Each row with what is wrong with it (NULL: nothing).
CREATE FUNCTION m365.tenant_file_rows(csv text)
RETURNS TABLE (line integer, user_principal_name text, given_name text, surname text, display_name text,
               employee_id text, department text, account_enabled boolean, created_in_tenant timestamptz,
               problem text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    header text[];
    keys   text[];
    twice  text;
    c_upn int; c_given int; c_surname int; c_display int; c_employee int; c_department int;
    c_enabled int; c_blocked int; c_created int;
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
                  DETAIL = 'Its columns: ' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.array_to_string(header, ', '), 500),
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
               NULLIF(pg_catalog.btrim(r.fields[c_employee]), '') AS employee,
               NULLIF(m365.feed_text(r.fields[c_department]), '') AS department,
               pg_catalog.lower(NULLIF(pg_catalog.btrim(coalesce(r.fields[c_enabled], r.fields[c_blocked])), '') COLLATE "C") AS enabled,
               NULLIF(pg_catalog.btrim(r.fields[c_created]), '') AS created
          FROM m365.csv_records(csv) WITH ORDINALITY AS r(line, fields, n)
         WHERE r.n OPERATOR(pg_catalog.>) 1
    ), parsed AS (
        SELECT w.*,
               CASE WHEN w.enabled IS NULL THEN NULL
                    WHEN w.enabled OPERATOR(pg_catalog.=) ANY ('{true,yes,1}'::text[]) THEN c_enabled IS NOT NULL
                    WHEN w.enabled OPERATOR(pg_catalog.=) ANY ('{false,no,0}'::text[]) THEN c_enabled IS NULL
               END AS is_enabled,
               m365.tenant_timestamp(w.created) AS created_at
          FROM raw AS w
    )
    SELECT p.line,
           CASE WHEN pg_catalog.strpos(p.upn, '@') OPERATOR(pg_catalog.>) 0
                THEN pg_catalog.split_part(p.upn, '@', 1) OPERATOR(pg_catalog.||) '@'
                     OPERATOR(pg_catalog.||) m365.lower_domain(pg_catalog.split_part(p.upn, '@', 2))
                ELSE p.upn END,
           p.given, p.surname, p.display, p.employee, p.department, p.is_enabled, p.created_at,
           CASE WHEN p.upn IS NULL OR p.upn OPERATOR(pg_catalog.=) ''
                THEN 'it has no user principal name'
                WHEN p.upn OPERATOR(pg_catalog.!~) '^[^@[:space:]]+@[^@[:space:]]+$'
                THEN pg_catalog.format('"%s" is not a user principal name (name@domain)', pg_catalog.left(p.upn, 200))
                WHEN p.enabled IS NOT NULL AND p.is_enabled IS NULL
                THEN pg_catalog.format('%s "%s" is neither true nor false', header[coalesce(c_enabled, c_blocked)], pg_catalog.left(p.enabled, 50))
                WHEN p.created IS NOT NULL AND p.created_at IS NULL
                THEN pg_catalog.format('%s "%s" is not a date and time (2021-09-01T08:30:00Z or 9/1/2021 8:30:00 AM)',
                                       header[c_created], pg_catalog.left(p.created, 50))
           END
      FROM parsed AS p;
END
$$;
REVOKE ALL ON FUNCTION m365.tenant_file_rows(text) FROM PUBLIC;

-- Imports a tenant users export for a configuration: stores the accounts of
-- its domains (accounts of other domains cannot be linked to its usernames:
-- counted, not kept), and reserves every local part that is not already a
-- username or an issued name here. All or nothing: a file with a problem
-- stores nothing and names the first line at fault. A later import updates
-- the accounts it lists and keeps the others (an account deleted from the
-- tenant stays reserved: delete its m365.reserved_username row to free it).
CREATE FUNCTION m365.import_tenant_accounts(configuration_id bigint, csv text,
                                            OUT accounts integer, OUT other_domain integer, OUT new_accounts integer,
                                            OUT reserved integer, OUT usernames_here integer, OUT collisions integer)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    config   bigint := import_tenant_accounts.configuration_id;
    domains  text[];
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

    SELECT f.line, f.problem INTO bad FROM m365.tenant_file_rows(csv) AS f
     WHERE f.problem IS NOT NULL ORDER BY f.line LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'line % of the file: %', bad.line, bad.problem USING ERRCODE = 'M3T02';
    END IF;
    SELECT pg_catalog.min(f.line) AS first_line, (pg_catalog.array_agg(f.line ORDER BY f.line))[2] AS second_line,
           (pg_catalog.array_agg(f.user_principal_name ORDER BY f.line))[2] AS upn
      INTO bad
      FROM m365.tenant_file_rows(csv) AS f
     GROUP BY m365.local_part_key(f.user_principal_name), pg_catalog.split_part(f.user_principal_name, '@', 2)
    HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1
     ORDER BY 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lines % and % of the file: the same user principal name "%"', bad.first_line, bad.second_line, bad.upn
            USING ERRCODE = 'M3T02', HINT = 'A tenant has each user principal name once: was the file put together from two exports?';
    END IF;

    -- As the configuration's reservations are made: its row locked, so that a
    -- username written meanwhile is waited for and then seen.
    PERFORM FROM m365.configuration AS c WHERE c.id OPERATOR(pg_catalog.=) config FOR UPDATE;
    WITH file AS (
        SELECT f.*, pg_catalog.split_part(f.user_principal_name, '@', 2) OPERATOR(pg_catalog.=) ANY (domains) AS ours
          FROM m365.tenant_file_rows(csv) AS f
    ), stored AS (
        INSERT INTO m365.tenant_account AS t (configuration_id, user_principal_name, given_name, surname, display_name,
                                              employee_id, department, account_enabled, created_in_tenant)
        SELECT config, f.user_principal_name, f.given_name, f.surname, f.display_name, f.employee_id, f.department,
               f.account_enabled, f.created_in_tenant
          FROM file AS f WHERE f.ours
        ON CONFLICT ON CONSTRAINT tenant_account_pkey DO UPDATE
           SET user_principal_name = excluded.user_principal_name, given_name = excluded.given_name,
               surname = excluded.surname, display_name = excluded.display_name, employee_id = excluded.employee_id,
               department = excluded.department, account_enabled = excluded.account_enabled,
               created_in_tenant = excluded.created_in_tenant, imported_at = pg_catalog.now()
        RETURNING (t.xmax OPERATOR(pg_catalog.=) 0) AS inserted
    )
    SELECT (SELECT pg_catalog.count(*) FROM file), (SELECT pg_catalog.count(*) FILTER (WHERE NOT f.ours) FROM file AS f),
           (SELECT pg_catalog.count(*) FILTER (WHERE s.inserted) FROM stored AS s)
      INTO accounts, other_domain, new_accounts;
    IF accounts OPERATOR(pg_catalog.>) 0 AND accounts OPERATOR(pg_catalog.=) other_domain THEN
        SELECT pg_catalog.string_agg(d.domain, ', ' ORDER BY d.domain) INTO seen
          FROM (SELECT DISTINCT pg_catalog.split_part(f.user_principal_name, '@', 2) AS domain
                  FROM m365.tenant_file_rows(csv) AS f LIMIT 20) AS d;
        RAISE EXCEPTION 'none of the % accounts of the file is in a domain of configuration %', accounts, config
            USING ERRCODE = 'M3T03',
                  DETAIL = pg_catalog.format('Its domains: %s. The file''s: %s.', pg_catalog.array_to_string(domains, ', '), seen),
                  HINT = 'Is it the export of this configuration''s tenant?';
    END IF;

    -- Every local part the tenant has, unless a username or an issued name
    -- here holds it already (those are someone's here: m365.tenant_collision
    -- tells whose). Names outside the rules no username can have need none.
    INSERT INTO m365.reserved_username (configuration_id, username, note)
    SELECT DISTINCT ON (t.local_part) config, t.user_principal_name, 'tenant account'
      FROM m365.tenant_account AS t
     WHERE t.configuration_id OPERATOR(pg_catalog.=) config
       AND m365.username_is_valid(t.user_principal_name)
       AND NOT EXISTS (SELECT FROM m365.username AS u
                        WHERE u.configuration_id OPERATOR(pg_catalog.=) config AND u.local_part OPERATOR(pg_catalog.=) t.local_part)
       AND NOT EXISTS (SELECT FROM m365.issued_username AS i
                        WHERE i.configuration_id OPERATOR(pg_catalog.=) config AND i.local_part OPERATOR(pg_catalog.=) t.local_part)
     ORDER BY t.local_part, t.domain
    ON CONFLICT ON CONSTRAINT reserved_username_pkey DO NOTHING;
    GET DIAGNOSTICS reserved = ROW_COUNT;

    SELECT pg_catalog.count(DISTINCT u.id) INTO usernames_here
      FROM m365.username AS u JOIN m365.tenant_account AS t
        ON t.configuration_id OPERATOR(pg_catalog.=) u.configuration_id AND t.local_part OPERATOR(pg_catalog.=) u.local_part
     WHERE u.configuration_id OPERATOR(pg_catalog.=) config;
    SELECT pg_catalog.count(DISTINCT c.username_id) INTO collisions
      FROM m365.tenant_collision AS c WHERE c.configuration_id OPERATOR(pg_catalog.=) config;
END
$$;
COMMENT ON FUNCTION m365.import_tenant_accounts(bigint, text) IS
'Imports a tenant users export (Entra or Microsoft 365 admin center CSV) for a configuration: stores the accounts of its domains and reserves their local parts; answers the counts (collisions: see m365.tenant_collision). Errors M3T01 (not a users export), M3T02 (a line at fault), M3T03 (no account in its domains), 22P04 (not valid CSV)';
REVOKE ALL ON FUNCTION m365.import_tenant_accounts(bigint, text) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.import_tenant_accounts(bigint, text)');

-- The people of a configuration without a username, or with one that is a
-- tenant account not known to be theirs, with the tenant accounts that may
-- be theirs: by an identifier the tenant holds (employeeId = the
-- application's id, or the feed's sourcedId "student-12"; a plain id that
-- fits a student and a staff member goes to the one whose names the account
-- has), else by names
-- (m365.name_key) as a proposal only. One row per person and candidate:
--   match 'id'         the account's employeeId is the person's id
--   match 'names'      one free account has the person's names, and no other
--                      person of the list has them
--   match 'ambiguous'  several accounts, or several people, fit
--   match 'none'       no account (account columns NULL)
-- An account is a candidate while it is free: no username here is it, and
-- nobody adopted it.
CREATE FUNCTION m365.match_tenant_accounts(configuration_id bigint)
RETURNS TABLE (person_kind text, person_id bigint, first_name text, last_name text, username text,
               match text, user_principal_name text, given_name text, surname text, display_name text,
               employee_id text, department text, account_enabled boolean, created_in_tenant timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH needing AS (
        SELECT n.person_kind, n.person_id
          FROM m365.people_needing_username(ARRAY(SELECT s.id FROM m365.student AS s), ARRAY(SELECT st.id FROM m365.staff AS st)) AS n
         WHERE n.configuration_id OPERATOR(pg_catalog.=) match_tenant_accounts.configuration_id
    ), people AS (
        SELECT p.person_kind, p.person_id, coalesce(s.first_name, st.first_name) AS first_name,
               coalesce(s.last_name, st.last_name) AS last_name, u.username
          FROM (SELECT * FROM needing
                UNION
                SELECT c.person_kind, c.person_id FROM m365.tenant_collision AS c
                 WHERE c.configuration_id OPERATOR(pg_catalog.=) match_tenant_accounts.configuration_id) AS p
          LEFT JOIN m365.username AS u ON u.configuration_id OPERATOR(pg_catalog.=) match_tenant_accounts.configuration_id
                                      AND u.person_kind OPERATOR(pg_catalog.=) p.person_kind
                                      AND u.person_id OPERATOR(pg_catalog.=) p.person_id
          LEFT JOIN m365.student AS s ON p.person_kind OPERATOR(pg_catalog.=) 'student' AND s.id OPERATOR(pg_catalog.=) p.person_id
          LEFT JOIN m365.staff AS st ON p.person_kind OPERATOR(pg_catalog.=) 'staff' AND st.id OPERATOR(pg_catalog.=) p.person_id
         WHERE u.id IS NULL
            OR EXISTS (SELECT FROM m365.tenant_collision AS c WHERE c.username_id OPERATOR(pg_catalog.=) u.id)
    ), free AS (
        SELECT t.* FROM m365.tenant_account AS t
         WHERE t.configuration_id OPERATOR(pg_catalog.=) match_tenant_accounts.configuration_id
           AND NOT EXISTS (SELECT FROM m365.username AS u
                            WHERE u.configuration_id OPERATOR(pg_catalog.=) t.configuration_id
                              AND u.local_part OPERATOR(pg_catalog.=) t.local_part
                              AND NOT EXISTS (SELECT FROM m365.tenant_collision AS c WHERE c.username_id OPERATOR(pg_catalog.=) u.id))
           AND NOT EXISTS (SELECT FROM m365.tenant_adoption AS a
                            WHERE a.configuration_id OPERATOR(pg_catalog.=) t.configuration_id
                              AND a.user_principal_name OPERATOR(pg_catalog.=) t.user_principal_name)
    ), by_any_id AS (
        SELECT p.person_kind, p.person_id, f.user_principal_name,
               f.employee_id OPERATOR(pg_catalog.=) (p.person_kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) p.person_id) AS qualified,
               coalesce(m365.name_key(p.first_name, p.last_name) OPERATOR(pg_catalog.=) m365.name_key(f.given_name, f.surname), false) AS agree
          FROM people AS p
          JOIN free AS f ON f.employee_id OPERATOR(pg_catalog.=) ANY (ARRAY[p.person_id::text,
                                                                          p.person_kind OPERATOR(pg_catalog.||) '-' OPERATOR(pg_catalog.||) p.person_id])
    ), by_id AS (
        -- A plain id can be a student's and a staff member's: of the people
        -- an account's id fits, the one its sourcedId or names single out.
        SELECT i.person_kind, i.person_id, i.user_principal_name
          FROM (SELECT i.*, pg_catalog.count(*) FILTER (WHERE i.qualified OR i.agree)
                                OVER (PARTITION BY i.user_principal_name) AS singled_out
                  FROM by_any_id AS i) AS i
         WHERE i.singled_out OPERATOR(pg_catalog.<>) 1 OR i.qualified OR i.agree
    ), by_names AS (
        SELECT p.person_kind, p.person_id, f.user_principal_name
          FROM (SELECT p.*, m365.name_key(p.first_name, p.last_name) AS k FROM people AS p
                 WHERE NOT EXISTS (SELECT FROM by_id AS i WHERE i.person_kind OPERATOR(pg_catalog.=) p.person_kind
                                                           AND i.person_id OPERATOR(pg_catalog.=) p.person_id)) AS p
          JOIN (SELECT f.*, m365.name_key(f.given_name, f.surname) AS k FROM free AS f
                 WHERE NOT EXISTS (SELECT FROM by_id AS i WHERE i.user_principal_name OPERATOR(pg_catalog.=) f.user_principal_name)) AS f
            ON f.k OPERATOR(pg_catalog.=) p.k
    ), candidate AS (
        SELECT c.*,
               CASE WHEN pg_catalog.count(*) OVER (PARTITION BY c.person_kind, c.person_id) OPERATOR(pg_catalog.>) 1
                      OR pg_catalog.count(*) OVER (PARTITION BY c.user_principal_name) OPERATOR(pg_catalog.>) 1
                    THEN 'ambiguous' ELSE c.how END AS match
          FROM (SELECT i.*, 'id'::text AS how FROM by_id AS i
                UNION ALL
                SELECT n.*, 'names' FROM by_names AS n) AS c
    )
    SELECT p.person_kind, p.person_id, p.first_name, p.last_name, p.username, coalesce(c.match, 'none'),
           f.user_principal_name, f.given_name, f.surname, f.display_name, f.employee_id, f.department,
           f.account_enabled, f.created_in_tenant
      FROM people AS p
      LEFT JOIN candidate AS c ON c.person_kind OPERATOR(pg_catalog.=) p.person_kind AND c.person_id OPERATOR(pg_catalog.=) p.person_id
      LEFT JOIN free AS f ON f.user_principal_name OPERATOR(pg_catalog.=) c.user_principal_name
     ORDER BY p.person_kind, p.last_name, p.first_name, p.person_id, f.user_principal_name
$$;
COMMENT ON FUNCTION m365.match_tenant_accounts(bigint) IS
'Proposes for each person of the configuration without a username (or with one that collides) the tenant account that is theirs: match id, names (a proposal), ambiguous or none, with what tells accounts apart';
REVOKE ALL ON FUNCTION m365.match_tenant_accounts(bigint) FROM PUBLIC;
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.match_tenant_accounts(bigint)');

-- Gives tenant accounts to their people: person_kinds[i], person_ids[i]
-- adopts accounts[i] (a user principal name of m365.tenant_account). Per row
-- 'done' or the message set_username would give. The person's username
-- becomes the account's name (made by nobody: no format, so never suggested
-- over; the old name stays issued to them); a person without one gets it
-- now, before the job would make one. Validated as one set; should a session
-- take one of the names between the check and the write, nothing of the call
-- is saved and each row it would have saved answers "in use".
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
    problems text[];
    current  bigint[];
    previous text[];
BEGIN
    IF config IS NULL OR person_kinds IS NULL OR person_ids IS NULL OR accounts IS NULL
       OR pg_catalog.cardinality(person_kinds) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(person_ids)
       OR pg_catalog.cardinality(person_kinds) OPERATOR(pg_catalog.<>) pg_catalog.cardinality(accounts) THEN
        RAISE EXCEPTION 'give a configuration and three lists of the same length (kinds, ids, accounts)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
        SELECT a.*, t.user_principal_name AS account, t.local_part, u.id AS username_id, u.username AS has,
               u.local_part AS has_local,
               (u.id IS NOT NULL OR EXISTS (SELECT FROM m365.people_needing_username(
                                                        CASE WHEN a.kind OPERATOR(pg_catalog.=) 'student' THEN ARRAY[a.id] END,
                                                        CASE WHEN a.kind OPERATOR(pg_catalog.=) 'staff' THEN ARRAY[a.id] END) AS p
                                             WHERE p.configuration_id OPERATOR(pg_catalog.=) config)) AS of_configuration,
               EXISTS (SELECT FROM m365.reserved_username AS r
                        WHERE r.configuration_id OPERATOR(pg_catalog.=) config
                          AND r.local_part OPERATOR(pg_catalog.=) t.local_part) AS reserved
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
                    WHEN NOT m365.username_is_valid(f.account)
                    THEN m365.message('username_invalid', f.account, NULL)
                    WHEN NOT pg_catalog.split_part(f.account, '@', 2) OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT m365.accepted_domains(config)))
                    THEN m365.message('username_invalid', f.account, NULL)
                    -- Free for the person, or reserved (a reservation is only
                    -- ever of a name nobody here holds or was issued; the
                    -- username trigger checks the rest when it is written).
                    WHEN NOT (f.reserved OR m365.username_is_free(config, f.local_part, f.kind, f.id))
                    THEN m365.message('username_in_use', f.account, NULL)
               END AS problem
          FROM found AS f
    )
    SELECT pg_catalog.array_agg(j.kind ORDER BY j.n), pg_catalog.array_agg(j.id ORDER BY j.n),
           pg_catalog.array_agg(coalesce(j.account, j.upn) ORDER BY j.n), pg_catalog.array_agg(j.problem ORDER BY j.n),
           pg_catalog.array_agg(j.username_id ORDER BY j.n), pg_catalog.array_agg(j.has ORDER BY j.n)
      INTO kinds, ids, upns, problems, current, previous
      FROM judged AS j;
    BEGIN
        DELETE FROM m365.reserved_username AS r
         USING ROWS FROM (pg_catalog.unnest(upns), pg_catalog.unnest(problems)) AS a(upn, problem)
         WHERE a.problem IS NULL
           AND r.configuration_id OPERATOR(pg_catalog.=) config
           AND r.local_part OPERATOR(pg_catalog.=) m365.local_part_key(a.upn);
        -- Adopted: made by nobody (no base, suffix, format or names digest).
        UPDATE m365.username AS u
           SET username = a.upn, base = NULL, suffix = NULL, format = NULL, names_digest = NULL
          FROM ROWS FROM (pg_catalog.unnest(current), pg_catalog.unnest(upns), pg_catalog.unnest(problems)) AS a(username_id, upn, problem)
         WHERE a.problem IS NULL AND u.id OPERATOR(pg_catalog.=) a.username_id
           -- Already the account's name (tom.h, its domain from the location): kept as it is.
           AND (u.local_part OPERATOR(pg_catalog.<>) m365.local_part_key(a.upn)
                OR pg_catalog.split_part(u.username, '@', 2) NOT IN ('', pg_catalog.split_part(a.upn, '@', 2)));
        INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
        SELECT config, a.kind, a.id, a.upn
          FROM ROWS FROM (pg_catalog.unnest(kinds), pg_catalog.unnest(ids), pg_catalog.unnest(upns),
                          pg_catalog.unnest(current), pg_catalog.unnest(problems)) AS a(kind, id, upn, username_id, problem)
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
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.adopt_usernames(bigint, text[], bigint[], text[])');
