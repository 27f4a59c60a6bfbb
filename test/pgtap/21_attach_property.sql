-- A property of attached sources (issue 15): after any mix of the
-- application's INSERT, UPDATE (keys too), DELETE, TRUNCATE, ON CONFLICT,
-- multi-row inserts and savepoints rolled back, the copy holds exactly the
-- rows it can take, every other row waits with its reason, and after a run
-- everyone who needs a username has one. Random with a fixed seed; rolled back.
BEGIN;
SELECT plan(6);

CREATE SCHEMA prop AUTHORIZATION m365_app;
SET LOCAL ROLE m365_app;
CREATE TABLE prop.vestiging (nr bigint PRIMARY KEY, school bigint NOT NULL, naam text NOT NULL);
CREATE TABLE prop.leerling (nr bigint PRIMARY KEY, voornaam text NOT NULL, naam text NOT NULL);
CREATE TABLE prop.inschrijving (nr bigint PRIMARY KEY, leerling bigint NOT NULL, vestiging bigint NOT NULL, van date NOT NULL, tot date);
RESET ROLE;
INSERT INTO m365.configuration (id, name, username_format) VALUES (960000, 'property', 'voornaam.naam');
INSERT INTO m365.school (id, name, configuration_id) VALUES (960000, 'School', 960000);
INSERT INTO prop.vestiging VALUES (960001, 960000, 'Noord'), (960002, 960000, 'Zuid');
SELECT m365.attach_source('location', 'prop.vestiging', '{"id": "nr", "school_id": "school", "name": "naam"}');
UPDATE m365.location SET configuration_id = 960000 WHERE id IN (960001, 960002);
SELECT m365.attach_source('student', 'prop.leerling', '{"id": "nr", "first_name": "voornaam", "last_name": "naam"}');
SELECT m365.attach_source('enrolment', 'prop.inschrijving',
                          '{"id": "nr", "student_id": "leerling", "location_id": "vestiging", "start_date": "van", "end_date": "tot"}');

SELECT setseed(0.4242);
SET LOCAL ROLE m365_app;
DO $$
DECLARE
    names text[] := '{Jan,An,Mia,Noor,Ruben,"  ",Émile,Zoë,Lars}';
    i integer;
    r double precision;
    k bigint;
    op text;
BEGIN
    FOR i IN 1..400 LOOP
        r := random();
        k := 960100 + floor(random() * 40)::bigint;
        op := CASE WHEN r < 0.22 THEN 'insert student' WHEN r < 0.34 THEN 'update student'
                   WHEN r < 0.40 THEN 'rekey student' WHEN r < 0.47 THEN 'delete student'
                   WHEN r < 0.70 THEN 'insert enrolment' WHEN r < 0.80 THEN 'update enrolment'
                   WHEN r < 0.86 THEN 'delete enrolment' WHEN r < 0.93 THEN 'savepoint'
                   WHEN r < 0.995 THEN 'many' ELSE 'truncate' END;
        BEGIN
            IF op = 'insert student' THEN
                INSERT INTO prop.leerling VALUES (k, names[1 + floor(random() * 9)::int], names[1 + floor(random() * 9)::int])
                ON CONFLICT (nr) DO UPDATE SET naam = excluded.naam;
            ELSIF op = 'update student' THEN
                UPDATE prop.leerling SET voornaam = names[1 + floor(random() * 9)::int] WHERE nr = k;
            ELSIF op = 'rekey student' THEN
                UPDATE prop.leerling SET nr = 960100 + floor(random() * 40)::bigint WHERE nr = k;
            ELSIF op = 'delete student' THEN
                DELETE FROM prop.leerling WHERE nr = k;
            ELSIF op = 'insert enrolment' THEN
                INSERT INTO prop.inschrijving
                VALUES (k + 1000, 960100 + floor(random() * 40)::bigint, 960001 + floor(random() * 2)::bigint,
                        CURRENT_DATE - floor(random() * 10)::int,
                        CASE WHEN random() < 0.2 THEN CURRENT_DATE - 20 WHEN random() < 0.3 THEN CURRENT_DATE + 30 END)
                ON CONFLICT (nr) DO NOTHING;
            ELSIF op = 'update enrolment' THEN
                UPDATE prop.inschrijving SET leerling = 960100 + floor(random() * 40)::bigint, tot = NULL WHERE nr = k + 1000;
            ELSIF op = 'delete enrolment' THEN
                DELETE FROM prop.inschrijving WHERE nr = k + 1000;
            ELSIF op = 'savepoint' THEN
                -- (A block with an exception handler is a savepoint; the
                -- raise rolls back to it.)
                BEGIN
                    DELETE FROM prop.leerling WHERE nr BETWEEN k AND k + 5;
                    INSERT INTO prop.inschrijving VALUES (k + 2000, k, 960001, CURRENT_DATE, NULL) ON CONFLICT DO NOTHING;
                    RAISE EXCEPTION 'rolled back' USING ERRCODE = 'P0002';
                EXCEPTION WHEN no_data_found THEN NULL;
                END;
            ELSIF op = 'many' THEN
                INSERT INTO prop.leerling
                SELECT 960100 + g, names[1 + (g % 9)], names[1 + ((g * 7) % 9)] FROM generate_series(0, 39) AS g
                 WHERE random() < 0.3
                ON CONFLICT (nr) DO NOTHING;
            ELSE
                TRUNCATE prop.inschrijving;
            END IF;
        EXCEPTION WHEN unique_violation THEN NULL;  -- a rekey onto a taken key: the application's own error
        END;
    END LOOP;
