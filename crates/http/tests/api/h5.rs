//! The citizen H5 page as a phone uses it, over HTTP: the anti-abuse checks, a report with a GCJ-02
//! pin and a photo, the tracking number and query code, progress with public-safe fields only, a
//! word to the department while it handles the report, and "not fixed" after closure reaching the
//! lead department as a rectification; the hourly limit per address.

use civicgrid_core::case::GeoPoint;
use civicgrid_core::coords::CoordSystem;

use super::*;

/// The value of `attr="…"` after `marker` in `html`.
fn attr_after(html: &str, marker: &str, attr: &str) -> String {
    let from = html.find(marker).unwrap_or_else(|| panic!("{marker} not in page"));
    let rest = &html[from..];
    let start = rest.find(&format!("{attr}=\"")).expect("attribute") + attr.len() + 2;
    rest[start..].split('"').next().expect("value").to_owned()
}

/// The text of the element marked `marker` (e.g. `data-code>`).
fn text_after(html: &str, marker: &str) -> String {
    let from = html.find(marker).unwrap_or_else(|| panic!("{marker} not in page")) + marker.len();
    html[from..].split('<').next().expect("text").trim().to_owned()
}

struct Phone<'a> {
    app: &'a TestApp,
}

impl Phone<'_> {
    async fn get(&self, path: &str) -> (StatusCode, String) {
        let resp = self.app.http.get(format!("{}{path}", self.app.base)).send().await.expect("get");
        (resp.status(), resp.text().await.expect("body"))
    }

    /// The report form's hidden fields (issued, key).
    async fn form(&self) -> (String, String) {
        let (s, html) = self.get("/h5/report").await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("<optgroup label=\"市政公用设施类\">"), "grouped matters");
        (attr_after(&html, "name=\"issued\"", "value"), attr_after(&html, "name=\"key\"", "value"))
    }

    async fn report(&self, fields: &[(&str, String)], photo: Option<Vec<u8>>) -> (StatusCode, String) {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.clone());
        }
        if let Some(bytes) = photo {
            let part =
                reqwest::multipart::Part::bytes(bytes).file_name("现场.jpg").mime_str("image/jpeg").expect("mime");
            form = form.part("photo", part);
        }
        let resp = self
            .app
            .http
            .post(format!("{}/h5/report", self.app.base))
            .header("origin", &self.app.base)
            .multipart(form)
            .send()
            .await
            .expect("post");
        (resp.status(), resp.text().await.expect("body"))
    }

    async fn answer(&self, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let resp = self
            .app
            .http
            .post(format!("{}/h5/track", self.app.base))
            .header("origin", &self.app.base)
            .form(fields)
            .send()
            .await
            .expect("post");
        (resp.status(), resp.text().await.expect("body"))
    }
}

