-- A grid worker's queues (a grid's cases in some state, newest first, and their capped counts) walk
-- this index instead of every case in a state across the town or every case of the grid. Same in the
-- other backend's folder.
CREATE INDEX IF NOT EXISTS cases_grid_state ON cases (grid, state, id);
-- Open311's servicerequestupdates asks for "everything since a time": the log's first entry at or
-- after it is found here, and the log is read on by its number from there.
CREATE INDEX IF NOT EXISTS event_log_at ON event_log (at);
