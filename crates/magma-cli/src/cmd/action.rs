//! `magma action`: Magma's action codecs from the command line — decode robot action tokens,
//! encode 7-DoF actions into tokens, and parse UI / mark / trace answers.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use magma_actions::marks::{som, tom};
use magma_actions::robot::{
    extract_action_ids, ActionTokenizer, Embodiment, RobotActionDecoder, StatisticsSet, ACTION_DIM,
};
use magma_actions::ui::{resolve_click, AitwAction, MarkBoxes, Mind2WebAction, UiAnswer};
use serde_json::{json, Value};

const DECODE_EXAMPLES: &str = "Examples:
  magma action decode --ids 127857,127873,127868,127904,127861,127874,127744,128009 --embodiment widowx
  magma action decode --ids 127857,127873,127868,127904,127861,127874,127744 --unnorm-key google_robot --json
  magma action decode --stats dataset_statistics.json --unnorm-key libero_goal_no_noops --embodiment libero --ids ...";
const ENCODE_EXAMPLES: &str = "Examples:
  magma action encode --values=-0.01,0.02,0,0,0,0.1,1 --unnorm-key bridge_orig --json
  magma action encode --values=0,0,0,0,0,0,1 --normalized";
const PARSE_UI_EXAMPLES: &str = "Examples:
  magma action parse-ui --text \"Coordinate: (0.04, 0.12). Mark: 12\" --width 1920 --height 1080
  magma action parse-ui --text '{\"TAP\": {\"MARK\": 3}}' --json
  magma action parse-ui --text \"<box>(100,200),(300,400)</box>\" --width 800 --height 600
  magma action parse-ui --text \"Mark: 3\" --boxes marks.json --width 800 --height 600";
const PARSE_MARKS_EXAMPLES: &str = "Examples:
  magma action parse-marks --text \"Mark 3 at [12,200]. Mark 7 at [90,41]\" --width 640 --height 480
  magma action parse-marks --text - --width 256 --height 256 --json < answer.txt";

/// Base vocabulary size of Magma-8B (`tokenizer_vocab_size` in its config.json).
const MAGMA_8B_VOCAB: u32 = 128_000;

/// Robot action tokens ↔ 7-DoF actions, and parsing of UI / Set-of-Mark / Trace-of-Mark answers.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: ActionCommand,
}

/// What to do.
#[derive(clap::Subcommand, Debug)]
pub enum ActionCommand {
    /// Decode action token ids into normalised and un-normalised 7-DoF actions (and the
    /// embodiment's command).
    #[command(after_help = DECODE_EXAMPLES)]
    Decode(DecodeArgs),
    /// Encode a 7-DoF action into action token ids.
    #[command(after_help = ENCODE_EXAMPLES)]
    Encode(EncodeArgs),
    /// Parse a UI answer (Coordinate/Mark text, Qwen box, AITW JSON, Mind2Web operation).
    #[command(after_help = PARSE_UI_EXAMPLES)]
    ParseUi(ParseUiArgs),
    /// Parse a Set-of-Mark or Trace-of-Mark answer (256-grid coordinates).
    #[command(after_help = PARSE_MARKS_EXAMPLES)]
    ParseMarks(ParseMarksArgs),
}

/// Where the base vocabulary size comes from.
#[derive(clap::Args, Debug)]
pub struct VocabArgs {
    /// Base vocabulary size the action ids count down from [default: 128000, Magma-8B].
    #[arg(long, value_name = "N", conflicts_with = "model")]
    pub vocab_size: Option<u32>,

    /// Model directory: read the base vocabulary size from `tokenizer_vocab_size` in its
    /// config.json.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
}

/// Which statistics un-normalise the actions.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Dataset statistics key (bridge_orig, google_robot / fractal20220817_data built in;
    /// others from --stats) [default: the embodiment's key, or the only key of --stats].
    #[arg(long, value_name = "KEY")]
    pub unnorm_key: Option<String>,

    /// An OpenVLA-style dataset_statistics.json (e.g. shipped with a LIBERO checkpoint)
    /// instead of the built-in statistics.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
}

/// The robots whose post-processing is reproduced.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum EmbodimentArg {
    /// SimplerEnv WidowX (Bridge): gripper ±1, Euler → axis-angle.
    Widowx,
    /// SimplerEnv Google robot: sticky relative gripper (10 repeats), Euler → axis-angle.
    Google,
    /// LIBERO: gripper binarised and inverted.
    Libero,
}

