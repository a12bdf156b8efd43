#!/usr/bin/env bash
# Builds the web UI into web/dist (served by every node at /). Needs Node.js 20 and npm;
# installs them with apt-get when missing and run as root on Debian. With --test, also
# installs Debian's Chromium for the browser tests and runs the UI's unit tests.
set -euo pipefail
cd "$(dirname "$0")/../web"
need=()
command -v node > /dev/null || need+=(nodejs)
command -v npm > /dev/null || need+=(npm)
if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
    need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null 2>&1 || {
            apt-get update -qq > /dev/null 2>&1 || true
            apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null 2>&1 \
                || echo "WARNING: installing ${need[*]} failed" >&2
        }
    else
        echo "WARNING: missing ${need[*]} (install them as root with apt-get)" >&2
    fi
fi
# esbuild's platform binary comes as an optional dependency; its install script only
# checks it, so it is not needed.
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
if [ "${1:-}" = "--test" ]; then
    npx tsc --noEmit
    npm run --silent test:unit
fi