#[tokio::test]
async fn a_citizen_reports_follows_and_says_not_fixed() {
    let app = spawn_app().await;
    let phone = Phone { app: &app };
    let p = app.point_in_grid(1);
    let wgs = GeoPoint { lon: p["lon"].as_f64().expect("lon"), lat: p["lat"].as_f64().expect("lat") };
    let gcj = CoordSystem::Gcj02.from_wgs84(wgs);
    let (issued, key) = phone.form().await;
    let fields = |issued: &str, key: &str| -> Vec<(&'static str, String)> {
        vec![
            ("issued", issued.to_owned()),
            ("key", key.to_owned()),
            ("matter", "06010".into()),
            ("description", "小区东门垃圾堆了三天".into()),
            ("lat", gcj.lat.to_string()),
            ("lon", gcj.lon.to_string()),
            ("coord_system", "gcj02".into()),
            ("address", "东门".into()),
            ("reporter_phone", "13912345678".into()),
        ]
    };
    let before = app.store.count_cases().await.expect("count");

    // Sent back at once: no person fills a form in that fast.
    let (s, _) = phone.report(&fields(&issued, &key), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    app.clock.advance(SignedDuration::from_secs(20));
    // The field people never see was filled in.
    let mut trapped = fields(&issued, &key);
    trapped.push(("website", "http://spam".into()));
    let (s, _) = phone.report(&trapped, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A place outside the town.
    let mut away = fields(&issued, &key);
    away[4] = ("lat", "39.9".into());
    away[5] = ("lon", "116.4".into());
    let (s, html) = phone.report(&away, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("id=\"location-error\""), "{html}");
    assert_eq!(app.store.count_cases().await.expect("count"), before, "nothing written");

    // A good report with a photo.
    let photo = civicgrid_demo::photos::jpeg(64, 48, [90, 120, 60], None, Some((wgs.lon, wgs.lat)));
    let (s, html) = phone.report(&fields(&issued, &key), Some(photo)).await;
    assert_eq!(s, StatusCode::CREATED, "{html}");
    let number = text_after(&html, "data-number>");
    let code = text_after(&html, "data-code>");
    assert_eq!(code.len(), 10);
    let case = app.store.case_by_number(&number).await.expect("read").expect("case");
    assert_eq!(case.facts.source, civicgrid_core::case::Source::CitizenH5);
    assert!(civicgrid_core::case::distance_m(case.facts.location, wgs) < 1.0, "GCJ-02 pin converted");
    assert_eq!(case.facts.attachments.len(), 1);
    // The query code's digest never leaves the store.
    let shift = app.login("shift").await;
    let (_, seen) = app.get(&format!("/api/v1/cases/{}", case.id), Some(&shift)).await;
    assert!(seen["reporter"].get("tracking").is_none(), "{seen}");

    // Progress: the holder of the pair sees it, with the phone masked; a wrong code sees nothing.
    let track = format!("/h5/track?number={number}&code={code}");
    let (s, html) = phone.get(&track).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("已受理") && html.contains("139****5678"), "{html}");
    assert!(!html.contains("13912345678"));
    let (s, html) = phone.get(&format!("/h5/track?number={number}&code=WRONG00000")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!html.contains("小区东门"));

    // While the department handles it, a word reaches the department's inbox.
    let dept = app.login("dept_huanwei").await;
    for body in
        [json!({"action": "accept"}), json!({"action": "file"}), json!({"action": "dispatch", "lead": "huanwei"})]
    {
        let (s, c) = app.act(&shift, case.id, body).await;
        assert_eq!(s, StatusCode::OK, "{c}");
    }
    let (s, _) = phone.answer(&[("number", &number), ("code", &code), ("satisfaction", "satisfied")]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "rated only once closed");
    let (s, html) = phone.answer(&[("number", &number), ("code", &code), ("text", "今天又多了两袋")]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("环卫"), "the department's name shows: {html}");
    let (_, inbox) = app.get("/api/v1/notifications", Some(&dept)).await;
    assert!(inbox.to_string().contains("今天又多了两袋"), "{inbox}");

    // Closed: "not fixed" is the lowest rating with the reporter's words and opens a rectification.
    let worker = app.login("gw002").await;
    let spot = app.point_in_grid(1);
    let after = app.upload_photo(&worker, spot["lon"].as_f64().zip(spot["lat"].as_f64())).await;
    app.steps(&dept, case.id, &[json!({"action": "sign"}), json!({"action": "reply", "reason": "已清运"})]).await;
    app.steps(
        &worker,
        case.id,
        &[json!({"action": "verify_pass", "evidence": [{"id": after, "name": "x", "mime": "image/jpeg", "size": 1}]})],
    )
    .await;
    app.steps(&shift, case.id, &[json!({"action": "close"})]).await;
    let (_, html) = phone.get(&track).await;
    assert!(html.contains("已办结") && html.contains("已清运") && html.contains("name=\"satisfaction\""), "{html}");
    let (s, html) =
        phone.answer(&[("number", &number), ("code", &code), ("not_fixed", "1"), ("text", "根本没清")]).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("整改"), "{html}");
    let stored = app.store.case(case.id).await.expect("read").expect("case");
    assert_eq!(stored.status.satisfaction, Some(civicgrid_core::case::Satisfaction::VeryDissatisfied));
    assert!(stored.status.rectification.is_some_and(|r| r.dept.to_string() == "huanwei"));
    let (s, _) = phone.answer(&[("number", &number), ("code", &code), ("satisfaction", "satisfied")]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "rated once");
}

