//! Outbound notification channels: how an alert is written and signed for each kind of receiver, and
//! the delivery job that posts it. A delivery that fails (no answer, a non-2xx status, a robot's
//! non-zero `errcode`) is retried by the job runner with backoff and kept as a dead letter after its
//! last attempt.
//!
//! - **Webhook:** the message as JSON; `X-Civicgrid-Timestamp` (Unix seconds) and
//!   `X-Civicgrid-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, and
//!   `X-Civicgrid-Delivery` (the same on every retry, so the receiver can drop repeats).
//! - **WeCom (企业微信) group robot:** `{"msgtype":"markdown","markdown":{"content":…}}`; the robot's key
//!   is part of its URL.
//! - **DingTalk (钉钉) group robot:** `{"msgtype":"markdown","markdown":{"title":…,"text":…}}`, signed as
//!   DingTalk specifies: `timestamp` (ms) and `sign` = URL-encoded base64 of HMAC-SHA256(secret,
//!   "<timestamp>\n<secret>") appended to the URL.
//! - **SMS gateway:** `{"phones":[…],"text":…}` with the webhook's signature headers; skipped when no
//!   recipient has a phone.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use civicgrid_core::duty::Severity;
use civicgrid_store::{ChannelKind, Job, NotifyChannel};
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Services;

/// Job kind: one message to one channel.
pub const DELIVER: &str = "notify.deliver";
/// How long a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What an alert says, as sent out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// What happened.
    pub kind: String,
    /// How much it matters.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// Details.
    pub body: String,
    /// The case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<i64>,
    /// The case number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_number: Option<String>,
    /// When the alert was raised.
    pub at: Timestamp,
    /// The recipients' phones (SMS only; never sent to other channels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
}

/// Input of a delivery job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverPayload {
    /// The channel.
    pub channel_id: i64,
    /// The message.
    pub message: Message,
}

/// A request ready to post: URL, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where.
    pub url: String,
    /// Extra headers (besides `Content-Type: application/json`).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
}

/// Hex HMAC-SHA256 of `data` under `secret`.
pub fn hmac_hex(secret: &str, data: &[u8]) -> String {
    crate::accounts::hex(&hmac_bytes(secret, data))
}

fn hmac_bytes(secret: &str, data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn markdown(m: &Message) -> String {
    let number = m.case_number.as_deref().map(|n| format!("\n> 案卷 {n}")).unwrap_or_default();
    format!("**{}**\n> {}{number}", m.title, m.body)
}

/// Checks where messages go and what they are signed with: an http:// URL of at most 500 characters
/// (the receivers sit on the intranet) and a secret of 16–256 printable characters; both trimmed.
pub(crate) fn check_target(url: &str, secret: &str) -> crate::ServiceResult<(String, String)> {
    let url = url.trim();
    if url.len() > 500 || !url.starts_with("http://") || url.chars().any(char::is_whitespace) {
        return Err(crate::ServiceError::invalid("url", "an http:// URL of at most 500 characters"));
    }
    let secret = secret.trim();
    if !(16..=256).contains(&secret.chars().count()) || secret.chars().any(char::is_control) {
        return Err(crate::ServiceError::invalid("secret", "16 to 256 printable characters"));
    }
    Ok((url.to_owned(), secret.to_owned()))
}

/// A JSON `body` for `url`, signed with `secret` at Unix time `now` as the webhooks are:
/// `X-Civicgrid-Timestamp`, `X-Civicgrid-Signature: sha256=<HMAC(secret, "<timestamp>.<body>")>` and
/// `X-Civicgrid-Delivery`.
pub fn signed(url: &str, secret: &str, body: String, delivery: &str, now: Timestamp) -> Outgoing {
    let ts = now.as_second().to_string();
    let sig = hmac_hex(secret, format!("{ts}.{body}").as_bytes());
    Outgoing {
        url: url.to_owned(),
        headers: vec![
            ("X-Civicgrid-Timestamp", ts),
            ("X-Civicgrid-Signature", format!("sha256={sig}")),
            ("X-Civicgrid-Delivery", delivery.to_owned()),
        ],
        body,
    }
}

/// Writes (and signs) `m` for `channel`, at Unix time `now`; `None` when there is nothing to send (an
/// SMS with no phone numbers).
pub fn outgoing(channel: &NotifyChannel, m: &Message, delivery: &str, now: Timestamp) -> Option<Outgoing> {
    let signed = |body: String| signed(&channel.url, &channel.secret, body, delivery, now);
    match channel.kind {
        ChannelKind::Webhook => {
            let public = Message { phones: Vec::new(), ..m.clone() };
            Some(signed(serde_json::json!({ "delivery": delivery, "message": public }).to_string()))
        }
        ChannelKind::Sms => {
            if m.phones.is_empty() {
                return None;
            }
            Some(signed(
                serde_json::json!({ "phones": m.phones, "text": format!("【城市网格】{}", m.title) }).to_string(),
            ))
        }
        ChannelKind::Wecom => Some(Outgoing {
            url: channel.url.clone(),
            headers: Vec::new(),
            body: serde_json::json!({ "msgtype": "markdown", "markdown": { "content": markdown(m) } }).to_string(),
        }),
        ChannelKind::Dingtalk => {
            let ms = now.as_millisecond();
            let sign = base64::engine::general_purpose::STANDARD
                .encode(hmac_bytes(&channel.secret, format!("{ms}\n{}", channel.secret).as_bytes()));
            let sign = sign.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
            let sep = if channel.url.contains('?') { '&' } else { '?' };
            Some(Outgoing {
                url: format!("{}{sep}timestamp={ms}&sign={sign}", channel.url),
                headers: Vec::new(),
                body: serde_json::json!({
                    "msgtype": "markdown",
                    "markdown": { "title": m.title, "text": format!("### {}\n\n{}", m.title, markdown(m)) },
                })
                .to_string(),
            })
        }
    }
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_else(|_| reqwest::Client::new()))
}

