//! Open311 GeoReport v2 at `/open311/v2`, in the specification's two formats: every resource is
//! asked for with its extension (`services.json`, `services.xml`). JSON follows the specification's
//! conversion (top-level arrays, string ids); XML is `text/xml; charset=utf-8` with a declaration, the
//! array's element named by the specification (`services` of `service`, `errors` of `error`, …).
//! Errors are the specification's list of `{code, description}` in the asked format (JSON when the
//! format cannot be told), and a method an endpoint does not take is a 405 with `Allow`.
//!
//! This part serves discovery, the service list and service definitions.

use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
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
pub fn routes() -> Router<AppState> {
    Router::new().route("/{file}", only_get(top)).route("/services/{file}", only_get(definition)).fallback(
        |uri: OriginalUri| async move { error(format_of(uri.path()), StatusCode::NOT_FOUND, "no such resource") },
    )
}

/// A GET route whose other methods are the specification's 405.
fn only_get<H, T>(handler: H) -> MethodRouter<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    get(handler).fallback(|uri: OriginalUri| async move {
        let mut resp = error(format_of(uri.path()), StatusCode::METHOD_NOT_ALLOWED, "this resource takes GET");
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        resp
    })
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
async fn top(State(state): State<AppState>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    let Some((name, format)) = split(&file) else {
        return error(format_of(&file), StatusCode::NOT_FOUND, "ask for .json or .xml");
    };
    match name {
        "discovery" => reply(format, "discovery", "", &discovery(&headers)),
        "services" => {
            let services = serde_json::to_value(state.services.open311_services()).unwrap_or_default();
            reply(format, "services", "service", &services)
        }
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
