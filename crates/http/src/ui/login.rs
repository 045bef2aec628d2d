//! Logging in and out of the consoles, changing one's password, and the language switch. The session
//! is the API's (`civicgrid_service::accounts`): the same cookie serves the pages and their calls to
//! `/api/v1`.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::i18n::{Catalog, Lang};
use super::{Frame, LANG_COOKIE, Session, lang_of, render, safe_next, see_other};
use crate::auth::{COOKIE_NAME, ClientAddr};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: &'static Catalog,
    lang: &'static str,
    other_lang: &'static str,
    next: String,
    username: String,
    error: Option<String>,
    town: String,
}

/// Where the login form sends the person afterwards.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_page(state: &AppState, lang: Lang, next: String, username: String, error: Option<String>) -> LoginPage {
    let town =
        state.world().town.as_ref().map(|t| if lang == Lang::Zh { t.name_zh.clone() } else { t.name_en.clone() });
    LoginPage {
        t: lang.catalog(),
        lang: lang.tag(),
        other_lang: lang.other().tag(),
        next,
        username,
        error,
        town: town.unwrap_or_default(),
    }
}

/// `GET /login`.
pub async fn form(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let lang = lang_of(&headers);
    render(StatusCode::OK, &login_page(&state, lang, safe_next(q.next.as_deref()), String::new(), None))
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: on success the session cookie and a redirect to where the person was going.
pub async fn submit(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = lang_of(&headers);
    if !crate::auth::same_origin(&headers) {
        return super::message(lang, StatusCode::FORBIDDEN, "error.csrf");
    }
    let next = safe_next(f.next.as_deref());
    let username: String = f.username.trim().chars().take(64).collect();
    match state.services.login(&username, f.password, addr).await {
        Ok(session) => {
            let secure = if state.config.secure_cookies { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
                session.token,
                state.config.session_hours * 3600
            );
            let mut resp = see_other(&next);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(SET_COOKIE, v);
            }
            resp
        }
        Err(e) => {
            let e = ApiError::from(e);
            let t = lang.catalog();
            let text = match e.body.code {
                "bad_credentials" => t.get("login.bad_credentials").to_owned(),
                "too_many_attempts" => t.get("login.throttled").to_owned(),
                _ if e.status.is_server_error() => t.get("error.internal").to_owned(),
                _ => e.body.message,
            };
            render(e.status, &login_page(&state, lang, next, username, Some(text)))
        }
    }
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(State(state): State<AppState>, s: Session, Form(f): Form<CsrfForm>) -> Response {
    if let Some(r) = s.csrf_refusal(&f.csrf) {
        return r;
    }
    if let Err(e) = state.services.logout(&s.token).await {
        return super::refusal(s.lang, e);
    }
    let mut resp = see_other("/login");
    resp.headers_mut()
        .insert(SET_COOKIE, HeaderValue::from_static("cg_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"));
    resp
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    frame: Frame,
    error: Option<(String, String)>,
    done: bool,
}

/// `GET /account/password`.
pub async fn password_form(State(state): State<AppState>, s: Session) -> Response {
    let frame = Frame::new(&state, &s, "/account/password", "password.title").await;
    render(StatusCode::OK, &PasswordPage { frame, error: None, done: false })
}

/// The password form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current_password: String,
    new_password: String,
    repeat_password: String,
}

/// `POST /account/password`: the person's other sessions end; this one stays.
pub async fn password_submit(State(state): State<AppState>, s: Session, Form(f): Form<PasswordForm>) -> Response {
    if let Some(r) = s.csrf_refusal(&f.csrf) {
        return r;
    }
    let frame = Frame::new(&state, &s, "/account/password", "password.title").await;
    if f.new_password != f.repeat_password {
        let error = Some(("repeat_password".to_owned(), s.t().get("password.mismatch").to_owned()));
        return render(StatusCode::UNPROCESSABLE_ENTITY, &PasswordPage { frame, error, done: false });
    }
    match state.services.change_own_password(&s.actor, Some(&s.token), f.current_password, f.new_password).await {
        Ok(()) => render(StatusCode::OK, &PasswordPage { frame, error: None, done: true }),
        Err(e) => {
            let e = ApiError::from(e);
            let field = match e.body.field.clone() {
                Some(f) if ["current_password", "new_password", "repeat_password"].contains(&f.as_str()) => f,
                _ => "current_password".to_owned(),
            };
            render(e.status, &PasswordPage { frame, error: Some((field, e.body.message)), done: false })
        }
    }
}

/// The language switch's target.
#[derive(Debug, Deserialize)]
pub struct LangQuery {
    to: String,
    next: Option<String>,
}

/// `GET /lang?to=en&next=/…`: remembers the language for a year and goes back.
pub async fn switch_language(Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::from_tag(&q.to);
    let mut resp = see_other(&safe_next(q.next.as_deref()));
    let cookie = format!("{LANG_COOKIE}={}; SameSite=Lax; Path=/; Max-Age=31536000", lang.tag());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}
