-- civicgrid schema, SQLite flavour. Keep tables and columns in step with ../postgres/0001_init.sql
-- (a test compares them). Instants are BIGINT microseconds since the Unix epoch (UTC).

CREATE TABLE town (
    code TEXT PRIMARY KEY NOT NULL,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL
);

CREATE TABLE workstations (
    code TEXT PRIMARY KEY NOT NULL,
    name_zh TEXT NOT NULL,
    kind TEXT NOT NULL
);

CREATE TABLE grids (
    code TEXT PRIMARY KEY NOT NULL,
    community TEXT NOT NULL REFERENCES workstations (code),
    name_zh TEXT NOT NULL,
    households BIGINT NOT NULL,
    worker_user_id BIGINT,
    polygon TEXT NOT NULL
);

CREATE TABLE micro_grids (
    code TEXT PRIMARY KEY NOT NULL,
    grid TEXT NOT NULL REFERENCES grids (code),
    name_zh TEXT NOT NULL,
    households BIGINT NOT NULL,
    worker_user_id BIGINT,
    polygon TEXT NOT NULL
);

CREATE TABLE departments (
    code TEXT PRIMARY KEY NOT NULL,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    parent TEXT
);

CREATE TABLE component_classes (
    code TEXT PRIMARY KEY NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE matters (
    code TEXT PRIMARY KEY NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE work_calendar (
    day TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL
);

CREATE TABLE components (
    id TEXT PRIMARY KEY NOT NULL,
    class_code TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    grid TEXT NOT NULL,
    micro_grid TEXT NOT NULL,
    department TEXT NOT NULL
);
CREATE INDEX components_grid ON components (grid, id);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    department TEXT,
    phone TEXT,
    grids TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE case_counters (
    day TEXT PRIMARY KEY NOT NULL,
    last BIGINT NOT NULL
);

-- No AUTOINCREMENT: it rewrites sqlite_sequence on every commit. Cases are never deleted, so rowids
-- still only grow, which keyset pagination relies on.
CREATE TABLE cases (
    id INTEGER PRIMARY KEY,
    number TEXT NOT NULL UNIQUE,
    matter TEXT NOT NULL,
    source TEXT NOT NULL,
    grid TEXT NOT NULL,
    micro_grid TEXT NOT NULL,
    reporter_user_id BIGINT,
    reported_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    version BIGINT NOT NULL,
    lead_dept TEXT,
    co_depts TEXT NOT NULL,
    due_at BIGINT,
    updated_at BIGINT NOT NULL,
    facts TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX cases_grid ON cases (grid, id);
CREATE INDEX cases_state ON cases (state, id);
CREATE INDEX cases_matter ON cases (matter, id);
CREATE INDEX cases_lead_dept ON cases (lead_dept, id);
CREATE INDEX cases_reporter ON cases (reporter_user_id, id);
CREATE INDEX cases_reported_at ON cases (reported_at);
CREATE INDEX cases_due_at ON cases (due_at) WHERE due_at IS NOT NULL;

CREATE TABLE case_events (
    case_id BIGINT NOT NULL REFERENCES cases (id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor_user_id BIGINT NOT NULL,
    action TEXT NOT NULL,
    to_state TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (case_id, seq)
) WITHOUT ROWID; -- one b-tree instead of a table plus its key index
