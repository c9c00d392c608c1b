#!/usr/bin/env bash
# Builds Coffer and installs coffer + cofferd into ~/.local/bin, with the
# systemd user unit where systemd runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
install -d "$HOME/.local/bin"
install -m 0755 target/release/coffer target/release/cofferd "$HOME/.local/bin/"
if command -v systemctl >/dev/null 2>&1 && systemctl --user show-environment >/dev/null 2>&1; then
  install -d "$HOME/.config/systemd/user"
  install -m 0644 packaging/systemd/cofferd.service "$HOME/.config/systemd/user/"
  systemctl --user daemon-reload
  echo "systemd unit installed: systemctl --user enable --now cofferd"
fi
echo "installed coffer and cofferd in $HOME/.local/bin"
