-- Properties of make_username and the validator, over random Unicode and the
-- 200,000 real names of data/persons.csv: whatever the input, the output is
-- NULL or a username the validator accepts, and the backend stays up.
BEGIN;
SELECT plan(12);
SELECT setseed(0.365);

-- Random code points from everywhere: controls, ASCII, Latin, combining marks,
-- Greek, Cyrillic, Arabic, Hebrew, Devanagari, Thai, Hangul, CJK, emoji,
-- private use, non-characters and the astral planes. Never 0 or a surrogate:
-- PostgreSQL refuses those itself (tested below).
CREATE TEMP TABLE fuzz AS
WITH lengths AS (
    SELECT i, CASE WHEN i <= 20 THEN 10000 ELSE (random() * 40)::int END AS n FROM generate_series(1, 4000) AS i
)
SELECT i,
       (SELECT coalesce(string_agg(chr(cp), ''), '') FROM (
            SELECT CASE width_bucket(random(), 0, 1, 10)
                       WHEN 1 THEN 1 + (random() * 126)::int
                       WHEN 2 THEN 32 + (random() * 94)::int
                       WHEN 3 THEN 160 + (random() * 600)::int
                       WHEN 4 THEN 768 + (random() * 111)::int
                       WHEN 5 THEN 880 + (random() * 1400)::int
                       WHEN 6 THEN 2304 + (random() * 1500)::int
                       WHEN 7 THEN 19968 + (random() * 25000)::int
                       WHEN 8 THEN 127744 + (random() * 1500)::int
                       WHEN 9 THEN 57344 + (random() * 8000)::int
                       ELSE 65536 + (random() * 1048000)::int
                   END AS cp
              FROM generate_series(1, n)) AS c) AS s1,
       (SELECT string_agg(chr(32 + (random() * 94)::int), '') FROM generate_series(1, (random() * 12)::int) AS c) AS ascii,
       (ARRAY['voornaam.naam', 'naam.voornaam', 'v.naam', 'naam_v', 'n-v', 'firstname', 'lastname.f'])[1 + i % 7] AS format
  FROM lengths;
-- A second random string per row, made by shuffling another row's.
ALTER TABLE fuzz ADD COLUMN s2 text;
UPDATE fuzz SET s2 = (SELECT f.s1 FROM fuzz AS f WHERE f.i = (fuzz.i * 7919) % 4000 + 1);
ALTER TABLE fuzz ADD COLUMN made text, ADD COLUMN made_ascii text;
UPDATE fuzz SET made = m365.make_username(format, s1, s2),
                made_ascii = m365.make_username(format, coalesce(ascii, ''), s1 || coalesce(ascii, ''));

SELECT is((SELECT count(*)::int FROM fuzz WHERE length(s1) = 10000), 20, 'twenty inputs of 10,000 characters');
SELECT is_empty($$ SELECT i, made FROM fuzz WHERE made IS NOT NULL AND NOT m365.username_is_valid(made)
                   UNION ALL
                   SELECT i, made_ascii FROM fuzz WHERE made_ascii IS NOT NULL AND NOT m365.username_is_valid(made_ascii) $$,
                'random Unicode: every username made is valid');
SELECT is_empty($$ SELECT i, made FROM fuzz WHERE made !~ '^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$' OR length(made) > 64 $$,
                'random Unicode: only [a-z0-9._-], at most 64, a letter or digit at each end');
SELECT cmp_ok((SELECT count(made)::int FROM fuzz), '>', 3000, 'most random inputs still yield a username');
SELECT is_empty($$ SELECT i FROM fuzz WHERE m365.username_is_valid(s1) IS NULL OR m365.username_problem(s1 || '@' || s2) IS NULL
                   AND NOT m365.username_is_valid(s1 || '@' || s2) $$,
                'the validator answers on random input, and explains every refusal');
SELECT is_empty($$ SELECT i FROM fuzz WHERE m365.username_is_valid(s1) AND s1 ~ '[^A-Za-z0-9''.\-_!#^~]' $$,
                'the validator never accepts a character outside the UPN set');

-- PostgreSQL itself refuses NUL and lone surrogates before they reach us.
SELECT throws_ok($$ SELECT m365.make_username('naam', 'x', chr(55296)) $$, '54000', NULL, 'a lone surrogate is refused by chr()');
SELECT throws_ok($$ SELECT m365.make_username('naam', 'x', E'\uD800') $$, '42601', NULL, 'a lone surrogate literal is refused');
SELECT throws_ok($$ SELECT m365.make_username('naam', 'x', chr(0)) $$, '54000', NULL, 'NUL is refused by chr()');

-- The real names.
CREATE TEMP TABLE persons (first_name text, last_name text);
\copy persons FROM 'data/persons.csv' CSV HEADER
SELECT is((SELECT count(*)::int FROM persons), 200000, '200,000 real names loaded');
SELECT is_empty($$ SELECT first_name, last_name FROM persons
                    WHERE m365.make_username('naam.voornaam', first_name, last_name) IS NULL
                       OR NOT m365.username_is_valid(m365.make_username('naam.voornaam', first_name, last_name)) $$,
                'every real name yields a valid username');
SELECT is_empty($$ SELECT first_name, last_name FROM persons
                    WHERE m365.make_username('voornaam.naam', first_name, last_name) !~ '^[a-z0-9-]+\.[a-z0-9-]+$' $$,
                'every real name has both a first and a last part');

SELECT * FROM finish();
ROLLBACK;
