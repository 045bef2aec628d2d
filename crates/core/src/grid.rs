//! The administrative hierarchy — town → workstation (village/community) → grid → micro-grid — and the
//! spatial index that finds the micro-grid (and so the grid) containing a point, in microseconds.

pub use geo::Polygon;
use geo::{BoundingRect, InteriorPoint, Intersects};
use geo::{Coord, Point};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::case::GeoPoint;
use crate::codes::{CommunityCode, GridCode, MicroGridCode, TownCode};

/// Why a polygon was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Not a GeoJSON Polygon.
    #[error("expected a GeoJSON Polygon: {0}")]
    NotPolygon(String),
    /// A coordinate is outside WGS84 ranges or not finite.
    #[error("coordinates must be finite WGS84 longitude/latitude")]
    OutOfRange,
    /// The outer ring has fewer than 4 positions or is not closed.
    #[error("a polygon ring needs at least 4 positions and must be closed")]
    BadRing,
}

/// Parses a GeoJSON Polygon geometry (WGS84) into a polygon.
pub fn polygon_from_geojson(value: &serde_json::Value) -> Result<Polygon<f64>, GeometryError> {
    let geometry = serde_json::from_value::<geojson::Geometry>(value.clone())
        .map_err(|e| GeometryError::NotPolygon(e.to_string()))?;
    let polygon: Polygon<f64> = Polygon::try_from(geometry).map_err(|e| GeometryError::NotPolygon(e.to_string()))?;
    let ok = |c: &Coord<f64>| c.x.is_finite() && c.y.is_finite() && c.x.abs() <= 180.0 && c.y.abs() <= 90.0;
    for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
        if ring.0.len() < 4 || ring.0.first() != ring.0.last() {
            return Err(GeometryError::BadRing);
        }
        if !ring.0.iter().all(ok) {
            return Err(GeometryError::OutOfRange);
        }
    }
    Ok(polygon)
}

/// The GeoJSON geometry of a polygon.
pub fn polygon_to_geojson(polygon: &Polygon<f64>) -> serde_json::Value {
    serde_json::to_value(geojson::Geometry::from(polygon)).unwrap_or(serde_json::Value::Null)
}

/// Whether a workstation serves a village or an urban community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkstationKind {
    /// 村.
    Village,
    /// 社区.
    Community,
}

/// The town (镇) itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Town {
    /// 9-digit town code.
    pub code: TownCode,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
}

/// A village/community workstation (工作站).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workstation {
    /// 12-digit community code.
    pub code: CommunityCode,
    /// Chinese name.
    pub name_zh: String,
    /// Village or community.
    pub kind: WorkstationKind,
}

/// A unit grid (网格, about 500 households) or a micro-grid (微网格) inside one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Grid {
    /// 15-digit unit-grid code.
    pub code: GridCode,
    /// Its workstation.
    pub community: CommunityCode,
    /// Chinese name.
    pub name_zh: String,
    /// Households living in it.
    pub households: u32,
    /// The responsible grid worker's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_user_id: Option<i64>,
    /// Boundary, WGS84.
    #[schema(value_type = Object)]
    pub polygon: Polygon<f64>,
}

/// A micro-grid (微网格).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MicroGrid {
    /// 17-digit micro-grid code.
    pub code: MicroGridCode,
    /// Chinese name.
    pub name_zh: String,
    /// Households living in it.
    pub households: u32,
    /// The responsible grid worker's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_user_id: Option<i64>,
    /// Boundary, WGS84.
    #[schema(value_type = Object)]
    pub polygon: Polygon<f64>,
}

impl MicroGrid {
    /// The unit grid this micro-grid belongs to.
    pub fn grid(&self) -> GridCode {
        self.code.grid()
    }
}

type Entry = GeomWithData<Rectangle<[f64; 2]>, usize>;

/// An R-tree over micro-grid bounding boxes, refined by exact point-in-polygon tests.
#[derive(Debug)]
pub struct GridIndex {
    tree: RTree<Entry>,
    cells: Vec<(MicroGridCode, Polygon<f64>)>,
}

