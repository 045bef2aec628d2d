-- Command and dispatch: the administrator's settings (the SLA policy), the readers of the global event
-- log and how far each has read, the duty roster, the in-app inbox and outbound notification channels.
-- Same tables and columns in ../postgres/.

-- One JSON document per setting, replaced whole.
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by BIGINT
);

-- A reader of the event log (e.g. the SLA timer scheduler) and the last log number it has handled.
CREATE TABLE log_consumers (
    name TEXT PRIMARY KEY NOT NULL,
    position BIGINT NOT NULL
);

-- Who is on duty: per local date and shift (day 08:00–20:00, night 20:00–08:00 of the next morning),
-- post and department ('' for the centre's own posts).
CREATE TABLE duty_roster (
    day TEXT NOT NULL,
    shift TEXT NOT NULL,
    post TEXT NOT NULL,
    department TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    PRIMARY KEY (day, shift, post, department, user_id)
);

-- The in-app inbox. (user_id, dedup_key) is unique: a timer that runs twice notifies once.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    dedup_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    case_id BIGINT REFERENCES cases (id),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at BIGINT,
    acked_at BIGINT,
    UNIQUE (user_id, dedup_key)
);
CREATE INDEX notifications_inbox ON notifications (user_id, id);

-- Outbound channels: a signed webhook, a WeCom or DingTalk group robot, an SMS gateway. The secret
-- signs what is sent and is never answered back.
CREATE TABLE notify_channels (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    min_severity TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);
