-- The reference data's version: every change to a table the service layer's world snapshot is read
-- from (town, micro-grids, departments, the catalogue, the calendar, the settings documents) counts
-- one up, by a statement-level trigger, so each node polls one row and reloads its snapshot only when
-- it moved, whichever node (or tool) made the change. Same in the other backend's folder.
CREATE TABLE world_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
);
INSERT INTO world_version (id, n) VALUES (1, 0);
CREATE FUNCTION civicgrid_world_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE world_version SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;
CREATE TRIGGER town_moves_world AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON town
    FOR EACH STATEMENT EXECUTE FUNCTION civicgrid_world_moved();
CREATE TRIGGER micro_grids_moves_world AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON micro_grids
    FOR EACH STATEMENT EXECUTE FUNCTION civicgrid_world_moved();
CREATE TRIGGER departments_moves_world AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON departments
    FOR EACH STATEMENT EXECUTE FUNCTION civicgrid_world_moved();
CREATE TRIGGER component_classes_moves_world AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON component_classes
    FOR EACH STATEMENT EXECUTE FUNCTION civicgrid_world_moved();
CREATE TRIGGER matters_moves_world AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON matters
    FOR EACH STATEMENT EXECUTE FUNCTION civicgrid_world_moved();
CREATE TRIGGER work_calendar_moves_world AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON work_calendar
    FOR EACH STATEMENT EXECUTE FUNCTION civicgrid_world_moved();
CREATE TRIGGER settings_moves_world AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON settings
    FOR EACH STATEMENT EXECUTE FUNCTION civicgrid_world_moved();
