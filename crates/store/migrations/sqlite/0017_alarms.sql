-- Alarms of the smart components (issue 10). One open alarm per subject (a component, a device with no
-- component, a checkpoint) and fault: the partial unique index makes a second one impossible, even
-- with two nodes raising it at once. The whole alarm is kept as JSON beside the columns its queries
-- filter on; every change appends an alarm_events row and a global event_log entry (stream 'alarm').
-- Each rule's memory of each device (since when its condition holds, whether it is raised) is kept
-- when it changes, so a restart or another node carries on where it stopped. Same tables and columns
-- in the other backend's folder.
CREATE TABLE alarms (
    id INTEGER PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    fault TEXT NOT NULL,
    severity TEXT NOT NULL,
    device_id TEXT,
    active BIGINT NOT NULL,
    case_id BIGINT,
    suppressed_by BIGINT,
    hold_until BIGINT,
    raised_at BIGINT NOT NULL,
    last_raised_at BIGINT NOT NULL,
    ended_at BIGINT,
    version BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX alarms_one_open ON alarms (subject, fault) WHERE ended_at IS NULL;
CREATE INDEX alarms_case ON alarms (case_id) WHERE case_id IS NOT NULL;
CREATE INDEX alarms_recent ON alarms (last_raised_at);

CREATE TABLE alarm_events (
    alarm_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    at BIGINT NOT NULL,
    note TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (alarm_id, version)
);

CREATE TABLE rule_states (
    device_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (device_id, rule_id)
);