impl GridIndex {
    /// Builds the index; micro-grids are kept in code order so shared edges resolve deterministically.
    pub fn new(micro_grids: impl IntoIterator<Item = (MicroGridCode, Polygon<f64>)>) -> Self {
        let mut cells: Vec<(MicroGridCode, Polygon<f64>)> = micro_grids.into_iter().collect();
        cells.sort_by_key(|(c, _)| *c);
        let entries = cells
            .iter()
            .enumerate()
            .filter_map(|(i, (_, p))| {
                let r = p.bounding_rect()?;
                Some(GeomWithData::new(Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]), i))
            })
            .collect();
        Self { tree: RTree::bulk_load(entries), cells }
    }

    /// Number of micro-grids indexed.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// A point inside the workstation (村/社区) `community`: inside its first micro-grid. Where a report
    /// names a village or community rather than a place (a suggestion left at its liaison station).
    pub fn point_in_community(&self, community: CommunityCode) -> Option<GeoPoint> {
        let (_, polygon) = self.cells.iter().find(|(code, _)| code.grid().community() == community)?;
        let p = polygon.interior_point()?;
        Some(GeoPoint { lon: p.x(), lat: p.y() })
    }

    /// The middle of the town's extent (where day and night are reckoned for the lamps).
    pub fn centre(&self) -> Option<GeoPoint> {
        use rstar::Envelope;
        if self.cells.is_empty() {
            return None;
        }
        let [lon, lat] = self.tree.root().envelope().center();
        Some(GeoPoint { lon, lat })
    }

    /// The micro-grid containing the point (a point on a shared edge goes to the lowest code).
    pub fn locate(&self, p: GeoPoint) -> Option<MicroGridCode> {
        let point = Point::new(p.lon, p.lat);
        self.tree
            .locate_in_envelope_intersecting(AABB::from_point([p.lon, p.lat]))
            .map(|e| e.data)
            .filter(|&i| self.cells[i].1.intersects(&point))
            .min()
            .map(|i| self.cells[i].0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    fn square(x: f64, y: f64, d: f64) -> Polygon<f64> {
        polygon![(x: x, y: y), (x: x + d, y: y), (x: x + d, y: y + d), (x: x, y: y + d), (x: x, y: y)]
    }

    fn code(i: u16) -> MicroGridCode {
        MicroGridCode::new("320585100001001".parse().expect("grid"), i).expect("code")
    }

    #[test]
    fn locates_points_in_a_tiling_and_misses_outside() {
        let idx = GridIndex::new((0..4).map(|i| (code(i), square(120.0 + f64::from(i) * 0.01, 31.0, 0.01))));
        assert_eq!(idx.locate(GeoPoint { lon: 120.005, lat: 31.005 }), Some(code(0)));
        assert_eq!(idx.locate(GeoPoint { lon: 120.035, lat: 31.001 }), Some(code(3)));
        assert_eq!(idx.locate(GeoPoint { lon: 120.01, lat: 31.005 }), Some(code(0)), "shared edge → lowest code");
        assert_eq!(idx.locate(GeoPoint { lon: 119.0, lat: 31.005 }), None);
        let inside = idx.point_in_community("320585100001".parse().expect("community")).expect("a point");
        assert_eq!(idx.locate(inside), Some(code(0)), "a community's point lies in its first micro-grid");
        assert_eq!(idx.point_in_community("320585100002".parse().expect("community")), None);
    }

    #[test]
    fn geojson_round_trip_and_validation() {
        let p = square(120.0, 31.0, 0.5);
        let json = polygon_to_geojson(&p);
        assert_eq!(json["type"], "Polygon");
        assert_eq!(polygon_from_geojson(&json).expect("valid"), p);
        let bad = serde_json::json!({"type": "Polygon", "coordinates": [[[200.0, 31.0], [120.0, 31.0], [120.0, 32.0], [200.0, 31.0]]]});
        assert_eq!(polygon_from_geojson(&bad), Err(GeometryError::OutOfRange));
        let point = serde_json::json!({"type": "Point", "coordinates": [120.0, 31.0]});
        assert!(matches!(polygon_from_geojson(&point), Err(GeometryError::NotPolygon(_))));
    }
}
