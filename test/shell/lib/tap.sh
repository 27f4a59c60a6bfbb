# TAP for the shell tests (sourced from the repository's root).
# ok STATUS NAME [FILE]: test number n passes when STATUS is 0. A failure is
# said on stderr too, which prove shows (its summary gives only the number),
# with FILE (what the command under test said) when one is named.
n=0 failed=0
ok() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - $2"; return; fi
	echo "not ok $n - $2"
	failed=$((failed + 1))
	echo "# not ok $n - $2" >&2
	[ -z "${3:-}" ] || [ ! -f "$3" ] || sed 's/^/#   /' "$3" >&2
}
