-- Summaries of each metric over 5-minute and hourly spans (count, sum, low, high), kept up to date in the
-- transaction that stores the readings, so a year of history is read from summaries and the raw readings
-- can be purged after a month. Same table in the other backend's folder.
CREATE TABLE telemetry_rollup (
    device_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    span_s BIGINT NOT NULL,
    start_at BIGINT NOT NULL,
    n BIGINT NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION NOT NULL,
    high DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (device_id, metric, span_s, start_at)
);
CREATE INDEX telemetry_at ON telemetry (at);
