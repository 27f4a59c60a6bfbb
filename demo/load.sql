-- Demo data, the way a school application that exists already has it: its
-- own tables with Dutch names (schema app, owned by the application's role),
-- 2,000 students and 60 staff members from data/persons.csv. The extension
-- is attached to them (docs/attach.md); from then on the application writes
-- only its own tables. Run as the extension's owner.
\set ON_ERROR_STOP on

-- 1. The application's schema, as it was before the extension came.
CREATE SCHEMA app AUTHORIZATION demo_school_app;
SET ROLE demo_school_app;
CREATE TABLE app.school (
    school_nr    bigint PRIMARY KEY,
    naam         text NOT NULL
);
CREATE TABLE app.vestiging (
    vestiging_nr bigint PRIMARY KEY,
    school_nr    bigint NOT NULL REFERENCES app.school,
    naam         text NOT NULL
);
CREATE TABLE app.klas (
    klas_nr      bigint PRIMARY KEY,
    vestiging_nr bigint NOT NULL REFERENCES app.vestiging,
    klasnaam     text NOT NULL,
    schooljaar   integer NOT NULL
);
CREATE TABLE app.leerling (
    leerling_nr  bigint PRIMARY KEY,
    voornaam     text NOT NULL,
    familienaam  text NOT NULL
);
-- An open enrolment ends on 9999-12-31 in this application: a stored
-- generated column gives the extension NULL instead.
CREATE TABLE app.inschrijving (
    inschrijving_nr bigint PRIMARY KEY,
    leerling_nr  bigint NOT NULL REFERENCES app.leerling ON DELETE CASCADE,
    vestiging_nr bigint NOT NULL REFERENCES app.vestiging,
    klas_nr      bigint REFERENCES app.klas,
    begindatum   date NOT NULL,
    einddatum    date NOT NULL DEFAULT DATE '9999-12-31',
    einde        date GENERATED ALWAYS AS (CASE WHEN einddatum <> DATE '9999-12-31' THEN einddatum END) STORED
);
CREATE INDEX ON app.inschrijving (leerling_nr);
-- Active is 'J' or 'N' here: again a generated column for the extension.
CREATE TABLE app.personeel (
    personeelslid_nr bigint PRIMARY KEY,
    voornaam     text NOT NULL,
    familienaam  text NOT NULL,
    actief       char(1) NOT NULL DEFAULT 'J' CHECK (actief IN ('J', 'N')),
    is_actief    boolean GENERATED ALWAYS AS (actief = 'J') STORED
);
CREATE TABLE app.personeel_school (
    personeelslid_nr bigint REFERENCES app.personeel ON DELETE CASCADE,
    school_nr    bigint REFERENCES app.school,
    PRIMARY KEY (personeelslid_nr, school_nr)
);

-- The application's data: two schools, three locations, 2,000 students, 60 staff.
INSERT INTO app.school VALUES (1, 'Sint-Jozefscollege'), (2, 'Atheneum Noord');
INSERT INTO app.vestiging VALUES (11, 1, 'SJC Campus Centrum'), (12, 1, 'SJC Campus Zuid'), (21, 2, 'Atheneum Noord');
INSERT INTO app.klas SELECT 100 * v.vestiging_nr + c, v.vestiging_nr, c || 'A', 2026 FROM app.vestiging AS v, generate_series(1, 6) AS c;
CREATE TEMP TABLE person (n serial, first_name text, last_name text);
\copy person (first_name, last_name) FROM 'data/persons.csv' CSV HEADER
INSERT INTO app.leerling SELECT n, first_name, last_name FROM person WHERE n <= 2000;
INSERT INTO app.inschrijving (inschrijving_nr, leerling_nr, vestiging_nr, klas_nr, begindatum)
SELECT n, n, v, 100 * v + 1 + n % 6, DATE '2026-09-01'
  FROM person, LATERAL (SELECT (ARRAY[11, 12, 21])[1 + n % 3] AS v) AS l
 WHERE n <= 2000;
INSERT INTO app.personeel (personeelslid_nr, voornaam, familienaam) SELECT n, first_name, last_name FROM person WHERE n BETWEEN 2001 AND 2060;
INSERT INTO app.personeel_school SELECT n, 1 + n % 2 FROM person WHERE n BETWEEN 2001 AND 2060;
-- Five of them also teach in the other school: still one username each.
INSERT INTO app.personeel_school SELECT n, 2 - n % 2 FROM person WHERE n BETWEEN 2001 AND 2005;
RESET ROLE;

-- 2. The administrators' decisions: the school group's Microsoft 365
-- configuration, and the accounts that already exist in its tenant.
INSERT INTO m365.configuration (name, username_format, fallback_formats)
VALUES ('Scholengroep Demo', 'naam.voornaam', '{}');
INSERT INTO m365.reserved_username (configuration_id, username, note) VALUES
    (1, 'admin@sjc-demo.be', 'tenant administrator'),
    (1, 'peeters.lucas', 'account of a former student');

-- 3. Attach: each call checks the mapping, copies the rows and puts the
-- triggers on the application's table. Schools and locations first.
SELECT m365.attach_source('school', 'app.school', '{"id": "school_nr", "name": "naam"}');
SELECT m365.attach_source('location', 'app.vestiging', '{"id": "vestiging_nr", "school_id": "school_nr", "name": "naam"}');
-- Which tenant and which domain stay the administrators': set on the copy.
UPDATE m365.school SET configuration_id = 1, staff_domain = CASE id WHEN 1 THEN 'sjc-demo.be' END;
UPDATE m365.location SET configuration_id = 1,
       student_domain = CASE id WHEN 11 THEN 'leerling.sjc-demo.be' WHEN 21 THEN 'student.atheneum-demo.be' END;
SELECT m365.attach_source('class', 'app.klas', '{"id": "klas_nr", "location_id": "vestiging_nr", "name": "klasnaam", "school_year": "schooljaar"}');
SELECT m365.attach_source('student', 'app.leerling', '{"id": "leerling_nr", "first_name": "voornaam", "last_name": "familienaam"}');
SELECT m365.attach_source('enrolment', 'app.inschrijving',
       '{"id": "inschrijving_nr", "student_id": "leerling_nr", "location_id": "vestiging_nr", "class_id": "klas_nr", "start_date": "begindatum", "end_date": "einde"}');
SELECT m365.attach_source('staff', 'app.personeel', '{"id": "personeelslid_nr", "first_name": "voornaam", "last_name": "familienaam", "active": "is_actief"}');
SELECT m365.attach_source('staff_school', 'app.personeel_school', '{"staff_id": "personeelslid_nr", "school_id": "school_nr"}');
