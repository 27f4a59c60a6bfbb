--------------------------------------------------------------------------------
-- The application's id is the person. A student or staff member deleted and
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
SELECT m365.allow('app', 'SELECT', 'TABLE m365.departed_person');

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
SELECT m365.allow('app', 'SELECT', 'TABLE m365.username_hold');

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
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.confirm_held_username(bigint)');

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
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.release_held_username(bigint)');
