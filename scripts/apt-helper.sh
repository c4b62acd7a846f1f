# Shared by scripts/install-system-deps.sh and scripts/install-bench-deps.sh (sourced, not run):
#   have NAME                 whether a command is installed (PATH, /usr/sbin, /usr/bin)
#   apt_install WHO PKG...    apt-get install the Debian packages as root, otherwise through
#                             sudo -n, or say what to install and fail; services the packages
#                             would start (mariadb, haproxy) are kept from starting, because the
#                             test bed and the benchmark run their own.
# WHO prefixes every message (the calling script's name).

have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

apt_install() {
    local who=$1
    shift
    local -a packages sudo=()
    # shellcheck disable=SC2207
    packages=($(printf '%s\n' "$@" | sort -u))
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "$who: please install as root: apt-get install ${packages[*]}" >&2
            return 1
        fi
    fi
    # policy-rc.d exiting 101 tells the packages' maintainer scripts not to start services.
    local policy=/usr/sbin/policy-rc.d created_policy=0 status=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        created_policy=1
    fi
    echo "$who: installing ${packages[*]}"
    {
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq &&
            "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
    } || status=$?
    if [ "$created_policy" = 1 ]; then "${sudo[@]}" rm -f "$policy"; fi
    return "$status"
}
