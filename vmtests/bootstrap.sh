#!/bin/sh
# Install what drgn-ss and its tests need on a Debian host, and create .venv.
# Idempotent: installs only what is missing; re-installs the project into .venv
# when pyproject.toml changed. Kernels are fetched later, on first use.
set -eu
cd "$(dirname "$0")/.."

# command-or-file : Debian package
need=""
check() {
	case "$1" in
	/*) [ -e "$1" ] && return 0 ;;
	*) command -v "$1" >/dev/null 2>&1 && return 0
	   [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] && return 0 ;;
	esac
	case " $need " in *" $2 "*) ;; *) need="$need $2" ;; esac
}
check qemu-system-x86_64 qemu-system-x86
check /usr/lib/qemu/virtiofsd qemu-system-x86
check /bin/busybox busybox-static
check ss iproute2
check objcopy binutils
check cc gcc
check zstd zstd
check xz xz-utils
check dpkg-deb dpkg
check apt-get apt
check unshare util-linux
check kexec kexec-tools
check /usr/bin/time time
check makedumpfile makedumpfile
check /usr/share/keyrings/debian-archive-keyring.gpg debian-archive-keyring
# drgn_ss._fast (helpers/_fast*.c) builds against the headers of the Python that runs drgn-ss.
if ! "${PYTHON:-python3}" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
	need="$need python3-dev"
fi
# busybox must be the static build: it runs as the guest's first process.
if [ -e /bin/busybox ] && ! dpkg -s busybox-static >/dev/null 2>&1; then
	need="$need busybox-static"
fi

if [ -n "$need" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "bootstrap: missing Debian packages:$need (run as root, or: sudo apt-get install --no-install-recommends$need)" >&2
		exit 1
	fi
	echo "bootstrap: installing$need" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	# --no-install-recommends: qemu-system-x86 would otherwise pull a GTK stack.
	apt-get install -y -q --no-install-recommends $need >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
	echo "bootstrap: creating .venv" >&2
	"$PYTHON" -m venv .venv
fi
# mypy checks helpers/ as drgn_ss through this link (see pyproject.toml).
mkdir -p .venv/mypy-path
ln -sfn ../../helpers .venv/mypy-path/drgn_ss
stamp=.venv/.drgn-ss-installed
if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ] ||
	[ -n "$(find helpers -maxdepth 1 -name '_fast*.[ch]' -newer "$stamp")" ]; then
	echo "bootstrap: installing drgn-ss and its development tools into .venv" >&2
	.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	if ! .venv/bin/python -c 'import drgn_ss._fast' 2>/dev/null; then
		echo "bootstrap: warning: drgn_ss._fast did not build: drgn-ss runs in pure Python (slower)" >&2
	fi
	touch "$stamp"
fi
# The editable install maps drgn_ss to helpers/ with an import hook that setuptools loads at
# every start-up (with pathlib, re and urllib: ~10 ms, 6% of a 20k-socket listing). A link
# in site-packages gives the same live view of helpers/ without it.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -L "$site/drgn_ss" ] || ln -s "$(pwd)/helpers" "$site/drgn_ss"; then
	rm -f "$site"/__editable__.drgn_ss-*.pth "$site"/__editable___drgn_ss_*_finder.py
fi
# Bytecode for the package, as a regular install writes it: an editable install leaves it to
# the first import, which does not write it where PYTHONDONTWRITEBYTECODE is set (then every
# run compiles helpers/ again: ~20 ms of start-up).
.venv/bin/python -m compileall -q helpers
