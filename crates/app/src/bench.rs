//! `civicgrid bench`: throughput and latency measurements recorded in BENCHMARKS.md.

use clap::Args;

use crate::AppResult;

/// `civicgrid bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs the benchmarks.
pub async fn run(_args: BenchArgs) -> AppResult<()> {
    Err("bench is not implemented yet".into())
}
