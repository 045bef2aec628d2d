-- A grid worker's queues (a grid's cases in some state, newest first, and their capped counts) walk
-- this index instead of every case in a state across the town or every case of the grid. Same in the
-- other backend's folder.
CREATE INDEX IF NOT EXISTS cases_grid_state ON cases (grid, state, id);
