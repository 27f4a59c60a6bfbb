-- Approved renames (issue 17, part 1): a correction of a person's official
-- names suggests a new username only when the names would now make another
-- base with the format that made theirs; a format change, a suffix, a name
-- typed by hand or a correction that makes the same base suggests nothing.
-- m365.apply_suggested_usernames answers per id with set_username's exact
-- Dutch texts; the old name stays its owner's. rename_policy
-- automatic_before_sync lets a name SDS never received follow by itself.
-- REPEATABLE READ, as the export's holder session (record_feed).
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT plan(35);
\ir lib/session.psql

INSERT INTO m365.configuration (id, name) VALUES (930101, 'renames'), (930102, 'renames automatic');
INSERT INTO m365.configuration (id, name, fallback_formats) VALUES (930103, 'renames fallback', '{voornaam.naam}');
INSERT INTO m365.school (id, name, configuration_id) VALUES (930103, 'RF', 930103);
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES (930103, 930103, 'RF1', 930103, 'leerling.rf.be');
INSERT INTO m365.student (id, first_name, last_name) VALUES (930131, 'Ward', 'Smets'), (930132, 'Ward', 'Smets');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (930131, 930131, 930103, CURRENT_DATE - 10), (930132, 930132, 930103, CURRENT_DATE - 10);
UPDATE m365.configuration SET rename_policy = 'automatic_before_sync' WHERE id = 930102;
INSERT INTO m365.school (id, name, configuration_id) VALUES (930101, 'R', 930101), (930102, 'RA', 930102);
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain)
VALUES (930101, 930101, 'R1', 930101, 'leerling.r.be'), (930102, 930102, 'RA1', 930102, 'leerling.ra.be');
INSERT INTO m365.student (id, first_name, last_name)
VALUES (930101, 'Jan', 'Peters'), (930102, 'An', 'Smet'), (930103, 'Lotte', 'Claes'), (930104, 'Lotte', 'Claes'),
       (930105, 'Els', 'Maes'), (930107, 'Mia', 'Vos'), (930108, 'Mie', 'Baert'), (930109, 'Piet', 'Janssens'), (930110, 'Tom', 'Hand'), (930111, 'Ann', 'Vosq'), (930112, 'Ann', 'Vosq'),
       (930121, 'Bram', 'Wuyts'), (930122, 'Noor', 'Dewitte'), (930123, 'Lien', 'Aerts');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date)
SELECT s.id, s.id, CASE WHEN s.id >= 930121 THEN 930102 ELSE 930101 END, CURRENT_DATE - 10
  FROM m365.student AS s WHERE s.id BETWEEN 930101 AND 930123;
