#!/bin/sh
# Drop-in for an image's run-dev.sh (compose `command: sh /app/bash/run-dev.sh`):
# install asset tooling once, start the asset watchers, then migrate and run
# the reloading dev server when AUTO_START_SERVER=true, or idle for
# `docker compose exec`. All of it is now `initd dev`, configured by
# environment variables (INITD_DEV_SETUP, INITD_WATCHERS, AUTO_START_SERVER;
# see README.md in this directory).
set -eu
if ! command -v initd >/dev/null 2>&1; then
    echo "run-dev.sh: initd is not on PATH; add it to the image: COPY initd /usr/local/bin/initd" >&2
    exit 127
fi
if [ "$#" -gt 0 ]; then
    echo "run-dev.sh: takes no arguments (configure initd dev through its environment: initd dev --help)" >&2
    exit 2
fi
exec initd dev
