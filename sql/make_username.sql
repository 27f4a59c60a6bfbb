-- m365.make_username: the examples of the specification, then the ugly cases.

-- Format voornaam.naam
SELECT first_name, last_name, m365.make_username('voornaam.naam', first_name, last_name)
  FROM (VALUES ('Zoë', 'D''Hondt'),
               ('Łukasz', 'Wróblewski'),
               ('Özgür', 'Yılmaz'),
               ('Ørjan', 'Sæther'),
               ('Дмитрий', 'Иванов'),
               ('Marie Louise', 'Van den Broeck'),
               ('Jean-Luc', 'Van ''t Hof'),
               ('Ægir', 'Straße'),
               ('İlker', 'Çelik'),
               ('Thu Ngọc', '熊'),
               ('小明', '王'),
               ('Αλέξανδρος', 'Παπαδόπουλος'),
               ('Nguyễn', 'Văn Thành'),
               ('Siobhán', 'Ó Briain'),
               ('José María', 'García-Márquez')) AS v(first_name, last_name);

-- Format naam.voornaam and the other tokens and separators.
SELECT format, m365.make_username(format, 'Jan', 'Peeters')
  FROM (VALUES ('naam.voornaam'), ('voornaam.naam'), ('firstname.lastname'), ('lastname_firstname'),
               ('v.naam'), ('f.lastname'), ('naam-v'), ('n.v'), ('l_f'), ('voornaam'), ('naam')) AS v(format);

-- Hyphens are kept, never doubled, never at an end; everything else goes.
SELECT first_name, last_name, m365.make_username('voornaam.naam', first_name, last_name)
  FROM (VALUES ('Jean--Luc-', '-Dupont-'),
               ('Anne - Marie', 'Smith -- Jones'),
               ('Jean‐Luc', 'Dupont–Durand'),
               ('O''Neil', 'D’Hondt'),
               ('Mary.Ann', 'St. John'),
               ('Jan_2', 'Peeters!?#'),
               (E'Jan\tPiet', E'Van\nDam')) AS v(first_name, last_name);

-- A part that yields nothing is dropped with its separator; nothing left is NULL.
SELECT first_name, last_name, m365.make_username('voornaam.naam', first_name, last_name) AS made,
       m365.make_username('voornaam.naam', first_name, last_name) IS NULL AS is_null
  FROM (VALUES ('😀', 'Peeters'),
               ('Jan', '🎉🎉'),
               ('😀 Jan', 'Peeters'),
               ('', ''),
               ('   ', '   '),
               ('---', '...'),
               ('''''', '!!!'),
               ('🙂', '🙃')) AS v(first_name, last_name);
SELECT m365.make_username('v.n', '', 'Peeters'), m365.make_username('naam.v.voornaam', 'Jan', '');

-- STRICT: a NULL argument gives NULL.
SELECT m365.make_username(NULL, 'Jan', 'Peeters') IS NULL AS null_format,
       m365.make_username('naam.voornaam', NULL, 'Peeters') IS NULL AS null_first,
       m365.make_username('naam.voornaam', 'Jan', NULL) IS NULL AS null_last;

-- Long names: at most 64 characters, never ending on a separator.
SELECT length(u), u FROM (SELECT m365.make_username('voornaam.naam', repeat('a', 500), repeat('b', 500)) AS u) AS s;
SELECT length(u), u FROM (SELECT m365.make_username('naam.voornaam', 'Jan', repeat('b', 63) || '-c') AS u) AS s;
SELECT length(u), u FROM (SELECT m365.make_username('naam.voornaam', 'Jan', repeat('b', 64)) AS u) AS s;
SELECT length(u), u FROM (SELECT m365.make_username('voornaam.naam', repeat('ä', 5000), repeat('😀', 3000) || 'x') AS u) AS s;

-- Invalid formats are errors that name what is wrong (SQLSTATE M3F01).
\set VERBOSITY default
SELECT m365.make_username('voornaam.achternaam', 'Jan', 'Peeters');
\echo :LAST_ERROR_SQLSTATE
SELECT m365.make_username('', 'Jan', 'Peeters');
\echo :LAST_ERROR_SQLSTATE
SELECT m365.make_username('.naam', 'Jan', 'Peeters');
SELECT m365.make_username('naam.', 'Jan', 'Peeters');
SELECT m365.make_username('naam..voornaam', 'Jan', 'Peeters');
SELECT m365.make_username('naam voornaam', 'Jan', 'Peeters');
SELECT m365.make_username('Naam.Voornaam', 'Jan', 'Peeters');
SELECT m365.make_username('vnaam', 'Jan', 'Peeters');
SELECT m365.make_username(repeat('naam.', 50) || 'v', 'Jan', 'Peeters');
-- The format is checked even when the names yield nothing.
SELECT m365.make_username('x', '😀', '😀');
\echo :LAST_ERROR_SQLSTATE

SELECT m365.check_username_format('naam.voornaam');
SELECT m365.check_username_format('naam.x');

-- An error quoting a long format is cut on a character boundary: a client in
-- LATIN1 gets the error meant (M3F01), not a conversion error (22021) about
-- half a character. (0.2.0 cut the é below in two.)
SET client_encoding = 'LATIN1';
SELECT m365.make_username(repeat('x', 59) || chr(233) || 'naam', 'Jan', 'Peeters');
\echo :LAST_ERROR_SQLSTATE
SELECT m365.make_username('voornaam.' || repeat('q', 50) || chr(233) || chr(233), 'Jan', 'Peeters');
\echo :LAST_ERROR_SQLSTATE
RESET client_encoding;
-- Cyrillic, cut inside its second letter: the quoted text keeps one whole letter.
SELECT m365.make_username(repeat('x', 57) || chr(1044) || chr(1084), 'Jan', 'Peeters');
\echo :LAST_ERROR_SQLSTATE

-- The cache of transliterated words is bounded in bytes, and shows its size:
-- 2,000 distinct short names are kept; 2,000 distinct long words (over 256
-- bytes) are transliterated but not kept.
SELECT count(m365.make_username('voornaam.naam', 'Žofia' || g, 'Ærø')) FROM generate_series(1, 2000) AS g;
SELECT m365.name_cache_bytes() AS after_short \gset
SELECT :after_short BETWEEN 2000 * 20 AND 8 * 1024 * 1024 AS short_names_kept;
SELECT count(m365.make_username('voornaam.naam', repeat('Ž', 200) || g, 'x')) FROM generate_series(1, 2000) AS g;
SELECT m365.name_cache_bytes() - :after_short AS long_words_kept_bytes;
