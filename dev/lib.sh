# Shared by dev/start and dev/test: a local PostgreSQL and an addons path.
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)

ADDON_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '%s\n' "$*" >&2; }

# Make sure a PostgreSQL server answers on the local socket, as the current user.
ensure_postgres() {
    if ! command -v pg_isready >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            say "PostgreSQL is not installed: installing Debian's postgresql package"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        else
            say "PostgreSQL is not installed: install it (e.g. 'sudo apt-get install postgresql') and run this again"
            return 1
        fi
    fi
    if ! pg_isready -q; then
        if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            local version cluster
            read -r version cluster _ < <(pg_lsclusters -h | head -n 1)
            if [ -z "$version" ]; then
                say "No PostgreSQL cluster: run 'pg_createcluster --start <version> main'"
                return 1
            fi
            say "Starting PostgreSQL cluster $version/$cluster"
            pg_ctlcluster "$version" "$cluster" start
        else
            say "PostgreSQL is not running: start it (e.g. 'sudo pg_ctlcluster 15 main start') and run this again"
            return 1
        fi
    fi
    if ! psql -d postgres -Atc 'select 1' >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            say "Creating PostgreSQL role $(id -un)"
            su postgres -c "createuser --superuser $(id -un)"
        else
            say "PostgreSQL has no role for $(id -un): run 'sudo -u postgres createuser --createdb $(id -un)'"
            return 1
        fi
    fi
}

# An addons directory where this checkout is named queue_job, whatever its folder name.
make_addons_path() {
    local dir
    dir="$(mktemp -d -t queue_job_addons.XXXXXX)"
    ln -s "$ADDON_DIR" "$dir/queue_job"
    ln -s "$ADDON_DIR/tests/addons/test_queue_job" "$dir/test_queue_job"
    printf '%s\n' "$dir"
}
