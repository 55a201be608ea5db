-- Sluice gold star schema for PostgreSQL (15+: the loader uses MERGE).
-- Mirrors synapse/001_star_schema.sql; the loader keeps it in step with the
-- gold Delta tables. Idempotent: safe to run again. Primary keys are the
-- tables' grains, so a double load could not add rows even by mistake.

CREATE SCHEMA IF NOT EXISTS sluice;

-- Feature usage per day, feature, user and plan.
CREATE TABLE IF NOT EXISTS sluice.fact_feature_usage (
    date_key          INTEGER      NOT NULL,
    feature           TEXT         NOT NULL,
    user_id           TEXT         NOT NULL,
    plan              TEXT         NOT NULL,
    events            BIGINT       NOT NULL,
    total_duration_ms BIGINT       NOT NULL,
    total_items       BIGINT       NOT NULL,
    first_used_at     TIMESTAMP(6) NOT NULL,
    last_used_at      TIMESTAMP(6) NOT NULL,
    PRIMARY KEY (date_key, feature, user_id, plan)
);

-- One row per session.
CREATE TABLE IF NOT EXISTS sluice.fact_sessions (
    session_id     TEXT         NOT NULL PRIMARY KEY,
    user_id        TEXT         NOT NULL,
    account_id     TEXT         NOT NULL,
    plan           TEXT         NOT NULL,
    platform       TEXT         NULL,
    date_key       INTEGER      NOT NULL,
    started_at     TIMESTAMP(6) NOT NULL,
    ended_at       TIMESTAMP(6) NOT NULL,
    events         BIGINT       NOT NULL,
    feature_events BIGINT       NOT NULL,
    session_ends   BIGINT       NOT NULL,
    duration_ms    BIGINT       NOT NULL
);

-- Activity per day, user and plan.
CREATE TABLE IF NOT EXISTS sluice.fact_user_daily (
    date_key       INTEGER NOT NULL,
    user_id        TEXT    NOT NULL,
    plan           TEXT    NOT NULL,
    account_id     TEXT    NOT NULL,
    events         BIGINT  NOT NULL,
    sessions       BIGINT  NOT NULL,
    feature_events BIGINT  NOT NULL,
    duration_ms    BIGINT  NOT NULL,
    PRIMARY KEY (date_key, user_id, plan)
);

-- Daily active users per plan.
CREATE TABLE IF NOT EXISTS sluice.fact_daily_active_users (
    date_key       INTEGER NOT NULL,
    plan           TEXT    NOT NULL,
    active_users   BIGINT  NOT NULL,
    events         BIGINT  NOT NULL,
    sessions       BIGINT  NOT NULL,
    feature_events BIGINT  NOT NULL,
    PRIMARY KEY (date_key, plan)
);

-- Users, SCD type 2 on plan: one row per version.
CREATE TABLE IF NOT EXISTS sluice.dim_user (
    user_id    TEXT         NOT NULL,
    account_id TEXT         NULL,
    plan       TEXT         NULL,
    valid_from TIMESTAMP(6) NOT NULL,
    valid_to   TIMESTAMP(6) NULL,      -- NULL while current
    is_current BOOLEAN      NOT NULL,
    opened_by  TEXT         NOT NULL,  -- first_seen | change
    PRIMARY KEY (user_id, valid_from)
);

CREATE TABLE IF NOT EXISTS sluice.dim_feature (
    feature       TEXT         NOT NULL PRIMARY KEY,
    category      TEXT         NOT NULL,
    is_advanced   BOOLEAN      NOT NULL,
    first_used_at TIMESTAMP(6) NOT NULL,
    last_used_at  TIMESTAMP(6) NOT NULL
);

CREATE TABLE IF NOT EXISTS sluice.dim_date (
    date_key   INTEGER NOT NULL PRIMARY KEY,
    date       DATE    NOT NULL,
    year       INTEGER NOT NULL,
    quarter    INTEGER NOT NULL,
    month      INTEGER NOT NULL,
    day        INTEGER NOT NULL,
    weekday    TEXT    NOT NULL,
    is_weekend BOOLEAN NOT NULL
);

CREATE TABLE IF NOT EXISTS sluice.dim_plan (
    plan         TEXT    NOT NULL PRIMARY KEY,
    display_name TEXT    NOT NULL,
    tier         INTEGER NOT NULL,
    is_paid      BOOLEAN NOT NULL
);

-- Loader state: the Delta version of each gold table loaded so far. Written
-- in the same transaction as the rows it describes, so a crash can neither
-- lose nor repeat a load.
CREATE TABLE IF NOT EXISTS sluice.load_state (
    table_name    TEXT        NOT NULL PRIMARY KEY,
    delta_version BIGINT      NOT NULL,
    table_id      TEXT        NULL,     -- the Delta table's id: another lake means a full reload
    loaded_at     TIMESTAMPTZ NOT NULL
);
