# scripts/lib.sh: shared by scripts/demo, scripts/test and scripts/bench.
# Installs what the project needs, builds it, and runs a throwaway
# PostgreSQL 15 cluster as the postgres user.  Source it; do not run it.

M365_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
export PG_CONFIG=$PG_BIN/pg_config

M365_PACKAGES=(
	postgresql-15 postgresql-server-dev-15 postgresql-15-cron postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl libicu-dev pkg-config
	build-essential cmake libgtest-dev bc debhelper dpkg-dev
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages that are missing (needs root, as on Debian 12).
m365_install_packages() {
	local missing=() p
	for p in "${M365_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		log "Debian packages: all present"
		return
	fi
	[ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root or install them"
	log "Installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

m365_build_install() {
	log "Building and installing the extension"
	make -C "$M365_ROOT" -s -j"$(nproc)" ERROR_ON_WARNING=1 >/dev/null
	make -C "$M365_ROOT" -s install >/dev/null
}

# Starts a cluster in a new temporary folder; sets PGHOST, PGPORT, PGUSER,
# M365_CLUSTER.  The cluster and its folder go away when the shell exits,
# unless KEEP_CLUSTER=1.
m365_cluster_start() {
	local cron_db=${1:-m365}
	M365_CLUSTER=$(mktemp -d /tmp/m365_cluster.XXXXXX)
	export M365_CLUSTER
	chown postgres: "$M365_CLUSTER"
	chmod 0755 "$M365_CLUSTER"
	export PGHOST=$M365_CLUSTER/socket PGPORT=${M365_PGPORT:-54365} PGUSER=postgres PGDATABASE=postgres
	runuser -u postgres -- mkdir "$PGHOST"
	log "Starting a throwaway PostgreSQL 15 cluster in $M365_CLUSTER"
	runuser -u postgres -- "$PG_BIN/initdb" -D "$M365_CLUSTER/data" -A trust -E UTF8 --locale=C.UTF-8 \
		-U postgres >"$M365_CLUSTER/initdb.log" 2>&1 || { cat "$M365_CLUSTER/initdb.log"; die "initdb failed"; }
	cat >>"$M365_CLUSTER/data/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$PGHOST'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$cron_db'
cron.use_background_workers = on
max_worker_processes = 32
fsync = off
log_min_messages = warning
CONF
	trap m365_cluster_stop EXIT
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$M365_CLUSTER/data" -l "$M365_CLUSTER/server.log" -w start >/dev/null \
		|| { cat "$M365_CLUSTER/server.log"; die "the cluster did not start"; }
	# M365_DB_LOCALE: an ICU locale for that database (the suite also runs in tr-TR).
	psql -q -X -c "CREATE DATABASE $cron_db${M365_DB_LOCALE:+ TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '$M365_DB_LOCALE'}" >/dev/null
}

m365_cluster_stop() {
	[ -n "${M365_CLUSTER:-}" ] && [ -d "$M365_CLUSTER/data" ] || return 0
	if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
		log "Cluster kept running: PGHOST=$PGHOST PGPORT=$PGPORT (stop: runuser -u postgres -- $PG_BIN/pg_ctl -D $M365_CLUSTER/data stop)"
		return 0
	fi
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$M365_CLUSTER/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$M365_CLUSTER"
}

# Builds the Debian package (scripts/package) and installs it with dpkg, as a
# DBA installs every other extension; the tests then run against its files.
m365_package_install() {
	local deb
	deb=$("$M365_ROOT/scripts/package")
	log "Installing $(basename "$deb")"
	dpkg -i "$deb" >/dev/null
}
