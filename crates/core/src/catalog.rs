//! The national code tables (部件 component classes and 管理事项 matters), parsed from the reference CSVs.
//!
//! The CSVs in `crates/core/seed/` are byte-for-byte copies of `shared/reference/`; they are embedded so
//! the binary needs no files at run time. A test checks the copies still match the shared originals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codes::{ComponentClassCode, MatterCode};

/// The embedded `components.csv` (GB/T 47678.5-2026 Annex A).
pub const COMPONENTS_CSV: &str = include_str!("../seed/components.csv");
/// The embedded `matters.csv` (GB/T 47678.5-2026 Annex C).
pub const MATTERS_CSV: &str = include_str!("../seed/matters.csv");

/// Why a code table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A CSV row could not be parsed.
    #[error("row {row}: {message}")]
    Row {
        /// 1-based data row number.
        row: usize,
        /// What was wrong.
        message: String,
    },
}

/// One component class (部件类型).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentClass {
    /// 5-digit class code.
    pub code: ComponentClassCode,
    /// 2-digit major class.
    pub major_code: String,
    /// Major class name, e.g. 市政公用设施.
    pub major_name_zh: String,
    /// Chinese name, e.g. 供水井盖.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// 4-digit code of the 2013 scheme, where the names clearly match.
    pub legacy_code: Option<String>,
}

/// One matter (管理事项): a kind of problem a case can be about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Matter {
    /// 5-digit matter code.
    pub code: MatterCode,
    /// 2-digit major class.
    pub major_code: String,
    /// Major class name, e.g. 市容环境类.
    pub major_name_zh: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// The component class this matter is the fault of (classes 01–05 only).
    pub component_code: Option<ComponentClassCode>,
    /// Legacy code, if any.
    pub legacy_code: Option<String>,
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn rows(text: &str) -> impl Iterator<Item = (usize, Result<csv::StringRecord, csv::Error>)> + '_ {
    csv::Reader::from_reader(text.as_bytes()).into_records().enumerate().map(|(i, r)| (i + 1, r))
}

fn field<'a>(rec: &'a csv::StringRecord, i: usize, row: usize, name: &str) -> Result<&'a str, CatalogError> {
    rec.get(i).ok_or_else(|| CatalogError::Row { row, message: format!("missing column {name}") })
}

fn code<T: std::str::FromStr<Err = crate::codes::CodeError>>(s: &str, row: usize) -> Result<T, CatalogError> {
    s.parse().map_err(|e: crate::codes::CodeError| CatalogError::Row { row, message: e.to_string() })
}

/// Parses `components.csv` text.
pub fn parse_components(text: &str) -> Result<Vec<ComponentClass>, CatalogError> {
    rows(text)
        .map(|(row, rec)| {
            let rec = rec.map_err(|e| CatalogError::Row { row, message: e.to_string() })?;
            Ok(ComponentClass {
                code: code(field(&rec, 0, row, "code")?, row)?,
                major_code: field(&rec, 1, row, "major_code")?.to_owned(),
                major_name_zh: field(&rec, 2, row, "major_name_zh")?.to_owned(),
                name_zh: field(&rec, 3, row, "name_zh")?.to_owned(),
                name_en: field(&rec, 4, row, "name_en")?.to_owned(),
                legacy_code: non_empty(rec.get(5)),
            })
        })
        .collect()
}

/// Parses `matters.csv` text.
pub fn parse_matters(text: &str) -> Result<Vec<Matter>, CatalogError> {
    rows(text)
        .map(|(row, rec)| {
            let rec = rec.map_err(|e| CatalogError::Row { row, message: e.to_string() })?;
            let component_code = match non_empty(rec.get(5)) {
                Some(c) => Some(code(&c, row)?),
                None => None,
            };
            Ok(Matter {
                code: code(field(&rec, 0, row, "code")?, row)?,
                major_code: field(&rec, 1, row, "major_code")?.to_owned(),
                major_name_zh: field(&rec, 2, row, "major_name_zh")?.to_owned(),
                name_zh: field(&rec, 3, row, "name_zh")?.to_owned(),
                name_en: field(&rec, 4, row, "name_en")?.to_owned(),
                component_code,
                legacy_code: non_empty(rec.get(6)),
            })
        })
        .collect()
}

/// Both code tables, indexed by code.
#[derive(Debug, Clone)]
pub struct Catalog {
    components: BTreeMap<ComponentClassCode, ComponentClass>,
    matters: BTreeMap<MatterCode, Matter>,
}

impl Catalog {
    /// The national tables embedded in the binary.
    pub fn national() -> Result<Self, CatalogError> {
        Ok(Self::new(parse_components(COMPONENTS_CSV)?, parse_matters(MATTERS_CSV)?))
    }

    /// Builds a catalogue from parsed rows.
    pub fn new(components: Vec<ComponentClass>, matters: Vec<Matter>) -> Self {
        Self {
            components: components.into_iter().map(|c| (c.code, c)).collect(),
            matters: matters.into_iter().map(|m| (m.code, m)).collect(),
        }
    }

    /// A component class by code.
    pub fn component_class(&self, code: ComponentClassCode) -> Option<&ComponentClass> {
        self.components.get(&code)
    }

    /// A matter by code.
    pub fn matter(&self, code: MatterCode) -> Option<&Matter> {
        self.matters.get(&code)
    }

    /// All component classes in code order.
    pub fn component_classes(&self) -> impl Iterator<Item = &ComponentClass> {
        self.components.values()
    }

    /// All matters in code order.
    pub fn matters(&self) -> impl Iterator<Item = &Matter> {
        self.matters.values()
    }

    /// The fault matter of a component class, e.g. 路灯 → 路灯异常.
    pub fn fault_matter_of(&self, class: ComponentClassCode) -> Option<&Matter> {
        self.matters.values().find(|m| m.component_code == Some(class))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_tables_have_the_standard_counts() {
        let cat = Catalog::national().expect("embedded tables parse");
        assert_eq!(cat.component_classes().count(), 153);
        assert_eq!(cat.matters().count(), 250);
        let with_component = cat.matters().filter(|m| m.component_code.is_some()).count();
        assert_eq!(with_component, 153);
    }

    #[test]
    fn gaps_in_numbering_are_kept() {
        let cat = Catalog::national().expect("embedded tables parse");
        for gap in ["01016", "05001", "05004", "05008"] {
            assert!(cat.component_class(gap.parse().expect("code")).is_none(), "{gap} must stay absent");
        }
    }

    #[test]
    fn every_fault_matter_points_at_an_existing_component_class() {
        let cat = Catalog::national().expect("embedded tables parse");
        for m in cat.matters() {
            if let Some(c) = m.component_code {
                assert!(cat.component_class(c).is_some(), "{} → {c}", m.code);
            }
        }
    }

    #[test]
    fn embedded_copies_match_shared_reference_when_present() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference");
        for (name, embedded) in [
            ("components.csv", COMPONENTS_CSV),
            ("matters.csv", MATTERS_CSV),
            ("workcalendar-cn-2026.csv", crate::calendar::CALENDAR_2026_CSV),
        ] {
            if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
                assert_eq!(text, embedded, "{name} drifted from shared/reference");
            }
        }
    }

    #[test]
    fn malformed_row_is_reported_with_its_number() {
        let bad = "code,major_code,major_name_zh,name_zh,name_en,legacy_code\n01001,01,a,b,c,\n1x,01,a,b,c,\n";
        match parse_components(bad) {
            Err(CatalogError::Row { row, .. }) => assert_eq!(row, 2),
            other => panic!("expected row error, got {other:?}"),
        }
    }
}
