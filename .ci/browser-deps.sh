#!/usr/bin/env bash
# What the browser test (tests/test_browser.py) needs on a fresh Debian machine, installed as root:
# Debian's chromium package, which Playwright drives through executable_path (no browser download).
# Idempotent: does nothing when /usr/bin/chromium is there; apt-get update runs only when it is missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    echo "browser-deps: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium) already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "browser-deps: /usr/bin/chromium is missing; run this script as root (sudo $0) to install it" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