impl From<EmbodimentArg> for Embodiment {
    fn from(e: EmbodimentArg) -> Self {
        match e {
            EmbodimentArg::Widowx => Embodiment::Widowx,
            EmbodimentArg::Google => Embodiment::Google,
            EmbodimentArg::Libero => Embodiment::Libero,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// Token ids, comma- or space-separated: exactly 7 action ids, or a whole generated sequence
    /// whose last token is the stop token (the 7 before it are used, as the reference does).
    /// Repeat --ids for consecutive steps of one episode (the Google sticky gripper keeps state).
    #[arg(long, value_name = "IDS", required = true)]
    pub ids: Vec<String>,

    #[command(flatten)]
    pub stats: StatsArgs,

    /// Apply this robot's post-processing (gripper rule, axis-angle rotation).
    #[arg(long, value_enum)]
    pub embodiment: Option<EmbodimentArg>,

    #[command(flatten)]
    pub vocab: VocabArgs,

    /// Fail on ids outside the 256 action ids (the reference clips them silently).
    #[arg(long)]
    pub strict: bool,

    /// Print one JSON object instead of a readable summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct EncodeArgs {
    /// The action "dx,dy,dz,droll,dpitch,dyaw,gripper" (raw units; write --values=-0.1,… when
    /// it starts with a minus sign).
    #[arg(long, value_name = "VALUES", allow_hyphen_values = true)]
    pub values: String,

    /// The values are already normalised to [-1, 1]: skip the statistics.
    #[arg(long, conflicts_with_all = ["unnorm_key", "stats"])]
    pub normalized: bool,

    #[command(flatten)]
    pub stats: StatsArgs,

    #[command(flatten)]
    pub vocab: VocabArgs,

    /// Print one JSON object instead of the ids.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ParseUiArgs {
    /// The model's answer ("-" reads it from stdin).
    #[arg(long, allow_hyphen_values = true)]
    pub text: String,

    /// Screenshot width in pixels (with --height: also report pixel positions).
    #[arg(long, requires = "height")]
    pub width: Option<u32>,

    /// Screenshot height in pixels.
    #[arg(long, requires = "width")]
    pub height: Option<u32>,

    /// JSON file mapping mark ids to normalised boxes, {"0": [x1, y1, x2, y2], …}: resolves the
    /// click like the reference UI agent (mark box, else Qwen box, else numbers).
    #[arg(long, value_name = "FILE")]
    pub boxes: Option<PathBuf>,

    /// Print one JSON object instead of a readable summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ParseMarksArgs {
    /// The model's answer ("-" reads it from stdin).
    #[arg(long, allow_hyphen_values = true)]
    pub text: String,

    /// Image width in pixels (with --height: also report pixel positions).
    #[arg(long, requires = "height")]
    pub width: Option<u32>,

    /// Image height in pixels.
    #[arg(long, requires = "width")]
    pub height: Option<u32>,

    /// Print one JSON object instead of a readable summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ActionCommand::Decode(a) => decode(a),
        ActionCommand::Encode(a) => encode(a),
        ActionCommand::ParseUi(a) => parse_ui(a),
        ActionCommand::ParseMarks(a) => parse_marks(a),
    }
}

fn decode(args: DecodeArgs) -> anyhow::Result<()> {
    let tokenizer = ActionTokenizer::new(vocab_size(&args.vocab)?)?;
    let embodiment = args.embodiment.map(Embodiment::from);
    let (key, stats) = load_stats(&args.stats, embodiment)?;
    let mut decoder = RobotActionDecoder::new(tokenizer.clone(), stats, embodiment);
    let mut steps = Vec::new();
    for (n, text) in args.ids.iter().enumerate() {
        let all = parse_list::<u32>(text).with_context(|| format!("--ids #{}", n + 1))?;
        let ids = if all.len() == ACTION_DIM {
            &all[..]
        } else {
            extract_action_ids(&all, ACTION_DIM)?
        };
        if let Err(e) = tokenizer.check_ids(ids) {
            if args.strict {
                return Err(e.into());
            }
            tracing::warn!("{e}; decoding it anyway, clipped like the reference");
        }
        steps.push(decoder.decode_ids(ids)?);
    }
    if args.json {
        let out = json!({
            "vocab_size": tokenizer.base_vocab_size(),
            "unnorm_key": key,
            "embodiment": embodiment,
            "steps": steps,
        });
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    println!(
        "vocab size {}, statistics `{key}`",
        tokenizer.base_vocab_size()
    );
    for (n, step) in steps.iter().enumerate() {
        println!("step {}: ids {:?}", n + 1, step.ids);
        println!("  normalized   {}", fmt_values(&step.normalized));
        println!("  unnormalized {}", fmt_values(&step.unnormalized));
        if let Some(command) = &step.command {
            println!("  command      {}", serde_json::to_string(command)?);
        }
    }
    Ok(())
}

fn encode(args: EncodeArgs) -> anyhow::Result<()> {
    let tokenizer = ActionTokenizer::new(vocab_size(&args.vocab)?)?;
    let values = parse_list::<f64>(&args.values).context("--values")?;
    let (key, normalized) = if args.normalized {
        (None, values.clone())
    } else {
        let (key, stats) = load_stats(&args.stats, None)?;
        let normalized = stats.normalize(&values)?;
        (Some(key), normalized)
    };
    let ids = tokenizer.encode(&normalized)?;
    if args.json {
        let out = json!({
            "vocab_size": tokenizer.base_vocab_size(),
            "unnorm_key": key,
            "values": values,
            "normalized": normalized,
            "ids": ids,
            "decoded": tokenizer.decode(&ids),
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("{}", ids.join(","));
    }
    Ok(())
}

fn parse_ui(args: ParseUiArgs) -> anyhow::Result<()> {
    let text = read_text(&args.text)?;
    let size = args.width.zip(args.height);
    let boxes = args.boxes.as_deref().map(read_boxes).transpose()?;

    let out = if let (Some(boxes), Some((w, h))) = (&boxes, size) {
        json!({"format": "ui_agent_click", "action": resolve_click(&text, boxes, w, h)?})
    } else if boxes.is_some() {
        bail!("--boxes needs --width and --height to place the click");
    } else if let Ok(action) = AitwAction::parse(&text) {
        let pixels = match (&action, size) {
            (AitwAction::TapPoint { x, y, .. }, Some((w, h))) => {
                Some(magma_actions::ui::normalized_to_pixels([*x, *y], w, h)?)
            }
            _ => None,
        };
        json!({"format": "aitw", "action": action, "canonical": action.format(), "pixels": pixels})
    } else if let Ok(action) = Mind2WebAction::parse(&text) {
        let pixels = match size {
            Some((w, h)) => action.click_pixels(w, h)?,
            None => None,
        };
        json!({"format": "mind2web", "action": action, "canonical": action.format(), "pixels": pixels})
    } else {
        match UiAnswer::parse(&text) {
            Ok(answer) => {
                let pixels = match size {
                    Some((w, h)) => answer_pixels(&answer, w, h)?,
                    None => Vec::new(),
                };
                json!({"format": "answer", "action": answer, "canonical": answer.format(), "pixels": pixels})
            }
            // The reference agent's fallbacks (Qwen box, bare numbers) need no mark boxes.
            Err(parse_error) => match size {
                Some((w, h)) => {
                    let click =
                        resolve_click(&text, &MarkBoxes::new(), w, h).map_err(|_| parse_error)?;
                    json!({"format": "ui_agent_click", "action": click})
                }
                None => return Err(parse_error.into()),
            },
        }
    };
    print_value(&out, args.json)
}

fn parse_marks(args: ParseMarksArgs) -> anyhow::Result<()> {
    let text = read_text(&args.text)?;
    let size = args.width.zip(args.height);
    let out = if text.contains("future positions are:") || text.contains("\"Mark ") {
        let traces = tom::parse_future_traces(&text)?;
        let full = tom::parse_answer(&text).ok();
        let pixels = match size {
            Some((w, h)) => Some(tom::to_pixel_tracks(&text, w, h)?),
            None => None,
        };
        json!({"format": "trace_of_mark", "marks": full, "future": traces, "pixel_tracks": pixels})
    } else {
        let marks = som::parse_answer(&text)?;
        let pixels = match size {
            Some((w, h)) => Some(
                marks
                    .iter()
                    .map(|m| magma_actions::marks::grid::to_pixels(m.at, w, h).map(|p| (m.id, p)))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        json!({"format": "set_of_mark", "marks": marks, "pixels": pixels})
    };
    print_value(&out, args.json)
}

/// Pixel positions of the points and box centres of an answer.
fn answer_pixels(answer: &UiAnswer, width: u32, height: u32) -> anyhow::Result<Vec<[f64; 2]>> {
    use magma_actions::ui::{box_center, normalized_to_pixels, UiTarget};
    let UiAnswer::Elements { elements, .. } = answer else {
        return Ok(Vec::new());
    };
    elements
        .iter()
        .filter_map(|e| match e.target {
            UiTarget::Point { x, y } => Some([x, y]),
            UiTarget::Box { x1, y1, x2, y2 } => Some(box_center(&[x1, y1, x2, y2])),
            UiTarget::Text { .. } => None,
        })
        .map(|p| Ok(normalized_to_pixels(p, width, height)?))
        .collect()
}

fn print_value(value: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        println!("{}", serde_json::to_string_pretty(value)?);
    }
    Ok(())
}

fn fmt_values(values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:+.6}")).collect();
    format!("[{}]", items.join(", "))
}

/// A comma- or whitespace-separated list.
fn parse_list<T: std::str::FromStr>(text: &str) -> anyhow::Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| anyhow::anyhow!("cannot parse {s:?}: {e}"))
        })
        .collect()
}

