#!/usr/bin/env bash
# Prints the path of a cached Debian 12 (bookworm) root file system for the
# booted-container end-to-end test, building it first if needed.
#
# The mirror is read from this machine's apt sources at run time (no host
# name is written in this repository). The tree is cached under
# $V2X_E2E_CACHE (default /var/cache/v2x-e2e), keyed by a hash of the
# suite, the package list and this recipe, so a change to either builds a
# new one and an unchanged recipe reuses it across runs.
set -euo pipefail

SUITE=bookworm
# systemd(-sysv) to boot; dbus for systemctl/systemd-analyze over the bus;
# openssh-server for the simulated intersections (sshd, sftp-server,
# ssh-keygen, ssh-keyscan); python3-minimal for a throttling SFTP wrapper;
# procps for ps in diagnostics; man-db to read the installed man page as an
# operator would (`man v2x-data-sftp-client`).
PACKAGES=systemd,systemd-sysv,dbus,openssh-server,openssh-client,python3-minimal,procps,man-db
RECIPE_VERSION=1
CACHE=${V2X_E2E_CACHE:-/var/cache/v2x-e2e}

log() { printf '[rootfs] %s\n' "$*" >&2; }

mirror_from_apt_sources() {
    # deb822 files first (Debian 12 default), then one-line sources.list.
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            BEGIN { RS=""; FS="\n" }
            {
                uris=""; suites=""; enabled="yes"; types=""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)    { uris=$i;   sub(/^URIs:[ \t]*/, "", uris) }
                    if ($i ~ /^Suites:/)  { suites=" " $i " " }
                    if ($i ~ /^Types:/)   { types=" " $i " " }
                    if ($i ~ /^Enabled:[ \t]*no/) { enabled="no" }
                }
                if (enabled == "yes" && types ~ / deb / && suites ~ (" " suite " ")) {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$f"
    done | head -n1 | grep . && return 0
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i+1) == suite) { print $i; exit }
            }' "$f"
    done | head -n1 | grep .
}

key=$(printf '%s\n' "$SUITE" "$PACKAGES" "$RECIPE_VERSION" "$(uname -m)" | sha256sum | cut -c1-16)
dest="$CACHE/rootfs-$SUITE-$key"
if [ -x "$dest/usr/lib/systemd/systemd" ] && [ -f "$dest/.v2x-e2e-complete" ]; then
    log "cached: $dest"
    echo "$dest"
    exit 0
fi

command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq debootstrap >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null
        apt-get install -y -qq debootstrap >/dev/null
    }
}
mirror=$(mirror_from_apt_sources) || { log "no '$SUITE' mirror found in /etc/apt/sources*"; exit 1; }
log "debootstrap $SUITE from the mirror in this machine's apt sources ($PACKAGES)"
mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
keyring=()
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] \
    && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
debootstrap --variant=minbase "${keyring[@]}" --include="$PACKAGES" \
    "$SUITE" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
    tail -n 30 "$tmp/debootstrap.log" >&2
    exit 1
}
# The stock sshd is not one of the simulated intersections.
chroot "$tmp/root" systemctl mask ssh.service ssh.socket >/dev/null 2>&1 || true
# A container's machine id is made at boot; an empty file makes systemd do so.
: >"$tmp/root/etc/machine-id"
echo v2x-e2e >"$tmp/root/etc/hostname"
rm -rf "$tmp/root/var/cache/apt/archives/"*.deb
touch "$tmp/root/.v2x-e2e-complete"
rm -rf "$dest"
mv "$tmp/root" "$dest"
# Trees of older recipes are dead weight, unless a run of another checkout
# (an older recipe) has one mounted as its container's lower layer right now.
for old in "$CACHE"/rootfs-"$SUITE"-*; do
    [ "$old" = "$dest" ] && continue
    grep -qF "lowerdir=$old," /proc/mounts && continue
    rm -rf "$old"
done
log "built: $dest"
echo "$dest"
