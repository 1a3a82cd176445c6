#!/usr/bin/env bash
# Install the real clients the end-to-end client tests drive: the Azure CLI (its own venv, about
# 1 GB, so it never mixes with Portico's dependencies) and the Azure SDK for JavaScript.
#
# Installs into <repo>/.test-deps/azure-cli and <repo>/.test-deps/js (gitignored). Idempotent: an
# existing install is reused (pip's cache makes a re-install fast, but it is still large).
#
# Usage: scripts/install-azure-cli.sh [--force]
set -euo pipefail

AZURE_CLI_SPEC="${AZURE_CLI_SPEC:-azure-cli==2.91.0}"  # the version the tests were checked with
JS_PACKAGES=("@azure/identity@4.13.1" "@azure/arm-apimanagement@10.0.0")
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AZ_PREFIX="${AZURE_CLI_PREFIX:-$REPO_ROOT/.test-deps/azure-cli}"
JS_PREFIX="${AZURE_JS_PREFIX:-$REPO_ROOT/.test-deps/js}"
PYTHON="${PYTHON:-python3}"

if [ "${1:-}" = "--force" ] || [ ! -x "$AZ_PREFIX/bin/az" ]; then
  echo "installing the Azure CLI into $AZ_PREFIX (about 1 GB) ..."
  rm -rf "$AZ_PREFIX"
  "$PYTHON" -m venv "$AZ_PREFIX"
  "$AZ_PREFIX/bin/pip" install --quiet --disable-pip-version-check "$AZURE_CLI_SPEC"
  [ -x "$AZ_PREFIX/bin/az" ] || { echo "error: pip finished but $AZ_PREFIX/bin/az is missing" >&2; exit 1; }
else
  echo "Azure CLI already installed in $AZ_PREFIX"
fi

if [ "${1:-}" = "--force" ] || [ ! -d "$JS_PREFIX/node_modules/@azure/arm-apimanagement" ] \
  || [ ! -d "$JS_PREFIX/node_modules/@azure/identity" ]; then
  command -v npm >/dev/null 2>&1 || { echo "error: npm is required for the JavaScript SDK" >&2; exit 1; }
  mkdir -p "$JS_PREFIX"
  echo "installing ${JS_PACKAGES[*]} into $JS_PREFIX ..."
  npm install --prefix "$JS_PREFIX" "${JS_PACKAGES[@]}" --no-audit --no-fund --loglevel=error
else
  echo "JavaScript SDK already installed in $JS_PREFIX"
fi
