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
