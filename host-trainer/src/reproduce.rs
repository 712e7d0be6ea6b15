//! `ldl reproduce`: the paper's MNIST table.

use anyhow::Result;
use clap::Args;

/// Arguments of `ldl reproduce`.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Fewer trials, for a first look.
    #[arg(long)]
    pub quick: bool,
}

/// Runs it.
pub fn run(_a: ReproduceArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
