--------------------------------------------------------------------------------
-- Forgetting people. On request: after the school has deleted a pupil or
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
SELECT m365.allow('admin', 'SELECT', 'TABLE m365.forgotten_person');

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
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.forget_person(text, bigint)');

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
SELECT m365.allow('admin', 'EXECUTE', 'FUNCTION m365.confirm_returning_id(text, bigint)');

