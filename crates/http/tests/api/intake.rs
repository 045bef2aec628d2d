//! The 12345 and 110 intake as the upstream systems see it: tickets pushed with a channel's key,
//! GCJ-02 positions converted, repeats (one after another and at once) making one case, bad tickets
//! refused by field with nothing written, the diversion catalogue, and signed replies that reach the
//! upstream system's hook, retried after a failure.

use std::sync::atomic::{AtomicUsize, Ordering};

use civicgrid_core::case::GeoPoint;
use civicgrid_core::coords::CoordSystem;
use civicgrid_store::{CaseFilter, PageRequest};

use super::*;

/// A service account on `channel` with one key: (account id, key).
async fn upstream_key(app: &TestApp, name: &str, channel: &str) -> (i64, String) {
    let admin = app.login("admin").await;
    let (s, account) =
        app.post("/api/v1/service-accounts", Some(&admin), &json!({"name": name, "channel": channel})).await;
    assert_eq!(s, StatusCode::CREATED, "{account}");
    let id = account["id"].as_i64().expect("id");
    let (s, key) = app.post(&format!("/api/v1/service-accounts/{id}/keys"), Some(&admin), &json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    (id, key["key"].as_str().expect("key").to_owned())
}

async fn case_count(app: &TestApp) -> usize {
    let page = PageRequest { before: None, limit: 1000 };
    app.store.list_cases(&CaseFilter::default(), page).await.expect("cases").items.len()
}

/// A point inside grid `n`, as a GCJ-02 map would report it.
fn gcj02_in_grid(app: &TestApp, n: usize) -> (GeoPoint, GeoPoint) {
    let p = app.point_in_grid(n);
    let wgs = GeoPoint { lon: p["lon"].as_f64().expect("lon"), lat: p["lat"].as_f64().expect("lat") };
    (wgs, CoordSystem::Gcj02.from_wgs84(wgs))
}

fn ticket(no: &str, at: GeoPoint) -> Value {
    json!({
        "ticket_no": no,
        "category": "seek_help",
        "matter": "06010",
        "content": "市民来电：小区门口垃圾三天没人清运",
        "location": {"lon": at.lon, "lat": at.lat},
        "coord_system": "gcj02",
        "address": "张浦镇某小区东门",
        "caller_name": "王先生",
        "caller_phone": "139****1234",
        "deadline": "2026-11-23T11:00:00+08:00",
    })
}

#[tokio::test]
async fn hotline_tickets_make_one_case_each_however_often_pushed() {
    let app = spawn_app().await;
    let (_, key) = upstream_key(&app, "12345-suzhou", "hotline12345").await;
    let (wgs, gcj) = gcj02_in_grid(&app, 2);
    let before = case_count(&app).await;

    let (s, first) = app.post("/api/v1/intake/tickets", Some(&key), &ticket("SZ-20261123-0001", gcj)).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let id = first["case_id"].as_i64().expect("id");
    let case = app.store.case(id).await.expect("read").expect("case");
    assert_eq!(case.facts.source, civicgrid_core::case::Source::Hotline12345);
    assert!(civicgrid_core::case::distance_m(case.facts.location, wgs) < 1.0, "GCJ-02 converted back to WGS84");
    assert_eq!(case.facts.grid, app.town.layout.grids[2].code);
    let upstream = case.facts.upstream.clone().expect("upstream");
    assert_eq!(
        (upstream.ticket_no.as_str(), upstream.category),
        ("SZ-20261123-0001", Some(civicgrid_core::ticket::TicketCategory::SeekHelp))
    );
    assert_eq!(case.facts.reporter.phone.as_deref(), Some("139****1234"), "a phone masked upstream is kept as sent");

    // Pushed again, with other content: the same case, nothing new.
    let mut changed = ticket("SZ-20261123-0001", gcj);
    changed["content"] = json!("再次来电催办");
    let resp = app
        .http
        .post(format!("{}/api/v1/intake/tickets", app.base))
        .bearer_auth(&key)
        .json(&changed)
        .send()
        .await
        .expect("push");
    assert_eq!(resp.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let again: Value = resp.json().await.expect("JSON");
    assert_eq!(again["case_id"].as_i64(), Some(id), "{again}");

    // Pushed five times at once: one case.
    let same = ticket("SZ-20261123-0002", gcj);
    let pushes = (0..5).map(|_| app.post("/api/v1/intake/tickets", Some(&key), &same));
    let answers = futures_util::future::join_all(pushes).await;
    let ids: std::collections::BTreeSet<_> = answers
        .iter()
        .map(|(s, b)| {
            assert!(s.is_success(), "{b}");
            b["case_id"].as_i64().expect("id")
        })
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(case_count(&app).await, before + 2);

    // Dispatched, the handling deadline is the hotline's (11:00), not the matter's 4 working hours (15:00).
    let shift = app.login("shift").await;
    for body in
        [json!({"action": "accept"}), json!({"action": "file"}), json!({"action": "dispatch", "lead": "huanwei"})]
    {
        let (s, c) = app.act(&shift, id, body).await;
        assert_eq!(s, StatusCode::OK, "{c}");
    }
    let case = app.store.case(id).await.expect("read").expect("case");
    assert_eq!(case.status.handle_due_at, Some("2026-11-23T03:00:00Z".parse().expect("time")));
}

#[tokio::test]
async fn bad_tickets_are_refused_by_field_and_write_nothing() {
    let app = spawn_app().await;
    let (_, hotline) = upstream_key(&app, "12345", "hotline12345").await;
    let (_, police) = upstream_key(&app, "110", "police110").await;
    let (_, open311) = upstream_key(&app, "app", "open311").await;
    let (_, gcj) = gcj02_in_grid(&app, 0);
    let before = case_count(&app).await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut t = ticket("BAD-1", gcj);
        change(&mut t);
        t
    };
    let cases: Vec<(&str, Value, StatusCode, Option<&str>)> = vec![
        (
            &hotline,
            with(&|t| t["location"] = json!({"lon": 116.4, "lat": 39.9})),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("location"),
        ),
        (
            &hotline,
            with(&|t| t["location"] = json!({"lon": 500.0, "lat": 39.9})),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("location"),
        ),
        (&hotline, with(&|t| t["coord_system"] = json!("utm")), StatusCode::UNPROCESSABLE_ENTITY, None),
        (&hotline, with(&|t| t["ticket_no"] = json!("")), StatusCode::UNPROCESSABLE_ENTITY, Some("ticket_no")),
        (&hotline, with(&|t| t["category"] = json!(null)), StatusCode::UNPROCESSABLE_ENTITY, Some("category")),
        (&hotline, with(&|t| t["matter"] = json!("99999")), StatusCode::UNPROCESSABLE_ENTITY, Some("matter")),
        (&hotline, with(&|t| t["content"] = json!("")), StatusCode::UNPROCESSABLE_ENTITY, Some("description")),
        (
            &hotline,
            with(&|t| t["caller_phone"] = json!("<script>")),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("caller_phone"),
        ),
        (&hotline, with(&|t| t["deadline"] = json!("tomorrow")), StatusCode::UNPROCESSABLE_ENTITY, None),
        (&police, with(&|t| t["diversion"] = json!("not_listed")), StatusCode::UNPROCESSABLE_ENTITY, Some("diversion")),
        (&open311, ticket("BAD-1", gcj), StatusCode::FORBIDDEN, None),
        ("cgk_nope_nope", ticket("BAD-1", gcj), StatusCode::UNAUTHORIZED, None),
    ];
    for (key, body, status, field) in cases {
        let (s, e) = app.post("/api/v1/intake/tickets", Some(key), &body).await;
        assert_eq!(s, status, "{body} → {e}");
        if let Some(f) = field {
            assert_eq!(e["field"].as_str(), Some(f), "{e}");
        }
    }
    // Staff may not push tickets either.
    let shift = app.login("shift").await;
    let (s, _) = app.post("/api/v1/intake/tickets", Some(&shift), &ticket("BAD-1", gcj)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(case_count(&app).await, before, "nothing was written");
    // The refused number is still free.
    let (s, _) = app.post("/api/v1/intake/tickets", Some(&hotline), &ticket("BAD-1", gcj)).await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn diversions_come_from_the_catalogue_and_urgent_ones_go_back_to_police() {
    let app = spawn_app().await;
    let (_, police) = upstream_key(&app, "110-kunshan", "police110").await;
    let (_, gcj) = gcj02_in_grid(&app, 1);
    let admin = app.login("admin").await;
    let intake = app.login("intake").await;

    let (s, catalogue) = app.get("/api/v1/diversions", Some(&police)).await;
    assert_eq!(s, StatusCode::OK);
    let noise =
        catalogue["items"].as_array().expect("items").iter().find(|d| d["code"] == "noise_social").expect("noise");
    assert_eq!((noise["matter"].as_str(), noise["urgent_police_return"].as_bool()), (Some("06028"), Some(true)));

    // An administrator edits it; a matter not in the code table is refused.
    let mut edited = catalogue.clone();
    edited["items"]
        .as_array_mut()
        .expect("items")
        .push(json!({"code": "dog_barking", "name_zh": "犬吠扰民", "name_en": "Barking dog", "matter": "06028"}));
    let (s, _) = app.put("/api/v1/diversions", &intake, &edited).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let mut bad = edited.clone();
    bad["items"][0]["matter"] = json!("99999");
    let (s, e) = app.put("/api/v1/diversions", &admin, &bad).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("matter")), "{e}");
    let (s, _) = app.put("/api/v1/diversions", &admin, &edited).await;
    assert_eq!(s, StatusCode::OK);

    let divert = |no: &str, code: &str, urgency: &str| {
        json!({"ticket_no": no, "diversion": code, "content": "邻居深夜装修噪音", "urgency": urgency,
               "location": {"lon": gcj.lon, "lat": gcj.lat}, "coord_system": "gcj02"})
    };
    let (s, calm) = app.post("/api/v1/intake/tickets", Some(&police), &divert("110-A", "dog_barking", "normal")).await;
    assert_eq!((s, calm["police_return"].as_bool()), (StatusCode::CREATED, Some(false)), "{calm}");
    let (s, urgent) =
        app.post("/api/v1/intake/tickets", Some(&police), &divert("110-B", "noise_social", "urgent")).await;
    assert_eq!((s, urgent["police_return"].as_bool()), (StatusCode::CREATED, Some(true)), "{urgent}");
    let case = app.store.case(calm["case_id"].as_i64().expect("id")).await.expect("read").expect("case");
    assert_eq!(case.facts.source, civicgrid_core::case::Source::Police110);
    assert_eq!(case.facts.matter, "06028".parse().expect("matter"));
}

/// The reply hook: answers 503 to its first delivery, 200 after; records what it heard.
async fn reply_receiver() -> (String, Arc<std::sync::Mutex<Vec<(String, String, String)>>>) {
    use axum::http::HeaderMap;
    let heard: Arc<std::sync::Mutex<Vec<(String, String, String)>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let record = heard.clone();
    let app = axum::Router::new().route(
        "/replies",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (heard, calls) = (record.clone(), calls.clone());
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                heard.lock().expect("lock").push((h("x-civicgrid-timestamp"), h("x-civicgrid-signature"), body));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, heard)
}

#[tokio::test]
async fn replies_reach_the_upstream_hook_signed_and_are_retried() {
    let app = spawn_app().await;
    let (rx, heard) = reply_receiver().await;
    let runner = civicgrid_service::jobs::JobRunner::standard(app.state.services.clone(), "test-node");
    let run = || async { while runner.run_once().await.expect("jobs") > 0 {} };
    run().await;
    let (account, key) = upstream_key(&app, "12345-replies", "hotline12345").await;
    let admin = app.login("admin").await;
    let secret = "reply-secret-0123456789";
    let hook = json!({"url": format!("{rx}/replies"), "secret": secret});
    let (s, e) = app
        .put(
            &format!("/api/v1/service-accounts/{account}/reply-hook"),
            &admin,
            &json!({"url": "ftp://x", "secret": secret}),
        )
        .await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("url")), "{e}");
    let (s, _) = app.put(&format!("/api/v1/service-accounts/{account}/reply-hook"), &admin, &hook).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, hooks) = app.get("/api/v1/reply-hooks", Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(hooks[account.to_string()], json!(format!("{rx}/replies")));
    assert!(!hooks.to_string().contains(secret), "the secret is never answered");

    let (_, gcj) = gcj02_in_grid(&app, 2);
    let (_, receipt) = app.post("/api/v1/intake/tickets", Some(&key), &ticket("SZ-R-1", gcj)).await;
    let id = receipt["case_id"].as_i64().expect("id");
    let shift = app.login("shift").await;
    for body in
        [json!({"action": "accept"}), json!({"action": "file"}), json!({"action": "dispatch", "lead": "huanwei"})]
    {
        app.act(&shift, id, body).await;
    }
    run().await;
    assert!(heard.lock().expect("lock").is_empty(), "the first delivery was refused");
    app.clock.advance(SignedDuration::from_secs(11));
    run().await;
    let got = heard.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let (ts, sig, raw) = &got[0];
    let body: Value = serde_json::from_str(raw).expect("JSON");
    assert_eq!((body["kind"].as_str(), body["ticket_no"].as_str()), (Some("dispatched"), Some("SZ-R-1")), "{body}");
    assert_eq!(body["case_id"].as_i64(), Some(id));
    assert!(body["department"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert_eq!(body["due_at"].as_str(), Some("2026-11-23T03:00:00Z"), "{body}");
    // The signature covers the timestamp and the body as sent.
    assert_eq!(
        sig,
        &format!("sha256={}", civicgrid_service::outbound::hmac_hex(secret, format!("{ts}.{raw}").as_bytes()))
    );

    // An urgent diversion the catalogue sends back to police: police are told as soon as it arrives.
    let (police, police_key) = upstream_key(&app, "110-replies", "police110").await;
    let (s, _) = app.put(&format!("/api/v1/service-accounts/{police}/reply-hook"), &admin, &hook).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let urgent = json!({"ticket_no": "110-R-1", "diversion": "noise_social", "urgency": "urgent", "content": "深夜酒后喧哗",
                        "location": {"lon": gcj.lon, "lat": gcj.lat}, "coord_system": "gcj02"});
    let (s, receipt) = app.post("/api/v1/intake/tickets", Some(&police_key), &urgent).await;
    assert_eq!((s, receipt["police_return"].as_bool()), (StatusCode::CREATED, Some(true)), "{receipt}");
    run().await;
    let got = heard.lock().expect("lock").clone();
    let told: Value = serde_json::from_str(&got.last().expect("a reply").2).expect("JSON");
    assert_eq!(
        (told["kind"].as_str(), told["channel"].as_str(), told["ticket_no"].as_str()),
        (Some("police_return"), Some("police110"), Some("110-R-1")),
        "{told}"
    );
}
