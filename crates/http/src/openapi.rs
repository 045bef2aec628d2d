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

/// Open311 GeoReport v2 at `/open311/v2`, documented here by hand: its resources take their format as
/// the file's extension (`services.json`, `requests/42.xml`), which one route per resource parses
/// itself, so no handler carries a `#[utoipa::path]`. Every answer, errors included, comes in the
/// format asked for (JSON when it cannot be told); errors are the specification's list of
/// `{code, description}` ([`crate::open311`]).
struct Open311Paths;

impl Open311Paths {
    const BASE: &str = "/open311/v2";

    /// The `{format}` path parameter.
    fn format() -> utoipa::openapi::path::Parameter {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        ParameterBuilder::new()
            .name("format")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("`json` or `xml`"))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["json", "xml"]))))
            .build()
    }

    /// A string parameter.
    fn param(name: &str, at: utoipa::openapi::path::ParameterIn, why: &str) -> utoipa::openapi::path::Parameter {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        let required = if matches!(at, ParameterIn::Path) { Required::True } else { Required::False };
        ParameterBuilder::new()
            .name(name)
            .parameter_in(at)
            .required(required)
            .description(Some(why))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()
    }

    /// One operation: its success answer (`body` in JSON and XML) and its error answers.
    fn operation(
        summary: &str,
        params: Vec<utoipa::openapi::path::Parameter>,
        form: Option<&[(&str, &str)]>,
        ok: (&str, &str, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>),
        errors: &[(&str, &str)],
    ) -> utoipa::openapi::path::Operation {
        use utoipa::openapi::path::OperationBuilder;
        use utoipa::openapi::request_body::RequestBodyBuilder;
        use utoipa::openapi::{Content, ObjectBuilder, Ref, Required, ResponseBuilder, Type};
        let both = |builder: ResponseBuilder, schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
            builder
                .content("application/json", Content::new(Some(schema.clone())))
                .content("text/xml", Content::new(Some(schema)))
        };
        let mut op = OperationBuilder::new()
            .tag("open311")
            .summary(Some(summary))
            .parameters(Some(params))
            // No scheme of the document: reads are public, writes carry their api_key among the form fields.
            .security(utoipa::openapi::security::SecurityRequirement::default())
            .response(ok.0, both(ResponseBuilder::new().description(ok.1), ok.2));
        let error = || utoipa::openapi::RefOr::Ref(Ref::from_schema_name("Open311Errors"));
        for (code, why) in errors.iter().chain(&[("500", "internal error (details in the server log)")]) {
            op = op.response(*code, both(ResponseBuilder::new().description(*why), error()));
        }
        if let Some(fields) = form {
            let mut object = ObjectBuilder::new().schema_type(Type::Object);
            for (name, why) in fields {
                object = object.property(*name, ObjectBuilder::new().schema_type(Type::String).description(Some(*why)));
            }
            let body = RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/x-www-form-urlencoded", Content::new(Some(object)));
            op = op.request_body(Some(body.build()));
        }
        op.build()
    }
}

