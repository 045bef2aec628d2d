//! Devices and telemetry over HTTP: registration with its topology checks, ingest tokens, payloads from
//! a device's token and a gateway's key, refusals counted by reason that store nothing, retired devices,
//! the latest values and the history.

use super::*;

fn device(id: &str, kind: &str) -> Value {
    json!({"id": id, "kind": kind, "model": "NB-IoT-3", "firmware": "2.1.0", "expected_interval_s": 300})
}

#[tokio::test]
async fn devices_push_telemetry_and_bad_payloads_are_counted_and_refused() {
    civicgrid_http::metrics::install();
    let app = spawn_app().await;
    let admin = app.login("admin").await;
    let shift = app.login("shift").await;

    // Registration: the topology is checked; only the administrator registers.
    let (s, _) = app.post("/api/v1/devices", Some(&shift), &device("cab-01", "lamp_cabinet")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let mut cabinet = device("cab-01", "lamp_cabinet");
    cabinet["feeder"] = json!("10kV 清源线");
    assert_eq!(app.post("/api/v1/devices", Some(&admin), &cabinet).await.0, StatusCode::OK);
    let mut lamp = device("lamp-0001", "street_lamp");
    lamp["cabinet"] = json!("lamp-0002");
    let (s, e) = app.post("/api/v1/devices", Some(&admin), &lamp).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cabinet")), "{e}");
    lamp["cabinet"] = json!("cab-01");
    assert_eq!(app.post("/api/v1/devices", Some(&admin), &lamp).await.0, StatusCode::OK);
    let mut fast = device("hyd-01", "hydrant");
    fast["expected_interval_s"] = json!(1);
    let (s, e) = app.post("/api/v1/devices", Some(&admin), &fast).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("expected_interval_s")), "{e}");
    let (s, e) = app.post("/api/v1/devices", Some(&admin), &device("a/b", "hydrant")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // A people counter stands somewhere in the town.
    let mut counter = device("pc-99", "people_counter");
    counter["checkpoint"] = json!("文化中心");
    counter["location"] = json!({"lon": 116.39, "lat": 39.91});
    let (s, e) = app.post("/api/v1/devices", Some(&admin), &counter).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("location")), "{e}");
    counter["location"] = app.point_in_grid(0);
    let (s, stored) = app.post("/api/v1/devices", Some(&admin), &counter).await;
    assert_eq!(s, StatusCode::OK, "{stored}");
    for axis in ["lon", "lat"] {
        // Within serde_json's parsing of a float (its last digit may differ).
        let (sent, kept) = (counter["location"][axis].as_f64(), stored["location"][axis].as_f64());
        assert!((sent.expect("sent") - kept.expect("kept")).abs() < 1e-9, "{stored}");
    }
    let (s, list) = app.get("/api/v1/devices", Some(&shift)).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = list.as_array().expect("list").iter().filter_map(|d| d["id"].as_str()).collect();
    assert!(ids.contains(&"cab-01") && ids.contains(&"lamp-0001"), "{ids:?}");
    assert!(!ids.contains(&"hyd-01"), "the refused registration wrote nothing");

    // A device's token, shown once.
    let (s, t) = app.post("/api/v1/devices/lamp-0001/token", Some(&admin), &json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let token = t["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("dvt_"));
    let push = |auth: String, query: &'static str, body: &'static str| {
        let app = &app;
        async move {
            let resp = app
                .http
                .post(format!("{}/api/v1/telemetry{query}", app.base))
                .header("authorization", format!("Bearer {auth}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("push");
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, r) = push(
        token.clone(),
        "",
        r#"{"ts":"2026-11-23T08:59:00+08:00","values":{"lamp_on":true,"current_a":0.82,"voltage_v":221}}"#,
    )
    .await;
    assert_eq!((s, r["stored"].as_u64()), (StatusCode::OK, Some(3)), "{r}");

    // Bad payloads: refused with the reason, nothing stored.
    for (body, reason) in [
        ("not json", "not a reading"),
        (r#"{"values":{"pressure_mpa":0.3}}"#, "not reported"),
        (r#"{"values":{"current_a":9999}}"#, "outside its range"),
        (r#"{"values":{"current_a":"high"}}"#, "not a number"),
        (r#"{"ts":"2027-01-01T00:00:00Z","values":{"current_a":1}}"#, "ahead"),
    ] {
        let (s, e) = push(token.clone(), "", body).await;
        assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("payload")), "{body}: {e}");
        assert!(e["message"].as_str().is_some_and(|m| m.contains(reason)), "{body}: {e}");
    }
    let (s, latest) = app.get("/api/v1/devices/lamp-0001/latest", Some(&shift)).await;
    assert_eq!(s, StatusCode::OK);
    let current = latest.as_array().expect("list").iter().find(|r| r["metric"] == "current_a").expect("current");
    assert_eq!(current["value"].as_f64(), Some(0.82), "the refused payloads changed nothing: {latest}");
    let (s, _) = push("dvt_0000".into(), "", r#"{"values":{"current_a":1}}"#).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A gateway's key names the device; another channel's key may not push.
    let (s, account) = app
        .post("/api/v1/service-accounts", Some(&admin), &json!({"name": "nb-gateway", "channel": "iot_gateway"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{account}");
    let (_, key) =
        app.post(&format!("/api/v1/service-accounts/{}/keys", account["id"]), Some(&admin), &json!({})).await;
    let gateway = key["key"].as_str().expect("key").to_owned();
    let (s, r) =
        push(gateway.clone(), "?device=cab-01", r#"[{"values":{"voltage_v":230}},{"values":{"current_a":12.5}}]"#)
            .await;
    assert_eq!((s, r["stored"].as_u64()), (StatusCode::OK, Some(2)), "{r}");
    let (s, _) = push(gateway.clone(), "?device=nobody", r#"{"values":{"voltage_v":230}}"#).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = push(gateway, "", r#"{"values":{"voltage_v":230}}"#).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("device")), "{e}");

    // History of one metric, oldest first.
    app.clock.advance(SignedDuration::from_mins(5));
    push(token.clone(), "", r#"{"values":{"current_a":0.0,"lamp_on":false}}"#).await;
    let (s, history) = app
        .get(
            "/api/v1/devices/lamp-0001/readings?metric=current_a&from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z",
            Some(&shift),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{history}");
    let values: Vec<f64> = history.as_array().expect("list").iter().filter_map(|r| r["value"].as_f64()).collect();
    assert_eq!(values, [0.82, 0.0]);
    let (s, hourly) = app
        .get("/api/v1/devices/lamp-0001/rollups?metric=current_a&every=1h&from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z", Some(&shift))
        .await;
    assert_eq!(s, StatusCode::OK, "{hourly}");
    // 08:59 and 09:05 local: two hours, one reading each.
    assert_eq!(hourly.as_array().map(Vec::len), Some(2), "{hourly}");
    assert_eq!(
        (hourly[0]["start"].as_str(), hourly[0]["count"].as_u64(), hourly[0]["mean"].as_f64()),
        (Some("2026-11-23T00:00:00Z"), Some(1), Some(0.82))
    );
    assert_eq!((hourly[1]["count"].as_u64(), hourly[1]["max"].as_f64()), (Some(1), Some(0.0)));
    let (s, _) = app
        .get("/api/v1/devices/lamp-0001/rollups?metric=current_a&every=5m&from=2026-10-01T00:00:00Z&to=2026-11-24T00:00:00Z", Some(&shift))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "5-minute summaries over at most 31 days");
    let (s, _) = app
        .get("/api/v1/devices/lamp-0001/rollups?metric=current_a&every=2h&from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z", Some(&shift))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // A batch as MQTT hands it over: each message's own outcome, in order; only the good one stored.
    use civicgrid_service::iot::IngestError;
    let good: &[u8] = br#"{"ts":"2026-11-23T09:06:00+08:00","values":{"current_a":0.4}}"#;
    let batch = [("lamp-0001", good), ("nobody", good), ("a/b", good), ("lamp-0001", b"not json".as_slice())];
    let outcomes = app.state.services.ingest_batch(&batch).await;
    assert!(matches!(outcomes[0], Ok(1)), "{outcomes:?}");
    assert!(outcomes[1..].iter().all(|o| matches!(o, Err(IngestError::Refused(_)))), "{outcomes:?}");

    // A retired device's payloads are refused, by either path: retiring it through this node also
    // drops what the MQTT path had cached of it.
    let mut retired = lamp.clone();
    retired["retired"] = json!(true);
    assert_eq!(app.post("/api/v1/devices", Some(&admin), &retired).await.0, StatusCode::OK);
    let (s, _) = push(token, "", r#"{"values":{"current_a":0.5}}"#).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let late: &[u8] = br#"{"ts":"2026-11-23T09:07:00+08:00","values":{"current_a":0.5}}"#;
    let outcomes = app.state.services.ingest_batch(&[("lamp-0001", late)]).await;
    assert!(matches!(outcomes[0], Err(IngestError::Refused(_))), "{outcomes:?}");
    let (_, history) = app
        .get(
            "/api/v1/devices/lamp-0001/readings?metric=current_a&from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z",
            Some(&shift),
        )
        .await;
    let values: Vec<f64> = history.as_array().expect("list").iter().filter_map(|r| r["value"].as_f64()).collect();
    assert_eq!(values, [0.82, 0.0, 0.4], "only the good message of the batch, nothing after retirement");

    // Every refusal was counted under its reason.
    let scrape =
        app.http.get(format!("{}/metrics", app.base)).send().await.expect("scrape").text().await.expect("text");
    for reason in ["malformed", "unknown_metric", "out_of_range", "wrong_type", "bad_time", "unknown_device"] {
        assert!(scrape.contains(&format!("civicgrid_telemetry_rejected_total{{reason=\"{reason}\"}}")), "{reason}");
    }
    assert!(scrape.contains("civicgrid_telemetry_readings_total"));
}

/// Pushes one reading payload for a registered device through the same ingest as MQTT and HTTP.
async fn feed(app: &TestApp, device: &str, body: Value) {
    let id: civicgrid_core::iot::DeviceId = device.parse().expect("id");
    let d = app.store.device(&id).await.expect("read").expect("registered");
    app.state.services.ingest(&d, body.to_string().as_bytes()).await.expect("stored");
}

/// A lamp of the test town with its cabinet, its component's department and its alarm subject.
async fn a_lamp(app: &TestApp) -> (String, String, String, String) {
    let devices = app.store.devices().await.expect("devices");
    let lamp = devices.iter().find(|d| d.cabinet.is_some()).expect("a lamp with a cabinet");
    let component = app.store.component(lamp.component_id.expect("on a lamp")).await.expect("read").expect("lamp");
    let cabinet = lamp.cabinet.as_ref().expect("cabinet").to_string();
    (lamp.id.to_string(), cabinet, component.department.to_string(), format!("component:{}", component.id))
}

async fn alarm_of(app: &TestApp, token: &str, subject: &str) -> Value {
    let (s, list) = app.get(&format!("/api/v1/alarms?open=true&subject={subject}"), Some(token)).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list.as_array().and_then(|a| a.first()).cloned().unwrap_or(Value::Null)
}

/// The sweep stores an hour's summaries once the hour is over, after two minutes' grace; until then a
/// summary asked for is made from the reports, so the answer is the same before and after.
#[tokio::test]
async fn an_hour_is_summarised_once_it_is_over() {
    let app = spawn_app().await;
    let (lamp, ..) = a_lamp(&app).await;
    app.clock.set("2026-11-23T01:10:00Z".parse().expect("time")); // 09:10 in China
    let shift = app.login("shift").await;
    feed(&app, &lamp, json!({"ts": "2026-11-23T09:05:00+08:00", "values": {"current_a": 0.5}})).await;
    feed(&app, &lamp, json!({"ts": "2026-11-23T09:08:00+08:00", "values": {"current_a": 0.3}})).await;
    let services = &app.state.services;
    let hourly = || async {
        let path = format!(
            "/api/v1/devices/{lamp}/rollups?metric=current_a&every=1h&from=2026-11-23T01:00:00Z&to=2026-11-23T02:00:00Z"
        );
        let (s, rollups) = app.get(&path, Some(&shift)).await;
        assert_eq!(s, StatusCode::OK, "{rollups}");
        rollups
    };
    let before = hourly().await;
    assert_eq!((before[0]["count"].as_u64(), before[0]["mean"].as_f64()), (Some(2), Some(0.4)), "{before}");
    let summarise = || async { services.summarise_telemetry().await.expect("summarise") };
    assert_eq!(summarise().await, 0, "the hour is running");
    app.clock.set("2026-11-23T02:01:00Z".parse().expect("time"));
    assert_eq!(summarise().await, 0, "over, but within the grace");
    app.clock.set("2026-11-23T02:02:00Z".parse().expect("time"));
    assert_eq!(summarise().await, 1, "over");
    assert_eq!(summarise().await, 0, "once");
    assert_eq!(hourly().await, before, "stored as it was computed");
}

/// The whole story with an injected clock: a lamp goes dark at night → after ten minutes an alarm →
/// after the storm window a case, dispatched by the system to the lamp's department → the lamp flickers
/// back and fails again (the same alarm, counted twice) → the department replies → telemetry has not
/// recovered, so the case waits; a relapse sends it back as rework → the department replies again →
/// the lamp burns for the recovery period → the system verifies and closes the case, and the alarm
/// ends.
#[tokio::test]
async fn a_dark_lamp_opens_a_case_that_closes_only_when_telemetry_recovers() {
    let app = spawn_app().await;
    let (lamp, _cabinet, dept, subject) = a_lamp(&app).await;
    let sweep = || async { app.state.services.iot_sweep().await.expect("sweep") };
    let at = |clock: &ManualClock| civicgrid_core::clock::Clock::now(clock).to_string();
    let reading = |clock: &ManualClock, amps: f64| json!({"ts": at(clock), "values": {"current_a": amps}});

    app.clock.set("2026-11-23T12:50:00Z".parse().expect("time")); // 20:50 in China: night
    let shift = app.login("shift").await;
    feed(&app, &lamp, reading(&app.clock, 0.45)).await;
    app.clock.advance(SignedDuration::from_mins(10));
    feed(&app, &lamp, reading(&app.clock, 0.0)).await;
    app.clock.advance(SignedDuration::from_mins(5));
    feed(&app, &lamp, reading(&app.clock, 0.0)).await;
    assert_eq!(alarm_of(&app, &shift, &subject).await, Value::Null, "five dark minutes are not ten");
    app.clock.advance(SignedDuration::from_mins(5));
    feed(&app, &lamp, reading(&app.clock, 0.0)).await;
    let alarm = alarm_of(&app, &shift, &subject).await;
    assert_eq!((alarm["fault"].as_str(), alarm["active"].as_bool()), (Some("lamp_out"), Some(true)), "{alarm}");
    assert!(alarm["case_id"].is_null(), "a lamp waits the storm window before its case: {alarm}");

    // After the window, the sweep opens the case and the system takes it to the lamp's department.
    app.clock.advance(SignedDuration::from_mins(5));
    let done = sweep().await;
    assert!(done.cases_opened >= 1, "{done:?}");
    let alarm = alarm_of(&app, &shift, &subject).await;
    let case_id = alarm["case_id"].as_i64().expect("a case");
    let (_, case) = app.get(&format!("/api/v1/cases/{case_id}"), Some(&shift)).await;
    assert_eq!(case["source"], "iot", "{case}");
    assert_eq!(case["matter"], "01037", "{case}");
    assert_eq!(case["state"], "dispatched", "{case}");
    assert_eq!(case["lead_dept"].as_str(), Some(dept.as_str()), "{case}");

    // It flickers back and fails again: the same alarm, raised twice, on the same case.
    app.clock.advance(SignedDuration::from_mins(1));
    feed(&app, &lamp, reading(&app.clock, 0.44)).await;
    app.clock.advance(SignedDuration::from_mins(1));
    feed(&app, &lamp, reading(&app.clock, 0.0)).await;
    app.clock.advance(SignedDuration::from_mins(10));
    feed(&app, &lamp, reading(&app.clock, 0.0)).await;
    let again = alarm_of(&app, &shift, &subject).await;
    assert_eq!((again["id"].clone(), again["count"].as_u64()), (alarm["id"].clone(), Some(2)), "{again}");
    assert_eq!(again["case_id"].as_i64(), Some(case_id));
    assert!(again["evidence"].as_array().expect("evidence").len() >= 4, "{again}");

    // The department replies while the lamp is still dark: the case waits for telemetry.
    let handler = app.login(&format!("dept_{dept}")).await;
    app.steps(&handler, case_id, &[json!({"action": "sign"}), json!({"action": "reply", "reason": "已更换灯具"})])
        .await;
    sweep().await;
    let (_, case) = app.get(&format!("/api/v1/cases/{case_id}"), Some(&shift)).await;
    assert_eq!(case["state"], "replied", "{case}");
    // Still dark after the reply: a relapse, back to the department as rework.
    app.clock.advance(SignedDuration::from_mins(10));
    feed(&app, &lamp, reading(&app.clock, 0.0)).await;
    let (_, case) = app.get(&format!("/api/v1/cases/{case_id}"), Some(&shift)).await;
    assert_eq!(case["state"], "replied", "the alarm was still active: nothing relapsed yet: {case}");
    app.clock.advance(SignedDuration::from_mins(1));
    feed(&app, &lamp, reading(&app.clock, 0.45)).await;
    app.clock.advance(SignedDuration::from_mins(1));
    feed(&app, &lamp, reading(&app.clock, 0.0)).await;
    app.clock.advance(SignedDuration::from_mins(10));
    feed(&app, &lamp, reading(&app.clock, 0.0)).await;
    let (_, case) = app.get(&format!("/api/v1/cases/{case_id}"), Some(&shift)).await;
    assert_eq!(case["state"], "handling", "a relapse after the reply is rework: {case}");
    let (_, events) = app.get(&format!("/api/v1/cases/{case_id}/events"), Some(&shift)).await;
    let fail = events.as_array().expect("events").iter().find(|e| e["action"]["action"] == "verify_fail").cloned();
    assert_eq!(fail.as_ref().map(|e| e["actor"]["role"].clone()), Some(json!("system")), "{events}");

    // Replied again; the lamp burns, but not yet for the recovery period.
    app.steps(&handler, case_id, &[json!({"action": "reply", "reason": "更换整流器"})]).await;
    app.clock.advance(SignedDuration::from_mins(1));
    feed(&app, &lamp, reading(&app.clock, 0.46)).await;
    app.clock.advance(SignedDuration::from_mins(20));
    feed(&app, &lamp, reading(&app.clock, 0.46)).await;
    sweep().await;
    let (_, case) = app.get(&format!("/api/v1/cases/{case_id}"), Some(&shift)).await;
    assert_eq!(case["state"], "replied", "20 of 30 minutes: {case}");
    app.clock.advance(SignedDuration::from_mins(11));
    let done = sweep().await;
    assert!(done.cases_closed >= 1, "{done:?}");
    let (_, case) = app.get(&format!("/api/v1/cases/{case_id}"), Some(&shift)).await;
    assert_eq!(case["state"], "closed", "{case}");
    assert_eq!(alarm_of(&app, &shift, &subject).await, Value::Null, "the alarm ended with its case");
    let (_, ended) = app.get(&format!("/api/v1/alarms?open=false&subject={subject}"), Some(&shift)).await;
    let ended = &ended[0];
    assert!(ended["ended_at"].is_string() && ended["acked_at"].is_string(), "{ended}");
    assert_eq!(ended["count"].as_u64(), Some(3), "{ended}");
}

/// A cabinet storm: more than the share of one cabinet's lamps dark at once is one cabinet alarm and one
/// case; the lamps' own alarms are held back and open no case; when the cabinet recovers they are let
/// go, and a lamp still dark then gets a case of its own.
#[tokio::test]
async fn a_cabinet_storm_opens_one_case_and_holds_the_lamps_back() {
    let app = spawn_app().await;
    app.clock.set("2026-11-23T11:50:00Z".parse().expect("time")); // 19:50
    let (admin, shift) = (app.login("admin").await, app.login("shift").await);
    let devices = app.store.devices().await.expect("devices");
    let (_, cabinet, _, _) = a_lamp(&app).await;
    let lamps: Vec<String> = devices
        .iter()
        .filter(|d| d.cabinet.as_ref().map(ToString::to_string) == Some(cabinet.clone()))
        .map(|d| d.id.to_string())
        .collect();
    assert!(lamps.len() >= 3, "the test town's cabinet has {} lamps", lamps.len());
    // Rules: a storm is more than half of a cabinet's lamps, at least two (set through the API).
    let (_, mut rules) = app.get("/api/v1/alarm-rules", Some(&shift)).await;
    rules["storm"]["share_pct"] = json!(50);
    rules["storm"]["min_lamps"] = json!(2);
    let (s, e) = app.put("/api/v1/alarm-rules", &shift, &rules).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let mut bad = rules.clone();
    bad["rules"][0]["condition"] = json!({"type": "below", "metric": "current_a", "value": 1.0});
    let (s, e) = app.put("/api/v1/alarm-rules", &admin, &bad).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("rules[0].condition")), "{e}");
    let (s, e) = app.put("/api/v1/alarm-rules", &admin, &rules).await;
    assert_eq!(s, StatusCode::OK, "{e}");

    let dark = lamps.len() / 2 + 1;
    let at = |clock: &ManualClock| civicgrid_core::clock::Clock::now(clock).to_string();
    app.clock.set("2026-11-23T12:00:00Z".parse().expect("time")); // 20:00
    for minute in [0, 10] {
        for lamp in &lamps[..dark] {
            feed(&app, lamp, json!({"ts": at(&app.clock), "values": {"current_a": 0.0}})).await;
        }
        for lamp in &lamps[dark..] {
            feed(&app, lamp, json!({"ts": at(&app.clock), "values": {"current_a": 0.5}})).await;
        }
        if minute == 0 {
            app.clock.advance(SignedDuration::from_mins(10));
        }
    }
    app.state.services.iot_sweep().await.expect("sweep");
    let cab = alarm_of(&app, &shift, &format!("device:{cabinet}")).await;
    assert_eq!((cab["fault"].as_str(), cab["active"].as_bool()), (Some("cabinet_outage"), Some(true)), "{cab}");
    // Past the storm window: the cabinet has its case, the lamps none.
    app.clock.advance(SignedDuration::from_mins(6));
    app.state.services.iot_sweep().await.expect("sweep");
    let cab = alarm_of(&app, &shift, &format!("device:{cabinet}")).await;
    let cab_case = cab["case_id"].as_i64().expect("the cabinet's case");
    let (_, case) = app.get(&format!("/api/v1/cases/{cab_case}"), Some(&shift)).await;
    assert!(case["description"].as_str().is_some_and(|d| d.contains(&cabinet)), "{case}");
    let lamp_alarm = |lamp: &str| {
        let d = devices.iter().find(|d| d.id.as_str() == lamp).expect("lamp");
        format!("component:{}", d.component_id.expect("component"))
    };
    for lamp in &lamps[..dark] {
        let a = alarm_of(&app, &shift, &lamp_alarm(lamp)).await;
        assert_eq!(a["suppressed_by"].as_i64(), cab["id"].as_i64(), "{a}");
        assert!(a["case_id"].is_null(), "a held-back lamp opens no case: {a}");
    }
    // All but one lamp come back: the cabinet clears and lets the last dark lamp go, which then
    // opens its own case.
    app.clock.advance(SignedDuration::from_mins(1));
    for lamp in &lamps[1..dark] {
        feed(&app, lamp, json!({"ts": at(&app.clock), "values": {"current_a": 0.5}})).await;
    }
    app.state.services.iot_sweep().await.expect("sweep");
    let cab = alarm_of(&app, &shift, &format!("device:{cabinet}")).await;
    assert_eq!(cab["active"].as_bool(), Some(false), "{cab}");
    let last = alarm_of(&app, &shift, &lamp_alarm(&lamps[0])).await;
    assert!(last["suppressed_by"].is_null(), "{last}");
    assert!(last["case_id"].as_i64().is_some_and(|c| c != cab_case), "its own case: {last}");
}

/// A cover knocked open is critical: pushed to the shift leader on duty at once, with its case
/// dispatched without waiting; a tampered sensor's case goes to the IoT maintenance contractor, not to
/// the cover's department; the shift leader acknowledges the alarm, an analyst may not.
#[tokio::test]
async fn critical_alarms_are_pushed_and_device_health_goes_to_the_contractor() {
    let app = spawn_app().await;
    let (shift, analyst) = (app.login("shift").await, app.login("analyst").await);
    let devices = app.store.devices().await.expect("devices");
    let cover = devices.iter().find(|d| d.kind == civicgrid_core::iot::DeviceKind::ManholeCover).expect("a cover");
    let component = app.store.component(cover.component_id.expect("component")).await.expect("read").expect("cover");
    let subject = format!("component:{}", component.id);
    let now = civicgrid_core::clock::Clock::now(&app.clock).to_string();
    feed(&app, cover.id.as_str(), json!({"ts": now, "values": {"cover_open": true, "tilt_deg": 3.0, "tamper": 1}}))
        .await;

    let (_, list) = app.get(&format!("/api/v1/alarms?subject={subject}"), Some(&shift)).await;
    let list = list.as_array().expect("alarms").clone();
    let open = list.iter().find(|a| a["fault"] == "cover_open").expect("cover open");
    assert_eq!(open["severity"], "critical");
    let tamper = list.iter().find(|a| a["fault"] == "tamper").expect("tamper");
    for (a, dept) in [(open, component.department.to_string()), (tamper, "iot-maint".to_owned())] {
        let id = a["case_id"].as_i64().expect("a case at once");
        let (_, case) = app.get(&format!("/api/v1/cases/{id}"), Some(&shift)).await;
        assert_eq!(case["lead_dept"].as_str(), Some(dept.as_str()), "{case}");
    }
    let (_, inbox) = app.get("/api/v1/notifications", Some(&shift)).await;
    let pushed =
        inbox["items"].as_array().expect("inbox").iter().any(|n| n["kind"] == "alarm" && n["severity"] == "critical");
    assert!(pushed, "{inbox}");

    let id = open["id"].as_i64().expect("id");
    let (s, _) = app.post(&format!("/api/v1/alarms/{id}/ack"), Some(&analyst), &json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, acked) = app.post(&format!("/api/v1/alarms/{id}/ack"), Some(&shift), &json!({})).await;
    assert_eq!(s, StatusCode::OK, "{acked}");
    assert!(acked["acked_at"].is_string() && acked["ended_at"].is_null(), "still active: {acked}");

    // Silent for three reporting intervals after being heard from: offline, for the contractor. The
    // devices never heard from are not yet commissioned and raise nothing.
    app.clock.advance(SignedDuration::from_secs(3 * i64::from(cover.expected_interval_s) + 60));
    app.state.services.iot_sweep().await.expect("sweep");
    let (_, list) = app.get(&format!("/api/v1/alarms?subject={subject}"), Some(&app.login("shift").await)).await;
    let offline = list.as_array().expect("alarms").iter().find(|a| a["fault"] == "offline").cloned().expect("offline");
    assert_eq!(offline["device"].as_str(), Some(cover.id.as_str()), "{offline}");
    let (_, all) = app.get("/api/v1/alarms?limit=500", Some(&app.login("shift").await)).await;
    let offline_count = all.as_array().expect("alarms").iter().filter(|a| a["fault"] == "offline").count();
    assert_eq!(offline_count, 1, "only the device that was heard from: {all}");
}

/// The cockpit's 物联感知 read: a cover knocked open (critical, with its case, on the map), a hydrant
/// gone silent (offline, counted against its kind's health), a checkpoint past its crowd threshold
/// (critical, listed but not on the map); tallies agree with the alarm list, acknowledging moves an
/// alarm down the "look here first" list, and only the posts that watch the big screen may read it.
#[tokio::test]
async fn the_cockpit_reads_alarms_device_health_and_people_flow() {
    use civicgrid_core::iot::DeviceKind;
    let app = spawn_app().await;
    let commander = app.login("commander").await;
    let devices = app.store.devices().await.expect("devices");
    let of = |kind| devices.iter().find(|d| d.kind == kind).expect("a device of the kind");
    let (cover, hydrant, counter) =
        (of(DeviceKind::ManholeCover), of(DeviceKind::Hydrant), of(DeviceKind::PeopleCounter));
    let at = |clock: &ManualClock| civicgrid_core::clock::Clock::now(clock).to_string();

    let (s, quiet) = app.get("/api/v1/cockpit/sensing", Some(&commander)).await;
    assert_eq!(s, StatusCode::OK, "{quiet}");
    let total = |v: &Value| v["severities"].as_array().expect("tallies").last().cloned().expect("the total row");
    assert_eq!(total(&quiet)["active"], 0, "{quiet}");
    for kind in DeviceKind::ALL {
        let row = quiet["devices"].as_array().expect("health").iter().find(|d| d["kind"] == kind.as_str()).cloned();
        let row = row.expect("every kind");
        assert_eq!(row["total"].as_u64(), Some(devices.iter().filter(|d| d.kind == kind).count() as u64), "{row}");
        assert_eq!(row["offline"], 0, "{row}");
    }

    // The hydrant reports once, then stays silent past three intervals; the cover is knocked open and
    // the checkpoint fills.
    let silence = SignedDuration::from_secs(3 * i64::from(hydrant.expected_interval_s) + 60);
    let t0 = civicgrid_core::clock::Clock::now(&app.clock);
    app.clock.set(t0 - silence);
    feed(&app, hydrant.id.as_str(), json!({"ts": at(&app.clock), "values": {"pressure_mpa": 0.35}})).await;
    app.clock.set(t0);
    feed(&app, cover.id.as_str(), json!({"ts": at(&app.clock), "values": {"cover_open": true}})).await;
    feed(&app, counter.id.as_str(), json!({"ts": at(&app.clock), "values": {"count_in": 2500, "count_out": 100}}))
        .await;
    app.state.services.iot_sweep().await.expect("sweep");

    let (_, x) = app.get("/api/v1/cockpit/sensing", Some(&commander)).await;
    let (_, open) = app.get("/api/v1/alarms?open=true&limit=500", Some(&commander)).await;
    let open = open.as_array().expect("alarms").clone();
    let active = |f: &dyn Fn(&Value) -> bool| open.iter().filter(|a| a["active"] == true && f(a)).count() as u64;
    assert_eq!(total(&x)["active"].as_u64(), Some(active(&|_| true)), "{x}");
    let critical = x["severities"].as_array().expect("tallies").iter().find(|r| r["severity"] == "critical").cloned();
    assert_eq!(critical.expect("critical")["active"].as_u64(), Some(active(&|a| a["severity"] == "critical")));
    let fault = |name: &str| x["faults"].as_array().expect("faults").iter().find(|f| f["fault"] == name).cloned();
    assert_eq!(fault("cover_open").map(|f| (f["active"].clone(), f["with_case"].clone())), Some((json!(1), json!(1))));
    assert_eq!(fault("crowd").map(|f| f["active"].clone()), Some(json!(1)), "{x}");
    assert_eq!(fault("offline").map(|f| f["active"].clone()), Some(json!(1)), "{x}");
    let health = |kind: DeviceKind| {
        x["devices"].as_array().expect("health").iter().find(|d| d["kind"] == kind.as_str()).cloned().expect("kind")
    };
    assert_eq!(health(DeviceKind::Hydrant)["offline"], 1, "{x}");
    assert_eq!(health(DeviceKind::ManholeCover)["faulty"], 1, "{x}");

    let cover_name = app.store.component(cover.component_id.expect("component")).await.expect("read").expect("cover");
    let first = x["first"].as_array().expect("first").clone();
    let listed = first.iter().find(|a| a["fault"] == "cover_open").cloned().expect("the cover is listed");
    assert_eq!(listed["subject"].as_str(), Some(cover_name.name.as_str()), "by the component's name: {listed}");
    assert!(listed["lon"].is_number() && listed["case_id"].is_number(), "{listed}");
    assert!(first[..2].iter().all(|a| a["severity"] == "critical" && a["acknowledged"] == false), "{first:?}");
    let crowd = first.iter().find(|a| a["fault"] == "crowd").cloned().expect("the crowd is listed");
    assert_eq!(crowd["subject"].as_str(), counter.checkpoint.as_deref());
    let points = x["points"].as_array().expect("points");
    assert!(points.iter().any(|p| p["id"] == listed["id"] && p["grid"] == cover_name.grid.to_string().as_str()));
    let cp = x["checkpoints"].as_array().expect("checkpoints").iter().find(|c| crowd["subject"] == c["checkpoint"]);
    let cp = cp.cloned().expect("the checkpoint");
    // The checkpoint stands where its counter does, and its crowd alarm is drawn there.
    let place = counter.location.expect("the demo places its counters");
    let near = |v: &Value, x: f64| v.as_f64().is_some_and(|v| (v - x).abs() < 1e-9);
    assert!(near(&cp["location"]["lon"], place.lon) && near(&cp["location"]["lat"], place.lat), "{cp}");
    let crowd_point = points.iter().find(|p| p["fault"] == "crowd").cloned().expect("the crowd is on the map");
    assert_eq!(
        (&crowd_point["lon"], &crowd_point["lat"], &crowd_point["grid"]),
        (&cp["location"]["lon"], &cp["location"]["lat"], &cp["grid"]),
        "{crowd_point}"
    );
    assert!(cp["grid"].is_string(), "{cp}");
    assert_eq!((cp["occupancy"].as_i64(), cp["max"].as_i64()), (Some(2400), Some(2000)), "{cp}");
    let came: i64 = cp["flow"].as_array().expect("flow").iter().filter_map(|f| f["count_in"].as_i64()).sum();
    assert_eq!(came, 2500, "{cp}");

    // Acknowledged, the cover falls behind the unacknowledged alarms.
    let shift = app.login("shift").await;
    let (s, _) = app.post(&format!("/api/v1/alarms/{}/ack", listed["id"]), Some(&shift), &json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, after) = app.get("/api/v1/cockpit/sensing", Some(&commander)).await;
    assert_eq!(total(&after)["unacknowledged"].as_u64(), total(&x)["unacknowledged"].as_u64().map(|n| n - 1));
    let order: Vec<bool> =
        after["first"].as_array().expect("first").iter().map(|a| a["acknowledged"].as_bool().expect("flag")).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "unacknowledged first: {order:?}");

    for post in ["intake", "gw001", "dept_huanwei"] {
        let t = app.login(post).await;
        assert_eq!(app.get("/api/v1/cockpit/sensing", Some(&t)).await.0, StatusCode::FORBIDDEN, "{post}");
    }
    assert_eq!(app.get("/api/v1/cockpit/sensing", None).await.0, StatusCode::UNAUTHORIZED);
}
