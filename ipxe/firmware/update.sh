#!/usr/bin/env bash
# Refresh the iPXE binaries that seed embeds, from Debian's `ipxe` package (bookworm), and
# record their SHA-256. Run it on a Debian machine, review `git diff ipxe/firmware`, commit.
#   ipxe/firmware/update.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download ipxe >/dev/null)
deb=$(ls "$work"/ipxe_*.deb)
dpkg-deb -x "$deb" "$work/x"
cp "$work/x/usr/lib/ipxe/undionly.kpxe" "$work/x/boot/ipxe.efi" "$work/x/usr/lib/ipxe/snponly.efi" "$here/"
cp "$work/x/usr/share/doc/ipxe/copyright" "$here/COPYRIGHT.debian"
version=$(dpkg-deb -f "$deb" Version)
(cd "$here" && sha256sum undionly.kpxe ipxe.efi snponly.efi > SHA256SUMS)
echo "$version" > "$here/VERSION"
echo "iPXE binaries from Debian ipxe $version:"
cat "$here/SHA256SUMS"
