//! The town's matters as Open311 GeoReport v2 services: one service per matter code (group = its
//! major class, keywords = its names and pinyin-free codes), and for some matters a service definition
//! with typed attributes (the questions an outside app asks before it reports), checked on a report.
//!
//! The definitions here are the town's, written once: a lamp fault asks what the lamp does, a
//! component fault may name the component, rubbish may come with its volume, noise with when it is
//! heard. Every datatype of the specification appears at least once.

use civicgrid_core::catalog::Matter;
use civicgrid_core::codes::MatterCode;
use serde::Serialize;

use crate::{ServiceError, ServiceResult, Services};

/// One Open311 service (a matter).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Open311Service {
    /// The matter code.
    pub service_code: String,
    /// Its Chinese name.
    pub service_name: String,
    /// Its major class and English name.
    pub description: String,
    /// Whether it has a service definition with attributes.
    pub metadata: bool,
    /// Always `realtime`: a report gets its id at once.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Comma-separated search words.
    pub keywords: String,
    /// The major class's name.
    pub group: String,
}

/// The datatypes of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datatype {
    /// One line.
    String,
    /// A number.
    Number,
    /// A W3C date-time.
    Datetime,
    /// Free text.
    Text,
    /// One key of `values`.
    Singlevaluelist,
    /// Any keys of `values`.
    Multivaluelist,
}

/// One question of a service definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    /// Always `true`: these are questions for the reporter.
    pub variable: bool,
    /// Its code (the `attribute[code]` of a report).
    pub code: &'static str,
    /// Its datatype.
    pub datatype: Datatype,
    /// Whether a report must answer it.
    pub required: bool,
    /// What an answer looks like.
    pub datatype_description: &'static str,
    /// Its place among the questions.
    pub order: u32,
    /// The question.
    pub description: &'static str,
    /// The choices of a list.
    pub values: Vec<Choice>,
}

/// One choice of a list attribute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    /// Its key.
    pub key: &'static str,
    /// Its name.
    pub name: &'static str,
}

/// A service definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceDefinition {
    /// The service.
    pub service_code: String,
    /// Its questions.
    pub attributes: Vec<Attribute>,
}

const fn choice(key: &'static str, name: &'static str) -> Choice {
    Choice { key, name }
}

/// The questions of a matter, in order.
fn questions(m: &Matter) -> Vec<Attribute> {
    let mut out = Vec::new();
    let mut ask = |code, datatype, required, datatype_description, description, values: Vec<Choice>| {
        let order = out.len() as u32 + 1;
        out.push(Attribute {
            variable: true,
            code,
            datatype,
            required,
            datatype_description,
            order,
            description,
            values,
        });
    };
    if m.component_code.is_some() {
        ask("component_id", Datatype::String, false, "17 位部件编码（部件上的标牌）", "部件编码", vec![]);
    }
    match m.code.as_str() {
        "01037" => ask(
            "lamp_fault",
            Datatype::Singlevaluelist,
            true,
            "选一项",
            "路灯的情况",
            vec![
                choice("dark", "夜间不亮"),
                choice("day_on", "白天常亮"),
                choice("flicker", "闪烁"),
                choice("pole", "灯杆损坏"),
            ],
        ),
        "06010" => {
            ask("volume", Datatype::Number, false, "立方米，0–1000", "估计体量", vec![]);
            ask("seen_at", Datatype::Datetime, false, "发现时间，如 2026-11-24T08:30:00+08:00", "何时发现", vec![]);
        }
        "06028" => {
            ask(
                "periods",
                Datatype::Multivaluelist,
                true,
                "可多选",
                "噪声出现的时段",
                vec![
                    choice("morning", "早晨"),
                    choice("day", "白天"),
                    choice("evening", "傍晚"),
                    choice("night", "夜间（22:00–06:00）"),
                ],
            );
            ask("source_note", Datatype::Text, false, "不超过 500 字", "噪声来源（如施工、商铺音响）", vec![]);
        }
        _ => {}
    }
    out
}

/// The Open311 service of a matter.
fn service_of(m: &Matter) -> Open311Service {
    Open311Service {
        service_code: m.code.to_string(),
        service_name: m.name_zh.clone(),
        description: format!("{}：{}（{}）", m.major_name_zh, m.name_zh, m.name_en),
        metadata: !questions(m).is_empty(),
        kind: "realtime",
        keywords: [m.name_zh.as_str(), m.name_en.as_str(), m.major_name_zh.as_str()].join(","),
        group: m.major_name_zh.clone(),
    }
}

impl Services {
    /// Every matter as an Open311 service, in code order (public: outside apps list them before they
    /// have a key).
    pub fn open311_services(&self) -> Vec<Open311Service> {
        let mut out: Vec<Open311Service> = self.world().catalog.matters().map(service_of).collect();
        out.sort_by(|a, b| a.service_code.cmp(&b.service_code));
        out
    }

    /// The service definition of a matter that has questions; `NotFound` otherwise.
    pub fn open311_definition(&self, code: &str) -> ServiceResult<ServiceDefinition> {
        let code: MatterCode = code.parse().map_err(|_| ServiceError::NotFound("service"))?;
        let world = self.world();
        let matter = world.catalog.matter(code).ok_or(ServiceError::NotFound("service"))?;
        let attributes = questions(matter);
        if attributes.is_empty() {
            return Err(ServiceError::NotFound("service definition"));
        }
        Ok(ServiceDefinition { service_code: code.to_string(), attributes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_is_asked_somewhere() {
        let catalog = civicgrid_core::catalog::Catalog::national().expect("catalog");
        let asked: Vec<Datatype> = catalog.matters().flat_map(questions).map(|a| a.datatype).collect();
        for d in [
            Datatype::String,
            Datatype::Number,
            Datatype::Datetime,
            Datatype::Text,
            Datatype::Singlevaluelist,
            Datatype::Multivaluelist,
        ] {
            assert!(asked.contains(&d), "{d:?}");
        }
        let lamp = catalog.matter("01037".parse().expect("code")).expect("lamp");
        let q = questions(lamp);
        assert_eq!(
            q.iter().map(|a| (a.code, a.order)).collect::<Vec<_>>(),
            vec![("component_id", 1), ("lamp_fault", 2)]
        );
        assert!(service_of(lamp).metadata);
        let plain = catalog.matters().find(|m| questions(m).is_empty()).expect("a matter without questions");
        assert!(!service_of(plain).metadata);
    }
}
