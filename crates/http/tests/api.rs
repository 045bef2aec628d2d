//! The HTTP API driven like a client would: a real server on 127.0.0.1:0 over an isolated SQLite file
//! holding a small demo town, with a manual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use civicgrid_core::case::{CaseEvent, CaseStatus};
use civicgrid_core::clock::ManualClock;
use civicgrid_demo::{DemoOptions, TownData};
use civicgrid_http::{AppState, HttpConfig};
use civicgrid_store::Store;
use civicgrid_store::sqlite::SqliteStore;
use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "test-password";

struct TestApp {
    base: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    clock: ManualClock,
    town: TownData,
    state: AppState,
}

fn temp_db() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "civicgrid-http-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("api.db").to_string_lossy().into_owned()
}

async fn spawn_app() -> TestApp {
    spawn_app_with(civicgrid_http::ServeOptions::default()).await
}

async fn spawn_app_with(options: civicgrid_http::ServeOptions) -> TestApp {
    spawn_app_configured(options, HttpConfig::default()).await
}

async fn spawn_app_configured(options: civicgrid_http::ServeOptions, config: HttpConfig) -> TestApp {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&temp_db()).await.expect("open"));
    let now: Timestamp = "2026-11-23T01:00:00Z".parse().expect("time"); // Monday 09:00 in China
    let hash = civicgrid_http::auth::hash_password(PASSWORD).expect("hash");
    let opts = DemoOptions {
        scale: 0.02,
        case_scale: 0.0,
        seed: 11,
        now,
        demo_password_hash: hash.clone(),
        admin_password_hash: hash,
    };
    civicgrid_demo::populate(store.as_ref(), &opts, &|_| {}).await.expect("populate");
    let town = civicgrid_demo::town(&opts).expect("town");
    let clock = ManualClock::new(now);
    let state = AppState::new(store.clone(), Arc::new(clock.clone()), config).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(civicgrid_http::serve_with(listener, state.clone(), options, std::future::pending()));
    TestApp { base, http: reqwest::Client::new(), store, clock, town, state }
}

impl TestApp {
    async fn login(&self, username: &str) -> String {
        let r = self.post("/api/v1/auth/login", None, &json!({"username": username, "password": PASSWORD})).await;
        assert_eq!(r.0, StatusCode::OK, "login {username}: {}", r.1);
        r.1["token"].as_str().expect("token").to_owned()
    }

    async fn send(&self, req: reqwest::RequestBuilder, token: Option<&str>) -> (StatusCode, Value) {
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)), token).await
    }

    async fn put(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body), Some(token)).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body), token).await
    }

    /// A point inside the first micro-grid of grid `n` (0-based).
    fn point_in_grid(&self, n: usize) -> Value {
        let grid = self.town.layout.grids[n].code;
        let m = self.town.layout.micro_grids.iter().find(|m| m.grid() == grid).expect("micro-grid");
        let p = civicgrid_demo::layout::point_in(&m.polygon, 0.5, 0.5);
        json!({"lon": p.x, "lat": p.y})
    }

    fn report(&self, grid: usize) -> Value {
        json!({
            "matter": "06010",
            "description": "路边暴露垃圾",
            "location": self.point_in_grid(grid),
            "address": "测试路 8 号",
            "reporter_name": "张三",
            "reporter_phone": "13812345678"
        })
    }

    async fn create(&self, token: &str, grid: usize) -> Value {
        let (s, body) = self.post("/api/v1/cases", Some(token), &self.report(grid)).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body
    }

    /// Uploads a small JPEG as `token`, with EXIF GPS at `lon_lat` when given; its attachment id.
    async fn upload_photo(&self, token: &str, lon_lat: Option<(f64, f64)>) -> i64 {
        let photo = civicgrid_demo::photos::jpeg(
            64,
            48,
            [90, 120, 60],
            Some(civicgrid_core::clock::Clock::now(&self.clock)),
            lon_lat,
        );
        let part = reqwest::multipart::Part::bytes(photo).file_name("核查.jpg").mime_str("image/jpeg").expect("mime");
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self.http.post(format!("{}/api/v1/attachments", self.base)).bearer_auth(token).multipart(form);
        let resp = resp.send().await.expect("upload");
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json::<Value>().await.expect("json")["id"].as_i64().expect("id")
    }

    async fn act(&self, token: &str, id: i64, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/api/v1/cases/{id}/transitions"), Some(token), &body).await
    }

    /// Reports, accepts, files and dispatches a case as `token` (a shift leader); its handling deadline.
    async fn dispatched_due(&self, token: &str) -> String {
        let id = self.create(token, 0).await["id"].as_i64().expect("id");
        self.act(token, id, json!({"action": "accept"})).await;
        self.act(token, id, json!({"action": "file"})).await;
        let (s, c) = self.act(token, id, json!({"action": "dispatch", "lead": "huanwei"})).await;
        assert_eq!(s, StatusCode::OK, "{c}");
        c["handle_due_at"].as_str().expect("due").to_owned()
    }

    async fn counts(&self) -> (i64, usize) {
        let cases = self.store.count_cases().await.expect("count");
        let mut events = 0;
        let page = self
            .store
            .list_cases(&Default::default(), civicgrid_store::PageRequest { before: None, limit: 500 })
            .await
            .expect("list");
        for c in page.items {
            events += self.store.case_events(c.id).await.expect("events").len();
        }
        (cases, events)
    }
}

