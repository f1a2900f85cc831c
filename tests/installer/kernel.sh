# Shared by tests/installer/build and tests/firstboot/build (sourced, not run): the Debian cloud
# kernel and the modules an initrd loads itself, from `apt-get download` (nothing installed), of
# the versions the archive has (tests/debs.sh), whatever this host has installed.
#
#   fetch_kernel DEBS_DIR KERNEL_DIR      sets $kernel_pkg; unpacks the kernel into KERNEL_DIR
#   add_module ROOT KERNEL_DIR NAME       copies NAME.ko and what it `depends=` on into
#                                         ROOT/lib/modules, appending ROOT/lib/modules/order
#                                         (dependencies first: the order /init insmods them)

. "$(dirname "${BASH_SOURCE[0]}")/../debs.sh"

fetch_kernel() {
  local debs="$1" kdir="$2"
  # The metapackage names the current ABI's kernel package.
  kernel_pkg="$(archive_cache depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -1)"
  [ -n "$kernel_pkg" ] || { echo "build: apt knows no linux-image-cloud-amd64 (run apt-get update)" >&2; return 1; }
  # apt-get download drops privileges to _apt where it can; the directory must let it write.
  chmod 0777 "$debs"
  (cd "$debs" && archive_download "$kernel_pkg")
  dpkg-deb -x "$debs/$kernel_pkg"_*.deb "$kdir"
}

# The cloud kernel builds virtio_net, bonding and 8021q as modules and ships no modules.dep.
add_module() {
  local root="$1" kdir="$2" m="${3//-/_}" moddir f dep
  moddir="$(echo "$kdir"/lib/modules/*)"
  mkdir -p "$root/lib/modules"
  touch "$root/lib/modules/order"
  grep -qx "$m" "$root/lib/modules/order" && return 0
  f="$(find "$moddir" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "${m//_/-}.ko" -o -name "${m//_/-}.ko.xz" \) | head -1)"
  [ -n "$f" ] || { echo "build: module $m not found in $kernel_pkg" >&2; return 1; }
  case "$f" in
    *.xz) xz -dc "$f" > "$root/lib/modules/$m.ko" ;;
    *) cp "$f" "$root/lib/modules/$m.ko" ;;
  esac
  for dep in $(tr '\0' '\n' < "$root/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
    add_module "$root" "$kdir" "$dep"
  done
  echo "$m" >> "$root/lib/modules/order"
}
