//! The consoles driven like a browser would, on the rendered HTML: log in with the cookie, see each
//! post's queues, take a case from report to dispatch through the case page's forms, and check what
//! must never go wrong (form tokens, escaping, masking, errors beside their fields).

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use super::*;

/// A browser's session: its cookie, and requests sent from our own origin.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookie: String,
}

/// A page's answer.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    html: String,
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Answer { status, location, html: resp.text().await.expect("body") }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// The form token on a page.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form token on the page");
    html[at + 19..at + 19 + 32].to_owned()
}

/// The id of the case a redirect names.
fn case_id(location: &str) -> i64 {
    location.trim_start_matches("/cases/").parse().expect("a case page")
}

impl Browser {
    async fn login(app: &TestApp, username: &str) -> Browser {
        let http = no_redirects();
        let resp = http
            .post(format!("{}/login", app.base))
            .header("origin", &app.base)
            .form(&[("username", username), ("password", PASSWORD), ("next", "/")])
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "login {username}");
        let set = resp.headers()[SET_COOKIE].to_str().expect("cookie").to_owned();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
        let cookie = set.split(';').next().expect("pair").to_owned();
        Browser { base: app.base.clone(), http, cookie }
    }

    async fn get(&self, path: &str) -> Answer {
        let req = self.http.get(format!("{}{path}", self.base)).header(COOKIE, &self.cookie);
        answer(req.send().await.expect("get")).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let req =
            self.http.post(format!("{}{path}", self.base)).header(COOKIE, &self.cookie).header("origin", &self.base);
        answer(req.form(fields).send().await.expect("post")).await
    }

    /// Sends a multipart form (the case page's steps, the report form) with this page's token.
    async fn submit(&self, path: &str, page: &str, fields: &[(&str, &str)], photos: Vec<Vec<u8>>) -> Answer {
        let mut form = reqwest::multipart::Form::new().text("csrf", csrf(page));
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        for (i, bytes) in photos.into_iter().enumerate() {
            let part = reqwest::multipart::Part::bytes(bytes).file_name(format!("现场{i}.jpg")).mime_str("image/jpeg");
            form = form.part("photo", part.expect("mime"));
        }
        let req =
            self.http.post(format!("{}{path}", self.base)).header(COOKIE, &self.cookie).header("origin", &self.base);
        answer(req.multipart(form).send().await.expect("submit")).await
    }

    /// Takes a step on the case page as it is now.
    async fn step(&self, id: i64, fields: &[(&str, &str)]) -> Answer {
        let page = self.get(&format!("/cases/{id}")).await;
        assert_eq!(page.status, StatusCode::OK);
        self.submit(&format!("/cases/{id}/act"), &page.html, fields, Vec::new()).await
    }
}

/// The steps a case page offers.
fn offered(html: &str) -> Vec<String> {
    html.split("data-action=\"").skip(1).filter_map(|s| s.split('"').next()).map(str::to_owned).collect()
}