#[tokio::test]
async fn login_returns_a_token_and_a_strict_cookie_and_refuses_bad_passwords() {
    let app = spawn_app().await;
    let resp = app
        .http
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"username": "intake", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(cookie.starts_with("cg_session=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["user"]["role"], "intake_operator");
    let token = body["token"].as_str().expect("token");
    let (s, me) = app.get("/api/v1/auth/me", Some(token)).await;
    assert_eq!((s, me["username"].as_str()), (StatusCode::OK, Some("intake")));
    // The cookie works like the bearer token.
    let cookie_value = cookie.split(';').next().expect("pair").to_owned();
    let r =
        app.http.get(format!("{}/api/v1/auth/me", app.base)).header("cookie", cookie_value).send().await.expect("me");
    assert_eq!(r.status(), StatusCode::OK);

    for (user, pw) in [("intake", "wrong"), ("nobody", PASSWORD)] {
        let (s, body) = app.post("/api/v1/auth/login", None, &json!({"username": user, "password": pw})).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "bad_credentials");
    }
    // Logout ends the session.
    let (s, _) = app.post("/api/v1/auth/logout", Some(token), &json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/auth/me", Some(token)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_api_endpoint_needs_a_session() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/cases",
        "/api/v1/cases/1",
        "/api/v1/grids",
        "/api/v1/grids.geojson",
        "/api/v1/departments",
        "/api/v1/code-tables/matters",
        "/api/v1/components",
        "/api/v1/town",
        "/api/v1/auth/me",
    ] {
        let (s, body) = app.get(path, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["code"], "unauthenticated", "{path}");
    }
    let (s, _) = app.post("/api/v1/cases", Some("made-up-token"), &app.report(0)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn grid_worker_cannot_read_or_change_a_case_in_another_grid() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let gw_a = app.login("gw001").await; // grid 0
    let in_b = app.create(&intake, 1).await;
    let id = in_b["id"].as_i64().expect("id");
    assert_eq!(app.get(&format!("/api/v1/cases/{id}"), Some(&gw_a)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&format!("/api/v1/cases/{id}/events"), Some(&gw_a)).await.0, StatusCode::NOT_FOUND);
    let (s, _) = app.act(&gw_a, id, json!({"action": "verify_pass"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = app.get("/api/v1/cases?limit=500", Some(&gw_a)).await;
    assert!(list["items"].as_array().expect("items").iter().all(|c| c["id"] != id));
    // Nor report into grid B.
    let (s, body) = app.post("/api/v1/cases", Some(&gw_a), &app.report(1)).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    // The worker of grid B can see it.
    let gw_b = app.login("gw002").await;
    assert_eq!(app.get(&format!("/api/v1/cases/{id}"), Some(&gw_b)).await.0, StatusCode::OK);
    // And a worker reporting in their own grid gets the patrol channel.
    let own = app.create(&gw_a, 0).await;
    assert_eq!(own["source"], "grid_patrol");
    assert_eq!(own["grid"], app.town.layout.grids[0].code.to_string());
}

#[tokio::test]
async fn a_case_runs_the_whole_standard_flow_over_http() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let shift = app.login("shift").await;
    let dispatch = app.login("dispatch").await;
    let dept = app.login("dept_huanwei").await;
    let co = app.login("dept_chengguan").await;
    let worker = app.login("gw001").await;
    let case = app.create(&intake, 0).await;
    let id = case["id"].as_i64().expect("id");
    assert_eq!(case["state"], "reported");
    assert_eq!(case["source"], "hotline12345");
    assert!(case["number"].as_str().expect("number").starts_with("32058311620261123"));
    let spot = app.point_in_grid(0);
    let photo = app.upload_photo(&worker, spot["lon"].as_f64().zip(spot["lat"].as_f64())).await;
    let steps: [(&str, Value, &str); 10] = [
        (&intake, json!({"action": "accept"}), "accepted"),
        (&shift, json!({"action": "file"}), "filed"),
        (&dispatch, json!({"action": "dispatch", "lead": "huanwei", "co": ["chengguan"]}), "dispatched"),
        (&dept, json!({"action": "sign"}), "handling"),
        (
            &dept,
            json!({"action": "reply", "evidence": [{"name": "after.jpg", "mime": "image/jpeg", "size": 1024}]}),
            "handling",
        ),
        // The co-department's handler acts on its own task without naming it.
        (&co, json!({"action": "sign"}), "handling"),
        (
            &co,
            json!({"action": "reply", "evidence": [{"name": "co.jpg", "mime": "image/jpeg", "size": 512}]}),
            "replied",
        ),
        (
            &worker,
            json!({"action": "verify_pass", "evidence": [{"id": photo, "name": "x", "mime": "image/jpeg", "size": 1}]}),
            "verified",
        ),
        (&shift, json!({"action": "close"}), "closed"),
        (&intake, json!({"action": "call_back", "satisfaction": "satisfied"}), "closed"),
    ];
    for (i, (token, body, state)) in steps.into_iter().enumerate() {
        app.clock.advance(SignedDuration::from_mins(10));
        let (s, c) = app.act(token, id, body).await;
        assert_eq!(s, StatusCode::OK, "step {i}: {c}");
        assert_eq!(c["state"], state, "step {i}");
    }
    let (_, c) = app.get(&format!("/api/v1/cases/{id}"), Some(&shift)).await;
    assert_eq!((c["close_type"].as_str(), c["satisfaction"].as_str()), (Some("normal"), Some("satisfied")));
    let (s, events) = app.get(&format!("/api/v1/cases/{id}/events"), Some(&shift)).await;
    assert_eq!(s, StatusCode::OK);
    let events: Vec<CaseEvent> = serde_json::from_value(events).expect("events");
    assert_eq!(events.len(), 11);
    assert_eq!(events[5].evidence.len(), 1, "the reply carries its evidence");
    assert_eq!(
        events[7].task.as_ref().map(ToString::to_string).as_deref(),
        Some("chengguan"),
        "the co-department's reply"
    );
    let stored = app.store.case(id).await.expect("read").expect("exists");
    assert_eq!(CaseStatus::replay(&events).expect("replay"), stored.status);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let citizen = app.login("citizen").await;
    let hall = app.login("hall").await;
    let case = app.create(&intake, 0).await;
    let id = case["id"].as_i64().expect("id");
    let before = app.counts().await;

    let raw = app
        .http
        .post(format!("{}/api/v1/cases", app.base))
        .bearer_auth(&intake)
        .header("content-type", "application/json")
        .body("{\"matter\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert_eq!(raw.json::<Value>().await.expect("json")["code"], "malformed_json");

    let mut cases: Vec<(Value, StatusCode, &str, Option<&str>)> = Vec::new();
    let mut bad_code = app.report(0);
    bad_code["matter"] = json!("6010");
    cases.push((bad_code, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", Some("matter")));
    let mut unknown = app.report(0);
    unknown["matter"] = json!("06031");
    cases.push((unknown, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", Some("matter")));
    let mut outside = app.report(0);
    outside["location"] = json!({"lon": 116.4, "lat": 39.9});
    cases.push((outside, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", Some("location")));
    let mut empty = app.report(0);
    empty["description"] = json!("   ");
    cases.push((empty, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", Some("description")));
    let mut component = app.report(0);
    component["component_id"] = json!("32058301037999999");
    cases.push((component, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", Some("component_id")));
    let mut phone = app.report(0);
    phone["reporter_phone"] = json!("call me");
    cases.push((phone, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", Some("reporter_phone")));
    for (body, status, code, field) in cases {
        let (s, err) = app.post("/api/v1/cases", Some(&intake), &body).await;
        assert_eq!(s, status, "{body} → {err}");
        assert_eq!(err["code"], code, "{err}");
        assert_eq!(err["field"].as_str(), field, "{err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A role that may not report.
    let (s, err) = app.post("/api/v1/cases", Some(&hall), &app.report(0)).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    // Citizens report only through H5.
    let mut h = app.report(0);
    h["source"] = json!("hotline12345");
    assert_eq!(app.post("/api/v1/cases", Some(&citizen), &h).await.0, StatusCode::UNPROCESSABLE_ENTITY);

    // Illegal transition, wrong role, missing reason, unknown department, stale version.
    let (s, err) = app.act(&intake, id, json!({"action": "close"})).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "intake may not close");
    let shift = app.login("shift").await;
    let (s, err) = app.act(&shift, id, json!({"action": "close"})).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::CONFLICT, Some("illegal_transition")));
    let (s, err) = app.act(&shift, id, json!({"action": "void"})).await;
    assert_eq!(
        (s, err["code"].as_str(), err["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason_required"), Some("reason"))
    );
    let (s, err) = app.act(&shift, id, json!({"action": "teleport"})).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input")));
    let (s, err) = app.act(&shift, id, json!({"action": "accept", "expected_version": 7})).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    app.act(&shift, id, json!({"action": "accept"})).await;
    app.act(&shift, id, json!({"action": "file"})).await;
    let dispatch = app.login("dispatch").await;
    let (s, err) = app.act(&dispatch, id, json!({"action": "dispatch", "lead": "nosuchdept"})).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input")));
    let (s, err) = app.get("/api/v1/cases?limit=0", Some(&shift)).await;
    assert_eq!((s, err["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")));
    let (s, err) = app.get("/api/v1/cases?state=nonsense", Some(&shift)).await;
    assert_eq!((s, err["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("state")));

    let after = app.counts().await;
    assert_eq!(after, (before.0, before.1 + 2), "only the two legal transitions were written");
}

#[tokio::test]
async fn personal_data_is_masked_unless_the_post_needs_it() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let dispatch = app.login("dispatch").await;
    let case = app.create(&intake, 0).await;
    assert_eq!(case["reporter"]["phone"], "13812345678", "intake calls reporters back");
    let id = case["id"].as_i64().expect("id");
    let (_, seen) = app.get(&format!("/api/v1/cases/{id}"), Some(&dispatch)).await;
    assert_eq!(seen["reporter"]["phone"], "138****5678");
    let (_, list) = app.get("/api/v1/cases", Some(&dispatch)).await;
    assert_eq!(list["items"][0]["reporter"]["phone"], "138****5678");
}

#[tokio::test]
async fn department_handlers_see_only_their_departments_cases() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let shift = app.login("shift").await;
    let dispatch = app.login("dispatch").await;
    let mine = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let other = app.create(&intake, 0).await["id"].as_i64().expect("id");
    for (id, dept) in [(mine, "huanwei"), (other, "shuiwu")] {
        app.act(&shift, id, json!({"action": "accept"})).await;
        app.act(&shift, id, json!({"action": "file"})).await;
        let (s, _) = app.act(&dispatch, id, json!({"action": "dispatch", "lead": dept})).await;
        assert_eq!(s, StatusCode::OK);
    }
    let handler = app.login("dept_huanwei").await;
    let (_, list) = app.get("/api/v1/cases", Some(&handler)).await;
    let ids: Vec<i64> = list["items"].as_array().expect("items").iter().filter_map(|c| c["id"].as_i64()).collect();
    assert_eq!(ids, vec![mine]);
    assert_eq!(app.act(&handler, other, json!({"action": "sign"})).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.act(&handler, mine, json!({"action": "sign"})).await.0, StatusCode::OK);
}

#[tokio::test]
async fn overdue_filter_follows_the_injected_clock() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let id = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let (_, list) = app.get("/api/v1/cases?overdue=true", Some(&intake)).await;
    assert!(list["items"].as_array().expect("items").is_empty());
    app.clock.advance(SignedDuration::from_mins(31)); // the 30-minute dispatch limit passes
    let (_, list) = app.get("/api/v1/cases?overdue=true", Some(&intake)).await;
    assert_eq!(list["items"][0]["id"], id);
    assert_eq!(list["items"][0]["overdue"], true);
}

#[tokio::test]
async fn reference_endpoints_serve_the_town() {
    let app = spawn_app().await;
    let t = app.login("analyst").await;
    let (s, fc) = app.get("/api/v1/grids.geojson", Some(&t)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(fc["type"], "FeatureCollection");
    assert_eq!(fc["features"].as_array().expect("features").len(), app.town.layout.grids.len());
    assert_eq!(fc["features"][0]["geometry"]["type"], "Polygon");
    let (_, m) = app.get("/api/v1/micro-grids.geojson", Some(&t)).await;
    assert_eq!(m["features"].as_array().expect("features").len(), app.town.layout.micro_grids.len());
    let p = app.point_in_grid(1);
    let (s, loc) = app.get(&format!("/api/v1/locate?lon={}&lat={}", p["lon"], p["lat"]), Some(&t)).await;
    assert_eq!((s, loc["grid"].as_str()), (StatusCode::OK, Some(app.town.layout.grids[1].code.as_str())));
    assert_eq!(app.get("/api/v1/locate?lon=0&lat=0", Some(&t)).await.0, StatusCode::NOT_FOUND);
    let (_, matters) = app.get("/api/v1/code-tables/matters", Some(&t)).await;
    assert_eq!(matters.as_array().expect("matters").len(), 250);
    let (_, depts) = app.get("/api/v1/departments", Some(&t)).await;
    let depts = depts.as_array().expect("departments");
    assert_eq!(depts.len(), 19, "eighteen bodies and the IoT maintenance contractor");
    assert!(depts.iter().any(|d| d["code"] == "chengguan-1" && d["parent"] == "chengguan"), "departments form a tree");
    let (_, comps) = app.get("/api/v1/components?limit=5", Some(&t)).await;
    let first = comps[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(app.get(&format!("/api/v1/components/{first}"), Some(&t)).await.0, StatusCode::OK);
    assert_eq!(app.get("/api/v1/components/123", Some(&t)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, cal) = app.get("/api/v1/calendar", Some(&t)).await;
    assert_eq!(cal.as_array().expect("calendar").len(), 39);
}

#[tokio::test]
async fn health_pages_and_docs_work_offline() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.0, StatusCode::OK);
    let (s, r) = app.get("/readyz", None).await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("ready")));
    for path in ["/", "/about", "/docs", "/static/docs.js", "/static/style.css"] {
        let (s, body) = app.get(path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        let text = body.as_str().expect("text");
        let external = text.match_indices("http").filter(|(i, _)| {
            let rest = &text[*i..];
            (rest.starts_with("http://") || rest.starts_with("https://")) && !rest.contains("127.0.0.1")
        });
        assert_eq!(external.count(), 0, "{path} must not load anything from outside");
    }
    let (_, index) = app.get("/about", None).await;
    assert!(index.as_str().expect("html").contains("清源镇"));
    assert_eq!(app.get("/api/v1/nothing-here", None).await.1["code"], "not_found");
}

/// The front-end libraries come bundled from npm inside the binary: htmx with the live feed's script,
/// ECharts, Leaflet and the Noto Sans SC font, revalidated by entity tag; `/licenses` lists every shipped
/// package with its licence texts.
#[tokio::test]
async fn bundled_web_libraries_and_their_licences_are_served_from_the_binary() {
    let app = spawn_app().await;
    let get = |path: &str, etag: Option<&str>| {
        let mut req = app.http.get(format!("{}{path}", app.base));
        if let Some(tag) = etag {
            req = req.header("if-none-match", tag);
        }
        req.send()
    };
    let console = get("/web/console.js", None).await.expect("get");
    assert_eq!(console.status(), StatusCode::OK);
    let etag = console.headers()["etag"].to_str().expect("etag").to_owned();
    assert!(console.headers()["content-type"].to_str().expect("type").starts_with("text/javascript"));
    let js = console.text().await.expect("body");
    assert!(js.contains("htmx") && js.contains("EventSource"), "htmx and the live feed");
    assert_eq!(get("/web/console.js", Some(&etag)).await.expect("get").status(), StatusCode::NOT_MODIFIED);
    let cockpit = get("/web/cockpit.js", None).await.expect("get").text().await.expect("body");
    assert!(cockpit.contains("registerMap"), "ECharts");
    let css = get("/web/console.css", None).await.expect("get").text().await.expect("body");
    assert!(css.contains("Noto Sans SC") && css.contains(".leaflet-container"), "fonts and Leaflet's styles");
    let font = css
        .split("url(")
        .skip(1)
        .filter_map(|s| s.split(')').next())
        .map(|u| u.trim_matches('"'))
        .find(|u| u.ends_with(".woff2"))
        .expect("a font file")
        .trim_start_matches("./")
        .to_owned();
    let woff2 = get(&format!("/web/{font}"), None).await.expect("get");
    assert_eq!(woff2.headers()["content-type"], "font/woff2");
    assert!(woff2.headers()["cache-control"].to_str().expect("cache").contains("immutable"));
    assert!(woff2.bytes().await.expect("font").len() > 500_000, "the simplified-Chinese subset");
    assert_eq!(get("/web/nothing.js", None).await.expect("get").status(), StatusCode::NOT_FOUND);
    // Every page loads the embedded font before the system ones (machines without CJK fonts show boxes).
    let fonts = get("/web/fonts.css", None).await.expect("get").text().await.expect("body");
    assert!(fonts.contains("@font-face") && fonts.contains("Noto Sans SC") && fonts.contains(".woff2"));
    let style = get("/static/style.css", None).await.expect("get").text().await.expect("body");
    assert!(style.contains("font: 15px/1.6 \"Noto Sans SC\""), "the embedded font comes first");
    for page in ["/about", "/docs", "/licenses"] {
        let (_, html) = app.get(page, None).await;
        assert!(html.as_str().expect("html").contains("href=\"/web/fonts.css\""), "{page} loads the font");
    }
    // The consoles (here the login page `/` leads to) load the console styles, which carry the font.
    let (_, login) = app.get("/", None).await;
    assert!(login.as_str().expect("html").contains("href=\"/web/console.css\""));
    assert!(css.contains("@font-face"), "the console styles embed the font faces");
    let (s, page) = app.get("/licenses", None).await;
    assert_eq!(s, StatusCode::OK);
    let page = page.as_str().expect("html");
    for shipped in ["htmx.org", "echarts", "leaflet", "@fontsource/noto-sans-sc"] {
        assert!(page.contains(&format!("<h2 id=\"{shipped}\">")), "{shipped} listed");
    }
    assert!(page.contains("NOTICE") && page.contains("Apache"), "ECharts' NOTICE and licence");
    assert!(page.contains("OFL"), "the font's licence");
}

#[tokio::test]
async fn openapi_document_is_served_and_matches_the_committed_copy() {
    let app = spawn_app().await;
    let (s, doc) = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    assert!(doc["paths"]["/api/v1/cases/{id}/transitions"]["post"].is_object());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json");
    let generated = civicgrid_http::openapi::json();
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).expect("write openapi.json");
    }
    let committed = std::fs::read_to_string(&path).expect("openapi.json is committed; run with UPDATE_OPENAPI=1");
    assert_eq!(committed, generated, "openapi.json is stale: run `UPDATE_OPENAPI=1 cargo test -p civicgrid-http`");
}

#[tokio::test]
async fn only_administrators_create_accounts_and_the_rules_of_each_post_hold() {
    let app = spawn_app().await;
    let admin = app.login("admin").await;
    let dispatch = app.login("dispatch").await;
    let grid = app.town.layout.grids[1].code.to_string();
    let account = json!({"username": "new.worker", "display_name": "新网格员", "role": "grid_worker",
        "password": "a-long-password", "grids": [grid]});
    let (s, err) = app.post("/api/v1/users", Some(&dispatch), &account).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    assert_eq!(app.get("/api/v1/users", Some(&dispatch)).await.0, StatusCode::FORBIDDEN);
    let (s, user) = app.post("/api/v1/users", Some(&admin), &account).await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    assert!(user.get("password_hash").is_none(), "hashes never leave the server");
    let (s, err) = app.post("/api/v1/users", Some(&admin), &account).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::CONFLICT, Some("duplicate")));
    let mut no_grid = account.clone();
    no_grid["username"] = json!("other.worker");
    no_grid["grids"] = json!([]);
    let (s, err) = app.post("/api/v1/users", Some(&admin), &no_grid).await;
    assert_eq!((s, err["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("grids")));
    // The new worker logs in with the password given and sees the cases of the grid given.
    let r =
        app.post("/api/v1/auth/login", None, &json!({"username": "new.worker", "password": "a-long-password"})).await;
    assert_eq!(r.0, StatusCode::OK);
    let worker = r.1["token"].as_str().expect("token").to_owned();
    let intake = app.login("intake").await;
    let id = app.create(&intake, 1).await["id"].as_i64().expect("id");
    assert_eq!(app.get(&format!("/api/v1/cases/{id}"), Some(&worker)).await.0, StatusCode::OK);
    let (_, users) = app.get("/api/v1/users", Some(&admin)).await;
    assert!(users.as_array().expect("users").iter().any(|u| u["username"] == "new.worker"));
}

#[tokio::test]
async fn a_holiday_added_by_the_administrator_moves_new_deadlines() {
    let app = spawn_app().await;
    let admin = app.login("admin").await;
    let shift = app.login("shift").await;
    // Monday 23 November 17:00 in China; exposed rubbish has 4 working hours.
    app.clock.set("2026-11-23T09:00:00Z".parse().expect("time"));
    assert_eq!(app.dispatched_due(&shift).await, "2026-11-24T03:00:00Z", "Tuesday 11:00 before the change");
    let holiday = json!([{"date": "2026-11-24", "kind": "holiday", "name_zh": "临时假日", "name_en": "extra holiday"}]);
    let dispatch = app.login("dispatch").await;
    assert_eq!(
        app.send(app.http.put(format!("{}/api/v1/calendar", app.base)).json(&holiday), Some(&dispatch)).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, cal) = app.send(app.http.put(format!("{}/api/v1/calendar", app.base)).json(&holiday), Some(&admin)).await;
    assert_eq!(s, StatusCode::OK, "{cal}");
    assert_eq!(cal.as_array().expect("rows").len(), 40);
    assert_eq!(
        app.dispatched_due(&shift).await,
        "2026-11-25T03:00:00Z",
        "Wednesday 11:00 after Tuesday became a holiday"
    );
    let (s, err) = app.put("/api/v1/calendar", &admin, &json!([])).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input")));
}

#[tokio::test]
async fn another_nodes_reference_changes_arrive_through_the_refresh() {
    let app = spawn_app().await;
    // A second "node" on the same database changes the calendar directly.
    let holiday = civicgrid_core::calendar::CalendarEntry {
        date: jiff::civil::date(2026, 11, 24),
        kind: civicgrid_core::calendar::DayKind::Holiday,
        name_zh: "临时假日".into(),
        name_en: "extra".into(),
    };
    app.store.put_calendar(&[holiday]).await.expect("other node writes");
    let shift = app.login("shift").await;
    app.clock.set("2026-11-23T09:00:00Z".parse().expect("time"));
    assert_eq!(app.dispatched_due(&shift).await, "2026-11-24T03:00:00Z", "not seen before a refresh");
    app.state.services.reload_world().await.expect("refresh");
    assert_eq!(app.dispatched_due(&shift).await, "2026-11-25T03:00:00Z", "seen after the refresh");
}

#[tokio::test]
async fn administrators_register_components_with_checked_ids() {
    let app = spawn_app().await;
    let admin = app.login("admin").await;
    let p = app.point_in_grid(1);
    let lamp = json!({"name": "路灯 新01", "location": p, "department": "shizheng-lamp"});
    let (s, c) = app.put("/api/v1/components/32058301037900001", &admin, &lamp).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["grid"], app.town.layout.grids[1].code.to_string(), "the grid follows from the location");
    assert_eq!(c["status"], "intact");
    let (s, _) = app.get("/api/v1/components/32058301037900001", Some(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    for (id, body, field) in [
        ("11010101037900001", lamp.clone(), "id"), // another county
        ("32058301016900001", lamp.clone(), "id"), // 01016 is a gap in the national table
        ("3205830103790000", lamp.clone(), "id"),  // 16 digits
        (
            "32058301037900002",
            json!({"name": "x", "location": {"lon": 100.0, "lat": 20.0}, "department": "shizheng"}),
            "location",
        ),
        ("32058301037900003", json!({"name": "x", "location": p, "department": "nobody"}), "department"),
    ] {
        let (s, err) = app.put(&format!("/api/v1/components/{id}"), &admin, &body).await;
        assert_eq!((s, err["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{id}: {err}");
    }
    let dispatch = app.login("dispatch").await;
    assert_eq!(app.put("/api/v1/components/32058301037900004", &dispatch, &lamp).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/v1/components/32058301037900002", Some(&admin)).await.0,
        StatusCode::NOT_FOUND,
        "nothing written"
    );
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_username_for_a_while() {
    let app = spawn_app().await;
    let wrong = json!({"username": "dispatch", "password": "guess"});
    for _ in 0..civicgrid_service::accounts::MAX_FAILURES {
        assert_eq!(app.post("/api/v1/auth/login", None, &wrong).await.0, StatusCode::UNAUTHORIZED);
    }
    let right = json!({"username": "dispatch", "password": PASSWORD});
    let (s, err) = app.post("/api/v1/auth/login", None, &right).await;
    assert_eq!((s, err["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts")));
    assert_eq!(
        app.post("/api/v1/auth/login", None, &json!({"username": "shift", "password": PASSWORD})).await.0,
        StatusCode::OK,
        "other users are unaffected"
    );
    app.clock.advance(civicgrid_service::accounts::LOCKOUT);
    assert_eq!(app.post("/api/v1/auth/login", None, &right).await.0, StatusCode::OK, "the lock lapses");
}

/// Reads Server-Sent Events from a streaming response until `n` messages (comments aside) have
/// arrived; returns their (event, id, data).
async fn read_messages(resp: &mut reqwest::Response, n: usize) -> Vec<(String, i64, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.expect("events in time").expect("read");
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("stream open")));
        while let Some(end) = buf.find("\n\n") {
            let message: String = buf.drain(..end + 2).collect();
            let field =
                |name: &str| message.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_owned()));
            let Some(event) = field("event:") else { continue };
            let id = field("id:").and_then(|v| v.parse().ok()).expect("id");
            let data: Value = serde_json::from_str(&field("data:").expect("data")).expect("json");
            out.push((event, id, data));
        }
    }
    out
}

/// Reads Server-Sent Events until `n` messages have arrived, all of them `case` events; returns their
/// (id, case id, action).
async fn read_events(resp: &mut reqwest::Response, n: usize) -> Vec<(i64, i64, String)> {
    read_messages(resp, n)
        .await
        .into_iter()
        .map(|(event, id, data)| {
            assert_eq!(event, "case", "{data}");
            (id, data["case_id"].as_i64().expect("case"), data["event"]["action"]["action"].as_str().expect("a").into())
        })
        .collect()
}

/// An alarm's changes reach the centre's posts on the live feed as `alarm` messages, in global order
/// with the case events; a grid worker's feed carries its cases only.
#[tokio::test]
async fn alarm_changes_reach_the_centres_posts_on_the_live_feed() {
    use civicgrid_core::alarm::{Alarm, AlarmSeverity, Fault};
    use civicgrid_core::clock::Clock;
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let shift = app.login("shift").await;
    let worker = app.login("gw001").await; // grid 0
    let open = |token: &str| app.http.get(format!("{}/api/v1/stream", app.base)).bearer_auth(token).send();
    let mut centre = open(&shift).await.expect("subscribe");
    let mut field = open(&worker).await.expect("subscribe");
    let at = app.clock.now();
    let raised = Alarm::raise(
        "device:lamp-0042".parse().expect("subject"),
        "lamp-dark",
        Fault::LampOut,
        AlarmSeverity::Major,
        at,
    );
    let mut alarm = app.store.insert_alarm(&raised, "raised").await.expect("alarm");
    alarm.acknowledge(Some(1), at).expect("ack");
    app.store.update_alarm(&mut alarm, "acknowledged").await.expect("update");
    let case = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let seen = read_messages(&mut centre, 3).await;
    assert_eq!(
        seen.iter()
            .map(|(e, _, d)| (e.as_str(), d["alarm"]["id"].as_i64().or(d["case_id"].as_i64())))
            .collect::<Vec<_>>(),
        vec![("alarm", Some(alarm.id)), ("alarm", Some(alarm.id)), ("case", Some(case))]
    );
    assert_eq!((seen[0].2["note"].as_str(), seen[1].2["note"].as_str()), (Some("raised"), Some("acknowledged")));
    assert_eq!((seen[0].2["stream"].as_str(), seen[1].2["alarm"]["version"].as_i64()), (Some("alarm"), Some(2)));
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "ids are the global order");
    let theirs = read_messages(&mut field, 1).await;
    assert_eq!(
        (theirs[0].0.as_str(), theirs[0].2["case_id"].as_i64()),
        ("case", Some(case)),
        "no alarm for a grid worker"
    );
}

#[tokio::test]
async fn the_live_feed_streams_only_what_the_subscriber_may_see_and_resumes_after_last_event_id() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let worker = app.login("gw001").await; // grid 0
    let open = |after: Option<i64>| {
        let mut req = app.http.get(format!("{}/api/v1/stream", app.base)).bearer_auth(&worker);
        if let Some(a) = after {
            req = req.header("last-event-id", a.to_string());
        }
        req.send()
    };
    let mut live = open(None).await.expect("subscribe");
    assert_eq!(live.status(), StatusCode::OK);
    assert!(live.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
    let elsewhere = app.create(&intake, 1).await["id"].as_i64().expect("id");
    let mine = app.create(&intake, 0).await["id"].as_i64().expect("id");
    app.act(&intake, elsewhere, json!({"action": "accept"})).await;
    app.act(&intake, mine, json!({"action": "accept"})).await;
    let seen = read_events(&mut live, 2).await;
    assert_eq!(
        seen.iter().map(|(_, c, a)| (*c, a.as_str())).collect::<Vec<_>>(),
        vec![(mine, "report"), (mine, "accept")],
        "the grid-1 case never reaches the grid-0 worker"
    );
    assert!(seen[0].0 < seen[1].0, "ids are the global order");
    drop(live);
    // Reconnecting after the first event replays what came after it, then goes on live.
    let mut again = open(Some(seen[0].0)).await.expect("resume");
    assert_eq!(read_events(&mut again, 1).await, vec![seen[1].clone()]);
    app.act(&intake, mine, json!({"action": "request_void", "reason": "重复"})).await;
    assert_eq!(read_events(&mut again, 1).await[0].2, "request_void");
    let (s, body) =
        app.send(app.http.get(format!("{}/api/v1/stream", app.base)).header("last-event-id", "x"), Some(&worker)).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_input")));
}

#[tokio::test]
async fn review_findings_answer_in_the_json_error_format_and_change_nothing() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let admin = app.login("admin").await;
    let dispatch = app.login("dispatch").await;
    let id = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let before = app.counts().await;
    let expect = |(s, body): (StatusCode, Value), status: StatusCode, code: &str| {
        assert_eq!((s, body["code"].as_str()), (status, Some(code)), "{body}");
        body
    };
    // Bad path ids, unknown fields, repeated single-value filters, unknown query parameters.
    expect(app.get("/api/v1/cases/abc", Some(&intake)).await, StatusCode::BAD_REQUEST, "invalid_path");
    expect(app.get("/api/v1/cases/-4", Some(&intake)).await, StatusCode::BAD_REQUEST, "invalid_path");
    for bad in ["lon=NaN&lat=31", "lon=120&lat=inf", "lon=999&lat=31"] {
        let locate = format!("/api/v1/locate?{bad}");
        expect(app.get(&locate, Some(&intake)).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
    let body = expect(
        app.act(&intake, id, json!({"action": "accept", "expectedVersion": 7})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_eq!(body["field"], "expectedVersion");
    expect(
        app.get("/api/v1/cases?matter=06010,01037", Some(&intake)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    expect(app.get("/api/v1/cases?colour=red", Some(&intake)).await, StatusCode::BAD_REQUEST, "invalid_query");
    // Control characters, oversized text, path-like attachment names, phone numbers without digits.
    for (field, value) in [
        ("description", json!("垃圾\u{0}")),
        ("address", json!("路".repeat(201))),
        ("reporter_name", json!("张\u{1b}[31m")),
        ("reporter_phone", json!("-----")),
        ("attachments", json!([{"name": "../../etc/passwd", "mime": "image/jpeg", "size": 10}])),
    ] {
        let mut report = app.report(0);
        report[field] = value;
        let body = expect(
            app.post("/api/v1/cases", Some(&intake), &report).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        );
        assert_eq!(body["field"], field);
    }
    let long_reason = json!({"action": "request_void", "reason": "因".repeat(1001)});
    expect(app.act(&intake, id, long_reason).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    // A body over the limit is a JSON 413.
    let mut huge = app.report(0);
    huge["description"] = json!("x".repeat(civicgrid_http::MAX_BODY));
    expect(app.post("/api/v1/cases", Some(&intake), &huge).await, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Other methods are a JSON 405 that names the allowed ones.
    let resp = app.http.delete(format!("{}/api/v1/cases", app.base)).bearer_auth(&intake).send().await.expect("send");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.headers().get("allow").is_some());
    assert_eq!(resp.json::<Value>().await.expect("json")["code"], "method_not_allowed");
    // Separation of duties: the administrator takes no case step.
    expect(app.act(&admin, id, json!({"action": "accept"})).await, StatusCode::FORBIDDEN, "forbidden");
    // An unknown co-department is reported on `co`.
    for step in ["accept", "file"] {
        let token = if step == "accept" { &intake } else { &app.login("shift").await };
        assert_eq!(app.act(token, id, json!({"action": step})).await.0, StatusCode::OK);
    }
    let body = expect(
        app.act(&dispatch, id, json!({"action": "dispatch", "lead": "huanwei", "co": ["nowhere"]})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    assert_eq!(body["field"], "co");
    let after = app.counts().await;
    assert_eq!((after.0, after.1), (before.0, before.1 + 2), "only the two good steps were stored");
    // Reporter names are masked for the dispatcher, shown to intake.
    let (_, seen) = app.get(&format!("/api/v1/cases/{id}"), Some(&dispatch)).await;
    assert_eq!(seen["reporter"]["name"], "张*");
    let (_, seen) = app.get(&format!("/api/v1/cases/{id}"), Some(&intake)).await;
    assert_eq!(seen["reporter"]["name"], "张三");
}

#[tokio::test]
async fn escalation_stops_at_the_top_of_the_ladder() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let supervisor = app.login("supervisor").await;
    let id = app.create(&intake, 0).await["id"].as_i64().expect("id");
    for level in 1..=civicgrid_core::case::MAX_ESCALATION_LEVEL {
        let (s, c) = app.act(&supervisor, id, json!({"action": "escalate"})).await;
        assert_eq!((s, c["escalation_level"].as_i64()), (StatusCode::OK, Some(i64::from(level))));
    }
    let (s, body) = app.act(&supervisor, id, json!({"action": "escalate"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn an_idempotency_key_turns_a_retried_report_into_the_first_case() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let post = |key: &str, body: &Value| {
        app.http
            .post(format!("{}/api/v1/cases", app.base))
            .bearer_auth(&intake)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let report = app.report(0);
    let first = post("req-0001", &report).await.expect("send");
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let again = post("req-0001", &report).await.expect("send");
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.expect("json")["id"], first["id"]);
    let before = app.counts().await;
    let mut changed = report.clone();
    changed["description"] = json!("另一件事");
    let refused = post("req-0001", &changed).await.expect("send");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(
        (body["code"].as_str(), body["field"].as_str()),
        (Some("idempotency_key_reused"), Some("Idempotency-Key"))
    );
    let too_long = post(&"k".repeat(101), &report).await.expect("send");
    assert_eq!(too_long.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.counts().await, before, "refusals wrote nothing");

    // A report with a photo: the first attempt links the photo to its case, and a retry still
    // gets that case back rather than "not one of your uploads".
    let photo = app.upload_photo(&intake, None).await;
    let mut with_photo = app.report(0);
    with_photo["attachments"] = json!([{"id": photo, "name": "p.jpg", "mime": "image/jpeg", "size": 1}]);
    let first = post("req-0002", &with_photo).await.expect("send");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    let again = post("req-0002", &with_photo).await.expect("send");
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.expect("json")["id"], first["id"]);
}

#[tokio::test]
async fn every_creating_post_of_the_administrator_takes_an_idempotency_key() {
    let app = spawn_app().await;
    let admin = app.login("admin").await;
    let post = |path: String, key: &'static str, body: Value| {
        let req = app.http.post(format!("{}{path}", app.base)).bearer_auth(&admin).header("idempotency-key", key);
        async move {
            let resp = req.json(&body).send().await.expect("send");
            let replayed = resp.headers().get("idempotent-replayed").is_some();
            (resp.status(), replayed, resp.json::<Value>().await.expect("json"))
        }
    };
    // An account: the retry gets the first account, not 409 for the taken username.
    let account = json!({"username": "clerk_li", "display_name": "李文员", "role": "intake_operator", "password": "a-long-password-1"});
    let (s, replayed, first) = post("/api/v1/users".into(), "acct-1", account.clone()).await;
    assert_eq!((s, replayed), (StatusCode::CREATED, false), "{first}");
    let (s, replayed, again) = post("/api/v1/users".into(), "acct-1", account.clone()).await;
    assert_eq!((s, replayed, &again["id"]), (StatusCode::CREATED, true, &first["id"]), "{again}");
    let mut other = account.clone();
    other["display_name"] = json!("另一个人");
    let (s, _, body) = post("/api/v1/users".into(), "acct-1", other).await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused")));
    let (s, _, _) = post("/api/v1/users".into(), "acct-2", account).await;
    assert_eq!(s, StatusCode::CONFLICT, "a new key for a taken username is a real duplicate");
    // A service account.
    let sa = json!({"name": "open311-app", "channel": "open311"});
    let (s, _, first) = post("/api/v1/service-accounts".into(), "sa-1", sa.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, replayed, again) = post("/api/v1/service-accounts".into(), "sa-1", sa).await;
    assert_eq!((s, replayed, &again["id"]), (StatusCode::CREATED, true, &first["id"]));
    // An API key: the retry issues no second key, and cannot show the first one's secret again.
    let id = first["id"].as_i64().expect("id");
    let (s, replayed, issued) = post(format!("/api/v1/service-accounts/{id}/keys"), "key-1", json!({})).await;
    assert_eq!((s, replayed), (StatusCode::CREATED, false), "{issued}");
    assert!(issued["key"].as_str().is_some_and(|k| k.starts_with("cgk_")));
    let (s, replayed, again) = post(format!("/api/v1/service-accounts/{id}/keys"), "key-1", json!({})).await;
    assert_eq!((s, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!((&again["info"]["id"], &again["key"]), (&issued["info"]["id"], &Value::Null));
    let (_, accounts) = app.get("/api/v1/service-accounts", Some(&admin)).await;
    let keys = accounts.as_array().and_then(|a| a.iter().find(|a| a["id"] == id)).map(|a| a["keys"].clone());
    assert_eq!(keys.and_then(|k| k.as_array().map(Vec::len)), Some(1), "one key, however often the request came");
}

#[tokio::test]
async fn a_service_account_reports_on_its_channel_with_an_api_key_until_it_is_revoked() {
    let app = spawn_app().await;
    let admin = app.login("admin").await;
    let shift = app.login("shift").await;
    let (s, _) = app
        .post("/api/v1/service-accounts", Some(&shift), &json!({"name": "hotline", "channel": "hotline12345"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only administrators");
    let (s, account) = app
        .post("/api/v1/service-accounts", Some(&admin), &json!({"name": "hotline-sz", "channel": "hotline12345"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{account}");
    let id = account["id"].as_i64().expect("id");
    let (s, issued) = app.post(&format!("/api/v1/service-accounts/{id}/keys"), Some(&admin), &json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{issued}");
    let key = issued["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with(issued["info"]["prefix"].as_str().expect("prefix")));
    // The key reports a case: on its channel, recorded as the integration, with its own idempotency scope.
    let resp = app
        .http
        .post(format!("{}/api/v1/cases", app.base))
        .header("x-api-key", &key)
        .header("idempotency-key", "12345-20261123-0001")
        .json(&app.report(0))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let case: Value = resp.json().await.expect("json");
    assert_eq!(case["source"], "hotline12345");
    assert!(case["reporter"].get("user_id").is_none(), "no person reported it");
    let case_id = case["id"].as_i64().expect("id");
    let (_, events) = app.get(&format!("/api/v1/cases/{case_id}/events"), Some(&shift)).await;
    assert_eq!(events[0]["actor"], json!({"role": "integration", "job": "hotline12345:hotline-sz"}));
    // A bearer key works too; an integration sees no case list and takes no case step.
    let (s, list) = app.get("/api/v1/cases", Some(&key)).await;
    assert_eq!((s, list["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    assert_eq!(app.act(&key, case_id, json!({"action": "accept"})).await.0, StatusCode::NOT_FOUND);
    let (_, accounts) = app.get("/api/v1/service-accounts", Some(&admin)).await;
    let keys = &accounts[0]["keys"];
    assert!(keys[0]["last_used_at"].is_string(), "last use recorded: {accounts}");
    assert!(!accounts.to_string().contains(&key), "the key itself is never listed");
    // Revoked, the key stops working (the node's short cache is dropped at once).
    let key_id = keys[0]["id"].as_i64().expect("key id");
    let resp = app
        .http
        .delete(format!("{}/api/v1/api-keys/{key_id}", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/cases", Some(&key)).await.0, StatusCode::UNAUTHORIZED);
    // A disabled account's new keys do not work either.
    let (_, issued) = app.post(&format!("/api/v1/service-accounts/{id}/keys"), Some(&admin), &json!({})).await;
    let second = issued["key"].as_str().expect("key").to_owned();
    assert_eq!(app.get("/api/v1/cases", Some(&second)).await.0, StatusCode::OK);
    assert_eq!(
        app.put(&format!("/api/v1/service-accounts/{id}/state"), &admin, &json!({"enabled": false})).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/api/v1/cases", Some(&second)).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn administrators_disable_accounts_reset_passwords_and_end_sessions() {
    let app = spawn_app().await;
    let admin = app.login("admin").await;
    let intake = app.login("intake").await;
    let (_, me) = app.get("/api/v1/auth/me", Some(&intake)).await;
    let intake_id = me["id"].as_i64().expect("id");
    let (_, me) = app.get("/api/v1/auth/me", Some(&admin)).await;
    let admin_id = me["id"].as_i64().expect("id");
    // Disabling ends the sessions and refuses log-in; re-enabling lets the user back in.
    let state = |enabled: bool| json!({ "enabled": enabled });
    assert_eq!(
        app.put(&format!("/api/v1/users/{intake_id}/state"), &admin, &state(false)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/api/v1/auth/me", Some(&intake)).await.0, StatusCode::UNAUTHORIZED);
    let (s, _) = app.post("/api/v1/auth/login", None, &json!({"username": "intake", "password": PASSWORD})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, users) = app.get("/api/v1/users", Some(&admin)).await;
    let listed = users.as_array().expect("users").iter().find(|u| u["id"] == intake_id).expect("listed").clone();
    assert!(listed["disabled_at"].is_string());
    let (s, body) = app.put(&format!("/api/v1/users/{admin_id}/state"), &admin, &state(false)).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("enabled")), "not yourself");
    assert_eq!(
        app.put(&format!("/api/v1/users/{intake_id}/state"), &admin, &state(true)).await.0,
        StatusCode::NO_CONTENT
    );
    let intake = app.login("intake").await;
    // A reset password ends every session; the new one works, the old one does not.
    let (s, _) = app
        .post(&format!("/api/v1/users/{intake_id}/password"), Some(&admin), &json!({"password": "a brand new pw"}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/auth/me", Some(&intake)).await.0, StatusCode::UNAUTHORIZED);
    let (s, body) =
        app.post("/api/v1/auth/login", None, &json!({"username": "intake", "password": "a brand new pw"})).await;
    assert_eq!(s, StatusCode::OK);
    let intake = body["token"].as_str().expect("token").to_owned();
    // Changing one's own password keeps this session and ends the others.
    let (_, other) =
        app.post("/api/v1/auth/login", None, &json!({"username": "intake", "password": "a brand new pw"})).await;
    let other = other["token"].as_str().expect("token").to_owned();
    let change = |current: &str| json!({"current_password": current, "new_password": "another good pw"});
    let (s, body) = app.post("/api/v1/auth/password", Some(&intake), &change("wrong one")).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("current_password")));
    assert_eq!(
        app.post("/api/v1/auth/password", Some(&intake), &change("a brand new pw")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/api/v1/auth/me", Some(&intake)).await.0, StatusCode::OK);
    assert_eq!(app.get("/api/v1/auth/me", Some(&other)).await.0, StatusCode::UNAUTHORIZED);
    // Ending a user's sessions from the administration.
    let resp =
        app.http.delete(format!("{}/api/v1/users/{intake_id}/sessions", app.base)).bearer_auth(&admin).send().await;
    let ended: Value = resp.expect("send").json().await.expect("json");
    assert_eq!(ended["ended"], 1);
    assert_eq!(app.get("/api/v1/auth/me", Some(&intake)).await.0, StatusCode::UNAUTHORIZED);
    // A locked username is unlocked by an administrator.
    for _ in 0..civicgrid_service::accounts::MAX_FAILURES {
        app.post("/api/v1/auth/login", None, &json!({"username": "shift", "password": "nope"})).await;
    }
    let (s, _) = app.post("/api/v1/auth/login", None, &json!({"username": "shift", "password": PASSWORD})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let resp = app.http.delete(format!("{}/api/v1/login-locks/shift", app.base)).bearer_auth(&admin).send().await;
    assert_eq!(resp.expect("send").json::<Value>().await.expect("json")["was_locked"], true);
    let (s, _) = app.post("/api/v1/auth/login", None, &json!({"username": "shift", "password": PASSWORD})).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn pages_and_api_answers_carry_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/", "/docs", "/api/v1/cases", "/healthz"] {
        let resp = app.http.get(format!("{}{path}", app.base)).send().await.expect("get");
        let h = resp.headers();
        let csp = h.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
    }
    let resp = app
        .http
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"username": "intake", "password": PASSWORD}))
        .send()
        .await;
    assert_eq!(resp.expect("login").headers()["cache-control"], "no-store");
    let page = app.http.get(format!("{}/", app.base)).send().await.expect("get").text().await.expect("text");
    assert!(!page.contains("案卷总数"), "the public page does not count cases");
}

#[tokio::test]
async fn a_write_with_the_session_cookie_must_come_from_our_own_origin() {
    let app = spawn_app().await;
    let token = app.login("intake").await;
    let cookie = format!("cg_session={token}");
    let host = app.base.trim_start_matches("http://").to_owned();
    let post = |origin: Option<&str>| {
        let mut req =
            app.http.post(format!("{}/api/v1/cases", app.base)).header("cookie", &cookie).json(&app.report(0));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_eq!(post(Some("http://evil.example")).await.expect("send").status(), StatusCode::FORBIDDEN);
    assert_eq!(post(None).await.expect("send").status(), StatusCode::FORBIDDEN, "no origin, no fetch metadata");
    assert_eq!(post(Some(&format!("http://{host}"))).await.expect("send").status(), StatusCode::CREATED);
    // Reads need no origin; bearer tokens are not sent by browsers on their own and need none.
    let read = app.http.get(format!("{}/api/v1/cases", app.base)).header("cookie", &cookie).send().await;
    assert_eq!(read.expect("get").status(), StatusCode::OK);
    let (s, _) = app.post("/api/v1/cases", Some(&token), &app.report(0)).await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn slow_clients_cannot_hold_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let options = civicgrid_http::ServeOptions {
        max_connections: 4,
        header_timeout: std::time::Duration::from_millis(300),
        body_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let app = spawn_app_with(options).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Half-sent headers: the server hangs up after the header timeout.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(3), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the half-sent request was dropped within the timeout");
    // A body that never finishes: the request fails after the body timeout.
    let token = app.login("intake").await;
    let mut trickle = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/cases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"matter\""
    );
    trickle.write_all(head.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(3), trickle.read(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer[..n.expect("answered in time").expect("read")]).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // Connections beyond the cap wait; the server still serves once others close.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.expect("connect"));
    }
    let started = std::time::Instant::now();
    let resp = app.http.get(format!("{}/healthz", app.base)).send().await.expect("served after the idle ones time out");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200), "it had to wait for a free slot");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_show_the_writer_and_the_queue() {
    civicgrid_http::metrics::install();
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    app.create(&intake, 0).await;
    app.get("/api/v1/cases/987654", Some(&intake)).await;
    let resp = app.http.get(format!("{}/metrics", app.base)).send().await.expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK, "loopback may scrape");
    let text = resp.text().await.expect("text");
    for needle in [
        "civicgrid_http_requests_total{method=\"POST\",route=\"/api/v1/cases\",status=\"201\"}",
        "route=\"/api/v1/cases/{id}\",status=\"404\"",
        "civicgrid_http_request_duration_seconds_bucket",
        "civicgrid_writer_batch_size_bucket",
        "civicgrid_writer_commit_seconds_bucket",
        "civicgrid_jobs{state=\"pending\"}",
        "civicgrid_feed_subscribers",
        "civicgrid_log_reader_behind{reader=\"sla_timers\"}",
        "civicgrid_log_reader_behind{reader=\"kpi\"}",
        "civicgrid_calendar_missing_year 2027", // 23 November: 2027 is due and has no row
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(!text.contains("987654"), "raw paths never become labels");
    let proxied = app.http.get(format!("{}/metrics", app.base)).header("x-forwarded-for", "203.0.113.7").send().await;
    assert_eq!(
        proxied.expect("scrape").status(),
        StatusCode::FORBIDDEN,
        "a request a proxy on this host forwarded is not a local scrape"
    );
}

#[tokio::test]
async fn photos_are_uploaded_described_by_their_exif_and_seen_only_with_their_case() {
    let app = spawn_app().await;
    let worker = app.login("gw001").await; // grid 0
    let other = app.login("gw002").await; // grid 1
    let shift = app.login("shift").await;
    let taken: Timestamp = "2026-11-23T00:41:07Z".parse().expect("time");
    let spot = app.point_in_grid(0);
    let (lon, lat) = (spot["lon"].as_f64().expect("lon"), spot["lat"].as_f64().expect("lat"));
    let photo = civicgrid_demo::photos::jpeg(1200, 900, [90, 120, 60], Some(taken), Some((lon, lat)));
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(photo.clone()).file_name("现场.jpg").mime_str("image/jpeg").expect("mime"),
    );
    let resp =
        app.http.post(format!("{}/api/v1/attachments", app.base)).bearer_auth(&worker).multipart(form).send().await;
    let resp = resp.expect("upload");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let up: Value = resp.json().await.expect("json");
    assert_eq!(
        (up["mime"].as_str(), up["name"].as_str(), up["width"].as_i64()),
        (Some("image/jpeg"), Some("现场.jpg"), Some(1200))
    );
    assert_eq!(up["taken_at"], "2026-11-23T00:41:07Z", "EXIF time read as China time");
    assert!((up["location"]["lat"].as_f64().expect("lat") - lat).abs() < 1e-5, "{up}");
    assert!((up["location"]["lon"].as_f64().expect("lon") - lon).abs() < 1e-5, "{up}");
    let id = up["id"].as_i64().expect("id");
    // Before a case names it, only the uploader sees it.
    assert_eq!(app.get(&format!("/api/v1/attachments/{id}"), Some(&shift)).await.0, StatusCode::NOT_FOUND);
    let mut report = app.report(0);
    report["attachments"] = json!([{"id": id, "name": "whatever.exe", "mime": "text/html", "size": 1}]);
    let (s, case) = app.post("/api/v1/cases", Some(&worker), &report).await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    assert_eq!(case["attachments"][0]["name"], "现场.jpg", "the upload's facts, not the request's");
    assert_eq!(case["attachments"][0]["mime"], "image/jpeg");
    let case_id = case["id"].as_i64().expect("id");
    // Now whoever may see the case sees it; a worker of another grid does not.
    let content =
        app.http.get(format!("{}/api/v1/attachments/{id}/content", app.base)).bearer_auth(&shift).send().await;
    let content = content.expect("download");
    assert_eq!(content.status(), StatusCode::OK);
    assert_eq!(content.headers()["content-type"], "image/jpeg");
    assert!(content.headers()["content-security-policy"].to_str().expect("csp").contains("sandbox"));
    assert_eq!(content.bytes().await.expect("bytes").as_ref(), photo.as_slice(), "the same bytes come back");
    let thumb =
        app.http.get(format!("{}/api/v1/attachments/{id}/thumbnail", app.base)).bearer_auth(&shift).send().await;
    let thumb = thumb.expect("thumb").bytes().await.expect("bytes");
    let decoded = image::load_from_memory(&thumb).expect("a JPEG thumbnail");
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
    assert_eq!(app.get(&format!("/api/v1/attachments/{id}/content"), Some(&other)).await.0, StatusCode::NOT_FOUND);
    let (s, list) = app.get(&format!("/api/v1/cases/{case_id}/attachments"), Some(&shift)).await;
    assert_eq!((s, list[0]["id"].as_i64()), (StatusCode::OK, Some(id)));
    // An attachment belongs to one case; someone else's upload cannot be named.
    let (s, body) = app.post("/api/v1/cases", Some(&worker), &report).await;
    assert_eq!((s, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("attachments")), "{body}");
    // A raw upload of something that is not an accepted type is refused, whatever it claims to be.
    let raw = app
        .http
        .post(format!("{}/api/v1/attachments?name=x.jpg", app.base))
        .bearer_auth(&worker)
        .header("content-type", "image/jpeg")
        .body("<script>alert(1)</script>")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let raw = app
        .http
        .post(format!("{}/api/v1/attachments?name=..%2Fetc%2Fpasswd", app.base))
        .bearer_auth(&worker)
        .header("content-type", "application/pdf")
        .body(b"%PDF-1.4\n".to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), StatusCode::UNPROCESSABLE_ENTITY, "path-like names are refused");
    let pdf = app
        .http
        .post(format!("{}/api/v1/attachments?name=%E9%80%9A%E7%9F%A5.pdf", app.base))
        .bearer_auth(&worker)
        .header("content-type", "application/pdf")
        .body(b"%PDF-1.4\n%%EOF\n".to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(pdf.status(), StatusCode::CREATED);
    let pdf: Value = pdf.json().await.expect("json");
    assert_eq!((pdf["mime"].as_str(), pdf["name"].as_str()), (Some("application/pdf"), Some("通知.pdf")));
    // A retried upload with the same key gets the first attachment back; another file under it is refused.
    let retry = |body: Vec<u8>| {
        app.http
            .post(format!("{}/api/v1/attachments?name=retry.pdf", app.base))
            .bearer_auth(&worker)
            .header("idempotency-key", "upload-0001")
            .header("content-type", "application/pdf")
            .body(body)
            .send()
    };
    let first = retry(b"%PDF-1.4\n1\n".to_vec()).await.expect("send");
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    let again = retry(b"%PDF-1.4\n1\n".to_vec()).await.expect("send");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.expect("json")["id"], first["id"]);
    assert_eq!(retry(b"%PDF-1.4\n2\n".to_vec()).await.expect("send").status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Evidence on a transition is linked the same way.
    let pid = pdf["id"].as_i64().expect("id");
    let (s, body) = app.act(&shift, case_id, json!({"action": "void", "reason": "测试", "evidence": [{"id": pid, "name": "a", "mime": "application/pdf", "size": 1}]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "the shift leader did not upload it: {body}");
}

/// Every status code an operation answers is in the OpenAPI document: a tour of the API's error
/// answers, each checked against the document's list for its operation.
#[tokio::test]
async fn the_openapi_document_lists_every_status_code_the_api_answers() {
    let app = spawn_app().await;
    let doc: Value = serde_json::from_str(&civicgrid_http::openapi::json()).expect("doc");
    let intake = app.login("intake").await;
    let worker = app.login("gw002").await;
    let id = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let report = app.report(0);
    let raw = |method: reqwest::Method, path: &str| app.http.request(method, format!("{}{path}", app.base));
    let tour: Vec<(&str, &str, reqwest::RequestBuilder)> = vec![
        ("post", "/api/v1/cases", raw(reqwest::Method::POST, "/api/v1/cases").json(&report)),
        (
            "post",
            "/api/v1/cases",
            raw(reqwest::Method::POST, "/api/v1/cases")
                .bearer_auth(&intake)
                .body("{")
                .header("content-type", "application/json"),
        ),
        ("post", "/api/v1/cases", raw(reqwest::Method::POST, "/api/v1/cases").bearer_auth(&intake).body("x")),
        (
            "post",
            "/api/v1/cases",
            raw(reqwest::Method::POST, "/api/v1/cases").bearer_auth(&intake).json(&json!({"matter": "1"})),
        ),
        (
            "post",
            "/api/v1/cases",
            raw(reqwest::Method::POST, "/api/v1/cases")
                .bearer_auth(&intake)
                .json(&json!({"d": "x".repeat(civicgrid_http::MAX_BODY)})),
        ),
        ("post", "/api/v1/cases", raw(reqwest::Method::POST, "/api/v1/cases").bearer_auth(&worker).json(&report)),
        ("get", "/api/v1/cases", raw(reqwest::Method::GET, "/api/v1/cases?x=1").bearer_auth(&intake)),
        ("get", "/api/v1/cases", raw(reqwest::Method::GET, "/api/v1/cases?limit=0").bearer_auth(&intake)),
        ("get", "/api/v1/cases/{id}", raw(reqwest::Method::GET, "/api/v1/cases/x").bearer_auth(&intake)),
        ("get", "/api/v1/cases/{id}", raw(reqwest::Method::GET, &format!("/api/v1/cases/{id}")).bearer_auth(&worker)),
        (
            "post",
            "/api/v1/cases/{id}/transitions",
            raw(reqwest::Method::POST, &format!("/api/v1/cases/{id}/transitions"))
                .bearer_auth(&intake)
                .json(&json!({"action": "close"})),
        ),
        (
            "post",
            "/api/v1/cases/{id}/transitions",
            raw(reqwest::Method::POST, &format!("/api/v1/cases/{id}/transitions"))
                .bearer_auth(&intake)
                .json(&json!({"action": "dispatch", "lead": "huanwei"})),
        ),
        ("post", "/api/v1/users", raw(reqwest::Method::POST, "/api/v1/users").bearer_auth(&intake).json(&json!({}))),
        ("get", "/api/v1/users", raw(reqwest::Method::GET, "/api/v1/users").bearer_auth(&intake)),
        (
            "post",
            "/api/v1/auth/login",
            raw(reqwest::Method::POST, "/api/v1/auth/login").json(&json!({"username": "intake", "password": "x"})),
        ),
        ("get", "/api/v1/attachments/{id}", raw(reqwest::Method::GET, "/api/v1/attachments/99").bearer_auth(&intake)),
        (
            "post",
            "/api/v1/attachments",
            raw(reqwest::Method::POST, "/api/v1/attachments?name=a.txt").bearer_auth(&intake).body("text"),
        ),
        ("get", "/api/v1/stream", raw(reqwest::Method::GET, "/api/v1/stream?after=-1").bearer_auth(&intake)),
        ("get", "/api/v1/locate", raw(reqwest::Method::GET, "/api/v1/locate?lon=NaN&lat=1").bearer_auth(&intake)),
        ("get", "/api/v1/locate", raw(reqwest::Method::GET, "/api/v1/locate?lon=1&lat=1").bearer_auth(&intake)),
        (
            "put",
            "/api/v1/calendar",
            raw(reqwest::Method::PUT, "/api/v1/calendar").bearer_auth(&intake).json(&json!([])),
        ),
        // Open311, documented by hand: every answer of every resource is listed too.
        ("get", "/open311/v2/discovery.{format}", raw(reqwest::Method::GET, "/open311/v2/discovery.xml")),
        ("get", "/open311/v2/services.{format}", raw(reqwest::Method::GET, "/open311/v2/services.json")),
        (
            "get",
            "/open311/v2/services/{service_code}.{format}",
            raw(reqwest::Method::GET, "/open311/v2/services/nothing.json"),
        ),
        ("get", "/open311/v2/requests.{format}", raw(reqwest::Method::GET, "/open311/v2/requests.json?start_date=x")),
        ("get", "/open311/v2/requests.{format}", raw(reqwest::Method::GET, "/open311/v2/requests.json")),
        (
            "post",
            "/open311/v2/requests.{format}",
            raw(reqwest::Method::POST, "/open311/v2/requests.json").form(&[("api_key", "wrong")]),
        ),
        ("post", "/open311/v2/requests.{format}", raw(reqwest::Method::POST, "/open311/v2/requests.json").body("x")),
        (
            "get",
            "/open311/v2/requests/{service_request_id}.{format}",
            raw(reqwest::Method::GET, &format!("/open311/v2/requests/{id}.json")),
        ),
        (
            "get",
            "/open311/v2/request/{service_request_id}.{format}",
            raw(reqwest::Method::GET, "/open311/v2/request/987654.xml"),
        ),
        (
            "get",
            "/open311/v2/servicerequestupdates.{format}",
            raw(reqwest::Method::GET, "/open311/v2/servicerequestupdates.json?start_date=yesterday"),
        ),
        (
            "post",
            "/open311/v2/servicerequestupdates.{format}",
            raw(reqwest::Method::POST, "/open311/v2/servicerequestupdates.json").form(&[("api_key", "")]),
        ),
        ("get", "/open311/v2/tokens/{token}.{format}", raw(reqwest::Method::GET, "/open311/v2/tokens/abc.json")),
    ];
    let mut missing = Vec::new();
    for (method, template, req) in tour {
        let status = req.send().await.expect("send").status().as_u16().to_string();
        let documented = doc["paths"][template][method]["responses"].get(&status).is_some();
        if !documented {
            missing.push(format!("{method} {template} answered {status}"));
        }
    }
    assert!(missing.is_empty(), "undocumented answers: {missing:#?}");
    // A method an Open311 resource does not take is its 405, documented on the methods it does take.
    let put = raw(reqwest::Method::PUT, "/open311/v2/services.json").send().await.expect("send");
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(doc["paths"]["/open311/v2/services.{format}"]["get"]["responses"].get("405").is_some());
    // And every operation documents at least its internal-error answer with the error body.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("ops") {
            assert!(op["responses"].get("500").is_some(), "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_stopped_background_task_makes_the_node_unready() {
    let app = spawn_app().await;
    let (s, body) = app.get("/readyz", None).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("ready")));
    app.state.watch("test job runner", tokio::spawn(async {}));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (s, body) = app.get("/readyz", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["tasks"], json!(["test job runner"]));
    let why = tokio::time::timeout(std::time::Duration::from_secs(3), app.state.fatal()).await.expect("noticed");
    assert!(why.contains("test job runner"), "{why}");
}

/// What the local receiver heard: path (with query), headers of interest, body.
type Heard = Arc<std::sync::Mutex<Vec<(String, Option<String>, Option<String>, String)>>>;

/// A local HTTP receiver standing in for a webhook, a DingTalk robot and a broken endpoint.
async fn receiver() -> (String, Heard) {
    use axum::http::{HeaderMap, Uri};
    let heard: Heard = Arc::default();
    let record = |heard: Heard, answer: (u16, &'static str)| {
        move |uri: Uri, headers: HeaderMap, body: String| {
            let heard = heard.clone();
            async move {
                let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
                heard.lock().expect("lock").push((
                    uri.to_string(),
                    h("x-civicgrid-timestamp"),
                    h("x-civicgrid-signature"),
                    body,
                ));
                (axum::http::StatusCode::from_u16(answer.0).expect("status"), answer.1)
            }
        }
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(record(heard.clone(), (200, "ok"))))
        .route("/robot/send", axum::routing::post(record(heard.clone(), (200, r#"{"errcode":0,"errmsg":"ok"}"#))))
        .route("/broken", axum::routing::post(record(heard.clone(), (500, "down"))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, heard)
}

/// The SLA policy, the duty roster, timers that warn and escalate, inboxes with acknowledgement and
/// follow-up, and outbound channels that reach a local receiver signed — driven over HTTP, with the
/// job runner turned by hand on the manual clock.
#[tokio::test]
async fn deadlines_warn_escalate_and_reach_the_roster_and_the_channels() {
    let app = spawn_app().await;
    let (rx, heard) = receiver().await;
    let runner = civicgrid_service::jobs::JobRunner::standard(app.state.services.clone(), "test-node");
    let run = || async { while runner.run_once().await.expect("jobs") > 0 {} };
    let admin = app.login("admin").await;
    let shift = app.login("shift").await;
    let intake = app.login("intake").await;
    let leader = app.login("leader").await;

    // Channels: refused without http:// or a long enough secret; the secret is never answered.
    let channel = |name: &str, kind: &str, path: &str, min: &str| json!({"name": name, "kind": kind, "url": format!("{rx}{path}"), "secret": "s3cret-s3cret-s3cret", "min_severity": min});
    let (s, e) = app
        .post(
            "/api/v1/notify-channels",
            Some(&admin),
            &json!({"name": "x", "kind": "webhook", "url": "https://a/b", "secret": "s3cret-s3cret-s3cret"}),
        )
        .await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("url")), "{e}");
    let (s, e) = app
        .post(
            "/api/v1/notify-channels",
            Some(&admin),
            &json!({"name": "x", "kind": "webhook", "url": format!("{rx}/hook"), "secret": "short"}),
        )
        .await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("secret")), "{e}");
    let (s, _) = app.post("/api/v1/notify-channels", Some(&shift), &channel("a", "webhook", "/hook", "warning")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for (name, kind, path, min) in [
        ("平台", "webhook", "/hook", "warning"),
        ("值班群", "dingtalk", "/robot/send?access_token=t", "critical"),
        ("坏的", "webhook", "/broken", "critical"),
    ] {
        let (s, c) = app.post("/api/v1/notify-channels", Some(&admin), &channel(name, kind, path, min)).await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        assert!(c.get("secret").is_none());
    }

    // The policy: readable by the centre, writable by the administrator, checked.
    let (s, mut policy) = app.get("/api/v1/sla-policy", Some(&shift)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(policy["warn_percent"], 80);
    policy["warn_percent"] = json!(100);
    let (s, e) = app.put("/api/v1/sla-policy", &admin, &policy).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("warn_percent")), "{e}");
    policy["warn_percent"] = json!(50);
    let (s, _) = app.put("/api/v1/sla-policy", &shift, &policy).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, saved) = app.put("/api/v1/sla-policy", &admin, &policy).await;
    assert_eq!((s, &saved["warn_percent"]), (StatusCode::OK, &json!(50)), "{saved}");

    // The roster: today's day shift has one shift leader on duty (of the two there are).
    let users = app.store.users().await.expect("users");
    let id = |name: &str| users.iter().find(|u| u.username == name).map(|u| u.id).expect("user");
    let roster = json!({"from": "2026-11-23", "to": "2026-11-23", "entries": [
        {"date": "2026-11-23", "shift": "day", "post": "shift_leader", "user_id": id("shift")},
        {"date": "2026-11-23", "shift": "day", "post": "leader", "user_id": id("leader")},
    ]});
    let bad = json!({"from": "2026-11-23", "to": "2026-11-23", "entries": [
        {"date": "2026-11-23", "shift": "day", "post": "dept_head", "user_id": id("shift")}]});
    let (s, e) = app.put("/api/v1/duty-roster", &shift, &bad).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("entries")), "{e}");
    let (s, r) = app.put("/api/v1/duty-roster", &shift, &roster).await;
    assert_eq!((s, r.as_array().map(Vec::len)), (StatusCode::OK, Some(2)), "{r}");
    let (s, _) = app.put("/api/v1/duty-roster", &intake, &roster).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A case reported at 09:00 has 30 minutes to be dispatched: yellow at 50 % (09:15), red and the
    // first rung at 09:30, the next rungs at 10:00 and 10:30.
    run().await;
    let case = app.create(&intake, 0).await;
    let case_id = case["id"].as_i64().expect("id");
    app.clock.advance(SignedDuration::from_mins(16));
    run().await;
    let (_, inbox) = app.get("/api/v1/notifications", Some(&intake)).await;
    let kinds: Vec<&str> =
        inbox["items"].as_array().expect("items").iter().filter_map(|n| n["kind"].as_str()).collect();
    assert_eq!(kinds, vec!["sla_warning"], "{inbox}");
    let (_, summary) = app.get("/api/v1/notifications/summary", Some(&intake)).await;
    assert_eq!(summary, json!({"unread": 1, "unacknowledged_critical": 0}));
    let (_, events) = app.get(&format!("/api/v1/cases/{case_id}/events"), Some(&intake)).await;
    let last = &events.as_array().expect("events").last().expect("event").clone();
    assert_eq!(last["action"], json!({"action": "warn", "level": "yellow"}), "{last}");

    app.clock.advance(SignedDuration::from_mins(75)); // 10:31
    run().await;
    let (_, c) = app.get(&format!("/api/v1/cases/{case_id}"), Some(&shift)).await;
    assert_eq!(c["escalation_level"], 3, "{c}");
    let kinds_of = |inbox: &Value| -> Vec<String> {
        let mut k: Vec<String> = inbox["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|n| n["kind"].as_str().map(str::to_owned))
            .collect();
        k.sort();
        k
    };
    let (_, shift_inbox) = app.get("/api/v1/notifications", Some(&shift)).await;
    assert_eq!(
        kinds_of(&shift_inbox),
        vec!["escalation", "escalation"],
        "rungs 1 and 2 reach the shift leader on duty"
    );
    let (_, leader_inbox) = app.get("/api/v1/notifications", Some(&leader)).await;
    assert_eq!(kinds_of(&leader_inbox), vec!["escalation"], "rung 3 reaches the town leader");

    // Each notification is the caller's own; acknowledging one stops its follow-up.
    let first = shift_inbox["items"][0]["id"].as_i64().expect("id");
    let (s, _) = app.post(&format!("/api/v1/notifications/{first}/ack"), Some(&intake), &json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, n) = app.post(&format!("/api/v1/notifications/{first}/ack"), Some(&shift), &json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert!(n["acked_at"].is_string() && n["read_at"].is_string(), "{n}");
    app.clock.advance(SignedDuration::from_mins(31));
    run().await;
    let (_, leader_inbox) = app.get("/api/v1/notifications", Some(&leader)).await;
    assert_eq!(
        kinds_of(&leader_inbox),
        vec!["escalation", "unacknowledged"],
        "only the unacknowledged rung follows up"
    );
    let (_, shift_inbox) = app.get("/api/v1/notifications", Some(&shift)).await;
    assert_eq!(
        kinds_of(&shift_inbox),
        vec!["escalation", "escalation", "unacknowledged", "unacknowledged"],
        "both intake operators left the red warning unacknowledged"
    );

    // The channels: the webhook heard every alert, signed; the robot only the critical ones, signed in
    // its URL; the broken endpoint was retried and ended as a dead letter.
    for _ in 0..8 {
        app.clock.advance(SignedDuration::from_hours(1));
        run().await;
    }
    let heard = heard.lock().expect("lock").clone();
    let hooks: Vec<_> = heard.iter().filter(|h| h.0 == "/hook").collect();
    assert!(hooks.len() >= 7, "yellow, red, three rungs and follow-ups ({})", hooks.len());
    for (_, ts, sig, body) in &hooks {
        let ts = ts.as_deref().expect("timestamp");
        let expected = civicgrid_service::outbound::hmac_hex("s3cret-s3cret-s3cret", format!("{ts}.{body}").as_bytes());
        assert_eq!(sig.as_deref(), Some(format!("sha256={expected}").as_str()));
        assert!(!body.contains("13812345678"), "no personal data leaves");
    }
    let yellow = hooks.iter().filter(|h| h.3.contains("\"sla_warning\"")).count();
    assert_eq!(yellow, 1, "one delivery per alert and channel");
    let robot: Vec<_> = heard.iter().filter(|h| h.0.starts_with("/robot/send")).collect();
    assert!(!robot.is_empty() && robot.iter().all(|h| h.0.contains("&timestamp=") && h.0.contains("&sign=")));
    assert!(robot.iter().all(|h| !h.3.contains("黄灯")), "the robot takes critical alerts only");
    assert!(heard.iter().filter(|h| h.0 == "/broken").count() >= 6, "retried with backoff");
    assert!(app.store.job_counts().await.expect("counts").dead >= 1, "and kept as a dead letter");
}

/// 核查: a passed verification needs an uploaded photo taken within the policy's radius of the case, or
/// the phone's position when the photo has no GPS; everything else is refused and changes nothing.
#[tokio::test]
async fn verification_is_refused_without_a_photo_taken_on_site() {
    let app = spawn_app().await;
    let shift = app.login("shift").await;
    let dept = app.login("dept_huanwei").await;
    let worker = app.login("gw001").await;
    let id = app.create(&shift, 0).await["id"].as_i64().expect("id");
    for step in
        [json!({"action": "accept"}), json!({"action": "file"}), json!({"action": "dispatch", "lead": "huanwei"})]
    {
        assert_eq!(app.act(&shift, id, step).await.0, StatusCode::OK);
    }
    assert_eq!(app.act(&dept, id, json!({"action": "sign"})).await.0, StatusCode::OK);
    assert_eq!(app.act(&dept, id, json!({"action": "reply"})).await.0, StatusCode::OK);
    let spot = app.point_in_grid(0);
    let (lon, lat) = (spot["lon"].as_f64().expect("lon"), spot["lat"].as_f64().expect("lat"));
    let photo = |id: i64| json!([{"id": id, "name": "x", "mime": "image/jpeg", "size": 1}]);
    let refused = |body: Value, field: &'static str| {
        let app = &app;
        let worker = worker.clone();
        async move {
            let (s, e) = app.act(&worker, id, body).await;
            assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{e}");
            let (_, c) = app.get(&format!("/api/v1/cases/{id}"), Some(&worker)).await;
            assert_eq!(c["state"], "replied", "a refusal changes nothing");
            e["message"].as_str().unwrap_or_default().to_owned()
        }
    };
    refused(json!({"action": "verify_pass"}), "evidence").await;
    // About 110 m north of the case.
    let far = app.upload_photo(&worker, Some((lon, lat + 0.001))).await;
    let why = refused(json!({"action": "verify_pass", "evidence": photo(far)}), "evidence").await;
    assert!(why.contains("111 m") && why.contains("50 m"), "{why}");
    let blind = app.upload_photo(&worker, None).await;
    refused(json!({"action": "verify_pass", "evidence": photo(blind)}), "position").await;
    let away = json!({"lon": lon, "lat": lat + 0.001});
    refused(json!({"action": "verify_pass", "evidence": photo(blind), "position": away}), "evidence").await;
    // A failed check needs no photo; it sends the case back as rework.
    let (s, c) = app.act(&worker, id, json!({"action": "verify_fail", "reason": "垃圾仍在"})).await;
    assert_eq!((s, c["rework_count"].as_i64()), (StatusCode::OK, Some(1)), "{c}");
    assert_eq!(app.act(&dept, id, json!({"action": "reply"})).await.0, StatusCode::OK);
    // No GPS in the photo, but the phone was there (about 11 m away): passed.
    let near = json!({"lon": lon, "lat": lat + 0.0001});
    let (s, c) =
        app.act(&worker, id, json!({"action": "verify_pass", "evidence": photo(blind), "position": near})).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("verified")), "{c}");
}

#[tokio::test]
async fn co_departments_work_their_own_tasks_and_approvals_go_to_the_right_post() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let shift = app.login("shift").await;
    let dispatch = app.login("dispatch").await;
    let lead = app.login("dept_huanwei").await;
    let co = app.login("dept_chengguan").await;
    let id = app.create(&shift, 0).await["id"].as_i64().expect("id");
    for step in [json!({"action": "accept"}), json!({"action": "file"})] {
        assert_eq!(app.act(&shift, id, step).await.0, StatusCode::OK);
    }
    let (s, c) = app.act(&dispatch, id, json!({"action": "dispatch", "lead": "huanwei", "co": ["chengguan"]})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        (c["tasks"][0]["dept"].as_str(), c["tasks"][0]["state"].as_str()),
        (Some("chengguan"), Some("dispatched"))
    );
    let refused = |token: String, body: Value, status: StatusCode| {
        let app = &app;
        async move {
            let before = app.store.case(id).await.expect("read").expect("case").status.version;
            let (s, e) = app.act(&token, id, body.clone()).await;
            assert_eq!(s, status, "{body}: {e}");
            let after = app.store.case(id).await.expect("read").expect("case").status.version;
            assert_eq!(before, after, "a refusal changes nothing");
            e
        }
    };
    // The co-department takes none of the lead's steps, and the lead none of the co-department's.
    let e = refused(lead.clone(), json!({"action": "sign", "task": "chengguan"}), StatusCode::FORBIDDEN).await;
    assert_eq!(e["code"], "forbidden");
    refused(co.clone(), json!({"action": "request_park", "reason": "x"}), StatusCode::FORBIDDEN).await;
    let e = refused(co.clone(), json!({"action": "reply"}), StatusCode::CONFLICT).await;
    assert_eq!((e["code"].as_str(), e["field"].as_str()), (Some("illegal_transition"), Some("task")), "{e}");
    // A co-department's extension goes to the dispatcher, not to the department or intake.
    assert_eq!(app.act(&co, id, json!({"action": "sign"})).await.0, StatusCode::OK);
    let (s, c) = app.act(&co, id, json!({"action": "request_extension", "working_hours": 8, "reason": "需调配"})).await;
    assert_eq!((s, c["tasks"][0]["state"].as_str()), (StatusCode::OK, Some("extension_requested")), "{c}");
    refused(intake.clone(), json!({"action": "approve_extension", "task": "chengguan"}), StatusCode::FORBIDDEN).await;
    // Meanwhile the lead works on: the pending request blocks nobody else.
    assert_eq!(app.act(&lead, id, json!({"action": "sign"})).await.0, StatusCode::OK);
    // 挂账 is a request to the shift leader; the dispatcher may not decide it.
    let (s, c) = app.act(&lead, id, json!({"action": "request_park", "reason": "需专项资金"})).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("park_requested")), "{c}");
    refused(dispatch.clone(), json!({"action": "approve_park"}), StatusCode::FORBIDDEN).await;
    let (s, c) = app.act(&dispatch, id, json!({"action": "approve_extension", "task": "chengguan"})).await;
    assert_eq!((s, c["tasks"][0]["state"].as_str()), (StatusCode::OK, Some("handling")), "{c}");
    let (s, c) = app.act(&shift, id, json!({"action": "deny_park", "reason": "先行处置"})).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("handling")), "{c}");
    // The case is replied when the lead and the co-department have both replied.
    let (_, c) = app.act(&co, id, json!({"action": "reply"})).await;
    assert_eq!(c["state"], "handling");
    let (_, c) = app.act(&lead, id, json!({"action": "reply"})).await;
    assert_eq!(c["state"], "replied", "{c}");
}

#[tokio::test]
async fn a_public_report_is_voided_only_with_the_shift_leaders_approval() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let shift = app.login("shift").await;
    // Intake reports on the 12345 channel: a public report.
    let id = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let (s, e) = app.act(&intake, id, json!({"action": "void", "reason": "不属实"})).await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{e}");
    let (s, c) = app.act(&intake, id, json!({"action": "request_void", "reason": "不属实"})).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("void_requested")), "{c}");
    assert_eq!(app.act(&intake, id, json!({"action": "void", "reason": "不属实"})).await.0, StatusCode::FORBIDDEN);
    let (s, c) = app.act(&shift, id, json!({"action": "deny_void", "reason": "诉求属实"})).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("reported")), "{c}");
    app.act(&intake, id, json!({"action": "request_void", "reason": "重复"})).await;
    let (s, c) = app.act(&shift, id, json!({"action": "void", "reason": "同意"})).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("void")), "{c}");
    // A grid patrol's report is the centre's own: intake voids it directly.
    let worker = app.login("gw001").await;
    let own = app.create(&worker, 0).await["id"].as_i64().expect("id");
    let (s, c) = app.act(&intake, own, json!({"action": "void", "reason": "误报"})).await;
    assert_eq!((s, c["state"].as_str()), (StatusCode::OK, Some("void")), "{c}");
}

#[tokio::test]
async fn filing_proposes_the_route_of_the_most_specific_rule_and_a_components_owner_leads() {
    let app = spawn_app().await;
    let admin = app.login("admin").await;
    let shift = app.login("shift").await;
    let dispatch = app.login("dispatch").await;
    let grid = app.town.layout.grids[0].code.to_string();
    let rules = json!({"rules": [
        {"matter_class": "06", "grid": grid, "lead": "chengguan"},
        {"matter": "06010", "lead": "huanwei", "co": ["chengguan"]},
        {"matter_class": "01", "lead": "shizheng", "co": ["jiaotong"]}
    ]});
    // Only administrators write the rules, and a bad rule is refused by its position.
    let (_, demo_rules) = app.get("/api/v1/routing-rules", Some(&dispatch)).await;
    assert!(demo_rules["rules"].as_array().is_some_and(|r| r.len() > 10), "the demo town's rules");
    assert_eq!(app.put("/api/v1/routing-rules", &dispatch, &rules).await.0, StatusCode::FORBIDDEN);
    let mut bad = rules.clone();
    bad["rules"][1]["co"] = json!(["huanwei"]);
    let (s, e) = app.put("/api/v1/routing-rules", &admin, &bad).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("rules[1]")), "{e}");
    bad["rules"][1]["co"] = json!(["nobody"]);
    assert_eq!(app.put("/api/v1/routing-rules", &admin, &bad).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.get("/api/v1/routing-rules", Some(&dispatch)).await.1, demo_rules, "nothing written");
    let (s, saved) = app.put("/api/v1/routing-rules", &admin, &rules).await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    assert_eq!(app.get("/api/v1/routing-rules", Some(&dispatch)).await.1, saved);

    // Exposed rubbish in grid 0: the class-and-grid rule sets two criteria, the exact matter one.
    let id = app.create(&shift, 0).await["id"].as_i64().expect("id");
    app.act(&shift, id, json!({"action": "accept"})).await;
    let (s, c) = app.act(&shift, id, json!({"action": "file"})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["proposed_route"]["lead"], "chengguan", "two criteria beat one: {c}");
    assert_eq!(c["proposed_route"]["rule"], 0);
    // Outside that grid the exact matter decides.
    let far = app.create(&shift, 1).await["id"].as_i64().expect("id");
    app.act(&shift, far, json!({"action": "accept"})).await;
    let (_, c) = app.act(&shift, far, json!({"action": "file"})).await;
    assert_eq!(c["proposed_route"], json!({"lead": "huanwei", "co": ["chengguan"], "basis": "rule", "rule": 1}));
    let (s, r) = app.get(&format!("/api/v1/cases/{far}/route"), Some(&dispatch)).await;
    assert_eq!((s, &r), (StatusCode::OK, &c["proposed_route"]));
    let worker = app.login("gw001").await;
    assert_eq!(app.get(&format!("/api/v1/cases/{id}/route"), Some(&worker)).await.0, StatusCode::FORBIDDEN);
    // The dispatcher confirms by dispatching to it; the proposal is then history.
    let (_, c) = app.act(&dispatch, far, json!({"action": "dispatch", "lead": "huanwei", "co": ["chengguan"]})).await;
    assert_eq!((c["state"].as_str(), c.get("proposed_route")), (Some("dispatched"), None), "{c}");

    // A street lamp owned by the power company: the owner leads, the rule's departments help.
    let p = app.point_in_grid(1);
    let lamp = json!({"name": "路灯 R01", "location": p, "department": "gongdian"});
    assert_eq!(app.put("/api/v1/components/32058301037900011", &admin, &lamp).await.0, StatusCode::OK);
    let report = json!({"matter": "01037", "component_id": "32058301037900011", "description": "路灯不亮",
        "location": p, "address": "测试路"});
    let (s, c) = app.post("/api/v1/cases", Some(&shift), &report).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let lamp_case = c["id"].as_i64().expect("id");
    let (_, r) = app.get(&format!("/api/v1/cases/{lamp_case}/route"), Some(&dispatch)).await;
    assert_eq!(r, json!({"lead": "gongdian", "co": ["shizheng", "jiaotong"], "basis": "component_owner", "rule": 2}));
}

impl TestApp {
    /// The longitude and latitude of [`TestApp::point_in_grid`], moved `north_m` metres north.
    fn spot(&self, grid: usize, north_m: f64) -> (f64, f64) {
        let p = self.point_in_grid(grid);
        (p["lon"].as_f64().expect("lon"), p["lat"].as_f64().expect("lat") + north_m / 111_320.0)
    }

    /// Evidence: one photo uploaded by `token`, taken `north_m` metres north of grid `grid`'s point.
    async fn photo_at(&self, token: &str, grid: usize, north_m: f64) -> Value {
        let id = self.upload_photo(token, Some(self.spot(grid, north_m))).await;
        json!([{"id": id, "name": "现场.jpg", "mime": "image/jpeg", "size": 1}])
    }

    async fn case(&self, token: &str, id: i64) -> Value {
        let (s, c) = self.get(&format!("/api/v1/cases/{id}"), Some(token)).await;
        assert_eq!(s, StatusCode::OK, "{c}");
        c
    }

    /// Takes `steps` as `token`, each of which must succeed; the case after the last.
    async fn steps(&self, token: &str, id: i64, steps: &[Value]) -> Value {
        let mut last = Value::Null;
        for step in steps {
            let (s, c) = self.act(token, id, step.clone()).await;
            assert_eq!(s, StatusCode::OK, "{step}: {c}");
            last = c;
        }
        last
    }
}

/// 核实 before filing and 自行处置: the grid's worker checks a public report on site (true → filed
/// with the rules' proposal, false → void with the worker's photos), and fixes their own report on
/// the spot with before and after photos; a sampled fix is verified by someone else.
#[tokio::test]
async fn checks_on_site_and_fixes_on_the_spot_need_the_worker_there() {
    let app = spawn_app().await;
    let (intake, worker, dispatch) = (app.login("intake").await, app.login("gw001").await, app.login("dispatch").await);
    let id = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let c = app.steps(&intake, id, &[json!({"action": "request_check"})]).await;
    assert_eq!(c["state"], "checking");
    assert_eq!(c["due_at"], "2026-11-23T02:00:00Z", "one working hour from 09:00");
    assert_eq!(app.act(&dispatch, id, json!({"action": "confirm_check"})).await.0, StatusCode::FORBIDDEN);
    let (s, e) = app.act(&worker, id, json!({"action": "confirm_check"})).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("evidence")), "{e}");
    let far = app.photo_at(&worker, 0, 200.0).await;
    let (s, e) = app.act(&worker, id, json!({"action": "confirm_check", "evidence": far})).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("evidence")), "{e}");
    assert_eq!(app.case(&intake, id).await["state"], "checking", "refusals change nothing");
    let near = app.photo_at(&worker, 0, 10.0).await;
    let c = app.steps(&worker, id, &[json!({"action": "confirm_check", "evidence": near})]).await;
    assert_eq!(c["state"], "filed");
    assert_eq!(c["proposed_route"]["lead"], "huanwei", "filing by a check records the proposal too: {c}");

    let id = app.create(&intake, 0).await["id"].as_i64().expect("id");
    app.steps(&intake, id, &[json!({"action": "accept"}), json!({"action": "request_check"})]).await;
    let near = app.photo_at(&worker, 0, 5.0).await;
    let (s, _) = app.act(&worker, id, json!({"action": "refute_check", "evidence": near})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "a false report is voided with a reason");
    let c =
        app.steps(&worker, id, &[json!({"action": "refute_check", "reason": "现场无垃圾", "evidence": near})]).await;
    assert_eq!(c["state"], "void");
    let (_, events) = app.get(&format!("/api/v1/cases/{id}/events"), Some(&intake)).await;
    assert_eq!(events.as_array().and_then(|e| e.last()).map(|e| e["evidence"].as_array().map(Vec::len)), Some(Some(1)));

    // The worker's own patrol report is not checked; it can be fixed on the spot.
    let before = app.upload_photo(&worker, Some(app.spot(0, 0.0))).await;
    let mut report = app.report(0);
    report["attachments"] = json!([{"id": before, "name": "before.jpg", "mime": "image/jpeg", "size": 1}]);
    let (s, c) = app.post("/api/v1/cases", Some(&worker), &report).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = c["id"].as_i64().expect("id");
    assert_eq!(app.act(&intake, id, json!({"action": "request_check"})).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.act(&intake, id, json!({"action": "fix_on_spot"})).await.0, StatusCode::FORBIDDEN);
    let after = app.photo_at(&worker, 0, 3.0).await;
    let c = app.steps(&worker, id, &[json!({"action": "fix_on_spot", "evidence": after})]).await;
    assert!(c["fixed_on_spot"].as_bool().unwrap_or(false), "{c}");
    // 10 % are drawn; whichever this one is, it is closed or waits for someone else's verification.
    assert!(matches!(c["state"].as_str(), Some("closed" | "replied")), "{c}");

    // Every fix drawn: the worker who fixed it may not verify it; a supervisor on site may.
    let admin = app.login("admin").await;
    let (_, mut policy) = app.get("/api/v1/sla-policy", Some(&admin)).await;
    policy["sample_percent"] = json!(100);
    assert_eq!(app.put("/api/v1/sla-policy", &admin, &policy).await.0, StatusCode::OK);
    let before = app.upload_photo(&worker, Some(app.spot(0, 0.0))).await;
    report["attachments"] = json!([{"id": before, "name": "before.jpg", "mime": "image/jpeg", "size": 1}]);
    let (s, c) = app.post("/api/v1/cases", Some(&worker), &report).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = c["id"].as_i64().expect("id");
    let after = app.photo_at(&worker, 0, 3.0).await;
    let c = app.steps(&worker, id, &[json!({"action": "fix_on_spot", "evidence": after})]).await;
    assert_eq!(c["state"], "replied");
    let near = app.photo_at(&worker, 0, 3.0).await;
    assert_eq!(app.act(&worker, id, json!({"action": "verify_pass", "evidence": near})).await.0, StatusCode::FORBIDDEN);
    let supervisor = app.login("supervisor").await;
    let near = app.photo_at(&supervisor, 0, 8.0).await;
    let c = app.steps(&supervisor, id, &[json!({"action": "verify_pass", "evidence": near})]).await;
    assert_eq!(c["state"], "verified");

    // Without a before photo there is no fix on the spot.
    let id = app.create(&worker, 0).await["id"].as_i64().expect("id");
    let after = app.photo_at(&worker, 0, 3.0).await;
    let (s, e) = app.act(&worker, id, json!({"action": "fix_on_spot", "evidence": after})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("before photo")), "{e}");
    assert_eq!(app.case(&worker, id).await["state"], "reported");
}

/// 并单: nearby open reports of the same matter are suggested; a merged case follows its primary,
/// cannot be left behind by a void, closes with it (a durable job), and can be split off again.
#[tokio::test]
async fn duplicates_are_suggested_merged_closed_with_their_primary_and_split() {
    let app = spawn_app().await;
    let runner = civicgrid_service::jobs::JobRunner::standard(app.state.services.clone(), "test-node");
    let run = || async { while runner.run_once().await.expect("jobs") > 0 {} };
    run().await;
    let (intake, shift, dept) = (app.login("intake").await, app.login("shift").await, app.login("dept_huanwei").await);
    let primary = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let second = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let third = app.create(&intake, 0).await["id"].as_i64().expect("id");
    let elsewhere = app.create(&intake, 2).await["id"].as_i64().expect("id");
    let (s, d) = app.get(&format!("/api/v1/cases/{second}/duplicates"), Some(&intake)).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let ids: Vec<i64> = d.as_array().expect("list").iter().filter_map(|c| c["id"].as_i64()).collect();
    assert_eq!(ids.len(), 2, "{d}");
    assert!(ids.contains(&primary) && ids.contains(&third) && !ids.contains(&elsewhere));
    assert_eq!(d[0]["distance_m"], 0.0);
    assert_eq!(app.get(&format!("/api/v1/cases/{second}/duplicates"), Some(&dept)).await.0, StatusCode::FORBIDDEN);

    for (into, why) in [(second, "itself"), (999_999, "does not exist")] {
        let (s, e) = app.act(&intake, second, json!({"action": "merge", "into": into})).await;
        assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("into")), "{why}: {e}");
    }
    let c = app.steps(&intake, second, &[json!({"action": "merge", "into": primary})]).await;
    assert_eq!((c["state"].as_str(), c["merged_into"].as_i64()), (Some("merged"), Some(primary)));
    app.steps(&intake, third, &[json!({"action": "accept"}), json!({"action": "merge", "into": primary})]).await;
    let (s, e) = app.act(&intake, elsewhere, json!({"action": "merge", "into": second})).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("into")), "not into a merged case");
    let (_, list) = app.get(&format!("/api/v1/cases?merged_into={primary}"), Some(&shift)).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    let (s, e) = app.act(&shift, primary, json!({"action": "void", "reason": "重复"})).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("merged")), "{e}");
    // Split off one; it goes on from where it was.
    assert_eq!(app.act(&intake, third, json!({"action": "split"})).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let c = app.steps(&intake, third, &[json!({"action": "split", "reason": "不是同一处"})]).await;
    assert_eq!((c["state"].as_str(), c.get("merged_into")), (Some("accepted"), None));

    let worker = app.login("gw001").await;
    app.steps(
        &shift,
        primary,
        &[json!({"action": "accept"}), json!({"action": "file"}), json!({"action": "dispatch", "lead": "huanwei"})],
    )
    .await;
    app.steps(&dept, primary, &[json!({"action": "sign"}), json!({"action": "reply"})]).await;
    let near = app.photo_at(&worker, 0, 4.0).await;
    app.steps(&worker, primary, &[json!({"action": "verify_pass", "evidence": near})]).await;
    app.steps(&shift, primary, &[json!({"action": "close"})]).await;
    assert_eq!(app.case(&intake, second).await["state"], "merged", "the followers close by the job");
    run().await;
    let c = app.case(&intake, second).await;
    assert_eq!((c["state"].as_str(), c["merged_into"].as_i64()), (Some("closed"), Some(primary)), "{c}");
    assert!(c["closed_at"].is_string());
    let (_, events) = app.get(&format!("/api/v1/cases/{second}/events"), Some(&intake)).await;
    let last = events.as_array().and_then(|e| e.last()).cloned().unwrap_or_default();
    assert_eq!(
        (last["action"]["action"].as_str(), last["actor"]["job"].as_str()),
        (Some("close_with_primary"), Some("merge"))
    );
    assert_eq!(app.case(&intake, third).await["state"], "accepted", "a split case is not closed with it");
    // Its reporter is called back like any other.
    let c = app.steps(&intake, second, &[json!({"action": "call_back", "satisfaction": "satisfied"})]).await;
    assert_eq!(c["satisfaction"], "satisfied");
    run().await;
}

/// 整改: a poor rating of a public report opens a rectification for the lead department, on its clock,
/// warned by the timers like any step; only that department reports it; the centre can still reopen.
#[tokio::test]
async fn a_poor_rating_opens_a_rectification_the_department_reports() {
    let app = spawn_app().await;
    let runner = civicgrid_service::jobs::JobRunner::standard(app.state.services.clone(), "test-node");
    let run = || async { while runner.run_once().await.expect("jobs") > 0 {} };
    run().await;
    let (intake, shift, dept, worker) = (
        app.login("intake").await,
        app.login("shift").await,
        app.login("dept_huanwei").await,
        app.login("gw001").await,
    );
    let id = app.create(&intake, 0).await["id"].as_i64().expect("id");
    app.steps(
        &shift,
        id,
        &[json!({"action": "accept"}), json!({"action": "file"}), json!({"action": "dispatch", "lead": "huanwei"})],
    )
    .await;
    app.steps(&dept, id, &[json!({"action": "sign"}), json!({"action": "reply"})]).await;
    let near = app.photo_at(&worker, 0, 4.0).await;
    app.steps(&worker, id, &[json!({"action": "verify_pass", "evidence": near})]).await;
    app.steps(&shift, id, &[json!({"action": "close"})]).await;
    assert_eq!(
        app.act(&dept, id, json!({"action": "rectify", "reason": "x"})).await.0,
        StatusCode::CONFLICT,
        "nothing to rectify"
    );
    let c = app.steps(&intake, id, &[json!({"action": "call_back", "satisfaction": "very_dissatisfied"})]).await;
    assert_eq!(c["rectification"]["dept"], "huanwei", "{c}");
    assert_eq!(c["rectification"]["due_at"], "2026-11-30T01:00:00Z", "five working days");
    // The yellow warning falls at 80 % of the five days, on the closed case.
    run().await;
    app.clock.advance(SignedDuration::from_hours(24 * 5));
    run().await;
    let (_, events) = app.get(&format!("/api/v1/cases/{id}/events"), Some(&shift)).await;
    let warned = events
        .as_array()
        .expect("events")
        .iter()
        .any(|e| e["action"]["action"] == "warn" && e["action"]["level"] == "yellow");
    assert!(warned, "{events}");
    let other = app.login("dept_chengguan").await;
    assert_ne!(app.act(&other, id, json!({"action": "rectify", "reason": "x"})).await.0, StatusCode::OK);
    assert_eq!(app.act(&dept, id, json!({"action": "rectify"})).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let c = app.steps(&dept, id, &[json!({"action": "rectify", "reason": "已重新清理并约谈保洁员"})]).await;
    assert!(c["rectification"]["rectified_at"].is_string(), "{c}");
    assert!(c.get("due_at").is_none_or(Value::is_null), "no clock after the rectification: {c}");
    let c = app.steps(&shift, id, &[json!({"action": "reopen", "reason": "整改后复查仍未解决"})]).await;
    assert_eq!(c["state"], "filed");
}

/// The KPI table over HTTP: counted live by the job runner, readable by the centre's posts, refused to
/// departments and for bad periods, and exported as an XLSX workbook.
#[tokio::test]
async fn kpi_tables_are_live_and_export_to_xlsx() {
    let app = spawn_app().await;
    let runner = civicgrid_service::jobs::JobRunner::standard(app.state.services.clone(), "test-node");
    let run = || async { while runner.run_once().await.expect("jobs") > 0 {} };
    run().await;
    let (intake, shift, dept) = (app.login("intake").await, app.login("shift").await, app.login("dept_huanwei").await);
    for grid in [0, 1, 1] {
        app.create(&intake, grid).await;
    }
    run().await;
    let path = "/api/v1/kpi?dim=grid&from=2026-11-01&to=2026-11-30";
    let (s, t) = app.get(path, Some(&shift)).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let reported: Vec<i64> =
        t["rows"].as_array().expect("rows").iter().filter_map(|r| r["counts"]["reported"].as_i64()).collect();
    assert_eq!(reported, vec![1, 2], "{t}");
    assert_eq!(t["total"]["counts"]["reported"], 3);
    assert_eq!(t["previous"], json!(["2026-10-02", "2026-10-31"]));
    assert!(t["rows"][0]["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(app.get(path, Some(&dept)).await.0, StatusCode::FORBIDDEN);
    let (s, e) = app.get("/api/v1/kpi?dim=planet&from=2026-11-01&to=2026-11-30", Some(&shift)).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("dim")));
    let (s, e) = app.get("/api/v1/kpi?dim=grid&from=2026-11-30&to=2026-11-01", Some(&shift)).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("to")));
    let resp = app
        .http
        .get(format!("{}/api/v1/kpi.xlsx?dim=department&from=2026-11-01&to=2026-11-30", app.base))
        .bearer_auth(&shift)
        .send()
        .await
        .expect("xlsx");
    assert_eq!(resp.status(), StatusCode::OK);
    let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(kind.contains("spreadsheetml"), "{kind}");
    let bytes = resp.bytes().await.expect("body");
    assert!(bytes.starts_with(b"PK"), "an XLSX is a zip");
}

/// The big screen's two reads: the open cases now, per grid and workstation with what is overdue
/// by the injected clock, and the KPI figures with today's counts — for the watching posts only.
#[tokio::test]
async fn the_cockpit_reads_open_cases_and_figures() {
    let app = spawn_app().await;
    let runner = civicgrid_service::jobs::JobRunner::standard(app.state.services.clone(), "test-node");
    let run = || async { while runner.run_once().await.expect("jobs") > 0 {} };
    let (intake, shift, commander) =
        (app.login("intake").await, app.login("shift").await, app.login("commander").await);
    let mut ids = Vec::new();
    for grid in [0, 1, 1] {
        ids.push(app.create(&intake, grid).await["id"].as_i64().expect("id"));
    }
    // One is voided: it leaves the open cases.
    assert_eq!(
        app.act(&intake, ids[0], json!({"action": "request_void", "reason": "重复上报"})).await.0,
        StatusCode::OK
    );
    assert_eq!(app.act(&shift, ids[0], json!({"action": "void", "reason": "重复上报"})).await.0, StatusCode::OK);
    let (s, now) = app.get("/api/v1/cockpit/situation", Some(&commander)).await;
    assert_eq!(s, StatusCode::OK, "{now}");
    assert_eq!((now["town"]["open"].as_i64(), now["town"]["overdue"].as_i64()), (Some(2), Some(0)), "{now}");
    assert_eq!(now["by_state"], json!({"reported": 2}));
    let grid = |v: &Value, n: usize| -> (i64, i64) {
        let code = app.town.layout.grids[n].code.to_string();
        let g =
            v["grids"].as_array().expect("grids").iter().find(|g| g["code"] == code.as_str()).expect("grid").clone();
        (g["open"].as_i64().expect("open"), g["overdue"].as_i64().expect("overdue"))
    };
    assert_eq!((grid(&now, 0), grid(&now, 1)), ((0, 0), (2, 0)));
    assert_eq!(now["grids"].as_array().expect("grids").len(), app.town.layout.grids.len(), "every grid, zeros too");
    let ws_open: i64 = now["workstations"].as_array().expect("ws").iter().filter_map(|w| w["open"].as_i64()).sum();
    assert_eq!(ws_open, 2);
    let points: Vec<i64> = now["points"].as_array().expect("points").iter().filter_map(|p| p["id"].as_i64()).collect();
    assert_eq!(points, vec![ids[2], ids[1]], "newest first, the void one gone");
    let ticker = now["ticker"].as_array().expect("ticker");
    assert_eq!(ticker[0]["action"], "void", "newest first: {now}");
    assert!(ticker.iter().all(|t| t["grid"].as_str().is_some_and(|g| g.contains('网'))), "grid names: {now}");
    assert!(now["seq"].as_i64().expect("seq") >= ticker[0]["seq"].as_i64().expect("seq"));

    // The 30-minute intake limit passes: both are overdue, on the map and in the supervisor's list.
    app.clock.advance(SignedDuration::from_mins(31));
    let (_, later) = app.get("/api/v1/cockpit/situation", Some(&commander)).await;
    assert_eq!((later["town"]["overdue"].as_i64(), grid(&later, 1)), (Some(2), (2, 2)));
    assert!(later["points"].as_array().expect("points").iter().all(|p| p["overdue"] == true));
    let late: Vec<i64> =
        later["most_overdue"].as_array().expect("late").iter().filter_map(|c| c["id"].as_i64()).collect();
    assert_eq!(late.len(), 2);
    assert!(later["most_overdue"][0]["matter"].as_str().is_some_and(|m| !m.is_empty() && !m.starts_with('0')));

    run().await;
    let (s, f) = app.get("/api/v1/cockpit/figures", Some(&commander)).await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(f["today"], "2026-11-23");
    assert_eq!(f["day"]["counts"]["reported"], 3, "{f}");
    assert_eq!(f["month"]["counts"]["reported"], 3);
    assert_eq!(f["counted_to"], f["seq"], "the KPI reader has caught up");
    let days = f["days"].as_array().expect("days");
    assert_eq!(
        (days.len(), days[29]["period"].as_str(), days[29]["reported"].as_i64()),
        (30, Some("2026-11-23"), Some(3))
    );
    assert_eq!(f["months"].as_array().expect("months").len(), 12);
    assert_eq!(f["months"][11]["period"], "2026-11");
    let sources: i64 =
        f["sources"].as_array().expect("sources").iter().filter_map(|r| r["counts"]["reported"].as_i64()).sum();
    assert_eq!(sources, 3);

    for post in ["intake", "gw001", "dept_huanwei"] {
        let t = app.login(post).await;
        assert_eq!(app.get("/api/v1/cockpit/situation", Some(&t)).await.0, StatusCode::FORBIDDEN, "{post}");
        assert_eq!(app.get("/api/v1/cockpit/figures", Some(&t)).await.0, StatusCode::FORBIDDEN, "{post}");
    }
    assert_eq!(app.get("/api/v1/cockpit/situation", None).await.0, StatusCode::UNAUTHORIZED);
}

/// The day's 环比 and 同比 compare today so far with the same hours of yesterday and of the same date a
/// year earlier: a case reported yesterday after this time of day does not count against this morning.
#[tokio::test]
async fn the_cockpit_compares_this_morning_with_the_same_hours_of_yesterday() {
    let app = spawn_app().await;
    let (intake, commander) = (app.login("intake").await, app.login("commander").await);
    let at = |t: &str| t.parse::<Timestamp>().expect("time");
    for (when, grid) in [
        ("2026-11-22T00:30:00Z", 0), // yesterday 08:30: before this time of day
        ("2026-11-22T02:00:00Z", 1), // yesterday 10:00: after it
        ("2025-11-23T00:00:00Z", 1), // a year earlier, 08:00
        ("2026-11-23T01:05:00Z", 0), // this morning, 09:05 and 09:10
        ("2026-11-23T01:10:00Z", 2),
    ] {
        app.clock.set(at(when));
        app.create(&intake, grid).await;
    }
    app.clock.set(at("2026-11-23T01:20:00Z")); // 09:20 in China
    let (s, f) = app.get("/api/v1/cockpit/figures", Some(&commander)).await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(
        f["day_spans"],
        json!({
            "today": {"reported": 2, "closed": 0},
            "yesterday": {"reported": 1, "closed": 0},
            "last_year": {"reported": 1, "closed": 0}
        }),
        "{f}"
    );
}

#[path = "api/h5.rs"]
mod h5;
#[path = "api/intake.rs"]
mod intake;
#[path = "api/iot.rs"]
mod iot;
#[path = "api/open311.rs"]
mod open311;
#[path = "api/ui.rs"]
mod ui;
