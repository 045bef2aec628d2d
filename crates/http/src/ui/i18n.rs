//! The pages' words: one catalogue per language (`crates/http/i18n/*.json`, flat `key → text`),
//! compiled in. Simplified Chinese is the default; English is one click away. A test checks that both
//! catalogues have the same keys and that every key the templates and handlers ask for exists.
//! Also the town's local time as the pages show it.

use std::collections::HashMap;
use std::sync::LazyLock;

use civicgrid_core::access::Role;
use civicgrid_core::case::CaseState;
use jiff::Timestamp;

/// A language of the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// 简体中文, the default.
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The BCP 47 tag, as in `<html lang>` and the language cookie.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The language a cookie value names; anything else is the default.
    pub fn from_tag(tag: &str) -> Lang {
        if tag.eq_ignore_ascii_case("en") { Lang::En } else { Lang::Zh }
    }

    /// The other language (the switch in the page header).
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// This language's catalogue.
    pub fn catalog(self) -> &'static Catalog {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }
}

/// The source text of the catalogues, by language tag.
pub const SOURCES: [(&str, &str); 2] =
    [("zh-CN", include_str!("../../i18n/zh-CN.json")), ("en", include_str!("../../i18n/en.json"))];

static ZH: LazyLock<Catalog> = LazyLock::new(|| Catalog::parse(SOURCES[0].1));
static EN: LazyLock<Catalog> = LazyLock::new(|| Catalog::parse(SOURCES[1].1));

/// One language's texts by key.
#[derive(Debug)]
pub struct Catalog {
    texts: HashMap<String, String>,
}

impl Catalog {
    /// Reads a catalogue; a malformed one is empty (and the key-parity test fails).
    pub fn parse(json: &str) -> Catalog {
        Catalog { texts: serde_json::from_str(json).unwrap_or_default() }
    }

    /// Every key.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.texts.keys().map(String::as_str)
    }

    /// The text of `key`; the key itself when missing (a test keeps that from shipping).
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.texts.get(key).map_or(key, String::as_str)
    }

    /// The label of a case state.
    pub fn state(&self, s: CaseState) -> &str {
        self.lookup("state.", s.as_str())
    }

    /// The label of a step (an action's snake_case name).
    pub fn action(&self, name: &str) -> &str {
        self.lookup("action.", name)
    }

    /// The name of a post.
    pub fn role(&self, r: Role) -> &str {
        self.lookup("role.", r.as_str())
    }

    fn lookup(&self, prefix: &str, name: &str) -> &str {
        self.texts.get(&format!("{prefix}{name}")).map_or("?", String::as_str)
    }
}

/// An instant in the town's time (UTC+8), `YYYY-MM-DD HH:MM`.
pub fn local_time(at: Timestamp) -> String {
    civicgrid_core::calendar::local(at).strftime("%Y-%m-%d %H:%M").to_string()
}

/// A span of working seconds as hours and minutes, `-` before it when the deadline has passed.
pub fn working_span(seconds: i64, lang: Lang) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let minutes = seconds.abs() / 60;
    let (h, m) = (minutes / 60, minutes % 60);
    match lang {
        Lang::Zh => format!("{sign}{h}小时{m:02}分"),
        Lang::En => format!("{sign}{h} h {m:02} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_catalogues_have_the_same_keys() {
        let zh: std::collections::BTreeSet<&str> = ZH.keys().collect();
        let en: std::collections::BTreeSet<&str> = EN.keys().collect();
        assert!(zh.len() > 100, "the catalogues parse ({} keys)", zh.len());
        assert_eq!(zh.difference(&en).collect::<Vec<_>>(), Vec::<&&str>::new(), "in zh-CN only");
        assert_eq!(en.difference(&zh).collect::<Vec<_>>(), Vec::<&&str>::new(), "in en only");
    }

    #[test]
    fn every_state_role_and_step_has_a_label() {
        for lang in [Lang::Zh, Lang::En] {
            let t = lang.catalog();
            for s in CaseState::ALL {
                assert_ne!(t.state(s), "?", "{s} in {}", lang.tag());
            }
            for r in Role::ALL {
                assert_ne!(t.role(r), "?", "{r:?} in {}", lang.tag());
            }
        }
        // The Chinese state labels are the core's own.
        for s in CaseState::ALL {
            assert_eq!(ZH.state(s), s.label_zh());
        }
    }

    /// Every `t.get("…")` in the templates and the UI's Rust code names a key of the catalogue.
    #[test]
    fn every_key_asked_for_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources = Vec::new();
        for dir in ["templates", "src/ui"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("dir") {
                let path = entry.expect("entry").path();
                sources.push(std::fs::read_to_string(&path).expect("read"));
            }
        }
        let mut asked = 0;
        for text in &sources {
            let calls = text.match_indices("t.get(\"").filter(|(i, _)| {
                // `t.get(` itself, not `sent.get(` or `set.get(`.
                !text[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            for (i, call) in calls {
                let part = &text[i + call.len()..];
                let key = part.split('"').next().unwrap_or_default();
                // Keys are dotted snake_case; anything else is prose about keys (like this test's doc).
                if key.is_empty()
                    || !key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._".contains(c))
                {
                    continue;
                }
                asked += 1;
                assert!(ZH.texts.contains_key(key), "missing key {key:?}");
            }
        }
        assert!(asked > 50, "the scan found the keys ({asked})");
    }

    /// Every `T('…')` in the cockpit's script names a key the page hands it (a `cockpit.` key).
    #[test]
    fn every_key_the_cockpit_script_asks_for_exists() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/src/cockpit.js");
        let text = std::fs::read_to_string(path).expect("cockpit.js");
        let keys: Vec<&str> =
            text.match_indices("T('").map(|(i, m)| &text[i + m.len()..]).filter_map(|r| r.split('\'').next()).collect();
        assert!(keys.len() > 30, "the scan found the keys ({})", keys.len());
        for key in keys {
            assert!(key.starts_with("cockpit."), "{key} is not handed to the script");
            for lang in [&*ZH, &*EN] {
                assert!(lang.texts.contains_key(key), "missing key {key:?}");
            }
        }
    }

    #[test]
    fn spans_and_times_read_naturally() {
        assert_eq!(working_span(3 * 3600 + 20 * 60, Lang::Zh), "3小时20分");
        assert_eq!(working_span(-65 * 60, Lang::En), "-1 h 05 min");
        let t: Timestamp = "2026-11-23T01:05:00Z".parse().expect("time");
        assert_eq!(local_time(t), "2026-11-23 09:05");
    }
}
