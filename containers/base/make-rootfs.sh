#!/usr/bin/env bash
# Makes the images' base where no image registry answers: a minimal Debian bookworm root file
# system (debootstrap --variant=minbase) with Python 3.11 and tini, trimmed of what a server never
# reads (package caches and lists, manuals, translations), as a tar for `FROM scratch` + `ADD`.
# Usage: make-rootfs.sh OUT.tar [MIRROR]
set -euo pipefail
out="$1"
mirror="${2:-http://deb.debian.org/debian}"
root="$(mktemp -d "${TMPDIR:-/tmp}/hyperserve-rootfs.XXXXXX")"
trap 'rm -rf "$root"' EXIT
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,tini bookworm "$root" "$mirror" \
     > "$out.log" 2>&1; then
  tail -n 30 "$out.log" >&2
  exit 1
fi
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
       "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old \
       "$root"/usr/lib/x86_64-linux-gnu/gconv  # iconv modules: Python has its own codecs
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# What debootstrap left mounted or half-set for a chroot is not part of an image.
: > "$root/etc/resolv.conf"
echo hyperserve > "$root/etc/hostname"
tar --numeric-owner -C "$root" -cf "$out.partial" .
mv "$out.partial" "$out"
