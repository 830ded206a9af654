//! `magma data`: Magma's pretraining data pipeline (records, converters, jobs, curation).

use std::path::{Path, PathBuf};

use anyhow::Context;
use magma_data::record::Sample;

/// Build, convert and inspect Magma training records.
///
/// Records are written as WebDataset tar shards (`<id>.json` + images) with an index, and as
/// Magma's own conversation JSON (`conversations.json` + `images/`), which the reference loader
/// and `magma-train` read.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: DataCommand,
}

/// The `magma data` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Print the records of a shard (`.tar`), a records file (`.jsonl`) or a Magma/LLaVA JSON file,
    /// and optionally draw one record's marks and traces on its image.
    Inspect(InspectArgs),
}

/// `magma data inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A WebDataset shard (`.tar`), or a Magma/LLaVA conversation file (`.json`, `.jsonl`).
    pub shard: PathBuf,
    /// Print every record as one JSON line instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Show at most this many records.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Inspect(a) => inspect(a),
    }
}

fn read_any(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let is_tar = path.extension().is_some_and(|e| e == "tar");
    if is_tar {
        return Ok(magma_data::webdataset::read_shard(path)?);
    }
    let records = magma_data::magma_json::read_items(path, "magma-json")?;
    Ok(records.into_iter().map(Sample::new).collect())
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let samples =
        read_any(&args.shard).with_context(|| format!("reading {}", args.shard.display()))?;
    for sample in samples.iter().take(args.limit) {
        let r = &sample.record;
        if args.json {
            println!("{}", serde_json::to_string(r)?);
            continue;
        }
        let sizes: Vec<String> = r
            .media
            .iter()
            .map(|m| {
                let (w, h) = m.size();
                format!("{w}x{h}")
            })
            .collect();
        println!(
            "{}  source={} media=[{}] turns={} marks={} traces={} actions={}",
            r.id,
            r.source,
            sizes.join(","),
            r.conversations.len(),
            r.marks.len(),
            r.traces.len(),
            r.actions.len()
        );
        for turn in &r.conversations {
            println!("  {:>5}: {}", turn.from, turn.value.replace('\n', "\\n"));
        }
    }
    if !args.json {
        println!("{} records", samples.len());
    }
    Ok(())
}
