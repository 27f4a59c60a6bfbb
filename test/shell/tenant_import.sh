#!/usr/bin/env bash
# The tenant import command, end to end (issue 17, part 2): it reads the
# admin centers' users exports as files (a BOM, CRLF, quoted commas,
# reordered columns), refuses what is not a UTF-8 users export with exit 3
# and stores nothing then, reports the usernames made here that are someone
# else's account, and --check stores nothing. Prints TAP (run with prove).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
db=${PGDATABASE:-m365_test}
out=$(mktemp -d /tmp/m365_tenant_test.XXXXXX)
base=$(( $(date +%s) % 100000 * 1000 + 940000000 ))
trap 'rm -rf "$out"; psql -X -q -d "$db" -c "DROP OWNED BY tenant_app_$base" -c "DROP ROLE IF EXISTS tenant_app_$base" >/dev/null 2>&1' EXIT
source test/shell/lib/tap.sh
sql() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
import() { PGDATABASE=$db bin/m365-tenant-import "$@" >"$out/stdout" 2>"$out/stderr"; }
accounts() { sql -c "SELECT count(*) FROM m365.tenant_account WHERE configuration_id = $base"; }

echo "1..19"
sql >/dev/null <<SQL
INSERT INTO m365.configuration (id, name, username_format) VALUES ($base, 'tenant import $base', 'voornaam.naam');
INSERT INTO m365.school (id, name, configuration_id, staff_domain) VALUES ($base, 'School', $base, 'school-$base.be');
INSERT INTO m365.location (id, school_id, name, configuration_id, student_domain) VALUES ($base, $base, 'Campus', $base, 'leerling.school-$base.be');
INSERT INTO m365.student (id, first_name, last_name) VALUES ($base, 'Jan', 'Peeters'), ($base + 1, 'Zoë', 'D''Hondt');
INSERT INTO m365.enrolment (id, student_id, location_id, start_date) VALUES ($base, $base, $base, CURRENT_DATE - 30);
SELECT m365.generate_usernames_in_transaction();
CREATE ROLE tenant_app_$base LOGIN;
SELECT m365.grant_access('tenant_app_$base', 'app');
SQL
ok $? "a configuration whose job made jan.peeters"

d="school-$base.be"
# The Entra admin center's "Download users": BOM, CRLF, quoted commas, its own column order.
{
	printf '\xEF\xBB\xBF'
	printf 'displayName,userPrincipalName,surname,givenName,department,accountEnabled,createdDateTime,employeeId\r\n'
	printf '"Peeters, Jan",jan.peeters@leerling.%s,Peeters,Jan,"Klas 6B, oud",false,2019-09-01T08:00:00Z,oud-17\r\n' "$d"
	printf 'Zoë D'"'"'Hondt,zoe.dhondt@leerling.%s,D'"'"'Hondt,Zoë,,true,2024-09-01T08:00:00Z,student-%s\r\n' "$d" "$((base + 1))"
	printf 'Beheer,admin@tenant-%s.onmicrosoft.com,,,,true,2018-01-01T00:00:00Z,\r\n' "$base"
} >"$out/entra.csv"

import -c "$base" --check "$out/entra.csv"
status=$?
[ $status = 0 ] && [ "$(accounts)" = 0 ] && grep -q '^Checked (nothing stored): 3 account(s)' "$out/stdout"
ok $? "--check reads and reports, and stores nothing"
import -c "$base" "$out/entra.csv"
status=$?
[ $status = 0 ] || sed 's/^/# /' "$out/stderr"
[ $status = 0 ] && [ "$(accounts)" = 3 ]
ok $? "the Entra export is imported: its three accounts, the onmicrosoft.com one too"
grep -q "2 in configuration $base's domains, 1 in domains it does not use (yet): kept too." "$out/stdout" &&
	grep -q '1 have a known owner (their employeeId names a person here); 1 are usernames here already' "$out/stdout"
ok $? "the report counts what was kept, left out, owned and held here"
grep -q "^1 username(s) made here are the tenant account of someone else" "$out/stdout" &&
	grep -q "jan.peeters .*student $base (Jan Peeters) .*jan.peeters@leerling.$d .*Jan Peeters, disabled, same names, not in a feed yet" "$out/stdout"
ok $? "it names the username made here that is another Jan Peeters' (disabled) account: the takeover the procedure warns about"
[ "$(sql -c "SELECT department FROM m365.tenant_account WHERE configuration_id = $base AND local_part = 'jan.peeters'")" = "Klas 6B, oud" ]
ok $? "a quoted comma stays inside its value"
[ "$(sql -c "SELECT m365.username_is_taken($base, 'zoe.dhondt')")" = t ]
ok $? "the tenant's other name is kept: nobody else here gets zoe.dhondt"