impl Modify for Open311Paths {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{HttpMethod, ParameterIn};
        use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Ref, RefOr, Type};
        let components = api.components.get_or_insert_with(Default::default);
        let error = ObjectBuilder::new()
            .property("code", ObjectBuilder::new().schema_type(Type::Integer).description(Some("the HTTP status")))
            .property("description", ObjectBuilder::new().schema_type(Type::String).description(Some("what is wrong")))
            .required("code")
            .required("description");
        components.schemas.insert("Open311Errors".into(), ArrayBuilder::new().items(error).build().into());
        for (name, schema) in [
            ("Open311Service", <civicgrid_service::open311::Open311Service as utoipa::PartialSchema>::schema()),
            (
                "Open311ServiceDefinition",
                <civicgrid_service::open311::ServiceDefinition as utoipa::PartialSchema>::schema(),
            ),
            ("Open311Request", <civicgrid_service::open311::Open311Request as utoipa::PartialSchema>::schema()),
        ] {
            components.schemas.insert(name.into(), schema);
        }
        for (name, schema) in [
            ("Attribute", <civicgrid_service::open311::Attribute as utoipa::PartialSchema>::schema()),
            ("Choice", <civicgrid_service::open311::Choice as utoipa::PartialSchema>::schema()),
            ("Datatype", <civicgrid_service::open311::Datatype as utoipa::PartialSchema>::schema()),
        ] {
            components.schemas.entry(name.into()).or_insert(schema);
        }
        let list = |of: &str| -> RefOr<utoipa::openapi::schema::Schema> {
            ArrayBuilder::new().items(Ref::from_schema_name(of)).build().into()
        };
        let loose = |why: &str| -> RefOr<utoipa::openapi::schema::Schema> {
            ArrayBuilder::new().items(ObjectBuilder::new().description(Some(why))).build().into()
        };
        let base = Self::BASE;
        let not_found = ("404", "no such resource or format, or another jurisdiction_id");
        let not_allowed = ("405", "the resource does not take this method (see `Allow`)");
        let bad = ("400", "a malformed parameter or form field (the description names it)");
        let key = ("403", "api_key missing or not valid");
        let query = |names: &[(&str, &str)]| {
            let mut params = vec![Self::format()];
            params.extend(names.iter().map(|(n, why)| Self::param(n, ParameterIn::Query, why)));
            params
        };
        let jurisdiction = ("jurisdiction_id", "the town's jurisdiction (refused if another)");
        let api_key = ("api_key", "a key of a service account on the open311 channel");
        let one_request = |summary: &str| {
            Self::operation(
                summary,
                vec![Self::param("service_request_id", ParameterIn::Path, "the case id"), Self::format()],
                None,
                ("200", "the request", list("Open311Request")),
                &[bad, not_found, not_allowed],
            )
        };
        let ops = [
            (
                format!("{base}/discovery.{{format}}"),
                HttpMethod::Get,
                Self::operation(
                    "Discovery: the endpoint, its formats and its changeset",
                    vec![Self::format()],
                    None,
                    ("200", "the discovery document", ObjectBuilder::new().schema_type(Type::Object).into()),
                    &[not_found, not_allowed],
                ),
            ),
            (
                format!("{base}/services.{{format}}"),
                HttpMethod::Get,
                Self::operation(
                    "The services: one per matter (事项) the public may report",
                    query(&[jurisdiction]),
                    None,
                    ("200", "the services", list("Open311Service")),
                    &[not_found, not_allowed],
                ),
            ),
            (
                format!("{base}/services/{{service_code}}.{{format}}"),
                HttpMethod::Get,
                Self::operation(
                    "A service's definition: the questions a report answers",
                    vec![Self::param("service_code", ParameterIn::Path, "the matter code"), Self::format()],
                    None,
                    ("200", "the definition", Ref::from_schema_name("Open311ServiceDefinition").into()),
                    &[not_found, not_allowed],
                ),
            ),
            (
                format!("{base}/requests.{{format}}"),
                HttpMethod::Get,
                Self::operation(
                    "Service requests, newest first, without the reporters' data",
                    query(&[
                        ("service_request_id", "comma-separated ids"),
                        ("service_code", "comma-separated matter codes"),
                        ("status", "open, closed or both (comma-separated)"),
                        ("start_date", "reported at or after (W3C date-time)"),
                        ("end_date", "reported before (W3C date-time)"),
                        ("updated_after", "changed after (W3C date-time)"),
                        ("updated_before", "changed before (W3C date-time)"),
                        ("extensions", "`true` for the extended attributes"),
                        jurisdiction,
                    ]),
                    None,
                    ("200", "the requests", list("Open311Request")),
                    &[bad, not_found, not_allowed],
                ),
            ),
            (
                format!("{base}/requests.{{format}}"),
                HttpMethod::Post,
                Self::operation(
                    "Report: a new case from an outside app (its service account's api_key)",
                    vec![Self::format()],
                    Some(&[
                        api_key,
                        ("service_code", "the matter code"),
                        ("lat", "latitude"),
                        ("long", "longitude"),
                        ("coord_system", "wgs84 (default), cgcs2000, gcj02 or bd09"),
                        ("address_string", "where, in words"),
                        ("description", "what is wrong (at most 4,000 characters)"),
                        ("media_url", "a photo's address"),
                        ("first_name", "the reporter's given name"),
                        ("last_name", "the reporter's family name"),
                        ("phone", "the reporter's phone (never shown to the public)"),
                        ("account_id", "the app's own id of its user, echoed back"),
                        jurisdiction,
                    ]),
                    (
                        "200",
                        "the new request's id and tracking number",
                        loose("service_request_id, service_notice, account_id"),
                    ),
                    &[bad, key, not_found, not_allowed],
                ),
            ),
            (
                format!("{base}/requests/{{service_request_id}}.{{format}}"),
                HttpMethod::Get,
                one_request("One service request, as a list of one"),
            ),
            (
                format!("{base}/request/{{service_request_id}}.{{format}}"),
                HttpMethod::Get,
                one_request("One service request (the singular path of the official Swagger)"),
            ),
            (
                format!("{base}/servicerequestupdates.{{format}}"),
                HttpMethod::Get,
                Self::operation(
                    "Every change of the public's requests since a time (mySociety's extension)",
                    query(&[
                        ("start_date", "changes at or after (W3C date-time)"),
                        ("end_date", "changes before (W3C date-time)"),
                        jurisdiction,
                    ]),
                    None,
                    (
                        "200",
                        "the updates, oldest first",
                        loose("update_id, service_request_id, status, updated_datetime, description"),
                    ),
                    &[bad, not_found, not_allowed],
                ),
            ),
            (
                format!("{base}/servicerequestupdates.{{format}}"),
                HttpMethod::Post,
                Self::operation(
                    "An update from a FixMyStreet-style site about one of its users' requests",
                    vec![Self::format()],
                    Some(&[
                        api_key,
                        ("service_request_id", "the case id"),
                        ("update_id", "the site's id of the update"),
                        ("updated_datetime", "when (W3C date-time)"),
                        ("status", "OPEN or CLOSED"),
                        ("description", "the update's text"),
                        ("media_url", "a photo's address"),
                        jurisdiction,
                    ]),
                    ("200", "the stored update's id", loose("update_id")),
                    &[bad, key, not_found, not_allowed],
                ),
            ),
            (
                format!("{base}/tokens/{{token}}.{{format}}"),
                HttpMethod::Get,
                Self::operation(
                    "A token's request: never issued here (a report gets its id at once), so always 404",
                    vec![Self::param("token", ParameterIn::Path, "a token"), Self::format()],
                    None,
                    ("404", "no such token", RefOr::Ref(Ref::from_schema_name("Open311Errors"))),
                    &[not_allowed],
                ),
            ),
        ];
        for (path, method, op) in ops {
            api.paths.add_path_operation(path, vec![method], op);
        }
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
    modifiers(&Security, &ErrorAnswers, &Open311Paths),
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
        (name = "open311", description = "Open311 GeoReport v2 for outside apps, JSON or XML by extension"),
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
