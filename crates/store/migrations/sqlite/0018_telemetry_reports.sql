-- Telemetry at ingest speed (issue 10's benchmark). A report is one row: a device's values taken at one
-- moment, as a JSON object of metric → value, keyed by (5-minute span, device, time), so a QoS 1
-- message delivered twice merges into the row it already made instead of counting twice. The span
-- leads the key so that a batch of reports from every device, all taken in the same few minutes, lands
-- on a handful of pages instead of one page per device; a device's history is read span by span.
-- Nothing else is written per report: the latest values are read back from the newest reports, and the 5-minute and hourly summaries
-- are made from the reports by the `iot.sweep` job for every (device, hour) marked pending here in the
-- report's own transaction (`touched` counts the marks, so a summary that raced a new report leaves the
-- mark for the next run). The old per-metric history moves over; its summaries are already complete.
-- Same tables in the other backend's folder.
CREATE TABLE telemetry_reports (
    bucket BIGINT NOT NULL,
    device_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    vals TEXT NOT NULL,
    PRIMARY KEY (bucket, device_id, at)
) WITHOUT ROWID;

CREATE TABLE telemetry_pending (
    device_id TEXT NOT NULL,
    hour_at BIGINT NOT NULL,
    touched BIGINT NOT NULL,
    PRIMARY KEY (device_id, hour_at)
) WITHOUT ROWID;

INSERT INTO telemetry_reports (bucket, device_id, at, vals)
    SELECT (at / 300000000) * 300000000, device_id, at, json_group_object(metric, value) FROM telemetry GROUP BY device_id, at;
DROP TABLE telemetry;
DROP TABLE telemetry_latest;
