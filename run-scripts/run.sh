#!/bin/sh
# Drop-in for an image's run.sh entrypoint script (secrets, gosu, wait-for,
# migrate, collectstatic, exec gunicorn): everything it did is now
# `initd run`, configured by environment variables (see README.md in this
# directory for the line-by-line mapping). Keep this file at the path your
# Dockerfile or compose file already calls (`CMD ["sh", "/app/bash/run.sh"]`)
# and nothing else has to change.
#
# `exec` matters: initd takes over this shell's process, so when the script
# was PID 1 of the container, initd is, and it gets `docker stop`'s signal.
set -eu
if ! command -v initd >/dev/null 2>&1; then
    echo "run.sh: initd is not on PATH; add it to the image: COPY initd /usr/local/bin/initd" >&2
    exit 127
fi
if [ "$#" -gt 0 ]; then
    # A command after the script (`run.sh python manage.py shell`) runs
    # under initd too, with the same secrets and user.
    exec initd exec -- "$@"
fi
exec initd run