# The Microsoft 365 admin center's export: other headers, "Block credential".
printf 'Block credential,Display name,First name,Last name,User principal name,When created\n' >"$out/m365.csv"
printf 'False,Els Maes,Els,Maes,els.maes@%s,9/1/2015 8:00:00 AM\n' "$d" >>"$out/m365.csv"
import -c "$base" "$out/m365.csv" && [ "$(accounts)" = 4 ] &&
	[ "$(sql -c "SELECT account_enabled FROM m365.tenant_account WHERE configuration_id = $base AND local_part = 'els.maes'")" = t ]
ok $? "the Microsoft 365 admin center's export is read by its own headers"

# Refused: exit 3, a clear reason, nothing stored.
refused() {  # file expected-message
	import -c "$base" "$1"
	local status=$?
	[ $status = 3 ] && grep -q -- "$2" "$out/stderr" && [ "$(accounts)" = 4 ] || { echo "# exit $status: $(head -c 300 "$out/stderr")"; return 1; }
}
printf 'userPrincipalName,givenName\nj\xe9@%s,Jos\xe9\n' "$d" >"$out/latin1.csv"
refused "$out/latin1.csv" 'not UTF-8'
ok $? "a Windows-1252 file: exit 3, 'save it as CSV UTF-8', nothing stored"
printf '\xff\xfeu\x00s\x00' >"$out/utf16.csv"
refused "$out/utf16.csv" 'UTF-16'
ok $? "a UTF-16 file: exit 3"
printf 'Naam,Voornaam\nPeeters,Jan\n' >"$out/other.csv"
refused "$out/other.csv" 'not a users export'
ok $? "a file that is not a users export: exit 3, naming the columns it has"
printf 'userPrincipalName\na@%s\nA@%s\n' "$d" "$d" >"$out/twice.csv"
refused "$out/twice.csv" 'lines 2 and 3 of the file: the same user principal name'
ok $? "a duplicate user principal name: exit 3, naming both lines"
printf 'userPrincipalName,surname\nb@%s,Peeters, Jan\n' "$d" >"$out/comma.csv"
refused "$out/comma.csv" 'line 2: it has 3 field(s), the header 2'
ok $? "an unquoted comma: exit 3, never a shifted column"
: >"$out/empty.csv"
refused "$out/empty.csv" 'the file is empty'
ok $? "an empty file: exit 3"

# A name in the school data cannot fake the command's outcome or reach the
# terminal as an escape sequence (red-team finds: a last name with a line
# break and "failed M3T01" made a stored import say "refused").
sql -c "UPDATE m365.student SET last_name = E'Peeters\nfailed M3T01\n\x1b]0;pwned\x07' WHERE id = $base" >/dev/null
import -c "$base" "$out/entra.csv"
status=$?
[ $status = 0 ] && grep -q '^Imported' "$out/stdout" && ! grep -q $'\x1b' "$out/stdout" && ! grep -q '^failed' "$out/stdout"
ok $? "a name with a line break, a fake status line and an escape sequence: the import says imported, and no escape reaches the terminal"
sql -c "UPDATE m365.student SET last_name = 'Peeters' WHERE id = $base" >/dev/null
PGDATABASE=$db bin/m365-tenant-import -c "$base" --check /dev/stdin <"$out/m365.csv" >"$out/stdout" 2>"$out/stderr"
[ $? = 0 ] && grep -q '^Checked (nothing stored): 1 account(s)' "$out/stdout"
ok $? "the file may be a pipe (/dev/stdin): it is read once"
# A listing that fails after the import (a name of 100 MB) leaves nothing
# stored, and the command says so (red-team: it said "Imported").
sql -c "UPDATE m365.student SET last_name = repeat('x', 100000000) WHERE id = $base" >/dev/null
before=$(sql -c "SELECT max(imported_at) FROM m365.tenant_account WHERE configuration_id = $base")
import -c "$base" "$out/entra.csv"
status=$?
[ $status = 0 ] && grep -q '^Imported' "$out/stdout" ||
	{ [ $status = 1 ] && ! grep -q '^Imported' "$out/stdout" && [ "$(sql -c "SELECT max(imported_at) FROM m365.tenant_account WHERE configuration_id = $base")" = "$before" ]; }
ok $? "a name too long to list: either listed, or the import fails and says nothing was stored ($status)"
sql -c "UPDATE m365.student SET last_name = 'Peeters' WHERE id = $base" >/dev/null

import -c 1 -c "$((base + 999))" "$out/entra.csv"
[ $? = 1 ] && grep -q "there is no configuration" "$out/stderr"
ok $? "an unknown configuration: exit 1 with the reason"
PGUSER="tenant_app_$base" import -c "$base" "$out/entra.csv"
[ $? = 1 ] && grep -q "permission denied" "$out/stderr" && [ "$(accounts)" = 4 ]
ok $? "the application's role may not import a tenant (exit 1, permission denied)"

exit $((failed > 0))
