-- The administration API: lists, edits, sync flags, history, messages,
-- diagnostics and the format preview.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
TRUNCATE m365.configuration, m365.school, m365.student, m365.staff, m365.username_request RESTART IDENTITY CASCADE;
RESET client_min_messages;
SET datestyle = ISO;

INSERT INTO m365.configuration (name, username_format, accepted_domains)
VALUES ('Noord', 'naam.voornaam', '{sintjan.be,leerling.sintjan.be,andere.be}'), ('Zonder domeinen', 'voornaam.naam', '{}');
INSERT INTO m365.school (id, name, configuration_id, staff_domain)
VALUES (1, 'Sint-Jan', 1, 'sintjan.be'), (2, 'Los', NULL, NULL), (3, 'Kaal', 2, NULL);
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (10, 1, 'Campus A', 1, 'leerling.sintjan.be'), (11, 1, 'Campus B', 1, NULL), (20, 2, 'Los', NULL, NULL),
       (30, 3, 'Kaal', 2, NULL);
INSERT INTO m365.reserved_username (configuration_id, username) VALUES (1, 'directie');
INSERT INTO m365.student (id, first_name, last_name) VALUES
    (1, 'Jan', 'Peeters'),      -- all year
    (2, 'An', 'Maes'),          -- starts 1 September 2027
    (3, 'Piet', 'Wouters'),     -- ended 30 June 2027
    (4, 'Lotte', 'Claes'),      -- starts 15 January 2027
    (5, 'Emma', 'Jacobs'),      -- ended 31 March 2027
    (6, 'Noah', 'Janssens'),    -- Campus B, no domain
    (7, 'Mila', 'Lemmens');     -- in a configuration without domains
INSERT INTO m365.enrolment (id, student_id, location_id, start_date, end_date) VALUES
    (1, 1, 10, '2026-09-01', NULL),
    (2, 2, 10, '2027-09-01', NULL),
    (3, 3, 10, '2026-09-01', '2027-06-30'),
    (4, 4, 10, '2027-01-15', NULL),
    (5, 5, 10, '2026-09-01', '2027-03-31'),
    (6, 6, 11, '2026-09-01', NULL),
    (7, 7, 30, '2026-09-01', NULL);
INSERT INTO m365.staff (id, first_name, last_name) VALUES (1, 'Els', 'Maes'), (2, 'Tom', 'Dierckx'), (3, 'Kris', 'Kaal');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (1, 1), (2, 1), (3, 3);
SELECT m365.generate_usernames_in_transaction();
UPDATE m365.staff SET active = false, inactive_since = '2026-11-15' WHERE id = 2;

-- Lists. Future enrolments from their start date; in August also those that
-- start on 1 September; in July also those that ended on 30 June.
SELECT d AS on_date, string_agg(l.username, ', ' ORDER BY l.username) AS listed
  FROM unnest(ARRAY['2026-10-01', '2027-01-14', '2027-01-15', '2027-03-31', '2027-04-01', '2027-06-30',
                    '2027-07-01', '2027-07-31', '2027-08-01', '2027-08-31', '2027-09-01']::date[]) AS d
  LEFT JOIN LATERAL m365.student_usernames(10, d) AS l ON true
 GROUP BY d ORDER BY d;
SELECT student_id, first_name, last_name, username, domain, sync FROM m365.student_usernames(10, '2027-05-01');
SELECT student_id, username, domain FROM m365.student_usernames(11, '2027-05-01');
SELECT count(*) AS no_configuration_no_rows FROM m365.student_usernames(20, '2027-05-01');
SELECT count(*) AS unknown_location_no_rows FROM m365.student_usernames(999, '2027-05-01');
-- Inactive staff stay until the end of the school year they left in.
SELECT d AS on_date, string_agg(l.username || CASE WHEN l.active THEN '' ELSE ' (inactive)' END, ', ' ORDER BY l.username) AS listed
  FROM unnest(ARRAY['2026-11-01', '2027-06-30', '2027-08-31', '2027-09-01']::date[]) AS d
  LEFT JOIN LATERAL m365.staff_usernames(1, d) AS l ON true
 GROUP BY d ORDER BY d;
