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
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.tenant_adoption');

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
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.tenant_collision');

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
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.import_tenant_accounts(bigint, text)');

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
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.match_tenant_accounts(bigint)');

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
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.adopt_usernames(bigint, text[], bigint[], text[])');