/// Posts `out`; an error for anything but a 2xx answer (and, from a robot, `errcode` 0).
pub async fn post(out: &Outgoing) -> Result<(), String> {
    let mut req = client().post(&out.url).header("Content-Type", "application/json");
    for (k, v) in &out.headers {
        req = req.header(*k, v);
    }
    let resp = req.body(out.body.clone()).send().await.map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    let errcode = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("errcode").and_then(serde_json::Value::as_i64))
        .unwrap_or(0);
    if errcode != 0 {
        return Err(format!("refused with errcode {errcode}"));
    }
    Ok(())
}

/// The handler of [`DELIVER`].
pub(crate) async fn run_deliver(services: &Services, job: &Job) -> Result<(), String> {
    let p: DeliverPayload = serde_json::from_value(job.payload.clone()).map_err(|e| e.to_string())?;
    let channels = services.store.channels().await.map_err(|e| e.to_string())?;
    let Some(channel) = channels.into_iter().find(|c| c.id == p.channel_id && c.disabled_at.is_none()) else {
        return Ok(());
    };
    match outgoing(&channel, &p.message, &job.effect_key, services.clock.now()) {
        Some(out) => post(&out).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(kind: ChannelKind, url: &str) -> NotifyChannel {
        NotifyChannel {
            id: 1,
            name: "x".into(),
            kind,
            url: url.into(),
            secret: "SEC0123456789abcdef".into(),
            min_severity: Severity::Warning,
            created_at: Timestamp::UNIX_EPOCH,
            disabled_at: None,
        }
    }

    fn message() -> Message {
        Message {
            kind: "sla_breach".into(),
            severity: Severity::Critical,
            title: "红灯".into(),
            body: "暴露垃圾".into(),
            case_id: Some(7),
            case_number: Some("320585".into()),
            at: Timestamp::UNIX_EPOCH,
            phones: vec!["13800000000".into()],
        }
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hmac_hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_webhook_is_signed_over_timestamp_and_body_and_carries_no_phones() {
        let now = Timestamp::from_second(1_764_000_000).expect("valid");
        let out = outgoing(&channel(ChannelKind::Webhook, "http://h/x"), &message(), "d1", now).expect("sent");
        let ts = &out.headers[0].1;
        assert_eq!(ts, "1764000000");
        let expected = hmac_hex("SEC0123456789abcdef", format!("{ts}.{}", out.body).as_bytes());
        assert_eq!(out.headers[1].1, format!("sha256={expected}"));
        assert!(!out.body.contains("13800000000"));
    }

    #[test]
    fn dingtalk_signs_in_the_url_and_sms_without_phones_sends_nothing() {
        let now = Timestamp::from_second(1_764_000_000).expect("valid");
        let out = outgoing(&channel(ChannelKind::Dingtalk, "http://h/robot/send?access_token=t"), &message(), "d", now)
            .expect("sent");
        assert!(out.url.starts_with("http://h/robot/send?access_token=t&timestamp=1764000000000&sign="), "{}", out.url);
        assert!(!out.url.contains('+') && !out.url.ends_with('='));
        let none = Message { phones: vec![], ..message() };
        assert_eq!(outgoing(&channel(ChannelKind::Sms, "http://h/sms"), &none, "d", now), None);
    }
}
