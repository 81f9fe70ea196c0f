#!/usr/bin/env bash
# Sets the passwords of the roles created by 01_roles.sql from environment
# variables (given to the warehouse-postgres container by docker-compose.yml,
# values from .env). Runs once, after 01_roles.sql, on the first start with an
# empty data volume. To change a password later:
#   docker compose exec warehouse-postgres psql -U postgres -d tiering \
#     -c "ALTER ROLE tiering_bi_reader PASSWORD 'new-password'"
set -euo pipefail

: "${TIERING_WRITER_PASSWORD:?must be set (see .env.example)}"
: "${TIERING_BI_READER_PASSWORD:?must be set (see .env.example)}"
: "${TIERING_AUDITOR_PASSWORD:?must be set (see .env.example)}"

# Passwords travel as psql variables and are quoted by psql (:'var'), so any
# character is safe and nothing is interpolated into SQL by the shell. They are
# hashed (scram-sha-256, the PostgreSQL 16 default) before being stored.
psql -v ON_ERROR_STOP=1 --no-psqlrc \
     --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-tiering}" \
     -v writer_pw="${TIERING_WRITER_PASSWORD}" \
     -v reader_pw="${TIERING_BI_READER_PASSWORD}" \
     -v auditor_pw="${TIERING_AUDITOR_PASSWORD}" <<'SQL'
ALTER ROLE tiering_writer    PASSWORD :'writer_pw';
ALTER ROLE tiering_bi_reader PASSWORD :'reader_pw';
ALTER ROLE tiering_auditor   PASSWORD :'auditor_pw';
SQL
echo "02_passwords.sh: passwords set for tiering_writer, tiering_bi_reader, tiering_auditor"
