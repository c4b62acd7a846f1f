#!/usr/bin/env bash
# Install the Debian packages the test bed needs, when they are missing:
#   mariadb-server (mariadbd, mariadb-install-db), mariadb-client (the mariadb CLI), openssl,
#   mariadb-test (mariadb-test-run and MariaDB's own test suite, run through the proxy).
# (seekdb needs no system package: its wheel ships the binary and libaio.)
# Runs apt-get as root (CI is root); otherwise through sudo -n, or says what to install.
set -euo pipefail

# shellcheck source=scripts/apt-helper.sh
. "$(dirname "$0")/apt-helper.sh"

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
apt_install install-system-deps "${need[@]}"
