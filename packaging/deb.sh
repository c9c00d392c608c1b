#!/usr/bin/env bash
# Builds the Debian package with cargo-deb: target/debian/coffer_VERSION-1_ARCH.deb.
#
#   bash packaging/deb.sh                 # release build
#   DEB_PROFILE=dev bash packaging/deb.sh # from the debug build (CI: no extra compile)
#
# cargo-deb has no build hook, so this script builds both binaries, generates
# what the package ships besides them (bash/zsh/fish completions with
# `coffer completion`, man pages with `coffer __man` and `cofferd
# --man-page`) into target/deb-assets/, then runs `cargo deb --no-build`.
# Extra arguments go to cargo deb (e.g. --fast, -o DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${DEB_PROFILE:-release}"
case "$profile" in
  dev) out=debug ;;
  *) out="$profile" ;;
esac
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi
cargo build --profile "$profile" -p coffer-cli -p coffer-daemon -p coffer-browser-host
bin="target/$out"
assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/man"
"$bin/coffer" completion bash > "$assets/completions/coffer"
"$bin/coffer" completion zsh > "$assets/completions/_coffer"
"$bin/coffer" completion fish > "$assets/completions/coffer.fish"
"$bin/coffer" __man "$assets/man" > /dev/null
"$bin/cofferd" --man-page > "$assets/man/cofferd.1"
gzip -9n "$assets"/man/*.1
cargo deb -p coffer-cli --no-build --profile "$profile" "$@"
