# Sourced (not run) by every set-up script that takes Debian packages without installing them
# (tests/installer/build, tests/firstboot/build, tests/agent/kernel, bench/tftp).
#
# apt chooses a package's candidate among the versions its sources offer *and* the one installed.
# A host that carries a newer version than any source offers (this machine kind has systemd 254
# from bookworm-backports without a backports line) makes the installed version the candidate,
# and `apt-get download systemd` then asks for a version no source has:
#   E: Can't find a source to download version '254.26-1~bpo12+1' of 'libsystemd-shared:amd64'
# So these helpers ask apt with an empty dpkg status (/dev/null): nothing is installed as far
# as apt is concerned, the candidate is always one the archive has, and what the host carries
# cannot change what is downloaded. (`-o` on the command line wins over APT_CONFIG and apt.conf.d.)
#
#   archive_download PKG...      apt-get download of the archive's candidates, into the current
#                                directory (which must be writable by apt's _apt user)
#   archive_cache ARGS...        apt-cache with the same view (depends, policy, show)

archive_download() {
  apt-get -o Dir::State::status=/dev/null download -qq "$@"
}

archive_cache() {
  apt-cache -o Dir::State::status=/dev/null "$@"
}
