-- The reference data's version: every change to a table the service layer's world snapshot is read
-- from (town, micro-grids, departments, the catalogue, the calendar, the settings documents) counts
-- one up, by trigger, so each node polls one row and reloads its snapshot only when it moved, whichever
-- node (or tool) made the change. Same in the other backend's folder, where a statement-level trigger
-- does it.
CREATE TABLE world_version (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    n BIGINT NOT NULL
);
INSERT INTO world_version (id, n) VALUES (1, 0);
CREATE TRIGGER town_insert_moves_world AFTER INSERT ON town BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER town_update_moves_world AFTER UPDATE ON town BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER town_delete_moves_world AFTER DELETE ON town BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER micro_grids_insert_moves_world AFTER INSERT ON micro_grids BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER micro_grids_update_moves_world AFTER UPDATE ON micro_grids BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER micro_grids_delete_moves_world AFTER DELETE ON micro_grids BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER departments_insert_moves_world AFTER INSERT ON departments BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER departments_update_moves_world AFTER UPDATE ON departments BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER departments_delete_moves_world AFTER DELETE ON departments BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER component_classes_insert_moves_world AFTER INSERT ON component_classes BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER component_classes_update_moves_world AFTER UPDATE ON component_classes BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER component_classes_delete_moves_world AFTER DELETE ON component_classes BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER matters_insert_moves_world AFTER INSERT ON matters BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER matters_update_moves_world AFTER UPDATE ON matters BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER matters_delete_moves_world AFTER DELETE ON matters BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER work_calendar_insert_moves_world AFTER INSERT ON work_calendar BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER work_calendar_update_moves_world AFTER UPDATE ON work_calendar BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER work_calendar_delete_moves_world AFTER DELETE ON work_calendar BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER settings_insert_moves_world AFTER INSERT ON settings BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER settings_update_moves_world AFTER UPDATE ON settings BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER settings_delete_moves_world AFTER DELETE ON settings BEGIN UPDATE world_version SET n = n + 1 WHERE id = 1; END;
