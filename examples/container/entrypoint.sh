#!/bin/sh
# The container's entry command: bring the database back from the bucket on a first start
# (an empty volume), then run the application under continuous replication.
#
#   LITEVAULT_LOCATION  where the backups and the replicated history live (s3://bucket/prefix or
#                       a directory); required
#   APP_DB              the database (default /data/app.db)
#   APP_NAME            the name of its backups (default app)
#   "$@"                the application's command (default: the image's CMD)
set -eu
: "${LITEVAULT_LOCATION:?set LITEVAULT_LOCATION to s3://bucket/prefix (or a directory)}"
APP_DB=${APP_DB:-/data/app.db}
APP_NAME=${APP_NAME:-app}
[ "$#" -gt 0 ] || { echo "entrypoint: no application command given" >&2; exit 2; }

# A database on the volume is kept as it is; none and a backup in the bucket: the newest state
# is restored (every check, atomic); none and no backup: a fresh start.
litevault restore --latest --dir "$LITEVAULT_LOCATION" --name "$APP_NAME" "$APP_DB" --if-missing

# The application runs as litevault's child: SIGTERM from the container engine reaches it, and
# when it exits, what it committed last is shipped before the container stops, with its exit
# code. A database it creates on a fresh start is replicated once it exists (in WAL mode).
cmd=""
for arg in "$@"; do
  cmd="$cmd '$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'"
done
exec litevault replicate "$APP_DB" --to "$LITEVAULT_LOCATION" --name "$APP_NAME" --exec "exec $cmd"
