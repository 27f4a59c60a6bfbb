-- The soak test's database: one configuration, two schools, three locations,
-- 2,000 students and 40 staff with usernames already, two login roles, and
-- the wrappers its clients call (schema soak, not part of the extension).
-- Students, enrolments, staff and their schools live in the application's
-- own tables (schema app, owned by its role), attached to the extension:
-- the clients write only those.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE EXTENSION m365_usernames;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'soak_app') THEN CREATE ROLE soak_app LOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'soak_admin') THEN CREATE ROLE soak_admin LOGIN; END IF;
END
$$;
INSERT INTO m365.configuration (id, name, username_format, fallback_formats)
VALUES (1, 'soak', 'naam.voornaam', '{voornaam.naam}');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (1, 'S1', 1, 's1.example.be'), (2, 'S2', 1, 's2.example.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (1, 1, 'L1', 1, 'l.s1.example.be'), (2, 1, 'L2', 1, NULL), (3, 2, 'L3', 1, 'l.s2.example.be');

CREATE SCHEMA soak;
-- Few names, so that people, the job and the edits race for the same usernames.
CREATE TABLE soak.name (n int PRIMARY KEY, first_name text, last_name text);
INSERT INTO soak.name
SELECT i, (ARRAY['Jan', 'Lotte', 'Émile', 'Zoë', 'Noah', 'Ayşe', 'Mohammed', 'Łucja'])[1 + i % 8],
          (ARRAY['Peeters', 'Maes', 'Janssens', 'D''Hondt', 'Van den Broeck', 'Öztürk', 'El Amrani', 'Wouters'])[1 + (i / 8) % 8]
  FROM generate_series(0, 63) AS i;
CREATE SEQUENCE soak.person_id START 100000;
-- What the clients did, to compare with what the extension recorded.
CREATE TABLE soak.done (client_pid int DEFAULT pg_backend_pid(), what text, n int, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE soak.unexpected (what text, sqlstate text, message text, at timestamptz DEFAULT clock_timestamp());

CREATE SCHEMA app AUTHORIZATION soak_app;
SET ROLE soak_app;
CREATE TABLE app.leerling (leerling_nr bigint PRIMARY KEY, voornaam text NOT NULL, familienaam text NOT NULL);
CREATE TABLE app.inschrijving (inschrijving_nr bigint PRIMARY KEY, leerling_nr bigint NOT NULL REFERENCES app.leerling,
                               vestiging_nr bigint NOT NULL, begindatum date NOT NULL);
CREATE TABLE app.personeel (personeelslid_nr bigint PRIMARY KEY, voornaam text NOT NULL, familienaam text NOT NULL,
                            actief boolean NOT NULL DEFAULT true);
CREATE TABLE app.personeel_school (personeelslid_nr bigint REFERENCES app.personeel, school_nr bigint,
                                   PRIMARY KEY (personeelslid_nr, school_nr));
RESET ROLE;
INSERT INTO app.leerling SELECT i, first_name, last_name FROM generate_series(1, 2000) AS i JOIN soak.name ON n = i % 64;
INSERT INTO app.inschrijving SELECT i, i, 1 + i % 3, CURRENT_DATE - 30 FROM generate_series(1, 2000) AS i;
INSERT INTO app.personeel SELECT i, first_name, last_name FROM generate_series(1, 40) AS i JOIN soak.name ON n = (i * 7) % 64;
INSERT INTO app.personeel_school SELECT i, 1 + i % 2 FROM generate_series(1, 40) AS i;
SELECT m365.attach_source('student', 'app.leerling', '{"id": "leerling_nr", "first_name": "voornaam", "last_name": "familienaam"}');
SELECT m365.attach_source('enrolment', 'app.inschrijving',
       '{"id": "inschrijving_nr", "student_id": "leerling_nr", "location_id": "vestiging_nr", "start_date": "begindatum"}');
SELECT m365.attach_source('staff', 'app.personeel', '{"id": "personeelslid_nr", "first_name": "voornaam", "last_name": "familienaam", "active": "actief"}');
SELECT m365.attach_source('staff_school', 'app.personeel_school', '{"staff_id": "personeelslid_nr", "school_id": "school_nr"}');
ANALYZE;
SELECT m365.generate_usernames_in_transaction();

-- Enrols a new student (name k of the pool) in a location.
CREATE FUNCTION soak.enrol(k int, location bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    detail text;
    id bigint := nextval('soak.person_id');
BEGIN
    INSERT INTO app.leerling SELECT id, first_name, last_name FROM soak.name WHERE n = k;
    INSERT INTO app.inschrijving VALUES (id, id, location, CURRENT_DATE);
    INSERT INTO soak.done (what, n) VALUES ('enrol', 1);
EXCEPTION
    -- Retryable by the documented contract (an application retries them):
    -- counted apart, and reported by the test; anything else is unexpected.
    WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
        INSERT INTO soak.done (what, n) VALUES ('retryable ' || SQLSTATE, 1);
    WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
        INSERT INTO soak.unexpected (what, sqlstate, message) VALUES ('enrol', SQLSTATE, SQLERRM || coalesce(' / ' || detail, ''));
END
$$;

-- Adds a staff member to a school, or lets a random one leave.
CREATE FUNCTION soak.staff_change(k int, school bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    detail text;
    id bigint;
BEGIN
    IF k % 4 = 0 THEN
        UPDATE app.personeel SET actief = false
         WHERE personeelslid_nr = (SELECT p.personeelslid_nr FROM app.personeel AS p
                                    WHERE p.actief AND p.personeelslid_nr > k * 3 ORDER BY 1 LIMIT 1);
        INSERT INTO soak.done (what, n) VALUES ('staff left', 1);
    ELSE
        id := nextval('soak.person_id');
        INSERT INTO app.personeel (personeelslid_nr, voornaam, familienaam) SELECT id, first_name, last_name FROM soak.name WHERE n = k;
        INSERT INTO app.personeel_school VALUES (id, school);
        INSERT INTO soak.done (what, n) VALUES ('staff added', 1);
    END IF;
EXCEPTION
    -- Retryable by the documented contract (an application retries them):
    -- counted apart, and reported by the test; anything else is unexpected.
    WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
        INSERT INTO soak.done (what, n) VALUES ('retryable ' || SQLSTATE, 1);
    WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
        INSERT INTO soak.unexpected (what, sqlstate, message) VALUES ('staff', SQLSTATE, SQLERRM || coalesce(' / ' || detail, ''));
END
$$;

-- Renames a random username to a name others want too: a generator-style
-- name of the pool with a suffix up to 400 (taken already, or one the job is
-- about to hand out: the job must then skip it) or one of 320 chosen names.
-- "Already in use" (M3U03) is the expected answer when someone was first.
CREATE FUNCTION soak.edit(pick int, k int, suffix int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    detail text;
    target bigint;
    wanted text;
    old text;
BEGIN
    SELECT u.id, u.username INTO target, old FROM m365.username AS u
     WHERE u.person_kind = 'student' AND u.id >= pick ORDER BY u.id LIMIT 1;
    IF target IS NULL THEN
        RETURN;
    END IF;
    wanted := CASE WHEN suffix % 2 = 0
                   THEN (SELECT m365.make_username('naam.voornaam', first_name, last_name) FROM soak.name WHERE n = k) || suffix
                   ELSE 'gekozen.' || (k * 5 + suffix % 5) END;
    PERFORM m365.set_username(target, wanted);
    IF split_part(old, '@', 1) <> wanted THEN
        INSERT INTO soak.done (what, n) VALUES ('username edited', 1);
    END IF;
EXCEPTION
    WHEN SQLSTATE 'M3U03' THEN
        INSERT INTO soak.done (what, n) VALUES ('already in use', 1);
    -- Retryable by the documented contract (an application retries them):
    -- counted apart, and reported by the test; anything else is unexpected.
    WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
        INSERT INTO soak.done (what, n) VALUES ('retryable ' || SQLSTATE, 1);
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
        INSERT INTO soak.unexpected (what, sqlstate, message) VALUES ('edit ' || wanted, SQLSTATE, SQLERRM || coalesce(' / ' || detail, ''));
END
$$;

-- Toggles sync: 20 usernames, or a whole location's list.
CREATE FUNCTION soak.toggle(pick int, location bigint, value boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    detail text;
    changed int;
BEGIN
    IF pick % 10 = 0 THEN
        changed := m365.set_location_sync(location, value);
    ELSE
        changed := m365.set_sync(ARRAY(SELECT u.id FROM m365.username AS u WHERE u.id >= pick ORDER BY u.id LIMIT 20), value);
    END IF;
    INSERT INTO soak.done (what, n) VALUES ('sync changed', changed);
EXCEPTION
    -- Retryable by the documented contract (an application retries them):
    -- counted apart, and reported by the test; anything else is unexpected.
    WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
        INSERT INTO soak.done (what, n) VALUES ('retryable ' || SQLSTATE, 1);
    WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
        INSERT INTO soak.unexpected (what, sqlstate, message) VALUES ('sync', SQLSTATE, SQLERRM || coalesce(' / ' || detail, ''));
END
$$;

-- The application and the job under their own roles, given their access
-- level in this database, as in production.
SELECT m365.grant_access('soak_app', 'app'), m365.grant_access('soak_admin', 'admin');
GRANT USAGE ON SCHEMA soak TO soak_app, soak_admin;
GRANT SELECT ON soak.name TO soak_app;
GRANT USAGE ON SEQUENCE soak.person_id TO soak_app;
GRANT INSERT ON soak.done, soak.unexpected TO soak_app, soak_admin;
