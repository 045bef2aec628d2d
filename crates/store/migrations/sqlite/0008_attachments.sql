-- Uploaded files (evidence photos, documents): metadata here, content addressed by SHA-256 on the
-- local disk or, for several app nodes, in `blobs`. An attachment belongs to its uploader until a
-- report or a transition names it; from then on to whoever may see that case (`case_id`), linked in
-- the same transaction as the case write. Same tables and columns in the other backend.
CREATE TABLE attachments (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    size BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    taken_at BIGINT,
    lon DOUBLE PRECISION,
    lat DOUBLE PRECISION,
    width BIGINT,
    height BIGINT,
    thumb_sha256 TEXT,
    case_id BIGINT REFERENCES cases (id)
);
CREATE INDEX attachments_case ON attachments (case_id) WHERE case_id IS NOT NULL;

CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY NOT NULL,
    size BIGINT NOT NULL,
    content BLOB NOT NULL
);
