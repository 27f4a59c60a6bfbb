-- Benchmark data: data/persons.csv (200,000 people) and a set of :big people
-- sampled from its first and last names (same Zipf-like frequencies).
\set ON_ERROR_STOP on
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE SCHEMA bench;
CREATE TABLE bench.person (n serial PRIMARY KEY, first_name text, last_name text);
\copy bench.person (first_name, last_name) FROM 'data/persons.csv' CSV HEADER
DELETE FROM bench.person WHERE n > :small;
CREATE TABLE bench.big_person AS
SELECT i AS n, f.first_name, l.last_name
  FROM generate_series(1, :big) AS i
  JOIN bench.person AS f ON f.n = 1 + (hashint4(i) & 2147483647) % :small
  JOIN bench.person AS l ON l.n = 1 + (hashint4(i + 7919) & 2147483647) % :small;
CREATE TABLE bench.result (step text PRIMARY KEY, seconds double precision, note text);
ANALYZE;
