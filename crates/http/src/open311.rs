//! Open311 GeoReport v2 at `/open311/v2`, in the specification's two formats: every resource is
//! asked for with its extension (`services.json`, `services.xml`). JSON follows the specification's
//! conversion (top-level arrays, string ids); XML is `text/xml; charset=utf-8` with a declaration, the
//! array's element named by the specification (`services` of `service`, `errors` of `error`, …).
//! Errors are the specification's list of `{code, description}` in the asked format (JSON when the
//! format cannot be told), and a method an endpoint does not take is a 405 with `Allow`.
//!
//! mySociety's extension `GET servicerequestupdates` lists every change since a time, read from the
//! global event log, so FixMyStreet-style sites follow each request's progress; with `POST
//! servicerequestupdates` such a site sends its users' updates back (see
//! `Services::open311_post_update`).
//!
//! Reports come in with `POST requests` and an API key of a service account on the `open311`
//! channel; anyone may read a request's public fields (`GET requests/{id}`, or the singular
//! `request/{id}` of the official Swagger).

use axum::Form;
use axum::Router;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use civicgrid_service::open311::{Open311Report, Open311Update};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde_json::{Value, json};

use crate::state::AppState;

/// When this endpoint's behaviour last changed (discovery's `changeset`).
const CHANGESET: &str = "2026-11-24T00:00:00+08:00";

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`.
    Json,
    /// `.xml`.
    Xml,
}

/// The routes, to be nested at `/open311/v2`.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/{file}",
            get(top).post(report).fallback(|uri: OriginalUri| async move {
                let allow = if is_requests(uri.path()) { "GET, HEAD, POST" } else { "GET, HEAD" };
                not_allowed(&uri, allow)
            }),
        )
        .route("/services/{file}", only_get(definition))
        .route("/requests/{file}", only_get(one_request))
        .route("/request/{file}", only_get(one_request))
        .route("/tokens/{file}", only_get(token))
        .route_layer(axum::middleware::from_fn_with_state(state, jurisdiction))
        .fallback(
            |uri: OriginalUri| async move { error(format_of(uri.path()), StatusCode::NOT_FOUND, "no such resource") },
        )
}

/// Refuses a request naming a `jurisdiction_id` other than the configured one (in the query, or in a
/// report's form); without one configured, or without one named, every request passes.
async fn jurisdiction(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(ours) = state.config.open311_jurisdiction.as_deref() else {
        return next.run(request).await;
    };
    let format = format_of(request.uri().path());
    let named = |query: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "jurisdiction_id")
            .map(|(_, v)| v.to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut given = request.uri().query().and_then(named);
    let request = if request.method() == axum::http::Method::POST && given.is_none() {
        // A report names it among its form fields: read the (bounded) body, then hand it on.
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, crate::MAX_BODY).await else {
            return error(format, StatusCode::BAD_REQUEST, "the form is too large");
        };
        given = std::str::from_utf8(&bytes).ok().and_then(named);
        axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))
    } else {
        request
    };
    match given {
        Some(j) if j != ours => {
            error(format, StatusCode::NOT_FOUND, &format!("this server answers for jurisdiction_id {ours}"))
        }
        _ => next.run(request).await,
    }
}

/// A GET route whose other methods are the specification's 405.
fn only_get<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    get(handler).fallback(|uri: OriginalUri| async move { not_allowed(&uri, "GET, HEAD") })
}

/// The specification's 405, saying which methods the resource takes.
fn not_allowed(uri: &OriginalUri, allow: &'static str) -> Response {
    let mut resp =
        error(format_of(uri.path()), StatusCode::METHOD_NOT_ALLOWED, &format!("this resource takes {allow}"));
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// A service layer refusal as the specification's error: 400 for bad input, 403 for a missing or
/// wrong key, 404 for what does not exist.
fn refusal(format: Format, e: civicgrid_service::ServiceError) -> Response {
    let e: crate::error::ApiError = e.into();
    let status = match e.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => StatusCode::FORBIDDEN,
        StatusCode::NOT_FOUND => StatusCode::NOT_FOUND,
        s if s.is_server_error() => s,
        _ => StatusCode::BAD_REQUEST,
    };
    let description = match e.body.field {
        Some(field) if !field.is_empty() => format!("{field}: {}", e.body.message),
        _ => e.body.message,
    };
    error(format, status, &description)
}

/// Whether a path names a resource that takes POST: the requests, and their updates.
fn is_requests(path: &str) -> bool {
    ["/requests.json", "/requests.xml", "/servicerequestupdates.json", "/servicerequestupdates.xml"]
        .iter()
        .any(|end| path.ends_with(end))
}

/// The format a path asks for by its extension (JSON when it names none we know).
fn format_of(path: &str) -> Format {
    if path.ends_with(".xml") { Format::Xml } else { Format::Json }
}

/// A resource name and its format; `None` without a known extension.
fn split(file: &str) -> Option<(&str, Format)> {
    let (name, ext) = file.rsplit_once('.')?;
    match ext {
        "json" => Some((name, Format::Json)),
        "xml" => Some((name, Format::Xml)),
        _ => None,
    }
}

/// `GET /open311/v2/{discovery|services}.{format}`.
async fn top(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some((name, format)) = split(&file) else {
        return error(format_of(&file), StatusCode::NOT_FOUND, "ask for .json or .xml");
    };
    match name {
        "discovery" => reply(format, "discovery", "", &discovery(&headers)),
        "services" => {
            let services = serde_json::to_value(state.services.open311_services()).unwrap_or_default();
            reply(format, "services", "service", &services)
        }
        "servicerequestupdates" => {
            let get =
                |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
            let time = |name: &str| {
                get(name)
                    .map(|v| {
                        v.parse::<jiff::Timestamp>().map_err(|_| format!("{name}: a W3C date-time with its offset"))
                    })
                    .transpose()
            };
            match (time("start_date"), time("end_date")) {
                (Ok(start), Ok(end)) => match state.services.open311_updates(start, end).await {
                    Ok(list) => reply(format, "service_request_updates", "request_update", &Value::Array(list)),
                    Err(e) => refusal(format, e),
                },
                (Err(why), _) | (_, Err(why)) => error(format, StatusCode::BAD_REQUEST, &why),
            }
        }
        "requests" => match query(&params) {
            Ok(q) => match state.services.open311_requests(&q).await {
                Ok(list) => reply(format, "service_requests", "request", &Value::Array(list)),
                Err(e) => refusal(format, e),
            },
            Err(why) => error(format, StatusCode::BAD_REQUEST, &why),
        },
        _ => error(format, StatusCode::NOT_FOUND, "no such resource"),
    }
}

/// `GET /open311/v2/services/{code}.{format}`: a service definition.
async fn definition(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let Some((code, format)) = split(&file) else {
        return error(format_of(&file), StatusCode::NOT_FOUND, "ask for .json or .xml");
    };
    match state.services.open311_definition(code) {
        Ok(d) => reply(format, "service_definition", "", &serde_json::to_value(d).unwrap_or_default()),
        Err(_) => error(format, StatusCode::NOT_FOUND, &format!("no service definition for {code:?}")),
    }
}

/// `POST /open311/v2/requests.{format}`: a report, with `api_key` among the form's fields; and
/// `POST /open311/v2/servicerequestupdates.{format}`: an update from a FixMyStreet-style site.
async fn report(
    State(state): State<AppState>,
    Path(file): Path<String>,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (posting_update, format) = match split(&file) {
        Some(("requests", format)) => (false, format),
        Some(("servicerequestupdates", format)) => (true, format),
        Some(("discovery" | "services", format)) => {
            let mut resp = error(format, StatusCode::METHOD_NOT_ALLOWED, "this resource takes GET, HEAD");
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        _ => {
            let why = "reports go to requests.json or .xml, updates to servicerequestupdates.json or .xml";
            return error(format_of(&file), StatusCode::NOT_FOUND, why);
        }
    };
    let Ok(Form(fields)) = form else {
        return error(format, StatusCode::BAD_REQUEST, "send the report as application/x-www-form-urlencoded fields");
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str());
    let actor = match state.services.api_key_actor(field("api_key").trim()).await {
        Ok(a) => a,
        Err(_) => return error(format, StatusCode::FORBIDDEN, "api_key: missing or not valid"),
    };
    if posting_update {
        let update = Open311Update {
            service_request_id: field("service_request_id").to_owned(),
            update_id: field("update_id").to_owned(),
            updated_datetime: field("updated_datetime").to_owned(),
            status: field("status").to_owned(),
            description: field("description").to_owned(),
            media_url: field("media_url").to_owned(),
        };
        return match state.services.open311_post_update(&actor, update).await {
            Ok(id) => reply(format, "service_request_updates", "request_update", &json!([{ "update_id": id }])),
            Err(e) => refusal(format, e),
        };
    }
    // An empty value is an absent one; anything else must be a number.
    let number = |name: &str| -> Result<Option<f64>, String> {
        match field(name).trim() {
            "" => Ok(None),
            v => v.parse::<f64>().ok().filter(|n| n.is_finite()).map(Some).ok_or_else(|| format!("{name}: a number")),
        }
    };
    let (lat, long) = match (number("lat"), number("long")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => return error(format, StatusCode::BAD_REQUEST, &why),
    };
    let mut attributes: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in &fields {
        if let Some(code) = k
            .strip_prefix("attribute[")
            .and_then(|r| r.strip_suffix("[]").or(Some(r)))
            .and_then(|r| r.strip_suffix(']'))
        {
            match attributes.iter_mut().find(|(c, _)| c == code) {
                Some((_, values)) => values.push(v.clone()),
                None => attributes.push((code.to_owned(), vec![v.clone()])),
            }
        }
    }
    let coord_system = match field("coord_system").trim() {
        "" => civicgrid_core::coords::CoordSystem::Wgs84,
        tag => match civicgrid_core::coords::CoordSystem::parse(tag) {
            Some(system) => system,
            None => return error(format, StatusCode::BAD_REQUEST, "coord_system: wgs84, cgcs2000, gcj02 or bd09"),
        },
    };
    let input = Open311Report {
        service_code: field("service_code").to_owned(),
        lat,
        long,
        coord_system,
        address_string: field("address_string").to_owned(),
        description: field("description").to_owned(),
        media_url: field("media_url").to_owned(),
        first_name: field("first_name").to_owned(),
        last_name: field("last_name").to_owned(),
        phone: field("phone").to_owned(),
        attributes,
    };
    match state.services.open311_report(&actor, input).await {
        Ok(case) => {
            let account = Some(field("account_id").trim())
                .filter(|a| !a.is_empty())
                .map(|a| a.chars().take(64).collect::<String>());
            let body = json!([{
                "service_request_id": case.id.to_string(),
                "service_notice": format!("案件编号 {}", case.number),
                "account_id": account,
            }]);
            reply(format, "service_requests", "request", &body)
        }
        Err(e) => refusal(format, e),
    }
}

/// `GET /open311/v2/requests/{id}.{format}` (and the singular `request/{id}`): one request, as a list
/// of one.
async fn one_request(
    State(state): State<AppState>,
    Path(file): Path<String>,
    Query(_): Query<Vec<(String, String)>>,
) -> Response {
    let Some((id, format)) = split(&file) else {
        return error(format_of(&file), StatusCode::NOT_FOUND, "ask for .json or .xml");
    };
    match state.services.open311_request(id).await {
        Ok(r) => reply(format, "service_requests", "request", &json!([r])),
        Err(e) => refusal(format, e),
    }
}

/// The filters of `GET requests`. Empty values are absent ones; unknown parameters (an `api_key`, a
/// client's own) are ignored.
fn query(params: &[(String, String)]) -> Result<civicgrid_service::open311::Open311Query, String> {
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
    let list = |name: &str| {
        get(name).map(|v| v.split(',').map(str::trim).filter(|x| !x.is_empty()).collect::<Vec<_>>()).unwrap_or_default()
    };
    let time = |name: &str| -> Result<Option<jiff::Timestamp>, String> {
        get(name)
            .map(|v| v.parse::<jiff::Timestamp>().map_err(|_| format!("{name}: a W3C date-time with its offset")))
            .transpose()
    };
    let number = |name: &str| -> Result<Option<f64>, String> {
        get(name)
            .map(|v| v.parse::<f64>().ok().filter(|n| n.is_finite()).ok_or(format!("{name}: a number")))
            .transpose()
    };
    let ids = list("service_request_id");
    if ids.len() > 1000 {
        return Err("service_request_id: at most 1000".into());
    }
    let ids = ids
        .iter()
        .map(|v| v.parse::<i64>().map_err(|_| format!("service_request_id: {v:?} is not an id")))
        .collect::<Result<_, _>>()?;
    let service_codes = list("service_code")
        .iter()
        .map(|v| v.parse().map_err(|_| format!("service_code: {v:?} is not a service code")))
        .collect::<Result<_, _>>()?;
    let statuses = list("status");
    if let Some(bad) = statuses.iter().find(|s| !matches!(**s, "open" | "closed")) {
        return Err(format!("status: {bad:?} is neither open nor closed"));
    }
    let open = match (statuses.contains(&"open"), statuses.contains(&"closed")) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    };
    let near = match (number("lat")?, number("long")?, number("radius")?) {
        (None, None, None) => None,
        (Some(lat), Some(lon), radius) => {
            let radius = radius.unwrap_or(500.0);
            if !(1.0..=5000.0).contains(&radius) || !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err("lat, long and radius: a point and 1–5000 metres".into());
            }
            Some((civicgrid_core::case::GeoPoint { lon, lat }, radius))
        }
        _ => return Err("lat and long go together".into()),
    };
    let whole = |name: &str, default: u32| -> Result<u32, String> {
        get(name).map_or(Ok(default), |v| {
            v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or(format!("{name}: a whole number from 1"))
        })
    };
    Ok(civicgrid_service::open311::Open311Query {
        ids,
        service_codes,
        start: time("start_date")?,
        end: time("end_date")?,
        open,
        near,
        page: whole("page", 1)?,
        page_size: whole("page_size", 100)?.min(civicgrid_service::open311::MAX_REQUESTS),
        updated_after: time("updated_after")?,
        updated_before: time("updated_before")?,
        extensions: get("extensions") == Some("true"),
    })
}

/// `GET /open311/v2/tokens/{token}.{format}`: every request gets its id at once, so no token exists.
async fn token(Path(file): Path<String>) -> Response {
    error(
        format_of(&file),
        StatusCode::NOT_FOUND,
        "this server answers reports with their id at once; it issues no tokens",
    )
}

/// The discovery document, naming this server as the request reached it.
fn discovery(headers: &HeaderMap) -> Value {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() <= 255 && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)));
    let proto =
        headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).filter(|p| *p == "https").unwrap_or("http");
    let url = host.map_or_else(|| "/open311/v2".to_owned(), |h| format!("{proto}://{h}/open311/v2"));
    json!({
        "changeset": CHANGESET,
        "contact": "综合指挥中心 (integrated command centre)",
        "key_service": "API keys are issued by the centre's administrators (service accounts of the open311 channel).",
        "endpoints": [{
            "specification": "http://wiki.open311.org/GeoReport_v2",
            "url": url,
            "changeset": CHANGESET,
            "type": "production",
            "formats": ["text/xml", "application/json"],
        }],
    })
}

/// The specification's error list, with `status`.
pub fn error(format: Format, status: StatusCode, description: &str) -> Response {
    let mut resp = reply(format, "errors", "error", &json!([{"code": status.as_u16(), "description": description}]));
    *resp.status_mut() = status;
    resp
}

/// `value` in `format`: JSON as it is; XML under `root`, an array's members each an `item` element.
pub fn reply(format: Format, root: &str, item: &str, value: &Value) -> Response {
    match format {
        Format::Json => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"))], value.to_string())
                .into_response()
        }
        Format::Xml => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("text/xml; charset=utf-8"))], to_xml(root, item, value))
                .into_response()
        }
    }
}

/// The element name of an array's members inside an object, by the array's name.
fn member_name(array: &str) -> &str {
    match array {
        "attributes" => "attribute",
        "values" => "value",
        "endpoints" => "endpoint",
        "formats" => "format",
        "errors" => "error",
        other => other.strip_suffix('s').unwrap_or(other),
    }
}

/// A document: the declaration, then `value` as `root` (an array's members as `item`).
pub fn to_xml(root: &str, item: &str, value: &Value) -> String {
    let mut w = Writer::new(Vec::new());
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)));
    match value {
        Value::Array(items) => {
            let _ = w.write_event(Event::Start(BytesStart::new(root)));
            for v in items {
                element(&mut w, item, v);
            }
            let _ = w.write_event(Event::End(BytesEnd::new(root)));
        }
        other => element(&mut w, root, other),
    }
    String::from_utf8(w.into_inner()).unwrap_or_default()
}

fn element(w: &mut Writer<Vec<u8>>, name: &str, value: &Value) {
    let _ = w.write_event(Event::Start(BytesStart::new(name)));
    match value {
        Value::Null => {}
        Value::Object(fields) => {
            for (k, v) in fields {
                element(w, k, v);
            }
        }
        Value::Array(items) => {
            let member = member_name(name);
            for v in items {
                element(w, member, v);
            }
        }
        Value::String(s) => {
            let _ = w.write_event(Event::Text(BytesText::new(&xml_chars(s))));
        }
        other => {
            let _ = w.write_event(Event::Text(BytesText::new(&other.to_string())));
        }
    }
    let _ = w.write_event(Event::End(BytesEnd::new(name)));
}

/// `s` without the characters XML 1.0 cannot carry (most control characters).
pub fn xml_chars(s: &str) -> String {
    s.chars()
        .filter(|&c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_follows_the_specification_shape_and_escapes() {
        let v = json!([{"service_code": "06010", "service_name": "暴露垃圾 <&>", "metadata": true}]);
        assert_eq!(
            to_xml("services", "service", &v),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><services><service><metadata>true</metadata>\
             <service_code>06010</service_code><service_name>暴露垃圾 &lt;&amp;&gt;</service_name></service></services>"
        );
        let d = json!({"service_code": "01037", "attributes": [{"code": "x", "values": [{"key": "a", "name": "A"}]}]});
        let xml = to_xml("service_definition", "", &d);
        assert!(xml.contains("<attributes><attribute><code>x</code><values><value><key>a</key><name>A</name></value></values></attribute></attributes>"), "{xml}");
        assert_eq!(xml_chars("a\u{1}b\u{FFFE}c\n"), "abc\n");
    }
}