SELECT m365.generate_usernames_in_transaction();
CREATE TEMP TABLE u AS SELECT person_id, id FROM m365.username WHERE configuration_id IN (930101, 930102, 930103);
CREATE FUNCTION pg_temp.uid(person bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT id FROM u WHERE person_id = person $$;
CREATE FUNCTION pg_temp.name_of(person bigint) RETURNS text LANGUAGE sql AS
$$ SELECT username FROM m365.username WHERE person_kind = 'student' AND person_id = person $$;
CREATE FUNCTION pg_temp.suggested(person bigint) RETURNS text LANGUAGE sql AS
$$ SELECT suggested_username FROM m365.student_usernames(930101) WHERE student_id = person
   UNION ALL SELECT suggested_username FROM m365.student_usernames(930102) WHERE student_id = person
   UNION ALL SELECT suggested_username FROM m365.student_usernames(930103) WHERE student_id = person $$;

SELECT is((SELECT count(*) FROM m365.username WHERE configuration_id IN (930101, 930102, 930103) AND names_digest IS NULL), 0::bigint,
          'the job keeps a digest of the names it made each username from');
SELECT is(pg_temp.name_of(930104), 'claes.lotte2', 'two pupils of one name: the second has a suffix');
SELECT is_empty($$ SELECT * FROM m365.student_usernames(930101) WHERE suggested_username IS NOT NULL $$,
                'nothing is suggested while the names are as they were');

-- What never suggests anything.
UPDATE m365.configuration SET username_format = 'voornaam.naam' WHERE id = 930101;
SELECT is_empty($$ SELECT * FROM m365.student_usernames(930101) WHERE suggested_username IS NOT NULL $$,
                'a change of the configuration''s format suggests nothing (the format that made the name counts)');
UPDATE m365.configuration SET username_format = 'naam.voornaam' WHERE id = 930101;
UPDATE m365.student SET first_name = 'ELS', last_name = ' maes ' WHERE id = 930105;
SELECT is(pg_temp.suggested(930105), NULL, 'a correction that makes the same base suggests nothing');
SELECT m365.set_username(pg_temp.uid(930102), 'a.smet.typed');
UPDATE m365.student SET first_name = 'Anna' WHERE id = 930102;
SELECT is(pg_temp.suggested(930102), NULL, 'a name typed by hand is never suggested over');
UPDATE m365.username SET username = 'tom.the.hand' WHERE id = pg_temp.uid(930110);
UPDATE m365.student SET last_name = 'Handt' WHERE id = 930110;
SELECT is(pg_temp.suggested(930110), NULL, 'nor one written by a direct UPDATE (red-team find: its row kept the format)');
UPDATE m365.student SET first_name = 'Ann2' WHERE id IN (SELECT person_id FROM m365.username WHERE configuration_id = 930101 AND username = 'vosq.ann2');
SELECT is((SELECT count(*) FROM m365.student_usernames(930101) WHERE student_id IN (930111, 930112) AND suggested_username IS NOT NULL), 0::bigint,
          'a correction that makes the very name the person has suggests nothing (red-team find: vosq.ann2 for Ann2 Vosq)');

-- Corrections that make another base.
UPDATE m365.student SET last_name = 'Peeters' WHERE id = 930101;
UPDATE m365.student SET last_name = 'Claesen' WHERE id = 930104;
SELECT is(pg_temp.suggested(930101), 'peeters.jan', 'a corrected last name suggests the base the names make now');
SELECT is(pg_temp.suggested(930104), 'claesen.lotte', 'a suffixed name: the corrected base, free, without the old suffix');
SELECT is(pg_temp.suggested(930103), NULL, 'the other Lotte Claes keeps hers: nothing suggested');
UPDATE m365.student SET last_name = 'Smits' WHERE id IN (SELECT person_id FROM m365.username WHERE configuration_id = 930103 AND username = 'ward.smets');
SELECT is((SELECT string_agg(username || ' ' || coalesce(suggested_username, '-'), ', ' ORDER BY username) FROM m365.student_usernames(930103)),
          'smets.ward -, ward.smets ward.smits', 'a name made by a fallback format is suggested with that format');
SELECT is((SELECT suggested_username FROM m365.staff_usernames(930101) LIMIT 1), NULL, 'the staff list has the column too');
-- Names with no word in common: maybe someone else under the same id (the
-- username is held out of the feed); a rename would hand them the account.
UPDATE m365.student SET first_name = 'Karim', last_name = 'Benali' WHERE id = 930109;
SELECT is((SELECT count(*) FROM m365.username_hold WHERE username_id = pg_temp.uid(930109)), 1::bigint,
          'all names changed: the username is held (maybe someone else under the same id)');
SELECT is(pg_temp.suggested(930109), NULL, 'and nothing is suggested for it');
UPDATE m365.configuration SET rename_policy = 'never' WHERE id = 930101;
SELECT is(pg_temp.suggested(930101), NULL, 'rename_policy never: nothing suggested');
UPDATE m365.configuration SET rename_policy = 'suggest' WHERE id = 930101;
SELECT throws_ok($$ UPDATE m365.configuration SET rename_policy = 'sometimes' WHERE id = 930101 $$, '23514', NULL,
                 'an unknown rename policy is refused');

-- Applying, as the application: per id done or set_username's message.
SELECT is(pg_temp.as_role('m365_app', $$SELECT m365.apply_suggested_usernames(ARRAY[1])$$), 'ok', 'm365_app may apply suggestions');
SELECT is(pg_temp.as_role('m365_app', $$SELECT * FROM m365.name_suggestion(1)$$), '42501', 'but not call the owner''s parts');
SELECT is(pg_temp.as_role('m365_app', $$SELECT * FROM m365.rename_to_suggestions(ARRAY[1])$$), '42501', 'nor rename without the checks');
SELECT results_eq($$ SELECT username_id, outcome FROM m365.apply_suggested_usernames(ARRAY[pg_temp.uid(930101), pg_temp.uid(930104), 930199999, pg_temp.uid(930105)]) ORDER BY 1 $$,
                  $$ VALUES (930199999::bigint, 'De gebruikersnaam '''' is niet opgeslagen: onbekende gebruikersnaam (id 930199999)'),
                            (pg_temp.uid(930101), 'done'), (pg_temp.uid(930104), 'done'),
                            (pg_temp.uid(930105), 'De gebruikersnaam ''maes.els'' is niet opgeslagen: er is geen voorgestelde gebruikersnaam (de officiële namen zijn niet verbeterd, of de gebruikersnaam is met de hand getypt)')
                     ORDER BY 1 $$,
                  'apply answers per id: done, an unknown id, no suggestion (the procedure''s Dutch texts)');
SELECT is(pg_temp.name_of(930101) || ' ' || pg_temp.name_of(930104), 'peeters.jan claesen.lotte', 'the two are renamed');
SELECT is((SELECT count(*) FROM m365.apply_suggested_usernames(NULL)) + (SELECT count(*) FROM m365.apply_suggested_usernames('{}'))
          + (SELECT count(*) FROM m365.apply_suggested_usernames(ARRAY[NULL::bigint])), 0::bigint, 'NULL, empty or NULL ids: no answer, nothing renamed');
SELECT is((SELECT array_agg(outcome) FROM m365.apply_suggested_usernames(ARRAY[pg_temp.uid(930103), pg_temp.uid(930103)])),
          ARRAY['De gebruikersnaam ''claes.lotte'' is niet opgeslagen: er is geen voorgestelde gebruikersnaam (de officiële namen zijn niet verbeterd, of de gebruikersnaam is met de hand getypt)'],
          'an id given twice answers once');
SELECT is(m365.suggested_username(NULL), NULL, 'suggested_username(NULL) is NULL');
SELECT ok(EXISTS (SELECT FROM m365.username_history WHERE username_id = pg_temp.uid(930101) AND field = 'username'
                     AND old_value = 'peters.jan' AND new_value = 'peeters.jan' AND changed_by = session_user),
          'the history has the rename and who applied it');
-- The old name stays its owner's: nobody else gets it, they may take it back.
INSERT INTO m365.student (id, first_name, last_name) VALUES (930106, 'Jan', 'Peters');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES (930106, 930106, 930101, CURRENT_DATE);
SELECT m365.generate_usernames_in_transaction();
SELECT is(pg_temp.name_of(930106), 'peters.jan2', 'a new Jan Peters does not get the renamed pupil''s old name');
SELECT is((m365.set_username(pg_temp.uid(930101), 'peters.jan')).username, 'peters.jan', 'the renamed pupil may take it back');

-- Two suggestions of one name in one call: the lower id gets it.
UPDATE m365.student SET last_name = 'Baert' WHERE id = 930107;
UPDATE m365.student SET first_name = 'Mia' WHERE id = 930108;
SELECT results_eq($$ SELECT outcome FROM m365.apply_suggested_usernames(ARRAY[pg_temp.uid(930108), pg_temp.uid(930107)]) ORDER BY username_id $$,
                  ARRAY['done', 'Gebruikersnaam fout ''baert.mia'' is al in gebruik. Pas de gebruikersnaam aan.'],
                  'two suggestions of one name in one call: the first id renamed, the other "in use"');
SELECT is((SELECT string_agg(CASE WHEN username = 'baert.mia' THEN 'renamed' WHEN username IN ('vos.mia', 'baert.mie') THEN 'kept' END
                             || ' ' || coalesce(suggested_username, '-'), ', ' ORDER BY username = 'baert.mia' DESC)
             FROM m365.student_usernames(930101) WHERE student_id IN (930107, 930108)),
          'renamed -, kept baert.mia2', 'the other keeps its name, and its suggestion is then the next free one');

-- automatic_before_sync: a name SDS never received follows at the next run.
UPDATE m365.student SET last_name = 'Wuytack' WHERE id = 930121;
SELECT m365.generate_usernames_in_transaction();
SELECT is(pg_temp.name_of(930121), 'wuytack.bram', 'automatic_before_sync: a name never in a feed follows the correction at the job''s run');
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = 930102;
SELECT lives_ok($$ SELECT m365_sds.record_feed('/srv/sds/renames-auto', 930102) $$, 'a feed of that configuration is recorded');
UPDATE m365.student SET last_name = 'Dewit' WHERE id = 930122;
SELECT m365.set_sync(array_agg(id), false) FROM m365.username WHERE configuration_id = 930102;
SELECT m365.generate_usernames_in_transaction();
SELECT is(pg_temp.name_of(930122) || ' / ' || pg_temp.suggested(930122), 'dewitte.noor / dewit.noor',
          'once in a feed SDS received, a name is only suggested (sync turned off since does not count as never)');
SELECT m365.set_sync(array_agg(id), true) FROM m365.username WHERE configuration_id = 930102;
-- Received by SDS is by person: a username deleted and given back is the
-- same account (a red-team find: the new row lost the mark).
DELETE FROM m365.username WHERE configuration_id = 930102 AND person_id = 930123;
SELECT m365.queue_missing_usernames();
SELECT m365.generate_usernames_in_transaction();
UPDATE m365.student SET last_name = 'Aertssen' WHERE id = 930123;
SELECT m365.generate_usernames_in_transaction();
SELECT is(coalesce(pg_temp.name_of(930123), '(none)') || ' / ' || coalesce(pg_temp.suggested(930123), '(none)'), 'aerts.lien / aertssen.lien',
          'a username deleted and given back after SDS received it is not renamed by itself, only suggested');
SELECT m365.apply_suggested_usernames(ARRAY[pg_temp.uid(930122)]);
SELECT is((SELECT change || ' ' || username || ' -> ' || new_username FROM m365.pending_sds_changes(930102) WHERE user_sourced_id = 'student-930122'),
          'user renamed dewitte.noor@leerling.ra.be -> dewit.noor@leerling.ra.be',
          'an applied rename of a name SDS received is a pending change (the brake counts it)');

SELECT * FROM finish();
ROLLBACK;
