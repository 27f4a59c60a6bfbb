--------------------------------------------------------------------------------
-- Editing usernames and sync flags, audited.
--------------------------------------------------------------------------------

-- Every change of a username or its sync flag, whoever makes it.
CREATE TABLE m365.username_history (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username_id      bigint NOT NULL,
    configuration_id bigint NOT NULL,
    person_kind      text NOT NULL,
    person_id        bigint NOT NULL,
    changed_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    changed_by       name NOT NULL DEFAULT CURRENT_USER,
    -- The application's own user, when it says so: SET m365.app_user = '...'.
    app_user         text DEFAULT NULLIF(pg_catalog.current_setting('m365.app_user', true), ''),
    field            text NOT NULL CONSTRAINT username_history_field_known CHECK (field OPERATOR(pg_catalog.=) ANY ('{username,sync}'::text[])),
    old_value        text,
    new_value        text
);
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_history');
CREATE INDEX username_history_username ON m365.username_history (username_id, changed_at);
COMMENT ON TABLE m365.username_history IS
'Audit: every change of a username or sync flag, with the database user and the application user (m365.app_user)';

CREATE FUNCTION m365.username_audit()
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
REVOKE ALL ON FUNCTION m365.username_audit() FROM PUBLIC;

CREATE TRIGGER username_audit
    AFTER UPDATE ON m365.username
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION m365.username_audit();

-- Raises one of the messages of the procedure, with its own SQLSTATE.
CREATE FUNCTION m365.raise_message(sqlstate text, code text, username text DEFAULT NULL, reason text DEFAULT NULL,
                                   detail text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF detail IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = m365.message(code, username, reason);
    END IF;
    RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = m365.message(code, username, reason), DETAIL = detail;
END
$$;
REVOKE ALL ON FUNCTION m365.raise_message(text, text, text, text, text) FROM PUBLIC;

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
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.set_username(bigint, text, boolean)');

-- Sets the sync flag of the given usernames; returns how many changed.
CREATE FUNCTION m365.set_sync(username_ids bigint[], value boolean)
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
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.set_sync(bigint[], boolean)');

-- Whether a list row matches the text filter of the bulk forms: NULL matches
-- all, otherwise the username or a name contains it (case-insensitive, by
-- ICU's root locale: the database's could be Turkish, where "I" does not
-- find "i").
CREATE FUNCTION m365.list_row_matches(filter text, username text, first_name text, last_name text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN filter IS NULL
    OR pg_catalog.strpos(pg_catalog.lower(pg_catalog.concat_ws(' ', username, first_name, last_name) COLLATE "und-x-icu"),
                         pg_catalog.lower(filter COLLATE "und-x-icu")) OPERATOR(pg_catalog.>) 0;

-- The same for every username of a location's (or school's) list on a date,
-- optionally only those whose username or name contains `filter`.
CREATE FUNCTION m365.set_location_sync(location_id bigint, value boolean, filter text DEFAULT NULL,
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
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.set_location_sync(bigint, boolean, text, date)');

CREATE FUNCTION m365.set_school_sync(school_id bigint, value boolean, filter text DEFAULT NULL,
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
SELECT m365.allow('app', 'EXECUTE', 'FUNCTION m365.set_school_sync(bigint, boolean, text, date)');

