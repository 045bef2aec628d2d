//! The demo town's map: workstations on a jittered lattice, cut into grid strips west→east, each cut
//! into micro-grid strips north→south. Neighbours share their edges exactly, so the polygons tile the
//! town without gaps or overlaps, and the jitter makes the result read as a map.

use civicgrid_core::codes::{CommunityCode, GridCode, MicroGridCode, TownCode};
use civicgrid_core::grid::{Grid, MicroGrid, Polygon, Workstation, WorkstationKind};
use geo::Coord;

use crate::names;

/// South-west corner of the demo town (near Kunshan, Jiangsu).
const ORIGIN: Coord<f64> = Coord { x: 120.88, y: 31.25 };

/// The town's south-west corner, where the map starts.
pub fn origin() -> civicgrid_core::case::GeoPoint {
    civicgrid_core::case::GeoPoint { lon: ORIGIN.x, lat: ORIGIN.y }
}
/// A workstation cell: about 1.6 km × 1.6 km at this latitude.
const CELL: Coord<f64> = Coord { x: 0.017, y: 0.0145 };

/// How many of each level to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Workstations (villages and communities).
    pub workstations: usize,
    /// Grids in all.
    pub grids: usize,
    /// Micro-grids in all.
    pub micro_grids: usize,
}

impl Counts {
    /// The brief's town (28 / 137 / 635) scaled; every level keeps at least one of each per parent.
    pub fn scaled(scale: f64) -> Counts {
        let n = |base: f64, min: usize| ((base * scale).round() as usize).max(min);
        let workstations = n(28.0, 1);
        let grids = n(137.0, workstations);
        let micro_grids = n(635.0, grids);
        Counts { workstations, grids, micro_grids }
    }
}

/// The generated map.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Workstations with their outlines.
    pub workstations: Vec<(Workstation, Polygon<f64>)>,
    /// Grids.
    pub grids: Vec<Grid>,
    /// Micro-grids.
    pub micro_grids: Vec<MicroGrid>,
}

fn lerp(a: Coord<f64>, b: Coord<f64>, t: f64) -> Coord<f64> {
    Coord { x: a.x + (b.x - a.x) * t, y: a.y + (b.y - a.y) * t }
}

/// A quadrilateral from its corners: south-west, south-east, north-east, north-west.
fn quad(sw: Coord<f64>, se: Coord<f64>, ne: Coord<f64>, nw: Coord<f64>) -> Polygon<f64> {
    Polygon::new(vec![sw, se, ne, nw, sw].into(), vec![])
}

/// Corners of a quad polygon made by [`quad`].
pub fn corners(p: &Polygon<f64>) -> [Coord<f64>; 4] {
    let c = &p.exterior().0;
    [c[0], c[1], c[2], c[3]]
}

/// A point inside a quad at fractions (u east, v north).
pub fn point_in(p: &Polygon<f64>, u: f64, v: f64) -> Coord<f64> {
    let [sw, se, ne, nw] = corners(p);
    lerp(lerp(sw, se, u), lerp(nw, ne, u), v)
}

/// `n` cut fractions between 0 and 1 (inclusive ends), evenly spaced with jitter.
fn cuts(n: usize, rng: &mut fastrand::Rng) -> Vec<f64> {
    let step = 1.0 / n as f64;
    (0..=n)
        .map(|i| match i {
            0 => 0.0,
            i if i == n => 1.0,
            i => i as f64 * step + (rng.f64() - 0.5) * 0.5 * step,
        })
        .collect()
}

/// Splits `total` into `parts` near-equal counts, the larger ones spread at random.
pub fn split(total: usize, parts: usize, rng: &mut fastrand::Rng) -> Vec<usize> {
    let mut out = vec![total / parts; parts];
    let mut extra: Vec<usize> = (0..parts).collect();
    rng.shuffle(&mut extra);
    for &i in extra.iter().take(total % parts) {
        out[i] += 1;
    }
    out
}

/// Generates the map of a town.
pub fn generate(town: TownCode, counts: Counts, rng: &mut fastrand::Rng) -> Layout {
    let n = counts.workstations;
    let cols = ((n as f64 * 7.0 / 4.0).sqrt().ceil() as usize).max(1);
    let rows = n.div_ceil(cols);
    // Jittered lattice of (cols + 1) × (rows + 1) vertices; ±20 % keeps every cell convex.
    let vertex: Vec<Vec<Coord<f64>>> = (0..=rows)
        .map(|j| {
            (0..=cols)
                .map(|i| Coord {
                    x: ORIGIN.x + (i as f64 + (rng.f64() - 0.5) * 0.4) * CELL.x,
                    y: ORIGIN.y + (j as f64 + (rng.f64() - 0.5) * 0.4) * CELL.y,
                })
                .collect()
        })
        .collect();
    let grids_per_ws = split(counts.grids, n, rng);
    let micro_per_grid = split(counts.micro_grids, counts.grids, rng);
    let mut layout = Layout { workstations: Vec::new(), grids: Vec::new(), micro_grids: Vec::new() };
    let mut grid_no = 0;
    for (w, &k) in grids_per_ws.iter().enumerate() {
        // Fill rows from the north so a short last row leaves a notch in the south edge.
        let (i, j) = (w % cols, rows - 1 - w / cols);
        let (sw, se, ne, nw) = (vertex[j][i], vertex[j][i + 1], vertex[j + 1][i + 1], vertex[j + 1][i]);
        let community = CommunityCode::new(town, (w + 1) as u16).unwrap_or_else(|_| unreachable_code());
        let kind = if names::is_community(w, n) { WorkstationKind::Community } else { WorkstationKind::Village };
        let ws_name = names::workstation(w, kind);
        layout
            .workstations
            .push((Workstation { code: community, name_zh: ws_name.clone(), kind }, quad(sw, se, ne, nw)));
        let xs = cuts(k, rng);
        for g in 0..k {
            let (gsw, gse) = (lerp(sw, se, xs[g]), lerp(sw, se, xs[g + 1]));
            let (gnw, gne) = (lerp(nw, ne, xs[g]), lerp(nw, ne, xs[g + 1]));
            let code = GridCode::new(community, (g + 1) as u16).unwrap_or_else(|_| unreachable_code());
            let m = micro_per_grid[grid_no];
            grid_no += 1;
            let households = 550 + rng.u32(0..350);
            layout.grids.push(Grid {
                code,
                community,
                name_zh: format!("{ws_name}第{}网格", g + 1),
                households,
                worker_user_id: None,
                polygon: quad(gsw, gse, gne, gnw),
            });
            let ys = cuts(m, rng);
            let shares = split(households as usize, m, rng);
            for s in 0..m {
                // Number micro-grids north → south.
                let (lo, hi) = (ys[m - 1 - s], ys[m - s]);
                let polygon = quad(lerp(gsw, gnw, lo), lerp(gse, gne, lo), lerp(gse, gne, hi), lerp(gsw, gnw, hi));
                layout.micro_grids.push(MicroGrid {
                    code: MicroGridCode::new(code, (s + 1) as u16).unwrap_or_else(|_| unreachable_code()),
                    name_zh: format!("{ws_name}第{}网格{}号微网格", g + 1, s + 1),
                    households: shares[s] as u32,
                    worker_user_id: None,
                    polygon,
                });
            }
        }
    }
    layout
}

/// Serial numbers above are bounded by the counts, which stay far below the code widths.
fn unreachable_code<T>() -> T {
    panic!("demo serial overflowed its code width")
}
