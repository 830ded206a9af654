//! `magma data`: Magma's pretraining data pipeline (records, converters, jobs, curation).

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use magma_data::job::{Progress, ShardSpec};
use magma_data::pipeline::{Pipeline, RunOptions, StageReport, StageSpec};
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
    /// Convert one public dataset in its native format to Magma records (WebDataset parts plus
    /// `conversations.json` + `images/`).
    Convert(ConvertArgs),
    /// Run the stages of a PIPELINE.toml over one shard of their manifests: atomic parts with
    /// done markers, resumable after a kill, per-record error logs, a survival funnel per stage.
    Run(RunArgs),
    /// Split a video into shots as PySceneDetect does (content / adaptive detector).
    Shots(super::data_curate::ShotsArgs),
    /// CLIP cosine scores of images against captions (Magma's curation filter).
    ClipScore(super::data_curate::ClipScoreArgs),
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
    /// Draw record `--index`'s marks, traces and action point on its image and save it as PNG.
    #[arg(long, value_name = "OUT.png")]
    pub render: Option<PathBuf>,
    /// Which record `--render` draws (0-based).
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Folder that images not carried in the shard are relative to (LLaVA pass-through records).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub images: PathBuf,
}

/// Sources of `magma data convert --from`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum From {
    /// Open-X / RLDS: a TFDS folder with features.json, dataset_info.json and TFRecord shards.
    Rlds,
    /// Android in the Wild: a GZIP TFRecord file (or folder / glob of them).
    Aitw,
    /// Mind2Web raw task JSON; screenshots `{annotation_id}-{action_uid}.jpg` in --images.
    Mind2web,
    /// SeeClick web or mobile grounding JSON; images in --images.
    Seeclick,
    /// LLaVA instruction JSON; images in --images.
    Llava,
}

/// `magma data convert`.
///
/// Example: `magma data convert --from rlds --input tiny_robot/1.0.0 --statistics dataset_statistics.json --out out/`
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The source format.
    #[arg(long = "from", value_enum)]
    pub source: From,
    /// Input: the TFDS dataset folder (rlds), or a file, folder or glob.
    #[arg(long, value_name = "PATH")]
    pub input: PathBuf,
    /// Output folder: `<source>/part-*.tar` (+ error logs, done markers), `conversations.json`, `images/`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// rlds: OpenVLA dataset_statistics.json for BOUNDS_Q99 normalisation and action tokens.
    #[arg(long, value_name = "FILE")]
    pub statistics: Option<PathBuf>,
    /// rlds: the camera feature (default `steps/observation/image`, else the first image).
    #[arg(long, value_name = "KEY")]
    pub image_key: Option<String>,
    /// Image folder (mind2web screenshots, seeclick and llava images).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `magma data run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Run items k with k % n == i of every stage's manifest (e.g. `--shard 3/8`).
    #[arg(long, value_name = "i/n", default_value = "0/1")]
    pub shard: ShardSpec,
    /// Only list the items of each stage and how many are done.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the stage reports (funnels) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Inspect(a) => inspect(a),
        DataCommand::Convert(a) => convert(a),
        DataCommand::Run(a) => run_pipeline(a),
        DataCommand::Shots(a) => super::data_curate::run_shots(a),
        DataCommand::ClipScore(a) => super::data_curate::run_clip_score(a),
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
    if let Some(out) = &args.render {
        let sample = samples.get(args.index).with_context(|| {
            format!(
                "--index {} but the input has {} records",
                args.index,
                samples.len()
            )
        })?;
        let picture = magma_data::render::render(sample, &args.images)?;
        picture
            .save(out)
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {} ({})", out.display(), sample.record.id);
    }
    Ok(())
}

/// Progress bars for `run_stage` events: one bar per stage, items with rate and ETA.
fn progress_bars() -> impl FnMut(&str, Progress) {
    let mut bar: Option<ProgressBar> = None;
    let mut records = 0u64;
    move |stage: &str, event: Progress| match event {
        Progress::Start { total, pending } => {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {pos}/{len} items {per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(stage.to_string());
            b.set_position((total - pending) as u64);
            b.reset_eta();
            records = 0;
            if pending == 0 {
                b.finish_with_message("already done");
            }
            bar = Some(b);
        }
        Progress::ItemDone { records: n, .. } => {
            records += n;
            if let Some(b) = &bar {
                b.inc(1);
                let rate = records as f64 / b.elapsed().as_secs_f64().max(1e-9);
                b.set_message(format!("{records} records ({rate:.0}/s)"));
                if b.position() == b.length().unwrap_or(0) {
                    b.finish();
                }
            }
        }
    }
}

fn print_reports(reports: &[StageReport], json: bool, dry_run: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(reports)?);
        return Ok(());
    }
    for r in reports {
        if dry_run {
            println!(
                "{}: {} items, {} done, {} to run -> {}",
                r.stage,
                r.items,
                r.done_before,
                r.items - r.done_before,
                r.dir.display()
            );
            continue;
        }
        let f = &r.funnel;
        println!(
            "{}: {} items ({} failed) -> {} records in {}",
            r.stage,
            f.items,
            f.items_failed,
            f.records,
            r.dir.display()
        );
        if !f.skipped.is_empty() {
            println!(
                "  skipped (bad input, see part-*.errors.jsonl): {}",
                magma_data::job::reasons_line(&f.skipped)
            );
        }
        if !f.dropped.is_empty() {
            println!(
                "  dropped (filters): {}",
                magma_data::job::reasons_line(&f.dropped)
            );
        }
    }
    Ok(())
}

fn convert(args: ConvertArgs) -> anyhow::Result<()> {
    let kind = match args.source {
        From::Rlds => "rlds",
        From::Aitw => "aitw",
        From::Mind2web => "mind2web",
        From::Seeclick => "seeclick",
        From::Llava => "llava",
    };
    let cwd = std::env::current_dir()?;
    let pipeline = Pipeline {
        out: args.out.clone(),
        base: cwd,
        stages: vec![StageSpec {
            name: kind.to_string(),
            kind: kind.to_string(),
            input: Some(args.input.to_string_lossy().into_owned()),
            statistics: args.statistics.clone(),
            image_key: args.image_key.clone(),
            images: args.images.clone(),
            ..StageSpec::default()
        }],
    };
    let reports =
        magma_data::pipeline::run(&pipeline, &RunOptions::default(), &mut progress_bars())?;
    // The reference-loader view of everything converted so far.
    let mut samples = Vec::new();
    for part in magma_data::job::done_parts(&reports[0].dir)? {
        samples.extend(magma_data::webdataset::read_shard(&part.path)?);
    }
    let json = magma_data::magma_json::write_dir(&args.out, &samples)?;
    print_reports(&reports, args.json, false)?;
    if !args.json {
        println!(
            "{} items for the reference loader in {}",
            samples.len(),
            json.display()
        );
    }
    Ok(())
}

fn run_pipeline(args: RunArgs) -> anyhow::Result<()> {
    let pipeline = Pipeline::from_file(&args.pipeline)?;
    let options = RunOptions {
        shard: args.shard,
        dry_run: args.dry_run,
    };
    let reports = magma_data::pipeline::run(&pipeline, &options, &mut progress_bars())?;
    print_reports(&reports, args.json, args.dry_run)
}
