#!/usr/bin/env bash
# Install the Debian packages the test bed needs, when they are missing:
#   mariadb-server (mariadbd, mariadb-install-db), mariadb-client (the mariadb CLI), openssl,
#   mariadb-test (mariadb-test-run and MariaDB's own test suite, run through the proxy).
# (seekdb needs no system package: its wheel ships the binary and libaio.)
# Runs apt-get as root (CI is root); otherwise through sudo -n, or says what to install.
set -euo pipefail

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

need=()
have mariadbd || need+=(mariadb-server)
have mariadb-install-db || need+=(mariadb-server)
have mariadb || need+=(mariadb-client)
have openssl || need+=(openssl)
[ -f /usr/share/mysql/mysql-test/mariadb-test-run.pl ] || need+=(mariadb-test)
have make || need+=(make)

if [ ${#need[@]} -eq 0 ]; then
    echo "install-system-deps: mariadb-server, mariadb-client, mariadb-test and openssl are present"
    exit 0
fi
# shellcheck disable=SC2207
need=($(printf '%s\n' "${need[@]}" | sort -u))

SUDO=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "install-system-deps: please install as root: apt-get install ${need[*]}" >&2
        exit 1
    fi
fi

# The packages' own MariaDB service must not start: the test bed runs its own servers.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT

echo "install-system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
