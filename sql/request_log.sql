-- The log: triggers append one row per person a statement touched; a run
-- decides with the one rule (m365.people_needing_username) and deletes exactly
-- the rows it read.
SET client_min_messages = warning;
TRUNCATE m365.configuration, m365.school, m365.student, m365.staff, m365.username_request RESTART IDENTITY CASCADE;
RESET client_min_messages;
INSERT INTO m365.configuration (id, name, time_zone) VALUES (601, 'log', 'Europe/Brussels');
INSERT INTO m365.school (id, name, configuration_id) VALUES (601, 'S1', 601);
INSERT INTO m365.location (id, school_id, name, configuration_id) VALUES (601, 601, 'L1', 601), (602, 601, 'L2', NULL);
INSERT INTO m365.student (id, first_name, last_name)
SELECT 600000 + i, 'Kind', 'Nummer' || i FROM generate_series(1, 60000) AS i;
-- 60,000 enrolments in one statement: 60,000 log rows, nothing else.
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 600000 + i, 600000 + i, 601, DATE '2026-09-01' FROM generate_series(1, 60000) AS i;
SELECT configuration_id, usernames, waiting FROM m365.status WHERE configuration_id = 601;
SELECT code FROM m365.diagnose_student(600001, 601);
-- The job commits per chunk of 50,000: two chunks.
CALL m365.generate_usernames();
SELECT configuration_id, usernames, waiting, failing FROM m365.status WHERE configuration_id = 601;
SELECT outcome, served, created, collisions FROM m365.job_run ORDER BY id DESC LIMIT 1;
-- Enrolling them again (a new school year) logs them again; the run makes nothing.
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT 700000 + i, 600000 + i, 601, DATE '2027-09-01' FROM generate_series(1, 60000) AS i;
SELECT m365.generate_usernames_in_transaction() AS made_again;
SELECT count(*) AS waiting FROM m365.username_request;

-- A statement that rolls back leaves no log row.
BEGIN;
INSERT INTO m365.student (id, first_name, last_name) VALUES (1, 'Rolled', 'Back');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (1, 1, 601, DATE '2026-09-01');
SELECT count(*) AS logged_inside FROM m365.username_request;
ROLLBACK;
SELECT count(*) AS logged_after FROM m365.username_request;

-- The rule, once: an enrolment that ended (an import of 2020) makes no
-- username and burns no name; a future starter gets one; a location without
-- a configuration gives none.
INSERT INTO m365.student (id, first_name, last_name) VALUES
    (11, 'Oud', 'Leerling'), (12, 'Nieuw', 'Leerling'), (13, 'Geen', 'Configuratie');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date, end_date) VALUES
    (11, 11, 601, DATE '2019-09-01', DATE '2020-06-30'),
    (12, 12, 601, m365.configuration_today(601) + 30, NULL),
    (13, 13, 602, DATE '2026-09-01', NULL);
SELECT m365.generate_usernames_in_transaction() AS made;
SELECT person_id, username FROM m365.username WHERE person_id IN (11, 12, 13) ORDER BY 1;
SELECT count(*) AS ledger_rows FROM m365.issued_username WHERE local_part = 'leerling.oud';
-- queue_missing_usernames uses the same rule: nobody is missing.
SELECT m365.queue_missing_usernames() AS logged;

-- A failure is kept with its reason; a corrected name appends to the log and
-- the next run makes the username, and the failure is gone.
INSERT INTO m365.student (id, first_name, last_name) VALUES (21, '🙂', '!!!');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (21, 21, 601, DATE '2026-09-01');
SELECT m365.generate_usernames_in_transaction() AS made;
SELECT person_id, attempts, reason FROM m365.username_failure;
SELECT code FROM m365.diagnose_student(21, 601);
UPDATE m365.student SET first_name = 'Ann', last_name = 'Smile' WHERE id = 21;
SELECT count(*) AS logged FROM m365.username_request WHERE person_id = 21;
SELECT m365.generate_usernames_in_transaction() AS made;
SELECT username FROM m365.username WHERE person_id = 21;
SELECT count(*) AS failures FROM m365.username_failure;

-- First come, first served: of two people with one name, the one logged
-- first gets it.
INSERT INTO m365.student (id, first_name, last_name) VALUES (32, 'Jan', 'Peeters'), (31, 'Jan', 'Peeters');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (32, 32, 601, DATE '2026-09-01');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (31, 31, 601, DATE '2026-09-01');
SELECT m365.generate_usernames_in_transaction() AS made;
SELECT person_id, username, base, suffix, format FROM m365.username WHERE person_id IN (31, 32) ORDER BY 1;

-- The job is a procedure that commits per chunk: on its own, not in a
-- transaction block.
BEGIN;
CALL m365.generate_usernames();
ROLLBACK;

-- Bad input: nobody, an unknown base, NULLs, a run that does not exist.
SELECT count(*) AS nobody FROM m365.people_needing_username(NULL, NULL);
SELECT m365.highest_suffix(601, 'nobody.here') AS no_suffix_yet, m365.highest_suffix(601, 'peeters.jan') AS highest;
SELECT m365.username_is_free(601, 'peeters.jan', NULL, NULL) AS taken_for_anyone,
       m365.username_is_free(601, 'peeters.jan', 'student', 32) AS free_for_its_holder,
       m365.username_is_free(NULL, 'x', NULL, NULL) AS null_configuration;
SELECT * FROM m365.generation_chunk(-1);
SELECT m365.generation_end(-1) AS ended_nothing;
