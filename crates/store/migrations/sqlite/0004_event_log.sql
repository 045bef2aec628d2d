-- The global event log: every committed event of every aggregate (cases now; tasks, alarms and
-- applications later) gets a number from one counter, in commit order, so a consumer that reads
-- "everything after N" again and again never misses one. A log row is thin: it points at the
-- aggregate's own event row, which keeps the body. Same tables and columns in ../postgres/.
CREATE TABLE event_counter (
    id BIGINT PRIMARY KEY NOT NULL,
    last BIGINT NOT NULL
);

CREATE TABLE event_log (
    seq INTEGER PRIMARY KEY NOT NULL,
    stream TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    at BIGINT NOT NULL
);

-- Existing history is numbered in the order it happened.
INSERT INTO event_log (seq, stream, stream_id, version, at)
SELECT ROW_NUMBER() OVER (ORDER BY at, case_id, seq), 'case', case_id, seq, at FROM case_events;

-- PostgreSQL numbers from this counter (several nodes); SQLite, with one writer, from the log itself.
INSERT INTO event_counter (id, last) SELECT 1, COALESCE(MAX(seq), 0) FROM event_log;

-- Fields that timers and KPIs filter on, promoted out of the JSON columns. Old rows are filled from
-- the JSON, to the microsecond: an instant there reads YYYY-MM-DDTHH:MM:SS[.fraction]Z.
ALTER TABLE cases ADD COLUMN handle_due_at BIGINT;
ALTER TABLE cases ADD COLUMN replied_at BIGINT;
ALTER TABLE cases ADD COLUMN closed_at BIGINT;
ALTER TABLE cases ADD COLUMN close_type TEXT;
ALTER TABLE cases ADD COLUMN component_id TEXT;
ALTER TABLE cases ADD COLUMN escalation_level BIGINT NOT NULL DEFAULT 0;

UPDATE cases SET
    handle_due_at = CASE WHEN json_extract(status, '$.handle_due_at') IS NULL THEN NULL ELSE unixepoch(substr(json_extract(status, '$.handle_due_at'), 1, 19)) * 1000000 + CASE WHEN instr(json_extract(status, '$.handle_due_at'), '.') > 0 THEN CAST(substr(substr(json_extract(status, '$.handle_due_at'), instr(json_extract(status, '$.handle_due_at'), '.') + 1, length(json_extract(status, '$.handle_due_at')) - instr(json_extract(status, '$.handle_due_at'), '.') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END,
    replied_at = CASE WHEN json_extract(status, '$.replied_at') IS NULL THEN NULL ELSE unixepoch(substr(json_extract(status, '$.replied_at'), 1, 19)) * 1000000 + CASE WHEN instr(json_extract(status, '$.replied_at'), '.') > 0 THEN CAST(substr(substr(json_extract(status, '$.replied_at'), instr(json_extract(status, '$.replied_at'), '.') + 1, length(json_extract(status, '$.replied_at')) - instr(json_extract(status, '$.replied_at'), '.') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END,
    closed_at = CASE WHEN json_extract(status, '$.closed_at') IS NULL THEN NULL ELSE unixepoch(substr(json_extract(status, '$.closed_at'), 1, 19)) * 1000000 + CASE WHEN instr(json_extract(status, '$.closed_at'), '.') > 0 THEN CAST(substr(substr(json_extract(status, '$.closed_at'), instr(json_extract(status, '$.closed_at'), '.') + 1, length(json_extract(status, '$.closed_at')) - instr(json_extract(status, '$.closed_at'), '.') - 1) || '000000', 1, 6) AS INTEGER) ELSE 0 END END,
    close_type = json_extract(status, '$.close_type'),
    component_id = json_extract(facts, '$.component_id'),
    escalation_level = COALESCE(json_extract(status, '$.escalation_level'), 0);

CREATE INDEX cases_closed_at ON cases (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX cases_component ON cases (component_id, id) WHERE component_id IS NOT NULL;
