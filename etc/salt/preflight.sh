#!/bin/sh
# halite's salt-ssh preflight (halite/roster.py): run on a host before salt-ssh
# sends Salt there, as the login user, whenever Salt's thin directory is missing.
# Salt 3008's thin needs Python 3.10 or newer (its bundled tornado, msgpack and
# PyYAML); AlmaLinux/RHEL 8 and 9 ship 3.6 and 3.9 as /usr/bin/python3, and
# python3.11 as a package beside it. This finds a Python that is new enough (or
# installs python3.11 with dnf), and links it as python3 in a folder salt-ssh
# searches first (the roster's set_path), so the platform's python3 stays as it is.
# Exit 0: Salt can run; anything else stops salt-ssh with this script's message.
set -u
BIN=${HALITE_PREFLIGHT_BIN:-/usr/local/lib/halite/bin}
HOST=$(hostname 2>/dev/null || echo this host)
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo -n"; fi

new_enough() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null
}

found=""
for py in python3.13 python3.12 python3.11 python3.10 python3; do
    path=$(command -v "$py" 2>/dev/null) || continue
    if new_enough "$path"; then found=$path; break; fi
done

if [ -z "$found" ] && command -v dnf >/dev/null 2>&1; then
    echo "halite preflight: $HOST has no Python 3.10 or newer; installing python3.11 with dnf" >&2
    if ! $SUDO dnf -q -y install python3.11 >&2; then
        echo "halite preflight: $HOST: 'dnf install python3.11' failed; install Python 3.10 or newer there and run again" >&2
        exit 1
    fi
    found=$(command -v python3.11 2>/dev/null || true)
fi

if [ -z "$found" ] || ! new_enough "$found"; then
    echo "halite preflight: $HOST has no Python 3.10 or newer, which Salt 3008 needs; install one (python3.11 on AlmaLinux/RHEL 8 and 9) and run again" >&2
    exit 1
fi

if [ "$(readlink "$BIN/python3" 2>/dev/null)" != "$found" ]; then
    if ! { $SUDO mkdir -p "$BIN" && $SUDO ln -sfn "$found" "$BIN/python3"; }; then
        echo "halite preflight: $HOST: cannot link $found as $BIN/python3 (root or passwordless sudo is needed)" >&2
        exit 1
    fi
fi
exit 0
