-- The shell tests' school data, written straight into the extension's tables
-- (as every version since 0.1.0 takes it; the demo attaches an application's
-- tables instead): one school group, two schools, three locations, 2,000
-- students and 60 staff members from data/persons.csv.
\set ON_ERROR_STOP on
INSERT INTO m365.configuration (name, username_format, fallback_formats)
VALUES ('Scholengroep Demo', 'naam.voornaam', '{}');

INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES
    (1, 'Sint-Jozefscollege', 1, 'sjc-demo.be'),
    (2, 'Atheneum Noord', 1, NULL);
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES
    (11, 1, 'SJC Campus Centrum', 1, 'leerling.sjc-demo.be'),
    (12, 1, 'SJC Campus Zuid', 1, NULL),
    (21, 2, 'Atheneum Noord', 1, 'student.atheneum-demo.be');

-- Accounts that already exist in the tenant.
INSERT INTO m365.reserved_username (configuration_id, username, note) VALUES
    (1, 'admin@sjc-demo.be', 'tenant administrator'),
    (1, 'peeters.lucas', 'account of a former student');

CREATE TEMP TABLE person (n serial, first_name text, last_name text);
\copy person (first_name, last_name) FROM 'data/persons.csv' CSV HEADER

INSERT INTO m365.student (id, first_name, last_name)
SELECT n, first_name, last_name FROM person WHERE n <= 2000;
INSERT INTO m365.class (id, location_id, name, school_year)
SELECT 100 * l.id + c, l.id, c || 'A', 2026 FROM m365.location AS l, generate_series(1, 6) AS c;
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date)
SELECT n, n, l.id, 100 * l.id + 1 + n % 6, DATE '2026-09-01'
  FROM person
  JOIN m365.location AS l ON l.id = (ARRAY[11, 12, 21])[1 + n % 3]
 WHERE n <= 2000;

INSERT INTO m365.staff (id, first_name, last_name)
SELECT n, first_name, last_name FROM person WHERE n BETWEEN 2001 AND 2060;
INSERT INTO m365.staff_school (staff_id, school_id)
SELECT n, 1 + n % 2 FROM person WHERE n BETWEEN 2001 AND 2060;
-- Five of them also teach in the other school: still one username each.
INSERT INTO m365.staff_school (staff_id, school_id)
SELECT n, 2 - n % 2 FROM person WHERE n BETWEEN 2001 AND 2005;
