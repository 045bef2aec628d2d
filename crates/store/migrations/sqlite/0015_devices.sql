-- Smart components' devices and their telemetry (issue 10). A device is separate from the component it
-- watches; a street lamp's controller names its lamp cabinet, a cabinet its feeder, a people counter its
-- checkpoint. Only the SHA-256 of a device's ingest token is kept. The latest value of each metric sits
-- beside the history, which keeps every reading (retention and downsampling come with the rules).
-- Same tables and columns in the other backend's folder.
CREATE TABLE devices (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    firmware TEXT NOT NULL,
    component_id TEXT,
    cabinet TEXT,
    feeder TEXT,
    checkpoint TEXT,
    expected_interval_s BIGINT NOT NULL,
    token_hash TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    last_seen_at BIGINT
);
CREATE INDEX devices_cabinet ON devices (cabinet) WHERE cabinet IS NOT NULL;
CREATE INDEX devices_component ON devices (component_id) WHERE component_id IS NOT NULL;

CREATE TABLE telemetry_latest (
    device_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (device_id, metric)
);

CREATE TABLE telemetry (
    device_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    at BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);
CREATE INDEX telemetry_series ON telemetry (device_id, metric, at);
