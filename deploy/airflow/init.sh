#!/usr/bin/env bash
# One-shot initialisation for the Airflow stack (the `airflow-init` service).
# Runs through the image's /entrypoint, which has already waited for the
# metadata database. Idempotent: safe to run on every `docker compose up`.
set -euo pipefail

echo "Airflow $(airflow version)"

echo "Migrating the metadata database..."
airflow db migrate

admin_user="${AIRFLOW_ADMIN_USER:-admin}"
: "${AIRFLOW_ADMIN_PASSWORD:?AIRFLOW_ADMIN_PASSWORD must be set (see .env.example)}"

auth_manager="$(airflow config get-value core auth_manager)"
case "${auth_manager}" in
  *SimpleAuthManager)
    # Airflow 3's default auth manager has no user table: users come from
    # [core] simple_auth_manager_users (set in docker-compose.yml) and their
    # passwords from a JSON file. Write that file on the volume shared with the
    # api-server, so the password is the one from .env instead of a random one
    # printed in the api-server log.
    passwords_file="$(airflow config get-value core simple_auth_manager_passwords_file)"
    mkdir -p "$(dirname "${passwords_file}")"
    ADMIN_USER="${admin_user}" PASSWORDS_FILE="${passwords_file}" python - <<'PY'
import json, os
path = os.environ["PASSWORDS_FILE"]
try:
    with open(path) as fh:
        passwords = json.loads(fh.read().strip() or "{}")
except FileNotFoundError:
    passwords = {}
passwords[os.environ["ADMIN_USER"]] = os.environ["AIRFLOW_ADMIN_PASSWORD"]
with open(path, "w") as fh:
    fh.write(json.dumps(passwords) + "\n")
os.chmod(path, 0o660)
PY
    echo "SimpleAuthManager: password for '${admin_user}' written to ${passwords_file}"
    ;;
  *FabAuthManager)
    # FAB keeps users in the metadata DB: create the admin once.
    if airflow users list --output plain | awk '{print $2}' | grep -qx "${admin_user}"; then
      echo "FAB: user '${admin_user}' already exists"
    else
      airflow users create --role Admin --username "${admin_user}" \
        --password "${AIRFLOW_ADMIN_PASSWORD}" --firstname Admin --lastname User \
        --email "${AIRFLOW_ADMIN_EMAIL:-admin@example.com}"
    fi
    ;;
  *)
    echo "Auth manager ${auth_manager}: no admin user created (manage users there)."
    ;;
esac

echo "Airflow initialisation done."
