//! Code newtypes: the fixed-width numeric codes of the national standards, parsed once at the edge.
//!
//! Once a value is a [`GridCode`] or a [`ComponentId`], nobody re-checks it: the only way to build one is
//! to parse it. Every type serialises as its string (leading zeros matter) and deserialises through the
//! same parser, so JSON input is validated by serde.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a code string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be {len} digits, got {got:?}")]
pub struct CodeError {
    /// Which kind of code was being parsed, e.g. "grid code".
    pub kind: &'static str,
    /// The required number of digits.
    pub len: usize,
    /// The offending input (truncated to 40 characters).
    pub got: String,
}

fn digits<const N: usize>(kind: &'static str, s: &str) -> Result<[u8; N], CodeError> {
    let bytes = s.as_bytes();
    if bytes.len() != N || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(CodeError { kind, len: N, got: s.chars().take(40).collect() });
    }
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

macro_rules! numeric_code {
    ($(#[$doc:meta])* $name:ident, $len:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Number of digits in this code.
            pub const LEN: usize = $len;

            /// The code as a string slice of ASCII digits.
            pub fn as_str(&self) -> &str {
                // The bytes were checked to be ASCII digits when parsed.
                std::str::from_utf8(&self.0).unwrap_or_default()
            }
        }

        impl FromStr for $name {
            type Err = CodeError;
            fn from_str(s: &str) -> Result<Self, CodeError> {
                digits::<$len>($kind, s).map(Self)
            }
        }

        impl TryFrom<String> for $name {
            type Error = CodeError;
            fn try_from(s: String) -> Result<Self, CodeError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(c: $name) -> String {
                c.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^[0-9]{", stringify!($len), "}$")))
                    .description(Some(concat!($kind, " (", stringify!($len), " digits)")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

numeric_code!(
    /// County-level administrative division code (GB/T 2260), 6 digits, e.g. `320585`.
    DivisionCode, 6, "division code"
);
numeric_code!(
    /// Town (乡镇/街道) code: division + 3 digits (001–099 street, 100–199 town, 200–399 township).
    TownCode, 9, "town code"
);
numeric_code!(
    /// Village/community (村/社区) code, i.e. a workstation: town + 3 digits.
    CommunityCode, 12, "community code"
);
numeric_code!(
    /// Unit grid (单元网格) code: community + 3-digit serial (west→east, north→south).
    GridCode, 15, "grid code"
);
numeric_code!(
    /// Micro-grid (微网格) code: our convention, the grid code + a 2-digit serial (the standard has none).
    MicroGridCode, 17, "micro-grid code"
);
numeric_code!(
    /// Component class (部件类型) code: 2-digit major class + 3-digit minor class, e.g. `01001`.
    ComponentClassCode, 5, "component class code"
);
numeric_code!(
    /// Matter (管理事项) code: 2-digit major class + 3-digit minor class, e.g. `06001`.
    MatterCode, 5, "matter code"
);
numeric_code!(
    /// Component (部件) ID: 6-digit county division + 5-digit class + 6-digit serial.
    ComponentId, 17, "component ID"
);

macro_rules! prefix {
    ($name:ident . $method:ident -> $out:ident [$from:literal .. $to:literal]) => {
        impl $name {
            #[doc = concat!("The [`", stringify!($out), "`] this code starts with.")]
            pub fn $method(&self) -> $out {
                let mut b = [0u8; $to - $from];
                b.copy_from_slice(&self.0[$from..$to]);
                $out(b)
            }
        }
    };
}

prefix!(TownCode.division -> DivisionCode [0..6]);
prefix!(CommunityCode.town -> TownCode [0..9]);
prefix!(GridCode.community -> CommunityCode [0..12]);
prefix!(GridCode.town -> TownCode [0..9]);
prefix!(MicroGridCode.grid -> GridCode [0..15]);
prefix!(ComponentId.division -> DivisionCode [0..6]);
prefix!(ComponentId.class -> ComponentClassCode [6..11]);

impl ComponentClassCode {
    /// The 2-digit major class (01 市政公用设施 … 05 其他管理部件).
    pub fn major(&self) -> &str {
        &self.as_str()[..2]
    }
}

impl MatterCode {
    /// The 2-digit major class (01–05 component faults, 06 市容环境 … 10 其他).
    pub fn major(&self) -> &str {
        &self.as_str()[..2]
    }
}

impl TownCode {
    /// Builds a town code from a division and a 3-digit serial.
    pub fn new(division: DivisionCode, serial: u16) -> Result<Self, CodeError> {
        format!("{division}{serial:03}").parse()
    }
}

impl CommunityCode {
    /// Builds a community code from a town code and a 3-digit serial.
    pub fn new(town: TownCode, serial: u16) -> Result<Self, CodeError> {
        format!("{town}{serial:03}").parse()
    }
}

impl GridCode {
    /// Builds a grid code from a community code and a 3-digit serial.
    pub fn new(community: CommunityCode, serial: u16) -> Result<Self, CodeError> {
        format!("{community}{serial:03}").parse()
    }
}

impl MicroGridCode {
    /// Builds a micro-grid code from a grid code and a 2-digit serial.
    pub fn new(grid: GridCode, serial: u16) -> Result<Self, CodeError> {
        format!("{grid}{serial:02}").parse()
    }
}

impl ComponentId {
    /// Builds a component ID from its three parts; the serial must fit in 6 digits.
    pub fn new(division: DivisionCode, class: ComponentClassCode, serial: u32) -> Result<Self, CodeError> {
        format!("{division}{class}{serial:06}").parse()
    }

    /// The 6-digit serial within the division and class.
    pub fn serial(&self) -> u32 {
        self.as_str()[11..].parse().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grid_code_rejects_wrong_length_and_letters() {
        assert!("320585100001001".parse::<GridCode>().is_ok());
        assert!("32058510000100".parse::<GridCode>().is_err());
        assert!("3205851000010011".parse::<GridCode>().is_err());
        assert!("32058510000100a".parse::<GridCode>().is_err());
        assert!("３２０５８５１００００１００１".parse::<GridCode>().is_err(), "full-width digits");
    }

    #[test]
    fn component_id_splits_into_division_class_serial() {
        let id: ComponentId = "32058501001000123".parse().expect("valid");
        assert_eq!(id.division().as_str(), "320585");
        assert_eq!(id.class().as_str(), "01001");
        assert_eq!(id.serial(), 123);
    }

    #[test]
    fn hierarchy_prefixes_agree() {
        let g: GridCode = "320585100007012".parse().expect("valid");
        assert_eq!(g.community().as_str(), "320585100007");
        assert_eq!(g.town().as_str(), "320585100");
        assert_eq!(g.town().division().as_str(), "320585");
        let m = MicroGridCode::new(g, 3).expect("valid");
        assert_eq!(m.as_str(), "32058510000701203");
        assert_eq!(m.grid(), g);
    }

    #[test]
    fn serde_round_trips_as_string_and_rejects_bad_input() {
        let m: MatterCode = serde_json::from_str("\"06001\"").expect("valid");
        assert_eq!(serde_json::to_string(&m).expect("ser"), "\"06001\"");
        assert!(serde_json::from_str::<MatterCode>("\"6001\"").is_err());
        assert!(serde_json::from_str::<MatterCode>("6001").is_err());
    }

    proptest! {
        #[test]
        fn any_17_digit_string_round_trips(s in "[0-9]{17}") {
            let id: ComponentId = s.parse().expect("17 digits parse");
            prop_assert_eq!(id.to_string(), s.clone());
            let rebuilt = ComponentId::new(id.division(), id.class(), id.serial()).expect("rebuild");
            prop_assert_eq!(rebuilt, id);
        }

        #[test]
        fn non_digit_strings_never_parse(s in "[0-9]{0,14}[^0-9][0-9]{0,14}") {
            prop_assert!(s.parse::<GridCode>().is_err());
        }
    }
}