fn read_text(text: &str) -> anyhow::Result<String> {
    if text == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("reading the answer from stdin")?;
        Ok(buf)
    } else {
        Ok(text.to_string())
    }
}

fn read_boxes(path: &Path) -> anyhow::Result<MarkBoxes> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading mark boxes from {}", path.display()))?;
    let raw: BTreeMap<String, [f64; 4]> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected {{\"<mark>\": [x1, y1, x2, y2], ...}}",
            path.display()
        )
    })?;
    raw.into_iter()
        .map(|(k, b)| {
            let mark = k
                .parse::<u32>()
                .with_context(|| format!("{}: mark key {k:?} is not a number", path.display()))?;
            Ok((mark, b))
        })
        .collect()
}

fn vocab_size(args: &VocabArgs) -> anyhow::Result<u32> {
    if let Some(n) = args.vocab_size {
        return Ok(n);
    }
    let Some(dir) = &args.model else {
        return Ok(MAGMA_8B_VOCAB);
    };
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let n = config
        .get("tokenizer_vocab_size")
        .and_then(Value::as_u64)
        .with_context(|| {
            format!(
                "{}: missing integer field `tokenizer_vocab_size` (the base vocabulary size)",
                path.display()
            )
        })?;
    u32::try_from(n)
        .with_context(|| format!("{}: tokenizer_vocab_size {n} is too large", path.display()))
}

