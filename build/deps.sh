#!/usr/bin/env bash
# deps.sh installs the system packages gopeft's builds need: a C compiler for
# cgo, make, and OpenBLAS (libopenblas-dev) for the "blas" build tag.
#
# Idempotent: it installs only what is missing, and runs `apt-get update` only
# when it has something to install. Needs root (or sudo) only in that case.
# Prints one line per package saying what it did.
set -euo pipefail

# package name -> a command or file whose presence means it is installed
declare -A want=(
	[gcc]="cmd:gcc"
	[make]="cmd:make"
	[libc6-dev]="pkg:libc6-dev"
	[libopenblas-dev]="pkg:libopenblas-dev"
)
order=(gcc make libc6-dev libopenblas-dev)

have() {
	local probe=$1
	case $probe in
	cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 ;;
	pkg:*) [ "$(dpkg-query -W -f='${Status}' "${probe#pkg:}" 2>/dev/null || true)" = "install ok installed" ] ;;
	esac
}

missing=()
for p in "${order[@]}"; do
	if have "${want[$p]}"; then
		echo "deps: $p already installed"
	else
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: nothing to install"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
	exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "deps: missing ${missing[*]}; run this script as root to install them" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "deps: apt-get update (needed for: ${missing[*]})"
"${sudo[@]}" apt-get update -qq
echo "deps: apt-get install ${missing[*]}"
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
for p in "${missing[@]}"; do
	if have "${want[$p]}"; then
		echo "deps: $p installed"
	else
		echo "deps: $p still missing after apt-get install" >&2
		exit 1
	fi
done
