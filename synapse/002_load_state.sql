-- Loader state: the Delta version of each gold table loaded so far. Written
-- in the same transaction as the rows it describes (MERGE + UPDATE, then
-- COMMIT), so a crash can neither lose nor repeat a load. Idempotent.

IF OBJECT_ID('sluice.load_state') IS NULL
CREATE TABLE sluice.load_state (
    table_name    NVARCHAR(128) NOT NULL,
    delta_version BIGINT        NOT NULL,
    table_id      NVARCHAR(64)  NULL,   -- the Delta table's id: another lake means a full reload
    loaded_at     DATETIME2(6)  NOT NULL
)
WITH (DISTRIBUTION = REPLICATE, CLUSTERED INDEX (table_name));