/// The statistics to use and the key they were found under.
fn load_stats(
    args: &StatsArgs,
    embodiment: Option<Embodiment>,
) -> anyhow::Result<(String, magma_actions::robot::NormStats)> {
    let set = match &args.stats {
        Some(path) => StatisticsSet::from_file(path)?,
        None => StatisticsSet::builtin(),
    };
    let key = args.unnorm_key.as_deref().or_else(|| {
        // the embodiment's key only applies to the built-in statistics
        args.stats
            .is_none()
            .then(|| embodiment.and_then(Embodiment::default_unnorm_key))
            .flatten()
    });
    let entry = set.get(key)?;
    let key = match key {
        Some(k) => k.to_string(),
        None => set.keys().next().unwrap_or_default().to_string(),
    };
    Ok((key, entry.action.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_model() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/magma-parity/models/magma-tiny-crop")
    }

    #[test]
    fn vocab_size_comes_from_the_flag_the_model_config_or_the_magma_default() {
        let flag = VocabArgs {
            vocab_size: Some(32_000),
            model: None,
        };
        assert_eq!(vocab_size(&flag).unwrap(), 32_000);
        // the tiny fixture model's config.json has `tokenizer_vocab_size: 1000`
        let model = VocabArgs {
            vocab_size: None,
            model: Some(fixture_model()),
        };
        assert_eq!(vocab_size(&model).unwrap(), 1000);
        let default = VocabArgs {
            vocab_size: None,
            model: None,
        };
        assert_eq!(vocab_size(&default).unwrap(), 128_000);
        let missing = VocabArgs {
            vocab_size: None,
            model: Some(PathBuf::from("/nonexistent")),
        };
        let err = format!("{:#}", vocab_size(&missing).unwrap_err());
        assert!(err.contains("/nonexistent/config.json"), "{err}");
    }

    #[test]
    fn lists_accept_commas_and_spaces() {
        assert_eq!(parse_list::<u32>("1, 2 3,4").unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(parse_list::<f64>("-0.5,1e-3").unwrap(), vec![-0.5, 0.001]);
        assert!(parse_list::<u32>("1,x").is_err());
    }

    #[test]
    fn statistics_key_defaults_follow_the_embodiment() {
        let none = StatsArgs {
            unnorm_key: None,
            stats: None,
        };
        let (key, stats) = load_stats(&none, Some(Embodiment::Google)).unwrap();
        assert_eq!(key, "google_robot");
        assert!((stats.q99[0] - 0.17824687153100965).abs() < 1e-15);
        // three built-in keys and no embodiment: the key is required
        let err = load_stats(&none, None).unwrap_err().to_string();
        assert!(err.contains("bridge_orig"), "{err}");
    }
}
