-- On-site checks, fixes on the spot, merges and rectifications. Duplicate suggestions look for open
-- cases of one matter near a point, and closing a primary finds the cases merged into it: the case's
-- position and its primary are promoted out of the JSON columns. Same columns in ../postgres/.
ALTER TABLE cases ADD COLUMN lon DOUBLE PRECISION;
ALTER TABLE cases ADD COLUMN lat DOUBLE PRECISION;
ALTER TABLE cases ADD COLUMN merged_into BIGINT;

UPDATE cases SET
    lon = json_extract(facts, '$.location.lon'),
    lat = json_extract(facts, '$.location.lat'),
    merged_into = json_extract(status, '$.merged_into');

-- Open cases only: the suggestion never looks at the closed history.
CREATE INDEX cases_open_matter_lat ON cases (matter, lat) WHERE state NOT IN ('closed', 'void', 'merged');
CREATE INDEX cases_merged_into ON cases (merged_into, id) WHERE merged_into IS NOT NULL;
