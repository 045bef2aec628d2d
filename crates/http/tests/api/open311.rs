//! Open311 GeoReport v2 as an outside client sees it: discovery, the service list and service
//! definitions in JSON and in well-formed XML, and the specification's errors (404, 405 with `Allow`).

use reqwest::StatusCode;

use super::*;

/// Every element of an XML document, in order, after checking it parses; panics when it does not.
fn elements(xml: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut names = Vec::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) => names.push(e.name().into_inner().to_owned()),
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed XML ({e}): {xml}"),
        }
    }
    names
}

async fn raw(app: &TestApp, method: reqwest::Method, path: &str) -> (StatusCode, String, String, Option<String>) {
    let resp = app.http.request(method, format!("{}/open311/v2/{path}", app.base)).send().await.expect("request");
    let status = resp.status();
    let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let allow = resp.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, kind, resp.text().await.expect("body"), allow)
}

#[tokio::test]
async fn open311_lists_services_and_definitions_in_json_and_xml() {
    let app = spawn_app().await;
    let (s, kind, body, _) = raw(&app, reqwest::Method::GET, "discovery.json").await;
    assert_eq!((s, kind.as_str()), (StatusCode::OK, "application/json; charset=utf-8"));
    let d: Value = serde_json::from_str(&body).expect("json");
    let url = d["endpoints"][0]["url"].as_str().expect("url");
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/open311/v2"), "{url}");
    assert_eq!(d["endpoints"][0]["formats"], json!(["text/xml", "application/json"]));

    // The services are the matters, as a top-level array, and the same in XML.
    let (s, _, body, _) = raw(&app, reqwest::Method::GET, "services.json").await;
    assert_eq!(s, StatusCode::OK);
    let services: Value = serde_json::from_str(&body).expect("json");
    let list = services.as_array().expect("a top-level array");
    let (_, matters) = app.get("/api/v1/code-tables/matters", Some(&app.login("intake").await)).await;
    assert_eq!(list.len(), matters.as_array().expect("matters").len());
    let rubbish = list.iter().find(|x| x["service_code"] == "06010").expect("暴露垃圾");
    assert_eq!((rubbish["service_name"].as_str(), rubbish["group"].as_str()), (Some("暴露垃圾"), Some("市容环境类")));
    assert_eq!((rubbish["metadata"].as_bool(), rubbish["type"].as_str()), (Some(true), Some("realtime")));
    let (s, kind, xml, _) = raw(&app, reqwest::Method::GET, "services.xml").await;
    assert_eq!((s, kind.as_str()), (StatusCode::OK, "text/xml; charset=utf-8"));
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?><services><service>"));
    let names = elements(&xml);
    assert_eq!(names.iter().filter(|n| *n == "service").count(), list.len());

    // A definition's typed questions, with their choices.
    let (s, _, body, _) = raw(&app, reqwest::Method::GET, "services/01037.json").await;
    assert_eq!(s, StatusCode::OK);
    let def: Value = serde_json::from_str(&body).expect("json");
    let fault =
        def["attributes"].as_array().expect("attributes").iter().find(|a| a["code"] == "lamp_fault").expect("asked");
    assert_eq!((fault["datatype"].as_str(), fault["required"].as_bool()), (Some("singlevaluelist"), Some(true)));
    assert_eq!(fault["values"][0], json!({"key": "dark", "name": "夜间不亮"}));
    let (_, _, xml, _) = raw(&app, reqwest::Method::GET, "services/06028.xml").await;
    let names = elements(&xml);
    assert_eq!(names[0], "service_definition");
    assert!(
        names.windows(2).any(|w| w == ["attributes", "attribute"])
            && names.windows(2).any(|w| w == ["values", "value"])
    );

    // Errors are the specification's list, in the asked format.
    let (s, kind, body, _) = raw(&app, reqwest::Method::GET, "services/99999.xml").await;
    assert_eq!((s, kind.as_str()), (StatusCode::NOT_FOUND, "text/xml; charset=utf-8"));
    assert_eq!(elements(&body), ["errors", "error", "code", "description"]);
    let (s, _, body, _) = raw(&app, reqwest::Method::GET, "services.csv").await;
    let e: Value = serde_json::from_str(&body).expect("json");
    assert_eq!((s, e[0]["code"].as_u64()), (StatusCode::NOT_FOUND, Some(404)));
    let (s, _, body, allow) = raw(&app, reqwest::Method::DELETE, "services.json").await;
    assert_eq!((s, allow.as_deref()), (StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD")));
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")[0]["code"], 405);
    let (s, kind, _, _) = raw(&app, reqwest::Method::GET, "nowhere/at/all.xml").await;
    assert_eq!((s, kind.as_str()), (StatusCode::NOT_FOUND, "text/xml; charset=utf-8"));
}

/// A key of the open311 channel, issued through the administrator's API.
async fn open311_key(app: &TestApp) -> String {
    let admin = app.login("admin").await;
    let (s, account) =
        app.post("/api/v1/service-accounts", Some(&admin), &json!({"name": "fixmystreet", "channel": "open311"})).await;
    assert_eq!(s, StatusCode::CREATED, "{account}");
    let id = account["id"].as_i64().expect("id");
    let (s, key) = app.post(&format!("/api/v1/service-accounts/{id}/keys"), Some(&admin), &json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{key}");
    key["key"].as_str().expect("key").to_owned()
}

async fn post_form(app: &TestApp, path: &str, fields: &[(&str, String)]) -> (StatusCode, String) {
    let resp = app.http.post(format!("{}/open311/v2/{path}", app.base)).form(fields).send().await.expect("post");
    (resp.status(), resp.text().await.expect("body"))
}

#[tokio::test]
async fn open311_clients_report_with_a_key_and_read_requests_back() {
    let app = spawn_app().await;
    let key = open311_key(&app).await;
    let at = app.point_in_grid(0);
    let (lat, long) = (at["lat"].to_string(), at["lon"].to_string());
    let form = |extra: &[(&str, &str)]| -> Vec<(&'static str, String)> {
        let mut f: Vec<(&'static str, String)> = vec![
            ("api_key", key.clone()),
            ("service_code", "06028".into()),
            ("lat", lat.clone()),
            ("long", long.clone()),
            ("address_string", "清源路 12 号".into()),
            ("description", "夜里施工噪声很大".into()),
            ("first_name", "明".into()),
            ("last_name", "李".into()),
            ("phone", "13900001111".into()),
            ("media_url", "https://photos.example/1.jpg".into()),
        ];
        for (k, v) in extra {
            f.push((Box::leak(k.to_string().into_boxed_str()), v.to_string()));
        }
        f
    };
    let count = || async { app.store.count_cases().await.expect("count") };
    let before = count().await;

    // Refusals in the specification's format, and nothing written.
    let (s, body) = post_form(&app, "requests.json", &form(&[])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "the required question is missing: {body}");
    assert!(body.contains("attribute[periods]"), "{body}");
    let (s, body) = post_form(&app, "requests.xml", &form(&[("attribute[periods][]", "midnight")])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.starts_with("<?xml") && body.contains("<errors><error><code>400</code>"), "{body}");
    let mut wrong_key = form(&[("attribute[periods][]", "night")]);
    wrong_key[0].1 = "cgk_0000_nothing".into();
    assert_eq!(post_form(&app, "requests.json", &wrong_key).await.0, StatusCode::FORBIDDEN);
    let mut html = form(&[("attribute[periods][]", "night")]);
    html[5].1 = "<script>alert(1)</script>".into();
    assert_eq!(post_form(&app, "requests.json", &html).await.0, StatusCode::BAD_REQUEST);
    let mut control = form(&[("attribute[periods][]", "night")]);
    control[5].1 = "噪声\u{1}扰民".into();
    assert_eq!(post_form(&app, "requests.json", &control).await.0, StatusCode::BAD_REQUEST, "XML cannot carry it");
    let mut far = form(&[("attribute[periods][]", "night")]);
    far[2].1 = "39.9".into();
    assert_eq!(post_form(&app, "requests.json", &far).await.0, StatusCode::BAD_REQUEST, "outside the town");
    let mut no_place = form(&[("attribute[periods][]", "night")]);
    no_place.retain(|(k, _)| *k != "lat" && *k != "long");
    let (s, body) = post_form(&app, "requests.json", &no_place).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("geocoder"), "says why an address alone is not enough: {body}");
    let intake_token = app.login("intake").await;
    let mut someone = form(&[("attribute[periods][]", "night")]);
    someone[0].1 = intake_token;
    assert_eq!(
        post_form(&app, "requests.json", &someone).await.0,
        StatusCode::FORBIDDEN,
        "a person's session is no key"
    );
    assert_eq!(count().await, before, "nothing was written");

    // A good report: two periods of a multi-value list, an optional text answer.
    let good = form(&[
        ("attribute[periods][]", "night"),
        ("attribute[periods][]", "morning"),
        ("attribute[source_note]", "工地打桩"),
        ("account_id", "u-77"),
    ]);
    let (s, body) = post_form(&app, "requests.json", &good).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let made: Value = serde_json::from_str(&body).expect("json");
    let id = made[0]["service_request_id"].as_str().expect("a string id").to_owned();
    assert_eq!(made[0]["account_id"], "u-77");
    assert!(made[0]["service_notice"].as_str().is_some_and(|n| n.contains("案件编号")));
    let staff = app.login("shift").await;
    let (_, case) = app.get(&format!("/api/v1/cases/{id}"), Some(&staff)).await;
    assert_eq!(
        (case["source"].as_str(), case["reporter"]["name"].as_str()),
        (Some("citizen_h5"), Some("李明")),
        "{case}"
    );
    let text = case["description"].as_str().expect("description");
    assert!(
        text.contains("夜里施工噪声很大")
            && text.contains("噪声出现的时段：夜间（22:00–06:00）、早晨")
            && text.contains("工地打桩"),
        "{text}"
    );
    assert!(text.contains("照片：https://photos.example/1.jpg"));

    // Read back by anyone, plural and singular, JSON and XML, without the reporter's data.
    for path in [format!("requests/{id}.json"), format!("request/{id}.json")] {
        let (s, _, body, _) = raw(&app, reqwest::Method::GET, &path).await;
        assert_eq!(s, StatusCode::OK);
        let r: Value = serde_json::from_str(&body).expect("json");
        assert_eq!((r[0]["service_request_id"].as_str(), r[0]["status"].as_str()), (Some(id.as_str()), Some("open")));
        assert_eq!((r[0]["service_code"].as_str(), r[0]["status_notes"].as_str()), (Some("06028"), Some("待受理")));
        assert!(r[0]["requested_datetime"].as_str().is_some_and(|t| t.ends_with("+08:00")));
        assert!(!body.contains("13900001111") && !body.contains("李明"), "no reporter data: {body}");
    }
    let (_, kind, xml, _) = raw(&app, reqwest::Method::GET, &format!("requests/{id}.xml")).await;
    assert_eq!(kind, "text/xml; charset=utf-8");
    assert_eq!(&elements(&xml)[..3], ["service_requests", "request", "address"]);
    assert_eq!(raw(&app, reqwest::Method::GET, "requests/999999.json").await.0, StatusCode::NOT_FOUND);
    assert_eq!(raw(&app, reqwest::Method::GET, "tokens/abc.json").await.0, StatusCode::NOT_FOUND);
    let (s, _, _, allow) = raw(&app, reqwest::Method::POST, "services.json").await;
    assert_eq!((s, allow.as_deref()), (StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD")));
    let (_, _, _, allow) = raw(&app, reqwest::Method::PUT, "requests.json").await;
    assert_eq!(allow.as_deref(), Some("GET, HEAD, POST"));
}

#[tokio::test]
async fn open311_lists_requests_with_the_specification_filters() {
    let app = spawn_app().await;
    let intake = app.login("intake").await;
    let shift = app.login("shift").await;
    let mut ids = Vec::new();
    for grid in [0, 1, 2] {
        ids.push(app.create(&intake, grid).await["id"].as_i64().expect("id"));
    }
    // One is voided: closed in Open311's sense.
    assert_eq!(app.act(&intake, ids[0], json!({"action": "request_void", "reason": "重复"})).await.0, StatusCode::OK);
    assert_eq!(app.act(&shift, ids[0], json!({"action": "void", "reason": "重复"})).await.0, StatusCode::OK);
    let listed = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        v.as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["service_request_id"].as_str().map(str::to_owned))
            .collect()
    };
    let s = |id: i64| id.to_string();
    let (st, _, body, _) = raw(&app, reqwest::Method::GET, "requests.json").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(listed(&body), vec![s(ids[2]), s(ids[1]), s(ids[0])], "newest first, last 90 days by default");
    let (_, _, body, _) = raw(&app, reqwest::Method::GET, "requests.json?status=closed").await;
    assert_eq!(listed(&body), vec![s(ids[0])]);
    let (_, _, body, _) =
        raw(&app, reqwest::Method::GET, "requests.json?status=open&service_code=06010,06028&page_size=1&page=2").await;
    assert_eq!(listed(&body), vec![s(ids[1])], "second page of one");
    let (_, _, body, _) =
        raw(&app, reqwest::Method::GET, &format!("requests.json?service_request_id={},{}", ids[0], ids[2])).await;
    assert_eq!(listed(&body), vec![s(ids[0]), s(ids[2])]);
    let p = app.point_in_grid(1);
    let (_, _, body, _) =
        raw(&app, reqwest::Method::GET, &format!("requests.json?lat={}&long={}&radius=30", p["lat"], p["lon"])).await;
    assert_eq!(listed(&body), vec![s(ids[1])], "near the second report only");
    let (_, _, body, _) =
        raw(&app, reqwest::Method::GET, "requests.json?extensions=true&status=open&service_code=&jurisdiction_id=")
            .await;
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v[0]["extended_attributes"]["state"], "reported", "empty parameters are absent ones: {body}");
    let (_, _, body, _) = raw(
        &app,
        reqwest::Method::GET,
        "requests.json?start_date=2026-11-24T00:00:00%2B08:00&end_date=2026-11-30T00:00:00%2B08:00",
    )
    .await;
    assert!(listed(&body).is_empty(), "nothing reported after today's start");
    let (_, _, xml, _) = raw(&app, reqwest::Method::GET, "requests.xml").await;
    assert_eq!(elements(&xml).iter().filter(|n| *n == "request").count(), 3);
    for bad in [
        "status=pending",
        "start_date=yesterday",
        "start_date=2026-01-01T00:00:00Z&end_date=2026-11-23T00:00:00Z",
        "service_code=abc",
        "lat=31.2",
        "radius=99999&lat=31.2&long=120.9",
        "page_size=0",
        "updated_after=last%20week",
        "updated_after=2026-01-01T00:00:00Z&updated_before=2026-11-23T00:00:00Z",
    ] {
        let (st, _, body, _) = raw(&app, reqwest::Method::GET, &format!("requests.json?{bad}")).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let e: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(e[0]["code"], 400, "{bad}");
    }
}

/// mySociety's `servicerequestupdates`: every change since a time, from the global event log, with
/// FixMyStreet's statuses; an earlier window leaves later changes out.
#[tokio::test]
async fn open311_lists_updates_since_a_time() {
    let app = spawn_app().await;
    let (intake, shift) = (app.login("intake").await, app.login("shift").await);
    let id = app.create(&intake, 0).await["id"].as_i64().expect("id");
    app.clock.advance(SignedDuration::from_mins(5));
    assert_eq!(app.act(&intake, id, json!({"action": "accept"})).await.0, StatusCode::OK);
    app.clock.advance(SignedDuration::from_mins(5));
    assert_eq!(app.act(&shift, id, json!({"action": "file"})).await.0, StatusCode::OK);
    let app = &app;
    let updates = |query: &str| {
        let path = format!("servicerequestupdates.json{query}");
        async move {
            let (s, _, body, _) = raw(app, reqwest::Method::GET, &path).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            serde_json::from_str::<Value>(&body).expect("json").as_array().expect("array").clone()
        }
    };
    let all = updates("").await;
    let mine: Vec<&Value> = all.iter().filter(|u| u["service_request_id"] == id.to_string().as_str()).collect();
    assert_eq!(mine.len(), 3, "report, accept, file: {all:?}");
    assert_eq!(
        mine.iter().map(|u| u["status"].as_str().unwrap_or_default()).collect::<Vec<_>>(),
        ["open", "open", "open"]
    );
    assert!(mine.windows(2).all(|w| w[0]["update_id"].as_str().and_then(|a| a.parse::<i64>().ok())
        < w[1]["update_id"].as_str().and_then(|b| b.parse::<i64>().ok())));
    assert!(mine[2]["description"].as_str().is_some_and(|d| d.starts_with("待派遣")), "{:?}", mine[2]);
    // Since 09:07 local (01:07Z): only the filing.
    let later = updates("?start_date=2026-11-23T09:07:00%2B08:00").await;
    assert_eq!(later.iter().filter(|u| u["service_request_id"] == id.to_string().as_str()).count(), 1);
    let (_, kind, xml, _) = raw(app, reqwest::Method::GET, "servicerequestupdates.xml").await;
    assert_eq!(kind, "text/xml; charset=utf-8");
    assert_eq!(&elements(&xml)[..2], ["service_request_updates", "request_update"]);
    let (s, _, _, _) = raw(app, reqwest::Method::GET, "servicerequestupdates.json?start_date=soon").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // `updated_after` on requests: a case changed since then is listed, one untouched since is not.
    let quiet = app.create(&intake, 1).await["id"].as_i64().expect("id");
    app.clock.advance(SignedDuration::from_mins(5));
    let since = "2026-11-23T09:14:00%2B08:00";
    assert_eq!(app.act(&shift, id, json!({"action": "dispatch", "lead": "huanwei"})).await.0, StatusCode::OK);
    let (s, _, body, _) = raw(app, reqwest::Method::GET, &format!("requests.json?updated_after={since}")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let listed: Vec<String> = serde_json::from_str::<Value>(&body)
        .expect("json")
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["service_request_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(listed.contains(&id.to_string()) && !listed.contains(&quiet.to_string()), "{listed:?}");
    let (_, _, body, _) = raw(
        app,
        reqwest::Method::GET,
        &format!("requests.json?updated_after=2026-11-23T09:00:00%2B08:00&updated_before={since}"),
    )
    .await;
    let earlier = serde_json::from_str::<Value>(&body).expect("json");
    assert!(
        earlier.as_array().is_some_and(|a| a.iter().any(|r| r["service_request_id"] == quiet.to_string().as_str())),
        "{earlier}"
    );
}

/// With a jurisdiction configured, a request naming another one (in the query or a report's form) is
/// refused and writes nothing; naming ours, or none, is served.
#[tokio::test]
async fn open311_checks_the_configured_jurisdiction() {
    let config = HttpConfig { open311_jurisdiction: Some("qingyuan.example".into()), ..HttpConfig::default() };
    let app = spawn_app_configured(civicgrid_http::ServeOptions::default(), config).await;
    assert_eq!(raw(&app, reqwest::Method::GET, "services.json").await.0, StatusCode::OK);
    assert_eq!(
        raw(&app, reqwest::Method::GET, "services.json?jurisdiction_id=qingyuan.example").await.0,
        StatusCode::OK
    );
    let (s, _, body, _) = raw(&app, reqwest::Method::GET, "services.xml?jurisdiction_id=elsewhere.example").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("<errors><error><code>404</code>"), "{body}");
    let key = open311_key(&app).await;
    let at = app.point_in_grid(0);
    let report = |jurisdiction: &str| {
        vec![
            ("api_key", key.clone()),
            ("jurisdiction_id", jurisdiction.to_owned()),
            ("service_code", "06010".to_owned()),
            ("lat", at["lat"].to_string()),
            ("long", at["lon"].to_string()),
            ("description", "路口垃圾".to_owned()),
        ]
    };
    let before = app.store.count_cases().await.expect("count");
    assert_eq!(post_form(&app, "requests.json", &report("elsewhere.example")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.store.count_cases().await.expect("count"), before, "nothing written");
    let (s, body) = post_form(&app, "requests.json", &report("qingyuan.example")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// mySociety's `POST servicerequestupdates`: a site's user saying the problem is still there after
/// the department answered is "not fixed" (a rectification for the lead department); other words
/// reach whoever owns the step; bad updates are the specification's errors and change nothing.
#[tokio::test]
async fn open311_sites_send_updates_back() {
    let app = spawn_app().await;
    let key = open311_key(&app).await;
    let (shift, dept) = (app.login("shift").await, app.login("dept_huanwei").await);
    let id = app.create(&shift, 0).await["id"].as_i64().expect("id");
    app.steps(
        &shift,
        id,
        &[json!({"action": "accept"}), json!({"action": "file"}), json!({"action": "dispatch", "lead": "huanwei"})],
    )
    .await;
    let update = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut f: Vec<(&'static str, String)> = vec![
            ("api_key", key.clone()),
            ("service_request_id", id.to_string()),
            ("update_id", "fms-1".into()),
            ("updated_datetime", "2026-11-23T09:30:00+08:00".into()),
            ("status", "OPEN".into()),
            ("description", "垃圾还在，越堆越多".into()),
        ];
        for (k, v) in extra {
            f.retain(|(name, _)| name != k);
            f.push((k, (*v).to_owned()));
        }
        f
    };
    // Bad updates: the specification's errors; nothing reaches anyone.
    for (extra, status) in [
        (vec![("api_key", "nope")], StatusCode::FORBIDDEN),
        (vec![("service_request_id", "999999")], StatusCode::NOT_FOUND),
        (vec![("status", "maybe")], StatusCode::BAD_REQUEST),
        (vec![("updated_datetime", "yesterday")], StatusCode::BAD_REQUEST),
        (vec![("description", "")], StatusCode::BAD_REQUEST),
        (vec![("description", "<b>hi</b>")], StatusCode::BAD_REQUEST),
        (vec![("media_url", "ftp://x/y.jpg")], StatusCode::BAD_REQUEST),
        (vec![("update_id", "")], StatusCode::BAD_REQUEST),
    ] {
        let (s, body) = post_form(&app, "servicerequestupdates.json", &update(&extra)).await;
        assert_eq!(s, status, "{extra:?}: {body}");
        let e: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(e[0]["code"], status.as_u16(), "{body}");
    }
    let (_, inbox) = app.get("/api/v1/notifications", Some(&dept)).await;
    assert!(!inbox.to_string().contains("垃圾还在"), "{inbox}");

    // While the department handles it, the words reach its inbox.
    let (s, body) = post_form(&app, "servicerequestupdates.xml", &update(&[])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(elements(&body), ["service_request_updates", "request_update", "update_id"]);
    let (_, inbox) = app.get("/api/v1/notifications", Some(&dept)).await;
    assert!(inbox.to_string().contains("垃圾还在"), "{inbox}");

    // Closed without a rating: "still open" from the site is not fixed, a rectification for huanwei.
    let worker = app.login("gw001").await;
    let spot = app.point_in_grid(0);
    let photo = app.upload_photo(&worker, spot["lon"].as_f64().zip(spot["lat"].as_f64())).await;
    app.steps(&dept, id, &[json!({"action": "sign"}), json!({"action": "reply"})]).await;
    app.steps(
        &worker,
        id,
        &[json!({"action": "verify_pass", "evidence": [{"id": photo, "name": "x", "mime": "image/jpeg", "size": 1}]})],
    )
    .await;
    app.steps(&shift, id, &[json!({"action": "close"})]).await;
    let (s, body) =
        post_form(&app, "servicerequestupdates.json", &update(&[("update_id", "fms-2"), ("description", "根本没清")]))
            .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    assert!(answer[0]["update_id"].as_str().is_some_and(|u| u.starts_with(&format!("{id}-"))), "{answer}");
    let case = app.store.case(id).await.expect("read").expect("case");
    assert_eq!(case.status.satisfaction, Some(civicgrid_core::case::Satisfaction::VeryDissatisfied));
    assert!(case.status.rectification.is_some(), "a rectification is open");
    // POST is allowed on the updates resource, PUT is not.
    let (s, _, _, allow) = raw(&app, reqwest::Method::PUT, "servicerequestupdates.json").await;
    assert_eq!((s, allow.as_deref()), (StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD, POST")));
}

/// An extension for clients built on Chinese map SDKs: `coord_system=gcj02` (or `bd09`) converts
/// lat/long to WGS84 before the grid is found; an unknown system is a 400 and writes nothing.
#[tokio::test]
async fn open311_reports_may_name_their_coordinate_system() {
    use civicgrid_core::coords::CoordSystem;
    let app = spawn_app().await;
    let key = open311_key(&app).await;
    let at = app.point_in_grid(1);
    let wgs =
        civicgrid_core::case::GeoPoint { lon: at["lon"].as_f64().expect("lon"), lat: at["lat"].as_f64().expect("lat") };
    let gcj = CoordSystem::Gcj02.from_wgs84(wgs);
    let form = |system: &str| -> Vec<(&'static str, String)> {
        vec![
            ("api_key", key.clone()),
            ("service_code", "09006".into()),
            ("lat", gcj.lat.to_string()),
            ("long", gcj.lon.to_string()),
            ("coord_system", system.to_owned()),
            ("description", "路口有流动摊贩占道".into()),
        ]
    };
    let before = app.store.count_cases().await.expect("count");
    let (s, body) = post_form(&app, "requests.json", &form("utm")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(app.store.count_cases().await.expect("count"), before);
    let (s, body) = post_form(&app, "requests.json", &form("gcj02")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let id: i64 = serde_json::from_str::<Value>(&body).expect("json")[0]["service_request_id"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("id");
    let case = app.store.case(id).await.expect("read").expect("case");
    assert!(civicgrid_core::case::distance_m(case.facts.location, wgs) < 1.0, "{:?}", case.facts.location);
}
