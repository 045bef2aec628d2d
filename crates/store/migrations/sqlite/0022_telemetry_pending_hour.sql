-- The minute's sweep reads the pending (device, hour) marks in hour order, from where its last
-- transaction stopped (`WHERE hour_at <= … AND (hour_at, device_id) > (…, …) ORDER BY hour_at, device_id
-- LIMIT 100`). With only the (device, hour) key that was a scan and a sort of every mark for each
-- hundred summarised: nothing at a town's 6,500 marks an hour, a minute's work at a county's hundred
-- thousand devices. This index answers it in key order from where the pass stopped. Ingest's upsert of
-- a mark already there only counts it, so the index changes when a new hour begins for a device.
-- Same index in the other backend's folder.
CREATE INDEX telemetry_pending_hour ON telemetry_pending (hour_at, device_id);
