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

    // A retired device's payloads are refused.
    let mut retired = lamp.clone();
    retired["retired"] = json!(true);
    assert_eq!(app.post("/api/v1/devices", Some(&admin), &retired).await.0, StatusCode::OK);
    let (s, _) = push(token, "", r#"{"values":{"current_a":0.5}}"#).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Every refusal was counted under its reason.
    let scrape =
        app.http.get(format!("{}/metrics", app.base)).send().await.expect("scrape").text().await.expect("text");
    for reason in ["malformed", "unknown_metric", "out_of_range", "wrong_type", "bad_time", "unknown_device"] {
        assert!(scrape.contains(&format!("civicgrid_telemetry_rejected_total{{reason=\"{reason}\"}}")), "{reason}");
    }
    assert!(scrape.contains("civicgrid_telemetry_readings_total"));
}
