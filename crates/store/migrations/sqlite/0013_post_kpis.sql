-- Post scores (岗位考核): counters per person (dim 'person', key: the user id) beside the units, and
-- the counters the patrol-worker, shift-leader and dispatcher formulas need. The KPI reader's
-- position is forgotten so its next turn rebuilds every counter from the histories, new ones included.
-- Same columns in ../postgres/.
ALTER TABLE kpi_counts ADD COLUMN filed_voided BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_counts ADD COLUMN dispatched_on_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_counts ADD COLUMN checks BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_counts ADD COLUMN checks_on_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_counts ADD COLUMN verifies BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_counts ADD COLUMN verifies_on_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_counts ADD COLUMN valid_reports BIGINT NOT NULL DEFAULT 0;
ALTER TABLE kpi_counts ADD COLUMN missed BIGINT NOT NULL DEFAULT 0;
DELETE FROM log_consumers WHERE name = 'kpi';
