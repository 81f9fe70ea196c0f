-- Roles, schemas and grants of the BI warehouse (database `tiering`).
--
-- THE migration of the BI warehouse, applied in two ways:
--   * compose: by the postgres image's entrypoint, as the superuser, on the first start
--     with an empty data volume (files in /docker-entrypoint-initdb.d run in name order);
--   * anywhere else: by `tiering.pg_publish.ensure_database()` (Python, as the admin DSN
--     TIERING_BI_ADMIN_DSN; it creates the database first if missing), which runs this
--     file as it is, minus psql's backslash lines. So: plain SQL, no psql variables.
-- Idempotent: safe to re-run by hand as well:
--   psql -U postgres -d tiering -f deploy/postgres/init/01_roles.sql
-- Passwords are NOT set here: 02_passwords.sh sets them from environment
-- variables, so no secret lives in the repository.
--
--   role               can log in  reads                    writes
--   tiering_writer     yes         bi, audit, pii (owner)   bi, audit, pii
--   tiering_bi_reader  yes         bi                       -
--   tiering_auditor    yes         bi, audit                -
--   (anyone else)                  nothing in bi/audit/pii  -
-- Superusers bypass all of this, as always in PostgreSQL.

\set ON_ERROR_STOP on

-- Roles (NOSUPERUSER NOCREATEDB NOCREATEROLE are the defaults, spelled out).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tiering_writer', 'tiering_bi_reader', 'tiering_auditor'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', r);
        END IF;
    END LOOP;
END
$$;

-- Only our roles may connect; temp tables for the writer only. The database is the
-- current one (`tiering` in compose; tests and `tiering.pg_publish.ensure_database`
-- apply this same script to other database names).
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO tiering_writer', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO tiering_bi_reader, tiering_auditor', current_database());
END
$$;

-- Nothing is published in `public`; nobody but its owner may create there
-- (already the default since PostgreSQL 15, repeated for clarity).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Schemas, owned by the writer (the publishing job connects as tiering_writer).
CREATE SCHEMA IF NOT EXISTS bi    AUTHORIZATION tiering_writer;
CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION tiering_writer;
CREATE SCHEMA IF NOT EXISTS pii   AUTHORIZATION tiering_writer;
REVOKE ALL ON SCHEMA bi, audit, pii FROM PUBLIC;

-- bi: BI tools (tiering_bi_reader) and auditors read.
GRANT USAGE ON SCHEMA bi TO tiering_bi_reader, tiering_auditor;
GRANT SELECT ON ALL TABLES IN SCHEMA bi TO tiering_bi_reader, tiering_auditor;

-- audit: auditors only.
GRANT USAGE ON SCHEMA audit TO tiering_auditor;
GRANT SELECT ON ALL TABLES IN SCHEMA audit TO tiering_auditor;

-- pii: no grant at all. Without USAGE on the schema nobody but the owner
-- (tiering_writer) can reach any object in it, whatever its own grants. It holds
-- pii.customers (name, e-mail, phone by customer_key) and pii.approvers (the approver
-- of a tier override by approver_key: bi and audit show override_approved_by_key only).

-- Tables and views the writer creates later get the same read grants.
-- NB: default privileges apply to objects created BY tiering_writer only; a table
-- created by another role (e.g. the superuser) must be granted by hand.
ALTER DEFAULT PRIVILEGES FOR ROLE tiering_writer IN SCHEMA bi
    GRANT SELECT ON TABLES TO tiering_bi_reader, tiering_auditor;
ALTER DEFAULT PRIVILEGES FOR ROLE tiering_writer IN SCHEMA audit
    GRANT SELECT ON TABLES TO tiering_auditor;
-- Functions are executable by PUBLIC by default; not for the writer's objects.
ALTER DEFAULT PRIVILEGES FOR ROLE tiering_writer
    REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Readers are read-only even if a grant is ever too wide, and find their schemas
-- without qualifying names.
ALTER ROLE tiering_bi_reader SET default_transaction_read_only = on;
ALTER ROLE tiering_bi_reader SET search_path = bi;
ALTER ROLE tiering_auditor   SET default_transaction_read_only = on;
ALTER ROLE tiering_auditor   SET search_path = bi, audit;
