//! The OpenAPI 3.1 document, generated from the handlers' annotations. A copy is committed at
//! `openapi.json` in the repository root; a test fails when the code and the file disagree.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, attachments, auth, cases, pages, reference, stream};

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
        admin::list_service_accounts, admin::set_service_account_state, admin::issue_api_key, admin::revoke_api_key, admin::put_calendar, admin::put_component,
        stream::stream, attachments::upload, attachments::metadata, attachments::of_case, attachments::content,
        attachments::thumbnail,
    ),
    modifiers(&Security),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "auth", description = "登录 login and sessions"),
        (name = "cases", description = "案卷 cases and their workflow"),
        (name = "attachments", description = "附件 photos and documents"),
        (name = "grids", description = "网格 town, workstations, grids"),
        (name = "components", description = "部件 components"),
        (name = "reference", description = "代码表 code tables, departments, calendar"),
        (name = "admin", description = "管理 accounts, calendar, components (administrators)"),
        (name = "ops", description = "health"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The document as pretty JSON (what is served and committed).
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
