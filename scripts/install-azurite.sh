#!/usr/bin/env bash
# Install the Azure Blob Storage emulator (Azurite) used by the storage and backup tests.
#
# Installs into <repo>/.test-deps/azurite (gitignored). Idempotent: does nothing when the pinned
# version is already there. Azurite 3.35.0 is pinned because newer releases need Node >= 21 and the
# project's machines have Node 20.
#
# Usage: scripts/install-azurite.sh [--force]
set -euo pipefail

AZURITE_VERSION="3.35.0"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${AZURITE_PREFIX:-$REPO_ROOT/.test-deps/azurite}"
BIN="$PREFIX/node_modules/.bin/azurite-blob"
PKG_JSON="$PREFIX/node_modules/azurite/package.json"

installed_version() {
  [ -f "$PKG_JSON" ] || return 1
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$PKG_JSON" 2>/dev/null
}

if [ "${1:-}" != "--force" ] && [ -x "$BIN" ] && [ "$(installed_version || true)" = "$AZURITE_VERSION" ]; then
  echo "azurite $AZURITE_VERSION already installed in $PREFIX"
  exit 0
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "error: node and npm are required to install Azurite (Debian: apt-get install -y nodejs npm)" >&2
  exit 1
fi

mkdir -p "$PREFIX"
echo "installing azurite@$AZURITE_VERSION into $PREFIX ..."
npm install --prefix "$PREFIX" "azurite@$AZURITE_VERSION" --no-audit --no-fund --loglevel=error

if [ ! -x "$BIN" ]; then
  echo "error: npm finished but $BIN is missing" >&2
  exit 1
fi
echo "azurite $(installed_version) installed: $BIN"
