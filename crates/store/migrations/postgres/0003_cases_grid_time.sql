-- A grid's cases in a time range (monthly reports, "this week in my grid") use this index and sort the
-- few rows found, instead of walking the grid's whole history newest first. Same in ../sqlite/.
CREATE INDEX cases_grid_reported_at ON cases (grid, reported_at);
