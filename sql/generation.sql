-- From enrolment and staff rows to usernames: the log, the job, the rules.
\set VERBOSITY terse
SET client_min_messages = warning;
TRUNCATE m365.configuration, m365.school, m365.student, m365.staff, m365.username_request RESTART IDENTITY CASCADE;
RESET client_min_messages;
SET datestyle = ISO;

INSERT INTO m365.configuration (name, username_format, fallback_formats)
VALUES ('Noord', 'voornaam.naam', '{}'), ('Zuid', 'naam.voornaam', '{voornaam.naam,v.naam}');
INSERT INTO m365.school (id, name, configuration_id, staff_domain)
VALUES (1, 'Sint-Jan', 1, 'sintjan.be'), (2, 'Sint-Pieter', 1, NULL), (3, 'Zuidschool', 2, 'zuid.be'), (4, 'Los', NULL, NULL);
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (10, 1, 'Campus A', 1, 'leerling.sintjan.be'), (11, 2, 'Campus B', 1, NULL), (20, 3, 'Zuid', 2, NULL),
       (40, 4, 'Zonder configuratie', NULL, NULL);

-- Reserved, and issued before to someone who left: both count as taken.
INSERT INTO m365.reserved_username (configuration_id, username, note) VALUES (1, 'jan.peeters2', 'old account');
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (1, 'student', 999, 'jan.peeters3');
DELETE FROM m365.username WHERE person_id = 999;

INSERT INTO m365.student (id, first_name, last_name)
VALUES (1, 'Jan', 'Peeters'), (2, 'Jan', 'Peeters'), (3, 'Jan Karel', 'Peeters'), (4, '😀', '🎉'),
       (5, 'Zoë', 'D''Hondt'), (6, 'An', 'Maes'), (7, 'An', 'Maes'), (8, 'An', 'Maes'), (9, 'An', 'Maes'),
       (10, 'Дмитрий', 'Иванов');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
VALUES (1, 1, 10, '2026-09-01'), (2, 2, 10, '2026-09-01'), (3, 3, 11, '2026-09-01'), (4, 4, 10, '2026-09-01'),
       (5, 5, 40, '2026-09-01'), (6, 6, 20, '2026-09-01'), (7, 7, 20, '2026-09-01'), (8, 8, 20, '2026-09-01'),
       (9, 9, 20, '2026-09-01'), (10, 10, 10, '2026-09-01');
-- A second enrolment of the same student logs the student again (the job dedups).
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (11, 1, 11, '2026-09-01');

-- Staff: one username per configuration, the domain of the first school.
INSERT INTO m365.staff (id, first_name, last_name, active)
VALUES (1, 'Els', 'Maes', true), (2, 'Jan', 'Peeters', true), (3, 'Old', 'Timer', false), (4, 'Multi', 'Tenant', true),
       (5, 'Lotte', 'Claes', true);
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (1, 2);
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (1, 1), (2, 1), (3, 1), (4, 1), (4, 3), (5, 4);
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (2, 2);

SELECT person_kind, person_id, count(*) AS log_rows FROM m365.username_request GROUP BY 1, 2 ORDER BY 1, 2;

SELECT m365.generate_usernames_in_transaction() AS made;
SELECT count(*) AS still_logged FROM m365.username_request;

SELECT configuration_id, person_kind, person_id, username FROM m365.username ORDER BY 1, 2, 3;
-- Written once: how the job made each name is on its row; the ledger holds
-- only names that left their owner.
SELECT configuration_id, local_part, base, suffix, format FROM m365.username ORDER BY 1, 2;
SELECT configuration_id, local_part, person_kind, person_id, base, suffix FROM m365.issued_username ORDER BY 1, 2;
-- The student whose names yield nothing is a failure, with the reason.
SELECT configuration_id, person_kind, person_id, attempts, reason FROM m365.username_failure ORDER BY 1, 2, 3;
SELECT m365.generate_usernames_in_transaction() AS nothing_new;
-- Correcting the name logs the student again.
UPDATE m365.student SET first_name = 'Noah', last_name = 'Janssens' WHERE id = 4;
SELECT person_kind, person_id FROM m365.username_request;
SELECT m365.generate_usernames_in_transaction() AS corrected;
SELECT username FROM m365.username WHERE person_kind = 'student' AND person_id = 4;

-- More people with the same name later: the suffix continues above the highest.
INSERT INTO m365.student (id, first_name, last_name) VALUES (11, 'Jan', 'Peeters'), (12, 'JAN', 'PEETERS');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (12, 11, 10, '2027-09-01'), (13, 12, 11, '2026-09-01');
SELECT m365.generate_usernames_in_transaction();
SELECT person_id, username FROM m365.username WHERE person_id IN (11, 12) AND person_kind = 'student' ORDER BY 1;
SELECT m365.first_free_username(1, 'jan.peeters');
-- Where the next run's suffix search starts: the highest suffix in use or in the
-- ledger (a ledger row without suffix must not hide the ones in use).
SELECT m365.highest_suffix(1, 'jan.peeters');

-- Linking a location to a configuration later logs its students;
-- reactivating staff logs them.
UPDATE m365.location SET configuration_id = 2 WHERE id = 40;
UPDATE m365.staff SET active = true WHERE id = 3;
SELECT person_kind, person_id FROM m365.username_request ORDER BY 1, 2;
SELECT m365.generate_usernames_in_transaction();
SELECT configuration_id, person_kind, person_id, username FROM m365.username
 WHERE (person_kind, person_id) IN (('student', 5), ('staff', 3)) ORDER BY 1, 2, 3;

-- People who no longer need a username leave the log without one.
INSERT INTO m365.staff (id, first_name, last_name) VALUES (6, 'Kort', 'Verblijf');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (6, 1);
UPDATE m365.staff SET active = false WHERE id = 6;
SELECT m365.generate_usernames_in_transaction() AS for_inactive_staff;
SELECT count(*) AS logged FROM m365.username_request, m365.username_failure;

-- The ledger check runs for every write: the setting that let 0.2.0 skip it
-- (m365.ledger_written_by = this transaction's id) changes nothing.
BEGIN;
SELECT set_config('m365.ledger_written_by', txid_current()::text, true) IS NOT NULL AS set_as_0_2_0_did;
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (1, 'student', 777, 'jan.peeters3');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- The log can be rebuilt from the data (after a load with triggers off):
-- everyone who should have a username and has none.
DELETE FROM m365.username_request;
INSERT INTO m365.student (id, first_name, last_name) VALUES (40, 'Zonder', 'Wachtrij');
ALTER TABLE m365.enrolment DISABLE TRIGGER enrolment_request_insert;
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (40, 40, 10, '2026-09-01');
ALTER TABLE m365.enrolment ENABLE TRIGGER enrolment_request_insert;
SELECT count(*) AS logged_before FROM m365.username_request;
SELECT code FROM m365.diagnose_student(40, 10);
SELECT m365.queue_missing_usernames() AS logged;
SELECT person_kind, person_id FROM m365.username_request ORDER BY 1, 2;
SELECT m365.queue_missing_usernames() AS queued_again;
-- With no active staff member it still answers a count (0.2.0: NULL).
BEGIN;
UPDATE m365.staff SET active = false;
SELECT m365.queue_missing_usernames() IS NOT NULL AS a_count, m365.queue_missing_usernames() AS queued_without_staff;
ROLLBACK;