#[tokio::test]
async fn each_address_sends_a_few_reports_an_hour() {
    let app = spawn_app().await;
    let phone = Phone { app: &app };
    let p = app.point_in_grid(0);
    let (issued, _) = phone.form().await;
    app.clock.advance(SignedDuration::from_secs(30));
    let limit = civicgrid_service::throttles::REPORTS_PER_HOUR as usize;
    let mut statuses = Vec::new();
    for i in 0..=limit {
        let fields = vec![
            ("issued", issued.clone()),
            ("key", format!("k{i}")),
            ("matter", "06010".to_owned()),
            ("description", format!("第 {i} 件")),
            ("lat", p["lat"].to_string()),
            ("lon", p["lon"].to_string()),
            ("reporter_phone", "13912345678".to_owned()),
        ];
        statuses.push(phone.report(&fields, None).await.0);
    }
    assert!(statuses[..limit].iter().all(|s| *s == StatusCode::CREATED), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    app.clock.advance(SignedDuration::from_mins(61));
    let (_, html) = phone.get("/h5").await;
    assert!(html.contains("/h5/report"));
}

/// 意见建议: an opinion for a village's liaison station, contact optional, placed at that workstation,
/// answered by a department within five working days, its answer read (not visited) before closing,
/// and the answer shown on the tracking page.
#[tokio::test]
async fn a_suggestion_is_answered_and_the_answer_shown() {
    let app = spawn_app().await;
    let phone = Phone { app: &app };
    let (s, html) = phone.get("/h5/suggest").await;
    assert_eq!(s, StatusCode::OK);
    let issued = attr_after(&html, "name=\"issued\"", "value");
    let community = app.town.layout.grids[1].code.community();
    assert!(html.contains(&format!("value=\"{community}\"")), "the workstations are offered");
    app.clock.advance(SignedDuration::from_secs(30));
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in [
        ("issued", issued.as_str()),
        ("key", "s1"),
        ("community", &community.to_string()),
        ("matter", "06010"),
        ("description", "建议在村口增设分类垃圾桶"),
    ] {
        form = form.text(k.to_owned(), v.to_owned());
    }
    let resp = app
        .http
        .post(format!("{}/h5/suggest", app.base))
        .header("origin", &app.base)
        .multipart(form)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let html = resp.text().await.expect("body");
    let (number, code) = (text_after(&html, "data-number>"), text_after(&html, "data-code>"));
    let case = app.store.case_by_number(&number).await.expect("read").expect("case");
    assert_eq!(case.facts.source, civicgrid_core::case::Source::Suggestion);
    assert_eq!(case.facts.grid.community(), community, "placed at the village's workstation");
    assert_eq!(case.facts.reporter.phone, None, "no contact is fine");

    let (shift, dept) = (app.login("shift").await, app.login("dept_huanwei").await);
    let (s, _) = app.act(&shift, case.id, json!({"action": "request_check"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "an opinion is not checked on site");
    let dispatched = app
        .steps(
            &shift,
            case.id,
            &[json!({"action": "accept"}), json!({"action": "file"}), json!({"action": "dispatch", "lead": "huanwei"})],
        )
        .await;
    let due: jiff::Timestamp = dispatched["handle_due_at"].as_str().expect("due").parse().expect("time");
    let cal = civicgrid_core::calendar::WorkCalendar::china_2026();
    assert_eq!(
        due,
        cal.deadline(
            civicgrid_core::clock::Clock::now(&app.clock),
            civicgrid_core::calendar::TimeLimit::WorkingDays(5)
        ),
        "five working days"
    );
    app.steps(
        &dept,
        case.id,
        &[json!({"action": "sign"}), json!({"action": "reply", "reason": "已在村口增设四分类垃圾桶一组"})],
    )
    .await;
    // The shift leader reads the answer: no photo taken on site is needed.
    app.steps(&shift, case.id, &[json!({"action": "verify_pass"}), json!({"action": "close"})]).await;
    let (s, html) = phone.get(&format!("/h5/track?number={number}&code={code}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("已在村口增设四分类垃圾桶一组") && html.contains("已办结"), "{html}");
}

/// Without a pin, the photo's own EXIF position places the report; without either, it is refused.
#[tokio::test]
async fn a_photo_places_a_report_that_has_no_pin() {
    let app = spawn_app().await;
    let phone = Phone { app: &app };
    let (issued, key) = phone.form().await;
    app.clock.advance(SignedDuration::from_secs(30));
    let p = app.point_in_grid(2);
    let (lon, lat) = (p["lon"].as_f64().expect("lon"), p["lat"].as_f64().expect("lat"));
    let fields = vec![
        ("issued", issued),
        ("key", key),
        ("matter", "06010".to_owned()),
        ("description", "路边垃圾".to_owned()),
        ("reporter_phone", "13912345678".to_owned()),
    ];
    let (s, html) = phone.report(&fields, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("id=\"location-error\""), "{html}");
    let photo = civicgrid_demo::photos::jpeg(64, 48, [90, 120, 60], None, Some((lon, lat)));
    let (s, html) = phone.report(&fields, Some(photo)).await;
    assert_eq!(s, StatusCode::CREATED, "{html}");
    let case = app.store.case_by_number(&text_after(&html, "data-number>")).await.expect("read").expect("case");
    assert!(
        civicgrid_core::case::distance_m(case.facts.location, GeoPoint { lon, lat }) < 5.0,
        "{:?}",
        case.facts.location
    );
    assert_eq!(case.facts.grid, app.town.layout.grids[2].code);
}

/// Behind a trusted proxy each citizen's reports are counted under the address the proxy forwards;
/// without one, a forwarded header is the client's own claim and changes nothing.
#[tokio::test]
async fn reports_are_counted_per_forwarded_client_only_behind_a_trusted_proxy() {
    let limit = civicgrid_service::throttles::REPORTS_PER_HOUR as usize;
    let send = |app: &TestApp, issued: String, i: usize, forwarded: &'static str| {
        let p = app.point_in_grid(0);
        let fields = [
            ("issued", issued),
            ("key", format!("fwd{i}")),
            ("matter", "06010".to_owned()),
            ("description", format!("第 {i} 件")),
            ("lat", p["lat"].to_string()),
            ("lon", p["lon"].to_string()),
            ("reporter_phone", "13912345678".to_owned()),
        ];
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k, v);
        }
        app.http
            .post(format!("{}/h5/report", app.base))
            .header("origin", &app.base)
            .header("x-forwarded-for", forwarded)
            .multipart(form)
            .send()
    };
    let trusted = HttpConfig {
        trusted_proxies: civicgrid_http::auth::trusted_proxies("127.0.0.1").expect("parses"),
        ..HttpConfig::default()
    };
    for (app, fresh_allowance) in
        [(spawn_app_configured(Default::default(), trusted).await, true), (spawn_app().await, false)]
    {
        let (issued, _) = Phone { app: &app }.form().await;
        app.clock.advance(SignedDuration::from_secs(30));
        for i in 0..limit {
            let status = send(&app, issued.clone(), i, "203.0.113.7").await.expect("post").status();
            assert_eq!(status, StatusCode::CREATED);
        }
        let spent = send(&app, issued.clone(), limit, "203.0.113.7").await.expect("post").status();
        assert_eq!(spent, StatusCode::TOO_MANY_REQUESTS);
        let other = send(&app, issued.clone(), limit + 1, "6.6.6.6, 203.0.113.8").await.expect("post").status();
        let expected = if fresh_allowance { StatusCode::CREATED } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(other, expected, "another forwarded client (trusted proxy: {fresh_allowance})");
    }
}
