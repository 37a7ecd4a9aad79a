-- The carbon metrics store's database, beside Airflow's metadata database on the same server.
--
-- The postgres image runs the files in /docker-entrypoint-initdb.d/ once, when its data volume is created,
-- with psql as POSTGRES_USER (airflow) on POSTGRES_DB (airflow). The password comes from the container's
-- CARBON_DB_PASSWORD (psql 15+ \getenv), set from .env by docker-compose.yaml; it is never written here.
-- To change it later: ALTER ROLE carbon PASSWORD '...'; (or `docker compose down --volumes` to start over).

\set ON_ERROR_STOP on
\getenv carbon_password CARBON_DB_PASSWORD
\if :{?carbon_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'CARBON_DB_PASSWORD is not set in the postgres container'; END $$;
\endif

CREATE ROLE carbon LOGIN PASSWORD :'carbon_password';
CREATE DATABASE carbon OWNER carbon;

-- Each role reaches its own database only (airflow, the superuser, reaches both).
REVOKE CONNECT, TEMPORARY ON DATABASE carbon FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE airflow FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE carbon TO carbon;
