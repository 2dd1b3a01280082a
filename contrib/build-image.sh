#!/usr/bin/env bash
# Builds the webex-token container image without a registry: a statically
# linked binary from cargo (glibc with crt-static: the musl target cannot be
# installed offline), the host's CA bundle, and contrib/Containerfile
# (FROM scratch), with buildah or podman.
#   contrib/build-image.sh [IMAGE]        default IMAGE: localhost/webex-token:latest
# Environment: ENGINE=buildah|podman (default: whichever is installed,
# buildah first), CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-localhost/webex-token:latest}
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
target=x86_64-unknown-linux-gnu
engine=${ENGINE:-}
if [ -z "$engine" ]; then
  for e in buildah podman; do
    if command -v "$e" >/dev/null 2>&1; then engine=$e; break; fi
  done
fi
[ -n "$engine" ] || { echo "build-image: neither buildah nor podman is installed" >&2; exit 1; }
[ -r "$ca" ] || { echo "build-image: no CA bundle at $ca (apt-get install ca-certificates, or set CA_BUNDLE)" >&2; exit 1; }

RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --locked --target "$target" --bin webex-token
bin=target/$target/release/webex-token
# Refuse a binary that would need a loader or shared libraries the image lacks.
if command -v file >/dev/null 2>&1 && ! file "$bin" | grep -q 'static'; then
  echo "build-image: $bin is not statically linked:" >&2; file "$bin" >&2; exit 1
fi

# A context of exactly the files the image needs (not the whole tree).
ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/webex-token"
cp "$ca" "$ctx/ca-certificates.crt"
cp contrib/Containerfile "$ctx/Containerfile"
case $engine in
  buildah) buildah bud --format docker -f "$ctx/Containerfile" -t "$image" "$ctx" ;;
  podman)  podman build --format docker -f "$ctx/Containerfile" -t "$image" "$ctx" ;;
  *) echo "build-image: ENGINE must be buildah or podman" >&2; exit 2 ;;
esac
echo "built $image with $engine"
