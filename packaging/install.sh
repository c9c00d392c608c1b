#!/usr/bin/env bash
# Builds Coffer and installs coffer, cofferd and coffer-native-host into ~/.local/bin (no root,
# no package). Debian/Ubuntu: `bash packaging/deb.sh` builds a .deb instead.
# Then `coffer service install` runs cofferd as a login service (systemd user
# unit or launchd agent, ExecStart at the installed path); without it the CLI
# starts cofferd itself when needed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
install -d "$HOME/.local/bin"
install -m 0755 target/release/coffer target/release/cofferd target/release/coffer-native-host "$HOME/.local/bin/"
echo "installed coffer, cofferd and coffer-native-host in $HOME/.local/bin"
echo "shell completions: coffer completion bash|zsh|fish (see coffer completion --help)"
echo "login service:     $HOME/.local/bin/coffer service install"
echo "browser extension: $HOME/.local/bin/coffer browser install, then docs/browser.md"
