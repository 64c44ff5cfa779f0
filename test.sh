#!/usr/bin/env bash
# README's test command. On Debian 12 (bookworm) as root with Rust installed:
# installs the apt packages the tests use when any is missing, then runs
# `cargo test --release` (extra arguments go to cargo test). Most tests need
# root (chroot, mount, mknod, namespaces, podman); run as another user they
# skip themselves.
set -euo pipefail
cd "$(dirname "$0")"

# rustup installs cargo under ~/.cargo/bin, which a non-login shell may lack.
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "test.sh: cargo not found (install Rust first)" >&2; exit 1; }

# What the tests use, and why:
#   gcc g++ libc6-dev binutils   fixtures built at test time (-static needs libc6-dev's libc.a),
#                                readelf
#   make ca-certificates         building the crate (crates.io over https)
#   curl git sqlite3 openssl     Debian programs packed and run in scratch roots
#   libc-bin                     ld.so --list (the oracle), ldconfig, getent, iconv
#   coreutils util-linux tar gzip  chroot, setpriv (a file root cannot read), tar, sha256sum
#   podman runc skopeo           FROM scratch images built and run; OCI archives inspected
#   uidmap fuse-overlayfs        podman's storage helpers
#   netavark                     podman's network backend (as tested; otherwise apt picks
#                                any provider of container-network-stack)
#   musl musl-tools musl-dev     a musl-only userland for the prefix-bundle test
#   golang-go python3 tzdata     --trace of Debian's python3, the CGo fixture, --tzdata
#   locales                      --locale C.UTF-8
#   nginx postgresql-15 openjdk-17-jre-headless openssh-client perl
#                                real programs (tests/real_programs.rs): nginx -t traced with
#                                its Debian config, initdb traced as another user, java's
#                                libjvm.so, ssh-keygen writing a key under --test, perl -MPOSIX
#   docker-registry apache2-utils  a real registry for --push (htpasswd -B for its auth)
#   g++-aarch64-linux-gnu qemu-user-static  --sysroot: an arm64 C++ hello, run through binfmt_misc
#   gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-powerpc64le-linux-gnu gcc-s390x-linux-gnu
#   gcc-i686-linux-gnu           `elfpack patch` on 32-bit and big-endian files, run under
#                                qemu-user with the cross compilers' sysroots (tests/patch_cross.rs)
#   vim                          package data: vim's runtime from a FROM scratch image
#   python3-venv                 a venv of Debian's python3 for pyspdxtools (below), which
#                                validates --sbom documents (tests/package_metadata.rs)
PACKAGES=(
  gcc g++ libc6-dev binutils make ca-certificates
  curl git sqlite3 openssl libc-bin
  coreutils util-linux tar gzip
  podman runc skopeo uidmap fuse-overlayfs netavark
  musl musl-tools musl-dev
  golang-go python3 tzdata locales
  nginx postgresql-15 openjdk-17-jre-headless openssh-client perl
  docker-registry apache2-utils
  g++-aarch64-linux-gnu qemu-user-static
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf gcc-powerpc64le-linux-gnu gcc-s390x-linux-gnu
  gcc-i686-linux-gnu
  vim
  python3-venv
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: missing apt packages: ${missing[*]} (run me as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "test.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# pyspdxtools (PyPI spdx-tools, pinned) in a venv of Debian's /usr/bin/python3
# (not whatever python3 comes first on PATH) under the target directory,
# where tests/package_metadata.rs looks for it; made again when the pinned
# version changes.
SPDX_TOOLS=0.8.5
spdx_venv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/spdx-tools"
if [ "$("$spdx_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("spdx-tools"))' 2>/dev/null)" != "$SPDX_TOOLS" ] ||
  [ ! -x "$spdx_venv/bin/pyspdxtools" ]; then
  echo "test.sh: installing spdx-tools $SPDX_TOOLS into $spdx_venv" >&2
  rm -rf "$spdx_venv"
  /usr/bin/python3 -m venv "$spdx_venv"
  "$spdx_venv/bin/pip" install -q --disable-pip-version-check "spdx-tools==$SPDX_TOOLS"
fi

exec cargo test --release "$@"