#[tokio::test]
async fn consoles_need_a_login_and_every_form_a_token_of_the_session() {
    let app = spawn_app().await;
    let anon = no_redirects();
    let r = answer(anon.get(format!("{}/?q=new", app.base)).send().await.expect("get")).await;
    assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/login?next=/%3Fq%3Dnew")));
    // htmx refreshes learn where to go instead of swapping the login page into the queue.
    let r = anon.get(format!("{}/queue", app.base)).header("hx-request", "true").send().await.expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["hx-redirect"].to_str().expect("hx").starts_with("/login"));
    let login = answer(anon.get(format!("{}/login?next=//evil.example", app.base)).send().await.expect("get")).await;
    assert!(login.html.contains("name=\"next\" value=\"/\""), "only local paths are returned to");

    // Wrong password: the form again, with the reason, and no cookie.
    let wrong = anon
        .post(format!("{}/login", app.base))
        .header("origin", &app.base)
        .form(&[("username", "intake"), ("password", "not-the-password")])
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong.text().await.expect("html").contains("用户名或密码错误"));
    // A login form posted from another site is refused.
    let forged = anon
        .post(format!("{}/login", app.base))
        .header("origin", "https://evil.example")
        .form(&[("username", "intake"), ("password", PASSWORD)])
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let intake = Browser::login(&app, "intake").await;
    let home = intake.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.html.contains("data-queue=\"new\"") && home.html.contains("待受理"), "intake's queues");
    assert!(home.html.contains("<html lang=\"zh-CN\">"));
    // A form without this session's token changes nothing.
    let r = intake.post("/logout", &[("csrf", "0123456789abcdef0123456789abcdef")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(intake.get("/").await.status, StatusCode::OK, "still logged in");
    let r = intake.post("/logout", &[("csrf", &csrf(&home.html))]).await;
    assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
    assert_eq!(intake.get("/").await.status, StatusCode::SEE_OTHER, "the session has ended");
}

#[tokio::test]
async fn each_post_sees_its_queues_with_counts_and_the_warning_colours() {
    let app = spawn_app().await;
    let shift = app.login("shift").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.create(&shift, 0).await["id"].as_i64().expect("id"));
    }
    app.act(&shift, ids[0], json!({"action": "accept"})).await;
    app.act(&shift, ids[0], json!({"action": "file"})).await;

    let intake = Browser::login(&app, "intake").await;
    let home = intake.get("/").await.html;
    assert!(home.contains("data-queue=\"new\"") && home.contains("<span class=\"count\">2</span>"), "two to accept");
    for id in &ids[1..] {
        assert!(home.contains(&format!("href=\"/cases/{id}\"")), "case {id} listed");
    }
    assert!(!home.contains(&format!("href=\"/cases/{}\"", ids[0])), "the filed case is not intake's");

    let dispatch = Browser::login(&app, "dispatch").await;
    let home = dispatch.get("/").await.html;
    assert!(home.contains("data-queue=\"to_dispatch\""), "the dispatcher's first queue");
    assert!(home.contains(&format!("href=\"/cases/{}\"", ids[0])));
    // The partial the live feed refreshes is the queue alone.
    let part = dispatch.get("/queue?q=to_dispatch").await;
    assert_eq!(part.status, StatusCode::OK);
    assert!(part.html.starts_with("<section id=\"queue\"") && part.html.contains("hx-trigger=\"live\""));
    assert!(!part.html.contains("<header"), "no frame in the partial");
    // A bad filter is a clear refusal, not an empty list.
    assert_eq!(dispatch.get("/?q=to_dispatch&grid=abc").await.status, StatusCode::BAD_REQUEST);

    // Past the step's deadline the row turns red, and the overdue queue has it.
    app.clock.advance(SignedDuration::from_hours(24 * 10));
    let late = dispatch.get("/?q=overdue").await.html;
    assert!(late.contains("class=\"warn-red\"") && late.contains(&format!("href=\"/cases/{}\"", ids[0])));
    assert!(late.contains("<span class=\"light red\""), "the colour has a text equivalent");

    // A grid worker's queues are their grids' checks and verifications, and their own reports.
    let gw = Browser::login(&app, "gw001").await;
    assert!(gw.get("/").await.html.contains("data-queue=\"to_check\""));
    let gw_token = app.login("gw001").await;
    let (_, me) = app.get("/api/v1/auth/me", Some(&gw_token)).await;
    let own_grid = app.town.layout.grids.iter().position(|g| me["grids"][0] == g.code.as_str()).expect("gw001's grid");
    let own = app.create(&gw_token, own_grid).await["id"].as_i64().expect("id");
    let other = app.create(&shift, own_grid).await["id"].as_i64().expect("id");
    let mine = gw.get("/?q=mine").await.html;
    assert!(mine.contains("aria-current=\"page\" data-queue=\"mine\""), "the tab is open");
    assert!(mine.contains(&format!("href=\"/cases/{own}\"")), "their own report");
    assert!(!mine.contains(&format!("href=\"/cases/{other}\"")), "not someone else's in their grid");
    assert!(
        gw.get("/?q=open").await.html.contains(&format!("href=\"/cases/{other}\"")),
        "which their grid's queue has"
    );
}

