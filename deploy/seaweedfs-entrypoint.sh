#!/bin/sh
# SeaweedFS for deploy/compose.yaml: master, volume server, filer and S3 gateway in one `weed server`
# process, with one S3 identity whose keys come from the environment (deploy/.env), so that no credential
# is written in the repository. Extra arguments are appended; a flag given twice takes its last value.
set -eu

: "${S3_ACCESS_KEY_ID:?is not set: fill in deploy/.env (see deploy/.env.example)}"
: "${S3_SECRET_ACCESS_KEY:?is not set: fill in deploy/.env (see deploy/.env.example)}"

# The keys are written into JSON as they are, so only characters that JSON never escapes are accepted
# (`openssl rand -hex 24` gives such keys).
for key in "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY"; do
    case "$key" in
        *[!A-Za-z0-9._~+/=-]*)
            echo "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY may hold only letters, digits and . _ ~ + / = -" >&2
            exit 2
            ;;
    esac
done

# mktemp creates the file owner-only; it lives in the container's own file system, never in a volume.
config="$(mktemp)"
printf '{"identities": [{"name": "modelkeep", "credentials": [{"accessKey": "%s", "secretKey": "%s"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}\n' \
    "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY" >"$config"

# -ip.bind: listen on every interface, not only the container's detected address (other containers and
# the health check on 127.0.0.1 both reach it). -volume.max=0: as many 1 GiB volumes as the disk holds.
# Telemetry off: nothing leaves the machine. Iceberg and Lance catalogs are not used.
exec weed -logtostderr=true server \
    -dir=/data \
    -ip.bind=0.0.0.0 \
    -master.telemetry=false \
    -master.volumeSizeLimitMB=1024 \
    -volume.max=0 \
    -filer \
    -s3 \
    -s3.port=8333 \
    -s3.config="$config" \
    -s3.allowDeleteBucketNotEmpty=false \
    -s3.port.iceberg=0 \
    -s3.port.lance=0 \
    "$@"
