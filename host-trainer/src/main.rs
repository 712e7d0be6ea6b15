//! `ldl`: the LDL host trainer's command line.

use anyhow::Result;
use clap::Parser;

fn main() -> Result<()> {
    let cli = ldl_host::cli::Cli::parse();
    ldl_host::cli::run(cli)
}