#[tokio::test]
async fn the_case_page_offers_only_the_steps_of_this_post_now_and_takes_them() {
    let app = spawn_app().await;
    let intake_token = app.login("intake").await;
    let mut report = app.report(0);
    report["description"] = json!("井盖缺失 <script>alert('x')</script> & 危险");
    report["source"] = json!("hotline12345");
    let (s, case) = app.post("/api/v1/cases", Some(&intake_token), &report).await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let id = case["id"].as_i64().expect("id");

    let intake = Browser::login(&app, "intake").await;
    let page = intake.get(&format!("/cases/{id}")).await.html;
    let steps = offered(&page);
    assert!(steps.contains(&"accept".to_owned()) && steps.contains(&"request_check".to_owned()), "{steps:?}");
    assert!(!steps.iter().any(|s| s == "file" || s == "dispatch" || s == "close"), "{steps:?}");
    // User text is text.
    assert!(page.contains("井盖缺失 &#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62; &#38; 危险"), "shown as typed");
    assert!(!page.contains("<script>alert"), "the description is escaped");
    // Intake calls reporters back: the phone is shown in full; the dispatcher sees it masked.
    assert!(page.contains("13812345678"));
    let dispatch = Browser::login(&app, "dispatch").await;
    let seen = dispatch.get(&format!("/cases/{id}")).await.html;
    assert!(!seen.contains("13812345678") && seen.contains("138****5678"), "masked for the dispatcher");
    assert_eq!(offered(&seen), ["merge"], "the dispatcher may only merge a new report");

    // A reason-required step without a reason comes back with the message beside the reason.
    // (Intake asks the shift leader to void a public report rather than voiding it.)
    assert!(steps.contains(&"request_void".to_owned()) && !steps.contains(&"void".to_owned()), "{steps:?}");
    let r = intake.step(id, &[("action", "request_void")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.html.contains("id=\"request_void-reason-error\""), "the error is beside the reason");
    assert!(r.html.contains("data-action=\"request_void\" open>"), "that form is open");

    let r = intake.step(id, &[("action", "accept")]).await;
    assert_eq!((r.status, r.location), (StatusCode::SEE_OTHER, Some(format!("/cases/{id}"))));
    let shift = Browser::login(&app, "shift").await;
    assert!(offered(&shift.get(&format!("/cases/{id}")).await.html).contains(&"file".to_owned()));
    assert_eq!(shift.step(id, &[("action", "file")]).await.status, StatusCode::SEE_OTHER);

    // The dispatcher's form lists the departments; without a lead it is refused beside the picker.
    let page = dispatch.get(&format!("/cases/{id}")).await.html;
    assert!(offered(&page).contains(&"dispatch".to_owned()));
    assert!(page.contains("<option value=\"huanwei\""), "departments to pick");
    let r = dispatch.step(id, &[("action", "dispatch")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.html.contains("id=\"dispatch-lead-error\""));
    // A stale page (someone acted meanwhile) is refused, not applied to the changed case.
    let r = dispatch
        .submit(
            &format!("/cases/{id}/act"),
            &page,
            &[("action", "dispatch"), ("lead", "huanwei"), ("version", "1")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "version 1 is not the case's");
    let r = dispatch.step(id, &[("action", "dispatch"), ("lead", "huanwei"), ("co", "chengguan")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let (_, stored) = app.get(&format!("/api/v1/cases/{id}"), Some(&intake_token)).await;
    assert_eq!((stored["state"].as_str(), stored["lead_dept"].as_str()), (Some("dispatched"), Some("huanwei")));
    assert_eq!(stored["co_depts"], json!(["chengguan"]));

    // The department signs; the timeline names who did each step, newest first.
    let dept = Browser::login(&app, "dept_huanwei").await;
    assert_eq!(dept.step(id, &[("action", "sign")]).await.status, StatusCode::SEE_OTHER);
    let page = dept.get(&format!("/cases/{id}")).await.html;
    let timeline = &page[page.find("class=\"timeline").expect("timeline")..];
    let order: Vec<usize> = ["签收", "派遣", "立案", "受理", "上报"]
        .iter()
        .map(|step| timeline.find(&format!("<strong>{step}</strong>")).expect(step))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "newest first: {order:?}");
    assert!(offered(&page).contains(&"reply".to_owned()), "{:?}", offered(&page));
}

#[tokio::test]
async fn operators_report_a_case_with_a_photo_once_however_often_the_form_is_sent() {
    let app = spawn_app().await;
    let intake = Browser::login(&app, "intake").await;
    let form = intake.get("/report").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.html.contains("<option value=\"06010\">暴露垃圾 · bllj"), "pinyin initials");
    let place = app.point_in_grid(1);
    let (lat, lon) = (place["lat"].to_string(), place["lon"].to_string());
    let key =
        form.html.split("name=\"key\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("key").to_owned();
    let fields = [
        ("key", key.as_str()),
        ("matter", "06010"),
        ("source", "hotline12345"),
        ("urgency", "urgent"),
        ("description", "桥下有人倾倒建筑垃圾"),
        ("lat", lat.as_str()),
        ("lon", lon.as_str()),
        ("address", "清源路 18 号"),
        ("reporter_name", "王五"),
        ("reporter_phone", "13900001111"),
    ];
    let photo = || civicgrid_demo::photos::jpeg(64, 48, [120, 90, 60], None, None);
    // Without a place the form comes back, filled in, with the message beside the map.
    let missing: Vec<(&str, &str)> = fields.iter().copied().filter(|(k, _)| *k != "lat").collect();
    let r = intake.submit("/report", &form.html, &missing, vec![photo()]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.html.contains("id=\"location-error\"") && r.html.contains("桥下有人倾倒建筑垃圾"));

    let r = intake.submit("/report", &form.html, &fields, vec![photo()]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let id = case_id(r.location.as_deref().expect("to the case"));
    let again = intake.submit("/report", &form.html, &fields, vec![photo()]).await;
    assert_eq!(again.location, r.location, "a second send of the same form is the same case: {}", again.html);
    let token = app.login("intake").await;
    let (_, case) = app.get(&format!("/api/v1/cases/{id}"), Some(&token)).await;
    assert_eq!((case["urgency"].as_str(), case["source"].as_str()), (Some("urgent"), Some("hotline12345")));
    assert_eq!(case["attachments"].as_array().map(Vec::len), Some(1), "{case}");
    let page = intake.get(&format!("/cases/{id}")).await.html;
    assert!(page.contains("/thumbnail\""), "the photo is shown as a thumbnail");
}

#[tokio::test]
async fn pages_switch_to_english_and_stay_there() {
    let app = spawn_app().await;
    let shift = Browser::login(&app, "shift").await;
    let r = shift.get("/lang?to=en&next=/inbox").await;
    assert_eq!(r.location.as_deref(), Some("/inbox"));
    let english = Browser { cookie: format!("{}; cg_lang=en", shift.cookie), ..shift };
    let inbox = english.get("/inbox").await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(inbox.html.contains("<html lang=\"en\">") && inbox.html.contains(">Inbox<"));
    let home = english.get("/").await.html;
    assert!(home.contains("To file") && home.contains("Log out"), "English labels");
}

/// The cockpit is a page for the watching posts: its tabs, its post view, and the labels its script
/// draws with, in the reader's language; others do not see it in their menu and are refused.
#[tokio::test]
async fn the_cockpit_page_belongs_to_the_watching_posts() {
    let app = spawn_app().await;
    let commander = Browser::login(&app, "commander").await;
    let home = commander.get("/").await;
    assert!(home.html.contains("href=\"/cockpit\""), "in the commander's menu");
    let page = commander.get("/cockpit").await;
    assert_eq!(page.status, StatusCode::OK);
    for tab in ["平安", "数说经济", "城乡融合", "幸福民生"] {
        assert!(page.html.contains(&format!(">{tab}</button>")), "tab {tab}");
    }
    assert!(page.html.contains("href=\"/cockpit?view=commander\" data-view=\"commander\" aria-current=\"page\""));
    assert!(page.html.contains("id=\"rotate\" checked"), "the commander's screen rotates");
    // The script's data sits in an attribute, escaped, and reads back as JSON with every label.
    let data = cockpit_data(&page.html);
    assert_eq!((data["view"].as_str(), data["screen"].as_str()), (Some("commander"), Some("safety")));
    assert_eq!(data["text"]["state.reported"], "待受理");
    assert_eq!(data["text"]["cockpit.panel.map"], "案件分布");
    assert_eq!(data["workstations"].as_array().map(Vec::len), Some(app.town.layout.workstations.len()));

    let supervisor = Browser::login(&app, "supervisor").await;
    let page = supervisor.get("/cockpit?screen=economy").await;
    assert!(page.html.contains("data-view=\"supervisor\" aria-current=\"page\""), "a desk post's own view");
    assert!(!page.html.contains("id=\"rotate\" checked"), "a desk post's screen stays put");
    assert_eq!(cockpit_data(&page.html)["screen"], "economy");
    let odd = supervisor.get("/cockpit?view=%3Cscript%3E&screen=nowhere").await;
    let data = cockpit_data(&odd.html);
    assert_eq!((data["view"].as_str(), data["screen"].as_str()), (Some("supervisor"), Some("safety")));
    assert!(!odd.html.contains("<script>"));
    let english = Browser { cookie: format!("{}; cg_lang=en", supervisor.cookie), ..supervisor };
    let page = english.get("/cockpit").await;
    assert!(page.html.contains(">Safety</button>") && page.html.contains("Most overdue"));
    assert_eq!(cockpit_data(&page.html)["text"]["state.reported"], "Reported");

    for post in ["intake", "gw001", "dept_huanwei"] {
        let b = Browser::login(&app, post).await;
        assert!(!b.get("/").await.html.contains("href=\"/cockpit\""), "{post}'s menu");
        let refused = b.get("/cockpit").await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{post}");
        assert!(refused.html.contains("驾驶舱仅对"));
    }
}

/// The cockpit script's data: the page's `data-cockpit` attribute, unescaped.
fn cockpit_data(html: &str) -> Value {
    let attr = html.split("data-cockpit=\"").nth(1).and_then(|r| r.split('"').next()).expect("data");
    let text = [
        ("&#34;", "\""),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&amp;", "&"),
    ]
    .iter()
    .fold(attr.to_owned(), |t, (from, to)| t.replace(from, to));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The KPI page: a unit's table over a period with its total, links to the usual periods, the same
/// table as a workbook through the session cookie, a clear refusal of a bad period, and no page for the
/// posts that do not read KPIs.
#[tokio::test]
async fn the_kpi_page_shows_a_table_and_exports_it() {
    let app = spawn_app().await;
    let runner = civicgrid_service::jobs::JobRunner::standard(app.state.services.clone(), "test-node");
    let intake_token = app.login("intake").await;
    for grid in [0, 1, 1] {
        app.create(&intake_token, grid).await;
    }
    while runner.run_once().await.expect("jobs") > 0 {}
    let shift = Browser::login(&app, "shift").await;
    assert!(shift.get("/").await.html.contains("href=\"/kpi\""), "in the shift leader's menu");
    let page = shift.get("/kpi?dim=grid&from=2026-11-01&to=2026-11-30").await;
    assert_eq!(page.status, StatusCode::OK);
    let name = |n: usize| app.town.layout.grids[n].name_zh.clone();
    assert!(page.html.contains(&format!("<th scope=\"row\">{}</th><td>1</td>", name(0))), "{}", page.html);
    assert!(page.html.contains(&format!("<th scope=\"row\">{}</th><td>2</td>", name(1))));
    assert!(page.html.contains("<tr class=\"total\">") && page.html.contains("<th scope=\"row\">合计</th><td>3</td>"));
    assert!(page.html.contains("<a href=\"/kpi?dim=grid&#38;from=2026-10-01&#38;to=2026-10-31\">上月</a>"));
    let month = shift.get("/kpi?dim=grid&from=2026-11-01&to=2026-11-23").await;
    assert!(month.html.contains("to=2026-11-23\" aria-current=\"true\">本月</a>"), "the period shown is marked");
    let xlsx = "/api/v1/kpi.xlsx?dim=grid&#38;from=2026-11-01&#38;to=2026-11-30";
    assert!(page.html.contains(&format!("href=\"{xlsx}\" download")), "the export button");
    let resp = shift
        .http
        .get(format!("{}{}", app.base, xlsx.replace("&#38;", "&")))
        .header(COOKIE, &shift.cookie)
        .send()
        .await
        .expect("xlsx");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.expect("body").starts_with(b"PK"), "a workbook");
    // The default is this month's workstations; the people table scores each post.
    let default = shift.get("/kpi").await;
    assert!(default.html.contains("aria-current=\"page\">工作站</a>"));
    assert!(shift.get("/kpi?dim=person").await.html.contains("网格员"));
    let bad = shift.get("/kpi?dim=grid&from=2026-11-30&to=2026-11-01").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.html.contains("class=\"error\" role=\"alert\""));
    let intake = Browser::login(&app, "intake").await;
    assert!(!intake.get("/").await.html.contains("href=\"/kpi\""));
    assert_eq!(intake.get("/kpi").await.status, StatusCode::FORBIDDEN);
}

/// The administrator's pages change what the API serves: an account made and disabled, a service
/// account's key issued once and revoked, a holiday added, a time limit changed, a routing rule and a
/// roster shift set; a refusal is shown on the page and changes nothing; no other post gets in.
#[tokio::test]
async fn administrators_run_the_town_from_their_pages() {
    let app = spawn_app().await;
    let admin = Browser::login(&app, "admin").await;
    let admin_token = app.login("admin").await;
    assert_eq!(admin.get("/admin").await.location.as_deref(), Some("/admin/users"));
    let page = admin.get("/admin/users").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("<td>gw001</td>") && page.html.contains("href=\"/admin\""));
    // 23 November: 2027's holidays are due and not entered, so every section says so (until they are, below).
    assert!(page.html.contains("data-calendar-missing>2027 年的法定节假日"), "{}", page.html);
    let token = csrf(&page.html);
    let grid = app.town.layout.grids[2].code.to_string();

    // A grid worker without a grid is refused beside nothing created; with one, the account logs in.
    let base = [
        ("csrf", token.as_str()),
        ("username", "gw_new"),
        ("display_name", "新网格员"),
        ("role", "grid_worker"),
        ("password", "a-long-password-1"),
    ];
    let refused = admin.post("/admin/users", &base).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.html.contains("class=\"error\" role=\"alert\""));
    assert!(!refused.html.contains("<td>gw_new</td>"));
    let made = admin.post("/admin/users", &[&base[..], &[("grids", grid.as_str())]].concat()).await;
    assert_eq!(made.location.as_deref(), Some("/admin/users?done=user_created"));
    assert!(admin.get("/admin/users?done=user_created").await.html.contains("账号已创建"));
    let (s, _) =
        app.post("/api/v1/auth/login", None, &json!({"username": "gw_new", "password": "a-long-password-1"})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, users) = app.get("/api/v1/users", Some(&admin_token)).await;
    let id = users.as_array().expect("users").iter().find(|u| u["username"] == "gw_new").expect("made")["id"]
        .as_i64()
        .expect("id");
    assert_eq!(
        admin.post(&format!("/admin/users/{id}"), &[("csrf", &token), ("op", "disable")]).await.status,
        StatusCode::SEE_OTHER
    );
    let (s, _) =
        app.post("/api/v1/auth/login", None, &json!({"username": "gw_new", "password": "a-long-password-1"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "disabled");
    assert_eq!(
        admin.post(&format!("/admin/users/{id}"), &[("csrf", "0".repeat(32).as_str()), ("op", "enable")]).await.status,
        StatusCode::FORBIDDEN
    );

    // A key is shown once, works, and stops working when revoked.
    assert_eq!(
        admin
            .post("/admin/integrations", &[("csrf", &token), ("name", "fixmystreet"), ("channel", "open311")])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let (_, accounts) = app.get("/api/v1/service-accounts", Some(&admin_token)).await;
    let account =
        accounts.as_array().expect("accounts").iter().find(|a| a["name"] == "fixmystreet").expect("made")["id"]
            .as_i64()
            .expect("id");
    let issued = admin.post(&format!("/admin/integrations/{account}"), &[("csrf", &token), ("op", "issue")]).await;
    assert_eq!(issued.status, StatusCode::OK);
    let key =
        issued.html.split("<code>").nth(1).and_then(|r| r.split("</code>").next()).expect("the key, once").to_owned();
    assert!(key.starts_with("cgk_"));
    assert_eq!(app.get("/api/v1/code-tables/matters", Some(&key)).await.0, StatusCode::OK);
    assert!(!admin.get("/admin/integrations").await.html.contains(&key), "never shown again");
    let (_, accounts) = app.get("/api/v1/service-accounts", Some(&admin_token)).await;
    let key_id =
        accounts.as_array().expect("accounts").iter().find(|a| a["id"] == account).expect("it")["keys"][0]["id"]
            .as_i64()
            .expect("key id");
    assert_eq!(
        admin.post(&format!("/admin/integrations/{key_id}"), &[("csrf", &token), ("op", "revoke")]).await.status,
        StatusCode::SEE_OTHER
    );

    // Next year's New Year's Day.
    let add = [
        ("csrf", token.as_str()),
        ("op", "add"),
        ("date", "2027-01-01"),
        ("kind", "holiday"),
        ("name_zh", "元旦"),
        ("name_en", "New Year's Day"),
    ];
    assert_eq!(admin.post("/admin/calendar", &add).await.status, StatusCode::SEE_OTHER);
    let (_, calendar) = app.get("/api/v1/calendar", Some(&admin_token)).await;
    assert!(
        calendar.as_array().expect("entries").iter().any(|e| e["date"] == "2027-01-01" && e["name_zh"] == "元旦"),
        "{calendar}"
    );
    assert!(admin.get("/admin/calendar").await.html.contains("<td>2027-01-01</td>"));
    assert!(!admin.get("/admin/users").await.html.contains("data-calendar-missing"), "2027 has a row now");

    // The dispatch limit becomes 45 working minutes; everything else stays as it was.
    let (_, before) = app.get("/api/v1/sla-policy", Some(&admin_token)).await;
    let sla_page = admin.get("/admin/sla").await.html;
    let mut form: Vec<(String, String)> = vec![("csrf".into(), token.clone())];
    for path in civicgrid_http::ui::admin::LIMITS {
        let limit = path.split('.').fold(&before, |v, k| &v[k]);
        let amount = if path == "dispatch.normal" { "45".to_owned() } else { limit["amount"].to_string() };
        let unit = if path == "dispatch.normal" {
            "working_minutes".to_owned()
        } else {
            limit["unit"].as_str().expect("unit").to_owned()
        };
        assert!(sla_page.contains(&format!("name=\"{path}.amount\"")));
        form.push((format!("{path}.amount"), amount));
        form.push((format!("{path}.unit"), unit));
    }
    for n in civicgrid_http::ui::admin::NUMBERS {
        form.push((n.into(), before[n].to_string()));
    }
    let multiples: Vec<String> =
        before["escalate_multiples"].as_array().expect("ladder").iter().map(|m| m.to_string()).collect();
    form.push(("escalate_multiples".into(), multiples.join(",")));
    if before["centre_around_the_clock"] == true {
        form.push(("centre_around_the_clock".into(), "on".into()));
    }
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let saved = admin.post("/admin/sla", &fields).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
    let (_, after) = app.get("/api/v1/sla-policy", Some(&admin_token)).await;
    assert_eq!(after["dispatch"]["normal"], json!({"unit": "working_minutes", "amount": 45}));
    assert_eq!(
        (&after["sign"], &after["warn_percent"], &after["per_matter"]),
        (&before["sign"], &before["warn_percent"], &before["per_matter"])
    );
    let mut bad = fields.clone();
    bad.retain(|(k, _)| *k != "warn_percent");
    bad.push(("warn_percent", "5"));
    let refused = admin.post("/admin/sla", &bad).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "a warning at 5 % is refused");
    assert_eq!(app.get("/api/v1/sla-policy", Some(&admin_token)).await.1, after, "and changes nothing");

    // A routing rule: 06010 in one grid goes to 城管. The demo's rule for the matter town-wide stays,
    // and a second rule with the same criteria is refused.
    let twice = [("csrf", token.as_str()), ("op", "add"), ("matter", "06010"), ("lead", "chengguan")];
    assert_eq!(admin.post("/admin/routing", &twice).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let rule =
        [("csrf", token.as_str()), ("op", "add"), ("matter", "06010"), ("grid", grid.as_str()), ("lead", "chengguan")];
    let added = admin.post("/admin/routing", &rule).await;
    assert_eq!(
        added.status,
        StatusCode::SEE_OTHER,
        "{}",
        added.html.split("role=\"alert\">").nth(1).unwrap_or_default()
    );
    let (_, rules) = app.get("/api/v1/routing-rules", Some(&admin_token)).await;
    assert!(
        rules["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["matter"] == "06010" && r["grid"] == grid.as_str() && r["lead"] == "chengguan"),
        "{rules}"
    );

    // The day shift's intake operator on 23 November is intake2.
    let intake2 = users.as_array().expect("users").iter().find(|u| u["username"] == "intake2").expect("intake2")["id"]
        .to_string();
    let shift = [
        ("csrf", token.as_str()),
        ("op", "set"),
        ("date", "2026-11-23"),
        ("shift", "day"),
        ("post", "intake_operator"),
        ("department", ""),
        ("users", intake2.as_str()),
        ("from", "2026-11-23"),
    ];
    let set = admin.post("/admin/roster", &shift).await;
    let why =
        set.html.split("role=\"alert\">").nth(1).unwrap_or_default().split("<").next().unwrap_or_default().to_owned();
    assert_eq!(set.location.as_deref(), Some("/admin/roster?done=roster&from=2026-11-23"), "{why}");
    let (_, roster) = app.get("/api/v1/duty-roster?from=2026-11-23&to=2026-11-23", Some(&admin_token)).await;
    let on: Vec<String> = roster
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["shift"] == "day" && e["post"] == "intake_operator")
        .map(|e| e["user_id"].to_string())
        .collect();
    assert_eq!(on, vec![intake2]);
    // The week's table counts the departments with someone on duty, or names one department's people.
    let week = admin.get("/admin/roster?from=2026-11-23").await.html;
    assert!(week.contains("个部门已排班"), "departments counted");
    let one = admin.get("/admin/roster?from=2026-11-23&dept=huanwei").await.html;
    assert!(
        !one.contains("个部门已排班") && one.contains("<option value=\"huanwei\" selected>"),
        "one department shown"
    );
    assert!(admin.get("/admin/departments").await.html.contains("<td>huanwei</td>"));
    // A new department under 城管 can be dispatched to at once; a department cannot be its own parent.
    let dept = [
        ("csrf", token.as_str()),
        ("code", "chengguan-3"),
        ("name_zh", "城管执法三中队"),
        ("name_en", "Enforcement squad 3"),
        ("parent", "chengguan"),
    ];
    assert_eq!(admin.post("/admin/departments", &dept).await.status, StatusCode::SEE_OTHER);
    let (_, departments) = app.get("/api/v1/departments", Some(&admin_token)).await;
    assert!(
        departments
            .as_array()
            .expect("departments")
            .iter()
            .any(|d| d["code"] == "chengguan-3" && d["parent"] == "chengguan")
    );
    let own = [("csrf", token.as_str()), ("code", "chengguan-3"), ("name_zh", "三中队"), ("parent", "chengguan-3")];
    assert_eq!(admin.post("/admin/departments", &own).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app.put("/api/v1/departments/Bad Code", &admin_token, &json!({"name_zh": "x"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let shift_leader = Browser::login(&app, "shift").await;
    assert!(!shift_leader.get("/").await.html.contains("href=\"/admin\""));
    assert_eq!(shift_leader.get("/admin/users").await.status, StatusCode::FORBIDDEN);
    assert_eq!(admin.get("/admin/nowhere").await.status, StatusCode::NOT_FOUND);
}

/// An intranet tile server in the configuration reaches the small maps (`data-tiles`) and the
/// content security policy lets its images in; without one, neither changes.
#[tokio::test]
async fn a_configured_tile_server_reaches_the_maps_and_the_policy() {
    let template = "https://t0.tianditu.local/vec_w/{z}/{x}/{y}.png";
    let config = HttpConfig { map_tiles: Some(template.into()), ..HttpConfig::default() };
    let app = spawn_app_configured(civicgrid_http::ServeOptions::default(), config).await;
    let shift = Browser::login(&app, "shift").await;
    let resp = shift.http.get(format!("{}/report", app.base)).header(COOKIE, &shift.cookie).send().await.expect("get");
    let policy = resp.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(policy.contains("img-src 'self' data: blob: https://t0.tianditu.local;"), "{policy}");
    let html = resp.text().await.expect("body");
    assert!(html.contains("data-tiles=\"https://t0.tianditu.local/vec_w/{z}/{x}/{y}.png\""), "the maps' tiles");

    let plain = spawn_app().await;
    let shift = Browser::login(&plain, "shift").await;
    let resp =
        shift.http.get(format!("{}/report", plain.base)).header(COOKIE, &shift.cookie).send().await.expect("get");
    assert!(!resp.headers()["content-security-policy"].to_str().expect("ascii").contains("tianditu"));
    assert!(!resp.text().await.expect("body").contains("data-tiles"));
}

/// The alarms console: a cover knocked open shows as a critical alarm with its case and the
/// people-counting checkpoints with their thresholds; the shift leader acknowledges it from the page;
/// an analyst reads the page without the button, a grid worker is refused it.
#[tokio::test]
async fn the_alarms_page_lists_alarms_and_acknowledges_them() {
    let app = spawn_app().await;
    let cover = app
        .store
        .devices()
        .await
        .expect("devices")
        .into_iter()
        .find(|d| d.kind == civicgrid_core::iot::DeviceKind::ManholeCover)
        .expect("a cover");
    let counter = app
        .store
        .devices()
        .await
        .expect("devices")
        .into_iter()
        .find(|d| d.kind == civicgrid_core::iot::DeviceKind::PeopleCounter)
        .expect("a counter");
    for (d, body) in [
        (&cover, json!({"values": {"cover_open": 1}})),
        (&counter, json!({"values": {"count_in": 120, "count_out": 20}})),
    ] {
        app.state.services.ingest(d, body.to_string().as_bytes()).await.expect("stored");
    }

    let shift = Browser::login(&app, "shift").await;
    let page = shift.get("/alarms").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("井盖开启") && page.html.contains("sev-critical"), "{}", page.html);
    assert!(page.html.contains("/cases/"), "the alarm's case is linked");
    let checkpoint = counter.checkpoint.clone().expect("checkpoint");
    assert!(page.html.contains(&checkpoint) && page.html.contains("100 / 2000"), "occupancy against the threshold");
    let alarm = app.state.services.alarms(&civicgrid_core::access::Actor::system("test"), Default::default()).await;
    assert!(alarm.is_err(), "the system is no post on duty");
    let at = page.html.find("/alarms/").expect("an ack form");
    let action: String = page.html[at..].chars().take_while(|c| *c != '"').collect();
    let r = shift.post(&action, &[("csrf", &csrf(&page.html))]).await;
    assert_eq!((r.status, r.location.as_deref()), (StatusCode::SEE_OTHER, Some("/alarms")));
    let after = shift.get("/alarms").await;
    assert!(after.html.contains("已确认") && !after.html.contains(&format!("action=\"{action}\"")), "{}", after.html);

    let analyst = Browser::login(&app, "analyst").await;
    let read = analyst.get("/alarms").await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(!read.html.contains("/ack\""), "no button for analysts");
    assert_eq!(Browser::login(&app, "gw001").await.get("/alarms").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_case_page_shows_the_current_step_s_escalation_beside_the_case_s_highest() {
    let app = spawn_app().await;
    let (shift, supervisor) = (app.login("shift").await, app.login("supervisor").await);
    let id = app.create(&shift, 0).await["id"].as_i64().expect("id");
    let browser = Browser::login(&app, "shift").await;
    for _ in 0..civicgrid_core::case::MAX_ESCALATION_LEVEL {
        let (s, c) = app.act(&supervisor, id, json!({"action": "escalate"})).await;
        assert_eq!(s, StatusCode::OK, "{c}");
    }
    let page = browser.get(&format!("/cases/{id}")).await.html;
    assert!(page.contains("督办 3</span>") && !page.contains("本环节督办"), "one level, the step's own");
    for step in
        [json!({"action": "accept"}), json!({"action": "file"}), json!({"action": "dispatch", "lead": "huanwei"})]
    {
        let (s, c) = app.act(&shift, id, step).await;
        assert_eq!(s, StatusCode::OK, "{c}");
    }
    let page = browser.get(&format!("/cases/{id}")).await.html;
    assert!(page.contains("督办 3</span>") && page.contains("本环节督办 0</span>"), "the new step is not escalated");
    let (s, c) = app.act(&supervisor, id, json!({"action": "escalate"})).await;
    assert_eq!((s, c["escalation_level"].as_i64(), c["step_escalation"].as_i64()), (StatusCode::OK, Some(3), Some(1)));
    let page = browser.get(&format!("/cases/{id}")).await.html;
    assert!(page.contains("督办 3</span>") && page.contains("本环节督办 1</span>"), "{page}");
}
