-- Where a device stands, for one with no component to place it (a people counter: a checkpoint is
-- drawn at the middle of its counters, and its crowd alarms with it). WGS84 degrees; both or neither.
-- Same columns in ../sqlite/.
ALTER TABLE devices ADD COLUMN lon DOUBLE PRECISION;
ALTER TABLE devices ADD COLUMN lat DOUBLE PRECISION;
