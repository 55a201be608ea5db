-- Sluice gold star schema for an Azure Synapse dedicated SQL pool.
-- Mirrors the gold Delta tables written by the default gold plugin
-- (plugins/gold). Idempotent: safe to run again.
--
-- Facts are hash-distributed on the column most joins and aggregates use and
-- stored as clustered columnstore; dimensions are small, so replicated to
-- every distribution with a clustered rowstore index.

IF NOT EXISTS (SELECT 1 FROM sys.schemas WHERE name = 'sluice')
    EXEC('CREATE SCHEMA sluice');

-- Feature usage per day, feature, user and plan.
IF OBJECT_ID('sluice.fact_feature_usage') IS NULL
CREATE TABLE sluice.fact_feature_usage (
    date_key          INT            NOT NULL,  -- yyyymmdd, joins dim_date
    feature           NVARCHAR(64)   NOT NULL,  -- joins dim_feature
    user_id           NVARCHAR(64)   NOT NULL,  -- joins dim_user (natural key)
    [plan]            NVARCHAR(16)   NOT NULL,  -- joins dim_plan
    events            BIGINT         NOT NULL,
    total_duration_ms BIGINT         NOT NULL,
    total_items       BIGINT         NOT NULL,
    first_used_at     DATETIME2(6)   NOT NULL,
    last_used_at      DATETIME2(6)   NOT NULL
)
WITH (DISTRIBUTION = HASH(user_id), CLUSTERED COLUMNSTORE INDEX);

-- One row per session.
IF OBJECT_ID('sluice.fact_sessions') IS NULL
CREATE TABLE sluice.fact_sessions (
    session_id     NVARCHAR(64)  NOT NULL,
    user_id        NVARCHAR(64)  NOT NULL,
    account_id     NVARCHAR(64)  NOT NULL,
    [plan]         NVARCHAR(16)  NOT NULL,  -- plan at the session's first event
    platform       NVARCHAR(32)  NULL,
    date_key       INT           NOT NULL,  -- day of the session's first event
    started_at     DATETIME2(6)  NOT NULL,
    ended_at       DATETIME2(6)  NOT NULL,
    events         BIGINT        NOT NULL,
    feature_events BIGINT        NOT NULL,
    session_ends   BIGINT        NOT NULL,
    duration_ms    BIGINT        NOT NULL
)
WITH (DISTRIBUTION = HASH(session_id), CLUSTERED COLUMNSTORE INDEX);

-- Activity per day, user and plan (the grain of daily active users).
IF OBJECT_ID('sluice.fact_user_daily') IS NULL
CREATE TABLE sluice.fact_user_daily (
    date_key       INT           NOT NULL,
    user_id        NVARCHAR(64)  NOT NULL,
    [plan]         NVARCHAR(16)  NOT NULL,
    account_id     NVARCHAR(64)  NOT NULL,
    events         BIGINT        NOT NULL,
    sessions       BIGINT        NOT NULL,
    feature_events BIGINT        NOT NULL,
    duration_ms    BIGINT        NOT NULL
)
WITH (DISTRIBUTION = HASH(user_id), CLUSTERED COLUMNSTORE INDEX);

-- Daily active users per plan (derived from fact_user_daily).
IF OBJECT_ID('sluice.fact_daily_active_users') IS NULL
CREATE TABLE sluice.fact_daily_active_users (
    date_key       INT           NOT NULL,
    [plan]         NVARCHAR(16)  NOT NULL,
    active_users   BIGINT        NOT NULL,
    events         BIGINT        NOT NULL,
    sessions       BIGINT        NOT NULL,
    feature_events BIGINT        NOT NULL
)
WITH (DISTRIBUTION = REPLICATE, CLUSTERED INDEX (date_key, [plan]));

-- Users, SCD type 2 on plan: one row per version.
IF OBJECT_ID('sluice.dim_user') IS NULL
CREATE TABLE sluice.dim_user (
    user_id    NVARCHAR(64)  NOT NULL,
    account_id NVARCHAR(64)  NULL,
    [plan]     NVARCHAR(16)  NULL,
    valid_from DATETIME2(6)  NOT NULL,
    valid_to   DATETIME2(6)  NULL,      -- NULL while current
    is_current BIT           NOT NULL,
    opened_by  NVARCHAR(16)  NOT NULL   -- first_seen | change
)
WITH (DISTRIBUTION = REPLICATE, CLUSTERED INDEX (user_id, valid_from));

IF OBJECT_ID('sluice.dim_feature') IS NULL
CREATE TABLE sluice.dim_feature (
    feature       NVARCHAR(64)  NOT NULL,
    category      NVARCHAR(32)  NOT NULL,
    is_advanced   BIT           NOT NULL,
    first_used_at DATETIME2(6)  NOT NULL,
    last_used_at  DATETIME2(6)  NOT NULL
)
WITH (DISTRIBUTION = REPLICATE, CLUSTERED INDEX (feature));

IF OBJECT_ID('sluice.dim_date') IS NULL
CREATE TABLE sluice.dim_date (
    date_key   INT           NOT NULL,
    [date]     DATE          NOT NULL,
    [year]     INT           NOT NULL,
    [quarter]  INT           NOT NULL,
    [month]    INT           NOT NULL,
    [day]      INT           NOT NULL,
    weekday    NVARCHAR(16)  NOT NULL,
    is_weekend BIT           NOT NULL
)
WITH (DISTRIBUTION = REPLICATE, CLUSTERED INDEX (date_key));

IF OBJECT_ID('sluice.dim_plan') IS NULL
CREATE TABLE sluice.dim_plan (
    [plan]       NVARCHAR(16)  NOT NULL,
    display_name NVARCHAR(32)  NOT NULL,
    tier         INT           NOT NULL,
    is_paid      BIT           NOT NULL
)
WITH (DISTRIBUTION = REPLICATE, CLUSTERED INDEX ([plan]));
