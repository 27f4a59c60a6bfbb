-- The username store: configurations, uniqueness, the issued-name ledger,
-- reserved names and the first free name.
-- Terse errors: the DETAIL of a constraint error shows the row, timestamps included.
\set VERBOSITY terse
SET client_min_messages = warning;
TRUNCATE m365.configuration RESTART IDENTITY CASCADE;
RESET client_min_messages;
SET datestyle = ISO;

-- Configurations validate their format and domains on write.
INSERT INTO m365.configuration (name, username_format) VALUES ('Scholengroep Noord', 'naam.voornaam')
RETURNING id AS noord, name, username_format, fallback_formats, accepted_domains \gset
SELECT :'name', :'username_format', :'fallback_formats', :'accepted_domains';
INSERT INTO m365.configuration (name, username_format) VALUES ('Bad format', 'naam.achternaam');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.configuration (name, fallback_formats) VALUES ('Bad fallback', '{voornaam.naam,x.y}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.configuration (name, fallback_formats) VALUES ('Null fallback', '{voornaam.naam,NULL}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.configuration (name, accepted_domains) VALUES ('Bad domain', '{school.be,school}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.configuration (name) VALUES ('  ');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.configuration (name) VALUES ('Scholengroep Noord');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.configuration (name, username_format, fallback_formats, accepted_domains)
VALUES ('Scholengroep Zuid', 'voornaam.naam', '{v.naam}', '{zuid.be,leerling.zuid.be}')
RETURNING id AS zuid \gset
SELECT name, username_format, fallback_formats, accepted_domains FROM m365.configuration ORDER BY name;
UPDATE m365.configuration SET username_format = 'voornaam' || '.' || 'x' WHERE id = :zuid;
\echo :LAST_ERROR_SQLSTATE

-- Usernames: valid, one per person, unique per configuration whatever the case.
INSERT INTO m365.username (configuration_id, person_kind, person_id, username)
VALUES (:noord, 'student', 1, 'peeters.jan'), (:noord, 'student', 2, 'janssens.an'),
       (:noord, 'staff', 1, 'maes.els@noord.be'), (:zuid, 'student', 1, 'peeters.jan')
RETURNING configuration_id = :noord AS noord, person_kind, person_id, username, local_part, sync;
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:noord, 'student', 3, 'Peeters.Jan');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:noord, 'staff', 7, 'PEETERS.JAN@noord.be');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:noord, 'student', 1, 'other.name');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:noord, 'student', 4, 'zoë.dhondt');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:noord, 'teacher', 4, 'zoe.dhondt');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (-1, 'student', 4, 'zoe.dhondt');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:noord, 'student', 4, NULL);
\echo :LAST_ERROR_SQLSTATE
-- A failed statement leaves nothing behind. The ledger holds only names that
-- left their owner: none yet.
SELECT count(*) AS usernames FROM m365.username;
SELECT count(*) AS issued FROM m365.issued_username;

-- An edited name goes to the ledger: nobody else gets it, its owner may take
-- it back (and then it leaves the ledger).
UPDATE m365.username SET username = 'jan.peeters' WHERE configuration_id = :noord AND person_kind = 'student' AND person_id = 1;
SELECT configuration_id = :noord AS noord, local_part, person_kind, person_id FROM m365.issued_username ORDER BY 1 DESC, 2;
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:noord, 'student', 5, 'peeters.jan');
\echo :LAST_ERROR_SQLSTATE
UPDATE m365.username SET username = 'Peeters.Jan' WHERE configuration_id = :noord AND person_kind = 'student' AND person_id = 1
RETURNING username, local_part;
-- Deleting a username does not free the name.
DELETE FROM m365.username WHERE configuration_id = :noord AND person_kind = 'student' AND person_id = 2;
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:noord, 'student', 6, 'janssens.an');
\echo :LAST_ERROR_SQLSTATE

-- Reserved names are refused too, and the sync flag defaults to off.
INSERT INTO m365.reserved_username (configuration_id, username, note)
VALUES (:noord, 'Admin@noord.be', 'tenant admin'), (:noord, 'wouters.piet', 'account from before');
INSERT INTO m365.reserved_username (configuration_id, username) VALUES (:noord, 'not valid');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:noord, 'student', 7, 'admin');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO m365.username (configuration_id, person_kind, person_id, username) VALUES (:zuid, 'student', 7, 'admin')
RETURNING username, sync;

-- The first free name.
SELECT m365.first_free_username(:noord, 'de.smet');
SELECT m365.first_free_username(:noord, 'Peeters.Jan');
SELECT m365.first_free_username(:noord, 'wouters.piet');
SELECT m365.first_free_username(:noord, 'admin');
SELECT m365.first_free_username(:zuid, 'admin');
-- Generated names record base and suffix; the search starts above the highest.
INSERT INTO m365.issued_username (configuration_id, local_part, person_kind, person_id, base, suffix)
VALUES (:noord, 'de.smet', 'student', 10, 'de.smet', 1), (:noord, 'de.smet2', 'student', 11, 'de.smet', 2),
       (:noord, 'de.smet3', 'student', 12, 'de.smet', 3);
INSERT INTO m365.reserved_username (configuration_id, username) VALUES (:noord, 'de.smet4');
SELECT m365.first_free_username(:noord, 'de.smet');
-- Near the 64-character limit the base is cut to make room for the digits.
INSERT INTO m365.reserved_username (configuration_id, username) VALUES (:noord, repeat('x', 64));
SELECT m365.first_free_username(:noord, repeat('x', 64));
SELECT m365.username_with_suffix(repeat('x', 62) || '.y', 10);
SELECT m365.first_free_username(:noord, 'has@domain.be');
SELECT m365.first_free_username(:noord, '');
SELECT m365.first_free_username(:noord, repeat('x', 65));
SELECT m365.username_with_suffix('x', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT m365.username_is_taken(:noord, 'DE.SMET4'), m365.username_is_taken(:noord, 'de.smet5'), m365.username_is_taken(:zuid, 'de.smet');

-- updated_at moves on every change.
SELECT created_at = updated_at AS untouched FROM m365.username WHERE configuration_id = :zuid AND person_id = 7;
UPDATE m365.username SET sync = true WHERE configuration_id = :zuid AND person_id = 7;
SELECT updated_at > created_at AS touched, sync FROM m365.username WHERE configuration_id = :zuid AND person_id = 7;
