//! Coordinate systems a position may arrive in, and their conversion to the internal one.
//!
//! civicgrid stores positions in WGS84 (CGCS2000 differs from it by centimetres, well below any
//! grid boundary's precision, so the two are taken as one). Phones and the Chinese map SDKs report
//! GCJ-02 (the national offset system, WeChat's and Amap's default) or BD-09 (Baidu's offset on top of
//! GCJ-02); those are converted back here, with the `coordtransform` crate's iterated inverse, which
//! is accurate to well under a metre. Every intake that takes a position takes its system's tag.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::case::GeoPoint;

/// The coordinate system a position is given in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CoordSystem {
    /// WGS84, as GPS receivers and surveys report it (the internal system).
    #[default]
    Wgs84,
    /// CGCS2000, China's geodetic datum, taken as WGS84 (they differ by centimetres).
    Cgcs2000,
    /// GCJ-02 (国测局坐标), reported by WeChat, Amap and Tencent maps.
    Gcj02,
    /// BD-09 (百度坐标), reported by Baidu maps.
    Bd09,
}

impl CoordSystem {
    /// Every system, in the order forms list them.
    pub const ALL: [CoordSystem; 4] =
        [CoordSystem::Wgs84, CoordSystem::Cgcs2000, CoordSystem::Gcj02, CoordSystem::Bd09];

    /// The tag used in JSON and forms.
    pub fn as_str(self) -> &'static str {
        match self {
            CoordSystem::Wgs84 => "wgs84",
            CoordSystem::Cgcs2000 => "cgcs2000",
            CoordSystem::Gcj02 => "gcj02",
            CoordSystem::Bd09 => "bd09",
        }
    }

    /// Parses a tag, case-insensitively (`WGS84`, `gcj02`, `BD09`, also `gcj-02` and `bd-09`).
    pub fn parse(tag: &str) -> Option<Self> {
        let t = tag.trim().to_ascii_lowercase().replace('-', "");
        Self::ALL.into_iter().find(|s| s.as_str() == t)
    }

    /// The point in WGS84. Positions outside mainland China carry no offset and come back unchanged;
    /// a point that is not finite and in range is returned as it is, for the caller's range check.
    pub fn to_wgs84(self, p: GeoPoint) -> GeoPoint {
        if !p.is_wgs84() {
            return p;
        }
        let (lon, lat) = match self {
            CoordSystem::Wgs84 | CoordSystem::Cgcs2000 => (p.lon, p.lat),
            CoordSystem::Gcj02 => coordtransform::gcj02_to_wgs84(p.lon, p.lat),
            CoordSystem::Bd09 => coordtransform::bd09_to_wgs84(p.lon, p.lat),
        };
        GeoPoint { lon, lat }
    }

    /// The WGS84 point expressed in this system (for maps drawn in GCJ-02 or BD-09).
    pub fn from_wgs84(self, p: GeoPoint) -> GeoPoint {
        if !p.is_wgs84() {
            return p;
        }
        let (lon, lat) = match self {
            CoordSystem::Wgs84 | CoordSystem::Cgcs2000 => (p.lon, p.lat),
            CoordSystem::Gcj02 => coordtransform::wgs84_to_gcj02(p.lon, p.lat),
            CoordSystem::Bd09 => coordtransform::wgs84_to_bd09(p.lon, p.lat),
        };
        GeoPoint { lon, lat }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::distance_m;

    fn pt(lat: f64, lon: f64) -> GeoPoint {
        GeoPoint { lon, lat }
    }

    /// Published reference pairs (WGS84 lat/lon → GCJ-02 lat/lon) used by the eviltransform ports
    /// in every language: Shanghai, Shenzhen, Beijing.
    const WGS_GCJ: [(f64, f64, f64, f64); 3] = [
        (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
        (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
        (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
    ];

    /// BD-09 is defined as an offset of GCJ-02 (Baidu's published forward formula); this pair is
    /// that formula evaluated by hand for Tiananmen: GCJ-02 lat/lon → BD-09 lat/lon.
    const GCJ_BD: (f64, f64, f64, f64) = (39.915, 116.404, 39.92133699351021, 116.41036949371029);

    #[test]
    fn gcj02_reference_points_convert_both_ways() {
        for (wlat, wlon, glat, glon) in WGS_GCJ {
            let g = CoordSystem::Gcj02.from_wgs84(pt(wlat, wlon));
            assert!(distance_m(g, pt(glat, glon)) < 0.01, "forward {g:?} vs ({glat}, {glon})");
            let w = CoordSystem::Gcj02.to_wgs84(pt(glat, glon));
            assert!(distance_m(w, pt(wlat, wlon)) < 0.5, "inverse {w:?} vs ({wlat}, {wlon})");
        }
    }

    #[test]
    fn bd09_reference_point_converts_to_wgs84() {
        let (glat, glon, blat, blon) = GCJ_BD;
        let wgs = CoordSystem::Gcj02.to_wgs84(pt(glat, glon));
        assert!(distance_m(CoordSystem::Bd09.from_wgs84(wgs), pt(blat, blon)) < 0.01);
        let back = CoordSystem::Bd09.to_wgs84(pt(blat, blon));
        assert!(distance_m(back, wgs) < 0.5, "{back:?} vs {wgs:?}");
    }

    #[test]
    fn offsets_are_hundreds_of_metres_in_jiangsu_and_wgs84_is_untouched() {
        let p = pt(31.63, 119.85);
        let g = CoordSystem::Gcj02.from_wgs84(p);
        let b = CoordSystem::Bd09.from_wgs84(p);
        assert!((100.0..1000.0).contains(&distance_m(p, g)), "GCJ-02 offset {}", distance_m(p, g));
        assert!(distance_m(g, b) > 500.0, "BD-09 adds its own offset");
        assert_eq!(CoordSystem::Wgs84.to_wgs84(p), p);
        assert_eq!(CoordSystem::Cgcs2000.to_wgs84(p), p);
        assert!(distance_m(CoordSystem::Bd09.to_wgs84(b), p) < 0.5);
    }

    #[test]
    fn tags_parse_loosely_and_nonsense_is_refused() {
        assert_eq!(CoordSystem::parse("GCJ-02"), Some(CoordSystem::Gcj02));
        assert_eq!(CoordSystem::parse("bd09"), Some(CoordSystem::Bd09));
        assert_eq!(CoordSystem::parse(" WGS84 "), Some(CoordSystem::Wgs84));
        assert_eq!(CoordSystem::parse("utm"), None);
        let nan = pt(f64::NAN, 120.0);
        assert!(!CoordSystem::Gcj02.to_wgs84(nan).is_wgs84());
    }
}