END
$$;
RESET ROLE;

SELECT cmp_ok((SELECT count(*) FROM prop.leerling), '>', 10::bigint, 'the application ended with students');
SELECT set_eq($$SELECT id, first_name, last_name FROM m365.student WHERE id BETWEEN 960100 AND 960199$$,
              $$SELECT nr, voornaam, naam FROM prop.leerling WHERE btrim(voornaam) <> '' OR btrim(naam) <> ''$$,
              'the copy of the students holds exactly the source''s students that have a name');
SELECT set_eq($$SELECT id, student_id, location_id, start_date, end_date FROM m365.enrolment WHERE id BETWEEN 960100 AND 969999$$,
              $$SELECT i.nr, i.leerling, i.vestiging, i.van, i.tot FROM prop.inschrijving AS i
                 WHERE (i.tot IS NULL OR i.tot >= i.van)
                   AND EXISTS (SELECT FROM prop.leerling AS l WHERE l.nr = i.leerling AND (btrim(l.voornaam) <> '' OR btrim(l.naam) <> ''))$$,
              'the copy of the enrolments holds exactly those with a valid student and an end not before the start');
SELECT set_eq($$SELECT entity, key[1] FROM m365.source_drift() WHERE key[1] BETWEEN 960100 AND 969999$$,
              $$SELECT 'student', nr FROM prop.leerling WHERE btrim(voornaam) = '' AND btrim(naam) = ''
                UNION ALL
                SELECT 'enrolment', i.nr FROM prop.inschrijving AS i
                 WHERE NOT ((i.tot IS NULL OR i.tot >= i.van)
                            AND EXISTS (SELECT FROM prop.leerling AS l WHERE l.nr = i.leerling AND (btrim(l.voornaam) <> '' OR btrim(l.naam) <> '')))$$,
              'every other row waits, and nothing else disagrees');
SELECT is((SELECT count(*) FROM m365.source_waiting WHERE reason = '' OR reason IS NULL), 0::bigint, 'each with its reason');

SELECT m365.generate_usernames_in_transaction() IS NOT NULL AS ran;
SELECT is_empty($$SELECT s.id FROM m365.student AS s
                   WHERE s.id BETWEEN 960100 AND 960199
                     AND EXISTS (SELECT FROM m365.enrolment AS e WHERE e.student_id = s.id AND (e.end_date IS NULL OR e.end_date >= CURRENT_DATE))
                     AND NOT EXISTS (SELECT FROM m365.username AS u WHERE u.configuration_id = 960000 AND u.person_kind = 'student' AND u.person_id = s.id)$$,
                'after a run, every attached student with an enrolment that has not ended has a username');

SELECT * FROM finish();
ROLLBACK;
