#!/bin/sh
# The image's entrypoint: `system2`. Accepts the command with or without a leading
# "system2" (Fly's process commands and release_command are written `system2 …` in
# deploy/fly/*.toml; `docker run IMAGE worker …` works too).
set -eu
if [ "${1:-}" = "system2" ]; then
    shift
fi
exec system2 "$@"
