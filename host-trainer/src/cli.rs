//! Command-line interface: the `ldl` command's subcommands (clap) and the dispatch to the
//! module that runs each. Nothing else: every command's work lives in its own module.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Linear Distillation Learning on the host: data sets, the paper's experiments, models
/// for devices.
#[derive(Debug, Parser)]
#[command(name = "ldl", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Episodic few-shot evaluation of one or more methods (mean accuracy, 95% CI).
    Fewshot(crate::fewshot::FewshotArgs),
    /// Runs the paper's MNIST table (every method, 1..200 shots) beside the published
    /// numbers; writes a markdown report, CSVs and plots.
    Reproduce(crate::reproduce::ReproduceArgs),
    /// Open-set episodes: fits known classes, holds others out as unknown, and compares
    /// novelty scores by AUROC and the unknowns caught at 5% false rejection (ROC as SVG).
    Openset(crate::openset::OpensetArgs),
    /// Fits a model on chosen classes of a data set and writes it as a model file for a
    /// device (preprocessing, fit options and room for enrollment recorded in it).
    Train(crate::models::train::TrainArgs),
    /// Prints a model file's header, dimensions, labels, size, CRC and per-class form, and
    /// checks it against a board's flash and RAM (exit code 2 when it does not fit).
    Inspect(crate::models::inspect::InspectArgs),
    /// Scores a model file on a data set's test split (Omniglot: every drawing of --data):
    /// accuracy, per class, confusion.
    Eval(crate::models::eval::EvalArgs),
    /// Classifies given inputs (CSV rows, MNIST test images, PNG files) with a model file.
    Predict(crate::models::predict::PredictArgs),
    /// Reruns the validation sweep that fixed the device mode's hyper-parameters (MNIST
    /// train images only: supports from 0..50000, queries 50000..60000).
    Tune(crate::tune::TuneArgs),
    /// Writes a model file into a board's MODEL region with a debug probe (probe-rs),
    /// after checking offline that it is valid and fits; --dry-run only checks.
    Flash(crate::flash::FlashArgs),
    /// Talks to a device over a serial port (or QEMU's UART on TCP): info, classify,
    /// enroll, list, forget.
    Device(crate::device::cli::DeviceArgs),
    /// The whole story on a device (QEMU, or a real board with --chip/--port): train digits
    /// 0-7 on the host, classify on the device, enroll 8 and 9 there from five images each,
    /// classify again, reset, and show the new classes are kept.
    Demo(crate::demo::DemoArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fewshot(a) => crate::fewshot::run(a),
        Command::Reproduce(a) => crate::reproduce::run(a),
        Command::Openset(a) => crate::openset::run(a),
        Command::Train(a) => crate::models::train::run(a),
        Command::Inspect(a) => {
            if !crate::models::inspect::run(a)? {
                // Not an error: the report is printed; the exit code tells scripts.
                use std::io::Write as _;
                std::io::stdout().flush()?;
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Eval(a) => crate::models::eval::run(a),
        Command::Predict(a) => crate::models::predict::run(a),
        Command::Tune(a) => crate::tune::run(a),
        Command::Flash(a) => crate::flash::run(a),
        Command::Device(a) => crate::device::cli::run(a),
        Command::Demo(a) => crate::demo::run(a),
    }
}
