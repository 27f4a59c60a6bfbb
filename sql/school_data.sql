-- School data refuses bad rows with a clear message.
\set VERBOSITY terse
SET client_min_messages = warning;
TRUNCATE m365.configuration, m365.school, m365.student, m365.staff, m365.username_request RESTART IDENTITY CASCADE;
RESET client_min_messages;
SET datestyle = ISO;

INSERT INTO m365.configuration (name) VALUES ('Scholengroep');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (1, 'Sint-Jan', 1, 'sintjan.be');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (2, 'Bad domain', 1, 'sintjan');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (3, ' ', 1, NULL);
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (4, 'No such configuration', 99, NULL);
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (10, 1, 'Campus A', 1, 'leerling.sintjan.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (11, 1, 'Campus B', NULL, NULL);
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (12, 1, 'Campus C', 1, 'leerling@sintjan.be');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.location (id, school_id, name) VALUES (13, 9, 'No such school');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.location (id, school_id, name) VALUES (14, 1, NULL);
\echo :LAST_ERROR_SQLSTATE

INSERT INTO m365.class (id, location_id, name, school_year) VALUES (100, 10, '1A', 2026), (101, 11, '1B', 2026);
INSERT INTO m365.class (id, location_id, name, school_year) VALUES (102, 10, '1C', 26);
\echo :LAST_ERROR_SQLSTATE

INSERT INTO m365.student (id, first_name, last_name) VALUES (1, 'Jan', 'Peeters'), (2, '', 'Madonna');
INSERT INTO m365.student (id, first_name, last_name) VALUES (3, ' ', '');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.student (id, first_name, last_name) VALUES (4, 'Jan', NULL);
\echo :LAST_ERROR_SQLSTATE

INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date, end_date) VALUES (1, 1, 10, 100, '2026-09-01', '2027-06-30');
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date, end_date) VALUES (2, 1, 10, NULL, '2026-09-01', '2026-08-31');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date, end_date) VALUES (3, 1, 10, 101, '2026-09-01', NULL);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date, end_date) VALUES (4, 99, 10, NULL, '2026-09-01', NULL);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.enrolment (id, student_id, location_id, class_id, start_date, end_date) VALUES (5, 1, 10, NULL, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE

-- Staff: inactive_since follows active.
INSERT INTO m365.staff (id, first_name, last_name) VALUES (1, 'Els', 'Maes');
INSERT INTO m365.staff (id, first_name, last_name, active, inactive_since) VALUES (2, 'Piet', 'Wouters', false, '2026-10-01');
SELECT id, active, inactive_since FROM m365.staff ORDER BY id;
UPDATE m365.staff SET active = false WHERE id = 1;
-- Today where the staff member works (no school yet: Europe/Brussels), not in the session's TimeZone.
SELECT id, active, inactive_since = m365.configuration_today(NULL) AS inactive_since_today FROM m365.staff WHERE id = 1;
UPDATE m365.staff SET active = true WHERE id = 1;
SELECT id, active, inactive_since FROM m365.staff WHERE id = 1;
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (1, 1), (1, 1);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.class_teacher (class_id, staff_id) VALUES (100, 1), (100, 9);
\echo :LAST_ERROR_SQLSTATE