SELECT staff_id, username, domain, active, inactive_since, sync FROM m365.staff_usernames(1, '2027-01-01');
SELECT count(*) AS no_configuration_no_rows FROM m365.staff_usernames(2, '2027-01-01');

-- Editing: the procedure's errors, each with its SQLSTATE.
SELECT id AS jan FROM m365.username WHERE person_kind = 'student' AND person_id = 1 \gset
SELECT id AS mila FROM m365.username WHERE person_kind = 'student' AND person_id = 7 \gset
SELECT id AS els FROM m365.username WHERE person_kind = 'staff' AND person_id = 1 \gset
SELECT m365.set_username(:jan, '   ');
\echo :LAST_ERROR_SQLSTATE
SELECT m365.set_username(:jan, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT m365.set_username(:jan, 'jan..peeters');
\echo :LAST_ERROR_SQLSTATE
SELECT m365.set_username(:jan, 'jan@sintjan');
SELECT m365.set_username(:jan, 'zoë');
SELECT m365.set_username(:jan, 'jan@elders.be');
SELECT m365.set_username(:jan, 'MAES.AN');
\echo :LAST_ERROR_SQLSTATE
SELECT m365.set_username(:jan, 'Directie');
SELECT m365.set_username(:mila, 'mila@andere.be');
\echo :LAST_ERROR_SQLSTATE
SELECT m365.set_username(999999, 'jan.peeters');
\echo :LAST_ERROR_SQLSTATE
-- The same errors in French and English.
SET m365.language = 'fr';
SELECT m365.set_username(:jan, '');
SELECT m365.set_username(:jan, 'jan..peeters');
SELECT m365.set_username(:jan, 'maes.an');
SELECT m365.set_username(:mila, 'mila@andere.be');
SELECT m365.set_username(999999, 'x');
SELECT m365.set_sync(NULL, true);
SET m365.language = 'en';
SELECT m365.set_username(:jan, '');
SELECT m365.set_username(:jan, 'jan..peeters');
SELECT m365.set_username(:jan, 'maes.an');
SELECT m365.set_username(:mila, 'mila@andere.be');
SELECT m365.set_username(999999, 'x');
SELECT m365.set_sync(NULL, true);
SET m365.language = 'xx';  -- unknown: Dutch
SELECT m365.set_username(:jan, '');
RESET m365.language;

-- Saved at once: trimmed, local part lower case, may deviate from the format,
-- a fixed domain for a student, and back to the old name (it is still his).
SET m365.app_user = 'secretariaat.anna';
SELECT username, local_part FROM m365.set_username(:jan, '  Jan.Peeters  ');
SELECT username, local_part FROM m365.set_username(:jan, 'jan.peeters@Andere.BE');
SELECT student_id, username, domain FROM m365.student_usernames(10, '2027-05-01') WHERE student_id = 1;
-- A name typed without a domain keeps the one the username has; removing it
-- is an explicit choice (0.2.0 dropped it silently).
SELECT username FROM m365.set_username(:jan, 'peeters.jan');
SELECT username FROM m365.set_username(:jan, 'peeters.jan', keep_domain => false);
SELECT username FROM m365.set_username(:els, 'els.maes@sintjan.be');
RESET m365.app_user;

-- Sync flags: per row and in bulk, counted, audited.
SELECT m365.set_sync(ARRAY[:jan, :els]::bigint[], true) AS changed;
SELECT m365.set_sync(ARRAY[:jan]::bigint[], true) AS changed_again;
SELECT m365.set_sync(ARRAY[:jan, 424242]::bigint[], false);
\echo :LAST_ERROR_SQLSTATE
SELECT m365.set_location_sync(10, true, 'CLAES', '2027-05-01') AS filtered;
SELECT m365.set_location_sync(10, true, NULL, '2027-05-01') AS whole_location;
SELECT m365.set_school_sync(1, false, NULL, '2027-01-01') AS whole_school;
SELECT username, sync FROM m365.student_usernames(10, '2027-05-01');
SELECT field, old_value, new_value, app_user, changed_by = session_user AS by_session_user
  FROM m365.username_history WHERE username_id = :jan ORDER BY id;
SELECT count(*) AS history_rows FROM m365.username_history;

-- Diagnostics: the reasons that apply.
SELECT * FROM m365.diagnose_student(1, 10, '2027-05-01');
SELECT * FROM m365.diagnose_student(2, 10, '2027-05-01');
SELECT * FROM m365.diagnose_student(4, 10, '2027-01-10');
SELECT * FROM m365.diagnose_student(5, 10, '2027-05-01');
SELECT * FROM m365.diagnose_student(1, 11, '2027-05-01');
SELECT * FROM m365.diagnose_student(6, 11, '2027-05-01');
SELECT * FROM m365.diagnose_student(1, 20, '2027-05-01');
INSERT INTO m365.student (id, first_name, last_name) VALUES (8, '😀', '🎉'), (9, 'Nieuw', 'Kind');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (8, 8, 10, '2026-09-01');
SELECT m365.generate_usernames_in_transaction();
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (9, 9, 10, '2026-09-01');
SELECT code, message FROM m365.diagnose_student(8, 10, '2027-05-01');
SELECT code, left(message, 54) AS message FROM m365.diagnose_student(9, 10, '2027-05-01');
SET m365.language = 'en';
SELECT * FROM m365.diagnose_staff(2, 1, '2027-01-01');
SELECT * FROM m365.diagnose_staff(2, 1, '2027-09-01');
SELECT * FROM m365.diagnose_staff(1, 1, '2027-01-01');
SELECT * FROM m365.diagnose_staff(1, 3, '2027-01-01');
SELECT * FROM m365.diagnose_staff(3, 3, '2027-01-01');
SELECT * FROM m365.diagnose_staff(1, 2, '2027-01-01');
RESET m365.language;

-- Preview of a format change: nothing written.
SELECT md5(string_agg(u::text, '|' ORDER BY id)) AS before FROM m365.username AS u \gset
SELECT person_kind, person_id, current_username, preview_username, clash FROM m365.preview_format(1, 'v.naam');
SELECT person_kind, person_id, current_username, preview_username, clash FROM m365.preview_format(1, 'n');
INSERT INTO m365.reserved_username (configuration_id, username) VALUES (1, 'e.jacobs');
SELECT person_id, preview_username, clash FROM m365.preview_format(1, 'v.naam') WHERE clash IS NOT NULL;
-- The current format: everyone keeps their own name, no clash.
SELECT count(*) FILTER (WHERE clash IS NOT NULL) AS clashes FROM m365.preview_format(1, 'naam.voornaam');
SELECT * FROM m365.preview_format(1, 'v.achternaam');
\echo :LAST_ERROR_SQLSTATE
SELECT md5(string_agg(u::text, '|' ORDER BY id)) = :'before' AS nothing_written FROM m365.username AS u;

-- Editing a staff username keeps the school domain (issue 14: 0.2.0 stored
-- "leaves.later" without it, and the next feed left the teacher out).
INSERT INTO m365.staff (id, first_name, last_name) VALUES (40, 'Leaves', 'Later');
INSERT INTO m365.staff_school (staff_id, school_id) VALUES (40, 1);
SELECT m365.generate_usernames_in_transaction() >= 1 AS made;
SELECT id AS later FROM m365.username WHERE person_kind = 'staff' AND person_id = 40 \gset
SELECT username FROM m365.username WHERE id = :later;
SELECT m365.set_sync(ARRAY[:later]::bigint[], true) AS synced;
SELECT username FROM m365.set_username(:later, 'Leaves.Later');
-- Another accepted domain is typed; the domain removed explicitly: saved, and
-- the answer warns that SDS leaves the synced teacher out (nl, then en).
SELECT username FROM m365.set_username(:later, 'leaves.later@andere.be');
SELECT username FROM m365.set_username(:later, 'leaves.later', keep_domain => false);
SET m365.language = 'en';
SELECT username FROM m365.set_username(:later, 'l.later', keep_domain => false);
RESET m365.language;
-- A student without a fixed domain whose location has one: no warning.
SELECT m365.set_sync(ARRAY[:jan]::bigint[], true) AS synced;
SELECT username FROM m365.set_username(:jan, 'jan.p');

-- Domains (issue 14, point 6): lower-cased on input, whatever the collation;
-- typed only for a person whose own location or school sets one; accepted
-- when among the configuration's accepted_domains, or by default the domains
-- of its locations and schools (gmail.com never); fixed domains no longer
-- accepted are reported, not changed.
INSERT INTO m365.configuration (id, name) VALUES (50, 'Domeinen');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES (50, 'Hoofdletters', 50, 'Staff.ISTANBUL.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (50, 50, 'Met domein', 50, 'Leerling.Istanbul.BE'), (51, 50, 'Zonder domein', 50, NULL);
UPDATE m365.configuration SET accepted_domains = '{Andere.BE, INFO.be}' WHERE id = 2;
INSERT INTO m365.reserved_username (configuration_id, username) VALUES (50, 'Beheer@Staff.Istanbul.BE');
SELECT id, staff_domain FROM m365.school WHERE id = 50;
SELECT id, student_domain FROM m365.location WHERE id IN (50, 51) ORDER BY id;
SELECT accepted_domains FROM m365.configuration WHERE id = 2;
SELECT username, local_part FROM m365.reserved_username WHERE configuration_id = 50;
SELECT m365.lower_domain('ISTANBUL.BE' COLLATE "tr-TR-x-icu") AS turkish_collation;
SELECT d FROM m365.accepted_domains(50) AS d ORDER BY d;
INSERT INTO m365.student (id, first_name, last_name) VALUES (50, 'Ilse', 'Met'), (51, 'Ilse', 'Zonder');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (50, 50, 50, '2026-09-01'), (51, 51, 51, '2026-09-01');
SELECT m365.generate_usernames_in_transaction() AS made;
SELECT id AS met FROM m365.username WHERE person_kind = 'student' AND person_id = 50 \gset
SELECT id AS zonder FROM m365.username WHERE person_kind = 'student' AND person_id = 51 \gset
SET m365.language = 'en';
-- Not a domain of the configuration: refused, also in a configuration
-- without accepted_domains.
SELECT m365.set_username(:met, 'ilse.met@gmail.com');
SELECT m365.set_username(:met, 'ilse.met@school.local');
-- The own location's domain and the school's: taken, in lower case.
SELECT username FROM m365.set_username(:met, 'ilse.met@LEERLING.istanbul.be');
SELECT username FROM m365.set_username(:met, 'ilse.met@staff.istanbul.be');
-- Ilse Zonder's own location sets none: refused, though Ilse Met's has one.
SELECT m365.set_username(:zonder, 'ilse.zonder@leerling.istanbul.be');
RESET m365.language;
-- The school's domain changes: Ilse Met's fixed domain is reported, unchanged.
UPDATE m365.school SET staff_domain = 'personeel.istanbul.be' WHERE id = 50;
SELECT username_id = :met AS is_ilse, username, domain FROM m365.username_domain_not_accepted WHERE configuration_id = 50;
SELECT username FROM m365.username WHERE id = :met;

-- The diagnosis of a staff member whose domain was edited away names the
-- school's domain instead of blaming the school (issue 14, point 3).
SET m365.language = 'en';
SELECT code, message FROM m365.diagnose_staff(40, 1) WHERE code = 'no_domain';
RESET m365.language;
