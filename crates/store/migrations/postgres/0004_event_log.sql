-- The global event log: every committed event of every aggregate (cases now; tasks, alarms and
-- applications later) gets a number from one counter, in commit order, so a consumer that reads
-- "everything after N" again and again never misses one. The counter row is taken last in a
-- writer's transaction and held until its commit, so numbers become visible in order even with
-- several app nodes. Same tables and columns in ../sqlite/.
CREATE TABLE event_counter (
    id BIGINT PRIMARY KEY NOT NULL,
    last BIGINT NOT NULL
);

CREATE TABLE event_log (
    seq BIGINT PRIMARY KEY NOT NULL,
    stream TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    version BIGINT NOT NULL,
    at BIGINT NOT NULL
);

INSERT INTO event_log (seq, stream, stream_id, version, at)
SELECT ROW_NUMBER() OVER (ORDER BY at, case_id, seq), 'case', case_id, seq, at FROM case_events;

INSERT INTO event_counter (id, last) SELECT 1, COALESCE(MAX(seq), 0) FROM event_log;

-- Every node LISTENs on its schema's channel; the counter's update announces the new last number,
-- delivered when the writer's transaction commits.
CREATE FUNCTION civicgrid_announce_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('civicgrid_events_' || TG_TABLE_SCHEMA, NEW.last::text);
    RETURN NEW;
END
$$;
CREATE TRIGGER event_counter_announce AFTER UPDATE ON event_counter
    FOR EACH ROW EXECUTE FUNCTION civicgrid_announce_events();

ALTER TABLE cases ADD COLUMN handle_due_at BIGINT;
ALTER TABLE cases ADD COLUMN replied_at BIGINT;
ALTER TABLE cases ADD COLUMN closed_at BIGINT;
ALTER TABLE cases ADD COLUMN close_type TEXT;
ALTER TABLE cases ADD COLUMN component_id TEXT;
ALTER TABLE cases ADD COLUMN escalation_level BIGINT NOT NULL DEFAULT 0;

UPDATE cases SET
    handle_due_at = (EXTRACT(EPOCH FROM (status::jsonb ->> 'handle_due_at')::timestamptz) * 1000000)::bigint,
    replied_at = (EXTRACT(EPOCH FROM (status::jsonb ->> 'replied_at')::timestamptz) * 1000000)::bigint,
    closed_at = (EXTRACT(EPOCH FROM (status::jsonb ->> 'closed_at')::timestamptz) * 1000000)::bigint,
    close_type = status::jsonb ->> 'close_type',
    component_id = facts::jsonb ->> 'component_id',
    escalation_level = COALESCE((status::jsonb ->> 'escalation_level')::bigint, 0);

CREATE INDEX cases_closed_at ON cases (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX cases_component ON cases (component_id, id) WHERE component_id IS NOT NULL;
