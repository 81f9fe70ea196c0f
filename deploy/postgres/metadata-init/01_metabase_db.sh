#!/usr/bin/env bash
# Metadata postgres (service `postgres`): besides Airflow's own database
# (POSTGRES_DB=airflow, created by the image), create Metabase's application
# database `metabase` with its own role. Runs once, on the first start with an
# empty data volume.
set -euo pipefail

: "${METABASE_DB_PASSWORD:?must be set (see .env.example)}"

psql -v ON_ERROR_STOP=1 --no-psqlrc \
     --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
     -v mb_pw="${METABASE_DB_PASSWORD}" <<'SQL'
SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'metabase') AS create_role \gset
\if :create_role
CREATE ROLE metabase LOGIN;
\endif
ALTER ROLE metabase PASSWORD :'mb_pw';
SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'metabase') AS create_db \gset
\if :create_db
CREATE DATABASE metabase OWNER metabase;
\endif
SQL
echo "01_metabase_db.sh: database 'metabase' ready"
