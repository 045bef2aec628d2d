//! The OpenAPI 3.1 document, generated from the handlers' annotations. A copy is committed at
//! `openapi.json` in the repository root; a test fails when the code and the file disagree.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, attachments, auth, cases, cockpit, duty, intake, iot, kpi, pages, reference, stream};

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("cookie", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::COOKIE_NAME))));
    }
}

/// Documents the error answers every operation can give, from its shape, so the document never
/// misses one: the error body on each, with what it means. Explicit responses of a handler stay.
///
/// - every operation: 500 (internal error);
/// - every operation under `/api/v1` but log-in and log-out: 401 (no session or key);
/// - every write under `/api/v1`: 403 (role, scope, or a cookie write from another origin) and 503
///   (shutting down);
/// - a path parameter: 400 (malformed) and 404 (missing or out of scope);
/// - query parameters: 400 (unknown or malformed) and 422 (invalid value);
/// - a request body: 400, 408 (too slow), 413, 415 and 422.
struct ErrorAnswers;

impl ErrorAnswers {
    fn add(op: &mut utoipa::openapi::path::Operation, code: &str, why: &str) {
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        op.responses.responses.entry(code.to_owned()).or_insert_with(|| {
            ResponseBuilder::new()
                .description(why)
                .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                .build()
                .into()
        });
    }
}

impl Modify for ErrorAnswers {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for (path, item) in api.paths.paths.iter_mut() {
            let api_path = path.starts_with("/api/v1/");
            let public = matches!(path.as_str(), "/api/v1/auth/login" | "/api/v1/auth/logout");
            let ops = [(&mut item.get, false), (&mut item.post, true), (&mut item.put, true), (&mut item.delete, true)];
            for (op, write) in ops {
                let Some(op) = op.as_mut() else { continue };
                Self::add(op, "500", "internal error (details in the server log)");
                if api_path && !public {
                    Self::add(op, "401", "no valid session or API key");
                    if write {
                        Self::add(
                            op,
                            "403",
                            "the post or scope does not allow it, or a cookie write came from another origin",
                        );
                        Self::add(op, "503", "the server is shutting down");
                    }
                }
                let params = op.parameters.iter().flatten().filter_map(|p| match p {
                    utoipa::openapi::RefOr::T(p) => Some(p.parameter_in.clone()),
                    utoipa::openapi::RefOr::Ref(_) => None,
                });
                let kinds: Vec<ParameterIn> = params.collect();
                if kinds.iter().any(|k| matches!(k, ParameterIn::Path)) {
                    Self::add(op, "400", "a malformed path parameter");
                    Self::add(op, "404", "not found, or not in the caller's scope");
                }
                if kinds.iter().any(|k| matches!(k, ParameterIn::Query)) {
                    Self::add(op, "400", "an unknown or malformed query parameter");
                    Self::add(op, "422", "a query parameter with an invalid value");
                }
                if op.request_body.is_some() {
                    Self::add(op, "400", "malformed body");
                    Self::add(op, "408", "the body did not arrive in time");
                    Self::add(op, "413", "the body is too large");
                    Self::add(op, "415", "the body is not of the expected type");
                    Self::add(op, "422", "a field is invalid (`field` names it)");
                }
                // OpenAPI requires a description on every response.
                for (code, resp) in op.responses.responses.iter_mut() {
                    if let utoipa::openapi::RefOr::T(resp) = resp
                        && resp.description.is_empty()
                    {
                        resp.description = describe(code).to_owned();
                    }
                }
            }
        }
    }
}

/// What a status code means here, for responses documented without a description.
fn describe(code: &str) -> &'static str {
    match code {
        "200" => "done",
        "201" => "created",
        "204" => "done; no content",
        "400" => "malformed request",
        "401" => "no valid session or API key",
        "403" => "the post or scope does not allow it",
        "404" => "not found, or not in the caller's scope",
        "409" => "conflicts with the current state",
        "413" => "the body is too large",
        "415" => "the body is not of the expected type",
        "422" => "a field is invalid (`field` names it)",
        "429" => "too many attempts; see Retry-After",
        "503" => "not ready or shutting down",
        _ => "see the error body",
    }
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "civicgrid", description = "Integrated command centre of a town: grids, cases, components. \
        Log in with POST /api/v1/auth/login and send the token as `Authorization: Bearer …`."),
    paths(
        pages::healthz, pages::readyz,
        auth::login, auth::logout, auth::whoami, auth::change_password,
        reference::town, reference::workstations, reference::grids, reference::grids_geojson,
        reference::micro_grids_geojson, reference::locate, reference::departments, reference::matters,
        reference::component_classes, reference::calendar, reference::components, reference::component,
        cases::create_case, cases::list_cases, cases::get_case, cases::transition, cases::case_events,
        admin::create_user, admin::list_users, admin::unlock_user, admin::reset_password, admin::set_user_state, admin::end_sessions, admin::create_service_account,
        admin::list_service_accounts, admin::set_service_account_state, admin::issue_api_key, admin::revoke_api_key, admin::put_calendar, admin::put_component, admin::put_department,
        stream::stream, attachments::upload, attachments::metadata, attachments::of_case, attachments::content,
        attachments::thumbnail,
        duty::sla_policy, duty::put_sla_policy, duty::routing_rules, duty::put_routing_rules, duty::case_route, duty::case_duplicates, duty::roster, duty::put_roster, duty::inbox, duty::inbox_summary,
        duty::mark_read, duty::acknowledge, duty::channels, duty::create_channel, duty::set_channel_state,
        kpi::table, kpi::xlsx, cockpit::situation, cockpit::figures, cockpit::sensing,
        intake::push_ticket, intake::diversions, intake::put_diversions, intake::reply_hooks, intake::put_reply_hook,
        intake::delete_reply_hook,
        iot::put_device, iot::devices, iot::issue_token, iot::latest, iot::readings, iot::rollups, iot::telemetry,
        iot::alarms, iot::alarm, iot::acknowledge_alarm, iot::alarm_rules, iot::put_alarm_rules, iot::people_flow,
    ),
    // The live feed's `alarm` messages (the stream's 200 names only its `case` messages' schema).
    components(schemas(civicgrid_store::AlarmLogEntry)),
    modifiers(&Security, &ErrorAnswers),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "auth", description = "登录 login and sessions"),
        (name = "cases", description = "案卷 cases and their workflow"),
        (name = "attachments", description = "附件 photos and documents"),
        (name = "grids", description = "网格 town, workstations, grids"),
        (name = "components", description = "部件 components"),
        (name = "reference", description = "代码表 code tables, departments, calendar"),
        (name = "admin", description = "管理 accounts, calendar, components (administrators)"),
        (name = "dispatch", description = "指挥调度 SLA policy, duty roster, notifications and their channels"),
        (name = "intake", description = "上游工单 tickets pushed by the 12345 and 110 systems, the 110 diversion catalogue, replies"),
        (name = "iot", description = "物联感知 devices, telemetry, alarms, rules and people flow"),
        (name = "kpi", description = "考核 live KPI tables per unit, with grades, 环比/同比 and XLSX export"),
        (name = "ops", description = "health"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The document as pretty JSON (what is served and committed).
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
