#!/usr/bin/env bash
# Installs what building and testing Keyward needs, skipping whatever is already there.
#   .ci/tools.sh console   the wasm target, trunk, wasm-bindgen-cli, wasm-opt (to build the console)
#   .ci/tools.sh all       the above, plus Chromium + chromedriver, Python test deps, PostgreSQL running
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

say() { printf '\033[1;34m==> %s\033[0m\n' "$*"; }
apt_updated=""
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ -z "$apt_updated" ]; then $sudo apt-get update -q >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null
}

# --- the console: Rust to wasm with Trunk ---------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
  say "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
# trunk 0.22 needs a newer rustc than this toolchain; 0.21 builds offline with pinned tools.
if ! command -v trunk >/dev/null || ! trunk --version | grep -q ' 0\.21\.'; then
  say "cargo install trunk ~0.21 (about 15 minutes, once)"
  cargo install trunk --version '~0.21' --locked
fi
# wasm-bindgen-cli must be exactly the wasm-bindgen of Cargo.lock.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$want" ]; then
  say "cargo install wasm-bindgen-cli $want"
  cargo install wasm-bindgen-cli --version "$want"
fi
# Trunk cannot download wasm-opt here. Debian's binaryen 108 miscompiles wasm-bindgen's
# externref table, so binaryen 132 comes from npm into target/tools (pinned in Trunk.toml).
if [ "$(target/tools/node_modules/.bin/wasm-opt --version 2>/dev/null | awk '{print $3}')" != 132 ]; then
  command -v npm >/dev/null || apt_install npm
  say "npm install binaryen@132 (wasm-opt) into target/tools"
  npm install --prefix target/tools --no-audit --no-fund --silent binaryen@132
fi

# GraphiQL's scripts, embedded with the console so /graphql works offline.
if [ ! -f target/tools/node_modules/graphiql/graphiql.min.js ]; then
  say "npm install graphiql@4.1.2 react@18.3.1 react-dom@18.3.1 into target/tools"
  npm install --prefix target/tools --no-audit --no-fund --silent --legacy-peer-deps \
    graphiql@4.1.2 react@18.3.1 react-dom@18.3.1
fi

[ "$what" = console ] && exit 0

# --- the test suite ---------------------------------------------------------------------
apt_install chromium chromium-driver
python3 -c 'import cryptography, nacl' 2>/dev/null || {
  say "pip install cryptography pynacl (interop tests)"
  python3 -m pip install -q cryptography pynacl
}
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if ls /etc/postgresql >/dev/null 2>&1; then
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  else
    apt_install postgresql
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  fi
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
