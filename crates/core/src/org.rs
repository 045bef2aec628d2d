//! Departments (部门): the tree of bodies cases are dispatched to, identified by short stable codes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a department code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("department code must be 1–32 characters of a–z, 0–9, '_' or '-', got {0:?}")]
pub struct DeptCodeError(pub String);

/// A department's stable code, e.g. `chengguan` or `water`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[a-z0-9_-]{1,32}$")]
pub struct DeptCode(String);

impl DeptCode {
    /// The code as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeptCode {
    type Err = DeptCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok { Ok(Self(s.to_owned())) } else { Err(DeptCodeError(s.chars().take(40).collect())) }
    }
}

impl TryFrom<String> for DeptCode {
    type Error = DeptCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeptCode> for String {
    fn from(d: DeptCode) -> String {
        d.0
    }
}

impl fmt::Display for DeptCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeptCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeptCode({})", self.0)
    }
}

/// A department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Department {
    /// Stable code.
    pub code: DeptCode,
    /// Chinese name, e.g. 城管中队.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// Parent department, for sub-units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<DeptCode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dept_codes_are_lowercase_slugs() {
        assert!("chengguan".parse::<DeptCode>().is_ok());
        assert!("water-2".parse::<DeptCode>().is_ok());
        assert!("".parse::<DeptCode>().is_err());
        assert!("Water".parse::<DeptCode>().is_err());
        assert!("城管".parse::<DeptCode>().is_err());
        assert!("a".repeat(33).parse::<DeptCode>().is_err());
    }
}
