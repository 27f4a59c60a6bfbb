-- m365_usernames 0.2.0 -> 0.3.0. Committed as it is (never regenerated); the
-- upgrade test (test/shell/upgrade.sh) checks that a database updated with it
-- has exactly the objects, rights and comments of a fresh 0.3.0 install.
-- CREATE OR REPLACE FUNCTION resets SECURITY DEFINER only when the new
-- definition leaves it out: each replaced function states it again.

\echo Use "ALTER EXTENSION m365_usernames UPDATE TO '0.3.0'" to load this file. \quit
