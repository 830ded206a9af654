//! Training examples exactly as Magma's training code builds them: a Magma/LLaVA conversation
//! item (or an OpenX/RLDS robot step) becomes `input_ids`, `labels` (−100 where no loss is taken)
//! and the list of images in `<image>` order; [`collate`] pads a batch as the reference collator
//! does, and [`merged_layout`] gives the labels, attention mask and position ids after the
//! model replaces each `<image>` id by its feature rows.
//!
//! # The rule (reference: `data/dataset.py`, `data/data_collator.py`, `data/openx/datasets/datasets.py`)
//!
//! * **Image placeholders** in a turn are counted, deleted (with one newline after each) and put
//!   back as `<image>\n` at the start of that turn; with `mm_use_image_start_end` each becomes
//!   `<image_start><image><image_end>`. The remaining text is not tidied.
//! * **No image:** a black `base x base` picture (one crop) and `<image>\n` in front of the first turn.
//! * **Rendering:** `human`/`user` → user, anything else → assistant, the system message
//!   [`DEFAULT_SYSTEM_PROMPT`] first, the chat template without generation prompt, tokenised with
//!   the tokenizer's own BOS on top of the template's (two BOS), cut to `max_length` tokens.
//! * **Labels:** loss only on each assistant answer and its closing `<|eot_id|>`. The lengths are
//!   measured as the reference does (each piece tokenised on its own, minus one BOS); if the
//!   counted length is below `max_length` but differs from the sample's length, the whole sample
//!   is masked ([`ExampleWarning::LengthMismatch`], e.g. two user turns in a row).
//! * **Robot samples** (`"rlds": true`): user turn `<image>\nWhat action should the robot take
//!   to {instruction in lower case}?` (a bare `<image>` whatever the flag), assistant turn of the
//!   action ids; loss on the last `n_actions + 2` tokens (`\n\n`, the actions, `<|eot_id|>`).
//!   Map-style robot conversations (OXE-ToM) instead write [`ACTION_TOKEN`] placeholders in an
//!   answer: labelled by the round rule, then replaced by the item's action ids.
//!
//! The full rule with its provenance is in `tests/fixtures/magma-train/README.md` of the
//! fixtures this module is tested against (`tests/training_labels.rs`: every masking case of
//! both tiny models and their collated batches, ids and labels identical).
//!
//! # API for the trainer and the data pipeline (stable)
//!
//! ```
//! use magma_processor::training::{ConversationItem, TrainingExampleBuilder};
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
//!     .join("../../tests/fixtures/magma-parity/models/magma-tiny-crop");
//! let builder = TrainingExampleBuilder::from_dir(&dir)?;
//! let item: ConversationItem = serde_json::from_str(r#"{
//!     "conversations": [
//!         {"from": "human", "value": "What is 2+2?"},
//!         {"from": "gpt", "value": "4"}
//!     ]
//! }"#).unwrap();
//! let example = builder.build(&item)?;
//! assert_eq!(example.images.len(), 1); // the black dummy image of a text-only sample
//! let spans = example.loss_spans();
//! assert_eq!(spans.len(), 1);
//! let answer = builder.decode_with_special(&example.input_ids[spans[0].clone()])?;
//! assert_eq!(answer, "4<|eot_id|>");
//! let pixels = builder.pixels(&example, std::path::Path::new("."))?;
//! let batch = builder.collate(&[example], Some(&[pixels]))?;
//! assert_eq!(batch.pixel_shape, [1, 1, 3, 96, 96]);
//! # Ok::<(), magma_processor::training::ExampleError>(())
//! ```
//!
//! [`TrainingExample`], [`ConversationItem`] and [`ExampleWarning`] are serde types, so a data
//! pipeline can store built examples and reload them.

use std::ops::Range;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Deserializer, Serialize};

use crate::chat::{ChatMessage, DEFAULT_SYSTEM_PROMPT};
use crate::special_tokens::{IMAGE_END_TOKEN, IMAGE_START_TOKEN, IMAGE_TOKEN};
use crate::{
    read_json, ImageProcessor, ImageProcessorConfig, PixelValues, Processor, ProcessorError,
};

/// The label of a position that carries no loss (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// `model_max_length` when none is given: the value of the fixtures and of `magma train`'s
/// default config (the reference takes it from its training arguments).
pub const DEFAULT_MAX_LENGTH: usize = 2048;

/// The placeholder of one action id in map-style robot conversations.
pub const ACTION_TOKEN: &str = "<action>";

/// The number of action bins of Magma's (OpenVLA's) action tokenizer.
pub const ACTION_BINS: usize = 256;

/// One turn of a Magma/LLaVA conversation: `from` is `human`/`user` for the user and anything
/// else (`gpt`, `assistant`, ...) for the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub from: String,
    pub value: String,
}

impl Turn {
    /// Whether the reference treats this turn as the user's (`human` or `user`).
    pub fn is_user(&self) -> bool {
        matches!(self.from.as_str(), "human" | "user")
    }
}

/// The `image` field of an item: one path or a list of paths (relative to an image root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageField {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl ImageField {
    /// The paths, in order.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            Self::One(path) => vec![path.as_path()],
            Self::Many(paths) => paths.iter().map(PathBuf::as_path).collect(),
        }
    }
}

/// One training item as Magma/LLaVA JSON (`conversations`, `image`) or an OpenX/RLDS robot step
/// (`"rlds": true`, `language_instruction`, `action_token_ids` or `actions_normalized`, `image`).
/// Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationItem {
    /// Any identifier (string or number in the JSON), used in messages.
    #[serde(
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conversations: Vec<Turn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageField>,
    /// A robot step labelled by the RLDS transform.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rlds: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_instruction: Option<String>,
    /// The action token ids (take precedence over `actions_normalized`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_token_ids: Option<Vec<u32>>,
    /// Actions normalised to [−1, 1] (clipped), tokenised with 256 bins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_normalized: Option<Vec<f32>>,
}

impl ConversationItem {
    /// A name for messages: the id, or `"(no id)"`.
    pub fn name(&self) -> &str {
        self.id.as_deref().unwrap_or("(no id)")
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// Reads items from a `.json` file (one item, a list of items, or an object with an `items`
/// list) or a `.jsonl` file (one item per line), naming the file and line/index in errors.
pub fn read_items(path: &Path) -> Result<Vec<ConversationItem>, ExampleError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProcessorError::io(path, e))?;
    let bad = |at: String, cause: serde_json::Error| ExampleError::BadItem {
        path: path.to_path_buf(),
        at,
        message: cause.to_string(),
    };
    if path.extension().is_some_and(|e| e == "jsonl") {
        return text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str(line).map_err(|e| bad(format!("line {}", n + 1), e))
            })
            .collect();
    }
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|cause| ProcessorError::Json {
            path: path.to_path_buf(),
            cause,
        })?;
    let list = match json {
        serde_json::Value::Array(list) => list,
        serde_json::Value::Object(mut map) if map.get("items").is_some_and(|v| v.is_array()) => {
            match map.remove("items") {
                Some(serde_json::Value::Array(list)) => list,
                _ => unreachable!("checked to be an array"),
            }
        }
        single => vec![single],
    };
    list.into_iter()
        .enumerate()
        .map(|(k, v)| serde_json::from_value(v).map_err(|e| bad(format!("item {k}"), e)))
        .collect()
}

/// Where an image of an example comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExampleImage {
    /// An image file, relative to the image root (or absolute).
    File { path: PathBuf },
    /// A robot frame: resized to `base x base` before the processor, so it is one crop.
    RobotFrame { path: PathBuf },
    /// The black `base x base` picture of a sample without image, processed as one crop.
    Blank,
}

/// Which code path of the reference labelled an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExampleKind {
    /// `LazySupervisedDataset` + `preprocess` (round masking).
    Conversation,
    /// `RLDSBatchTransform` (the last `n_actions + 2` tokens).
    Rlds,
}

/// Something about an example the user should know; the example is still usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExampleWarning {
    /// The sample had `tokens` text tokens and was cut to `max_length` (before image expansion,
    /// as the reference does; labels of the cut part are gone).
    Truncated { tokens: usize, max_length: usize },
    /// The reference's length check failed (`counted` by rounds vs `actual` ids): every label
    /// is −100, as the reference does (it only prints a warning). Happens when a round has no
    /// assistant answer, e.g. two user turns in a row.
    LengthMismatch { counted: usize, actual: usize },
    /// Truncation cut `<image>` placeholders: only the first `kept` of `images` images are
    /// kept (the reference would fail in the model's merge).
    ImagePlaceholderCut { images: usize, kept: usize },
}

impl std::fmt::Display for ExampleWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated { tokens, max_length } => write!(
                f,
                "sample of {tokens} tokens truncated to max_length {max_length} (loss on the cut part is lost)"
            ),
            Self::LengthMismatch { counted, actual } => write!(
                f,
                "tokenization mismatch: rounds count {counted} tokens but the sample has {actual}; \
                 the whole sample is masked (no loss), as the reference does"
            ),
            Self::ImagePlaceholderCut { images, kept } => write!(
                f,
                "truncation cut <image> placeholders: {kept} of {images} images kept"
            ),
        }
    }
}

/// One training sample as the trainer sees it, before batching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingExample {
    /// The item's id, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub kind: ExampleKind,
    /// The exact string that was tokenised (chat template output after the `<image>` rules;
    /// robot samples show the reference's `<action>` placeholder where the action ids go).
    pub text: String,
    /// Token ids (two BOS first, one `<image>` id per image), at most `max_length` of them.
    pub input_ids: Vec<u32>,
    /// Same length as `input_ids`; [`IGNORE_INDEX`] where no loss is taken.
    pub labels: Vec<i64>,
    /// The images in `<image>` order, one per `<image>` id.
    pub images: Vec<ExampleImage>,
    /// Positions of the `<image>` ids in `input_ids`.
    pub image_positions: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<ExampleWarning>,
}

impl TrainingExample {
    /// Number of positions that carry loss.
    pub fn n_labelled(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    /// Maximal runs of positions that carry loss, in order.
    pub fn loss_spans(&self) -> Vec<Range<usize>> {
        let mut spans = Vec::new();
        let mut start = None;
        for (i, &label) in self.labels.iter().enumerate() {
            match (label != IGNORE_INDEX, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    spans.push(s..i);
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            spans.push(s..self.labels.len());
        }
        spans
    }

    /// Whether truncation cut this sample.
    pub fn truncated(&self) -> bool {
        self.warnings
            .iter()
            .any(|w| matches!(w, ExampleWarning::Truncated { .. }))
    }
}

/// Pixel values of one example: the crops of all its images concatenated.
#[derive(Debug, Clone, PartialEq)]
pub struct ExamplePixels {
    /// `[n_crops, 3, base, base]`.
    pub pixel_values: PixelValues,
    /// `(rows, cols)` crop grid per image (the reference's `image_sizes`).
    pub image_sizes: Vec<(usize, usize)>,
    /// Feature rows the model makes of each image (what replaces its `<image>` id).
    pub image_tokens: Vec<usize>,
}

/// A collated batch, as `DataCollatorForSupervisedDataset` returns it (C order, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingBatch {
    pub batch_size: usize,
    /// Text length `L` (the longest sample, at most `max_length`).
    pub seq_len: usize,
    /// `[B, L]`, right-padded with the pad id.
    pub input_ids: Vec<u32>,
    /// `[B, L]`, right-padded with [`IGNORE_INDEX`].
    pub labels: Vec<i64>,
    /// `[B, L]`: 1 where the id is not the pad id (the reference compares ids, not lengths).
    pub attention_mask: Vec<u8>,
    /// `[B, max_crops, 3, base, base]`, zero-padded; empty when no pixels were given.
    pub pixel_values: Vec<f32>,
    pub pixel_shape: [usize; 5],
    /// `[B, max_images, 2]` `(rows, cols)`, zero-padded.
    pub image_sizes: Vec<[usize; 2]>,
    pub max_images: usize,
}

/// Everything that stops an item from becoming an example.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    #[error(transparent)]
    Processor(#[from] ProcessorError),

    /// A JSON/JSONL item does not have the expected fields.
    #[error("bad training item in {path} ({at}): {message}")]
    BadItem {
        path: PathBuf,
        at: String,
        message: String,
    },

    /// The item has no turns.
    #[error("item {id}: `conversations` is empty")]
    NoTurns { id: String },

    /// No assistant turn: nothing to learn (the reference would mask the whole sample).
    #[error("item {id}: the conversation has no assistant turn (`from` other than human/user), so no token would carry loss")]
    NoAssistantTurn { id: String },

    /// `<image>` placeholders and images do not pair up.
    #[error("item {id}: {placeholders} `<image>` placeholder(s) but {images} image(s); each image needs exactly one `<image>`")]
    ImageCountMismatch {
        id: String,
        placeholders: usize,
        images: usize,
    },

    /// A robot item lacks a field.
    #[error("robot item {id}: {message}")]
    BadRobotItem { id: String, message: String },

    /// Pixels of an example do not match it.
    #[error("example {id}: {message}")]
    Pixels { id: String, message: String },

    /// A setting is unusable.
    #[error("invalid training-example setting: {0}")]
    Setting(String),
}

/// Settings of the labelling that the reference takes from its training arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelOptions {
    /// `model_max_length`: longer samples are cut to this many text tokens.
    pub max_length: usize,
    /// The data-side `mm_use_image_start_end` (default: the model's config value).
    pub use_image_start_end: bool,
    /// Whether robot samples are also trained on their closing `<|eot_id|>` (reference: true).
    pub predict_stop_token: bool,
}

/// Builds [`TrainingExample`]s for one model (its tokenizer, chat template and image processor).
#[derive(Debug)]
pub struct TrainingExampleBuilder {
    processor: Processor,
    options: LabelOptions,
    /// The user header, `sep1` of the reference (from a dummy render).
    user_header: String,
    /// The assistant header, `sep2` of the reference.
    assistant_header: String,
    /// Ids of an empty string (the tokenizer's own BOS).
    empty_len: usize,
    /// `<|eot_id|>`'s id (the tokenizer config's `eos_token`).
    eos: u32,
    /// The base vocabulary size: action bin `b` is id `tokenizer_vocab_size - b`.
    tokenizer_vocab_size: Option<u32>,
    blank_processor: ImageProcessor,
}

impl TrainingExampleBuilder {
    /// Loads the processor of a model folder; `max_length` [`DEFAULT_MAX_LENGTH`], the image
    /// start/end flag from `config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, ExampleError> {
        let processor = Processor::from_dir(dir)?;
        let options = LabelOptions {
            max_length: DEFAULT_MAX_LENGTH,
            use_image_start_end: processor.uses_image_start_end(),
            predict_stop_token: true,
        };
        Self::new(dir, processor, options)
    }

    /// Builds from a loaded processor of the model folder `dir` (which supplies the
    /// tokenizer config's `eos_token` and `config.json`'s `tokenizer_vocab_size`).
    pub fn new(
        dir: &Path,
        processor: Processor,
        options: LabelOptions,
    ) -> Result<Self, ExampleError> {
        if options.max_length == 0 {
            return Err(ExampleError::Setting(
                "max_length must be at least 1".into(),
            ));
        }
        let tokenizer_config_path = dir.join("tokenizer_config.json");
        let tokenizer_config = read_json(&tokenizer_config_path)?;
        let token_string = |field: &str| -> Option<String> {
            let v = tokenizer_config.get(field)?;
            v.as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))
                .map(str::to_string)
        };
        let eos_token = token_string("eos_token").ok_or_else(|| {
            ProcessorError::config(&tokenizer_config_path, "eos_token", "missing")
        })?;
        let bos_token = token_string("bos_token").unwrap_or_default();
        let eos = processor
            .tokenizer()
            .token_to_id(&eos_token)
            .ok_or_else(|| {
                ProcessorError::config(
                    &tokenizer_config_path,
                    "eos_token",
                    format!("`{eos_token}` is not in the tokenizer"),
                )
            })?;
        let config_path = dir.join("config.json");
        let tokenizer_vocab_size =
            match read_json(&config_path)?.get("tokenizer_vocab_size") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(
                    || {
                        ProcessorError::config(
                            &config_path,
                            "tokenizer_vocab_size",
                            format!("expected a token count, found {v}"),
                        )
                    },
                )?),
            };

        // The reference derives its separators from a render of an empty round, split at the
        // EOS string: the second-to-last piece (BOS removed) opens a user turn, the last one
        // an assistant turn.
        let dummy = processor.chat_template().render(
            &[
                ChatMessage::system(DEFAULT_SYSTEM_PROMPT),
                ChatMessage::user(""),
                ChatMessage::assistant(""),
            ],
            false,
        )?;
        let segments: Vec<&str> = dummy.split(eos_token.as_str()).collect();
        if segments.len() < 3 {
            return Err(ProcessorError::config(
                &tokenizer_config_path,
                "chat_template",
                format!("an empty round does not render as three `{eos_token}`-terminated turns"),
            )
            .into());
        }
        let n = segments.len() - 1;
        let mut user_header = segments[n - 2].to_string();
        if !bos_token.is_empty() {
            user_header = user_header.replace(&bos_token, "");
        }
        let assistant_header = segments[n - 1].to_string();
        let empty_len = processor.encode("")?.len();
        let blank_processor = ImageProcessor::new(ImageProcessorConfig {
            num_crops: 1,
            ..processor.image_processor().config().clone()
        })?;
        Ok(Self {
            processor,
            options,
            user_header,
            assistant_header,
            empty_len,
            eos,
            tokenizer_vocab_size,
            blank_processor,
        })
    }

    /// Replaces the options (e.g. `max_length` from a training config).
    pub fn with_options(mut self, options: LabelOptions) -> Result<Self, ExampleError> {
        if options.max_length == 0 {
            return Err(ExampleError::Setting(
                "max_length must be at least 1".into(),
            ));
        }
        self.options = options;
        Ok(self)
    }

    /// Sets `max_length` only.
    pub fn with_max_length(self, max_length: usize) -> Result<Self, ExampleError> {
        let options = LabelOptions {
            max_length,
            ..self.options.clone()
        };
        self.with_options(options)
    }

    pub fn options(&self) -> &LabelOptions {
        &self.options
    }

    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// The pad id used by [`Self::collate`] (the tokenizer's `<pad>`).
    pub fn pad_id(&self) -> Result<u32, ExampleError> {
        self.processor.special_tokens().pad.ok_or_else(|| {
            ExampleError::Setting("the tokenizer has no pad token; batches need one".into())
        })
    }

    /// Decodes ids keeping special tokens (`<|eot_id|>`, `<image>`), for showing loss spans.
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String, ExampleError> {
        self.processor.tokenizer().decode(ids, false).map_err(|e| {
            ProcessorError::Tokenize {
                action: "decode ids",
                message: e.to_string(),
            }
            .into()
        })
    }

    /// Builds one example (see the module docs for the rule).
    pub fn build(&self, item: &ConversationItem) -> Result<TrainingExample, ExampleError> {
        if item.rlds {
            self.build_rlds(item)
        } else {
            self.build_conversation(item)
        }
    }

    fn build_conversation(&self, item: &ConversationItem) -> Result<TrainingExample, ExampleError> {
        let id = item.name().to_string();
        if item.conversations.is_empty() {
            return Err(ExampleError::NoTurns { id });
        }
        if item.conversations.iter().all(Turn::is_user) {
            return Err(ExampleError::NoAssistantTurn { id });
        }
        let mut turns = item.conversations.clone();
        // An empty list is treated like a missing field (the reference would crash collating
        // a sample without pixels).
        let paths: Vec<&Path> = item
            .image
            .as_ref()
            .map(ImageField::paths)
            .unwrap_or_default();
        let images: Vec<ExampleImage> = if paths.is_empty() {
            // `__getitem__`'s text-only branch: placeholder on the first turn, whatever its role.
            let first = &mut turns[0].value;
            *first = format!("{IMAGE_TOKEN}\n{first}");
            if self.options.use_image_start_end {
                *first = first.replace(IMAGE_TOKEN, &wrapped_image());
            }
            vec![ExampleImage::Blank]
        } else {
            for turn in &mut turns {
                turn.value = move_placeholders(&turn.value, self.options.use_image_start_end);
            }
            paths
                .into_iter()
                .map(|p| ExampleImage::File {
                    path: p.to_path_buf(),
                })
                .collect()
        };
        let placeholders: usize = turns
            .iter()
            .map(|t| t.value.matches(IMAGE_TOKEN).count())
            .sum();
        if placeholders != images.len() {
            return Err(ExampleError::ImageCountMismatch {
                id,
                placeholders,
                images: images.len(),
            });
        }

        let messages: Vec<ChatMessage> =
            std::iter::once(ChatMessage::system(DEFAULT_SYSTEM_PROMPT))
                .chain(turns.iter().map(|t| {
                    ChatMessage::new(if t.is_user() { "user" } else { "assistant" }, &t.value)
                }))
                .collect();
        let text = self.processor.chat_template().render(&messages, false)?;
        let mut input_ids = self.processor.encode(&text)?;
        let full_len = input_ids.len();
        let max_length = self.options.max_length;
        input_ids.truncate(max_length);
        let mut warnings = Vec::new();
        if full_len > max_length {
            warnings.push(ExampleWarning::Truncated {
                tokens: full_len,
                max_length,
            });
        }
        let mut labels: Vec<i64> = input_ids.iter().map(|&i| i64::from(i)).collect();
        let pad = self.processor.special_tokens().pad;
        let total_len = input_ids.iter().filter(|&&i| Some(i) != pad).count();

        let mask = |labels: &mut [i64], range: Range<usize>| {
            let end = range.end.min(labels.len());
            if range.start < end {
                labels[range.start..end].fill(IGNORE_INDEX);
            }
        };
        let sep1 = self.user_header.as_str();
        let sep2 = self.assistant_header.as_str();
        let system_part = text.split(sep1).next().unwrap_or_default();
        let rest = &text[system_part.len()..];
        let mut cur_len = self.processor.encode(system_part)?.len();
        mask(&mut labels, 0..cur_len);
        for round in rest.split(sep1).skip(1) {
            if round.is_empty() {
                break;
            }
            let parts: Vec<&str> = round.split(sep2).collect();
            if parts.len() != 2 {
                break;
            }
            let instruction = format!("{sep1}{}{sep2}", parts[0]);
            let round = format!("{sep1}{round}");
            // Each piece tokenised on its own minus the tokenizer's BOS, as the reference does.
            let round_len = self.piece_len(&round)?;
            let instruction_len = self.piece_len(&instruction)?;
            mask(&mut labels, cur_len..cur_len + instruction_len);
            cur_len += round_len;
        }
        mask(&mut labels, cur_len..usize::MAX);
        if cur_len < max_length && cur_len != total_len {
            labels.fill(IGNORE_INDEX);
            warnings.push(ExampleWarning::LengthMismatch {
                counted: cur_len,
                actual: total_len,
            });
        }

        let image_id = self.processor.special_tokens().image;
        let image_positions: Vec<usize> = positions_of(&input_ids, image_id);
        let mut images = images;
        if image_positions.len() < images.len() {
            warnings.push(ExampleWarning::ImagePlaceholderCut {
                images: images.len(),
                kept: image_positions.len(),
            });
            images.truncate(image_positions.len());
        }
        self.fill_action_placeholders(item, &mut input_ids, &mut labels)?;
        Ok(TrainingExample {
            id: item.id.clone(),
            kind: ExampleKind::Conversation,
            text,
            input_ids,
            labels,
            images,
            image_positions,
            warnings,
        })
    }

    /// The map-style robot path (OXE-ToM items): `<action>` placeholders in an assistant turn
    /// carry labels by the round rule, then each is replaced, in ids and labels, by the item's
    /// action ids in order. Items without `<action>` keep their actions unused, as in the
    /// reference.
    fn fill_action_placeholders(
        &self,
        item: &ConversationItem,
        input_ids: &mut [u32],
        labels: &mut [i64],
    ) -> Result<(), ExampleError> {
        let has_text = item
            .conversations
            .iter()
            .any(|t| t.value.contains(ACTION_TOKEN));
        if !has_text {
            return Ok(());
        }
        let bad = |message: String| ExampleError::BadRobotItem {
            id: item.name().to_string(),
            message,
        };
        let actions = match (&item.action_token_ids, &item.actions_normalized) {
            (Some(ids), _) => ids.clone(),
            (None, Some(values)) => self.action_token_ids(values).map_err(&bad)?,
            (None, None) => return Ok(()),
        };
        let placeholder = self
            .processor
            .tokenizer()
            .token_to_id(ACTION_TOKEN)
            .ok_or_else(|| {
                bad(format!(
                    "the conversation has `{ACTION_TOKEN}` placeholders but the tokenizer has no `{ACTION_TOKEN}` token"
                ))
            })?;
        let in_ids = positions_of(input_ids, placeholder);
        let in_labels = labels
            .iter()
            .filter(|&&l| l == i64::from(placeholder))
            .count();
        if in_ids.len() != actions.len() || in_labels != actions.len() {
            return Err(bad(format!(
                "{} action id(s) for {} `{ACTION_TOKEN}` token(s) ({in_labels} of them labelled); the reference requires one per action, all labelled",
                actions.len(),
                in_ids.len()
            )));
        }
        for (&at, &action) in in_ids.iter().zip(&actions) {
            input_ids[at] = action;
            labels[at] = i64::from(action);
        }
        Ok(())
    }

    fn piece_len(&self, piece: &str) -> Result<usize, ExampleError> {
        Ok(self
            .processor
            .encode(piece)?
            .len()
            .saturating_sub(self.empty_len))
    }

    fn build_rlds(&self, item: &ConversationItem) -> Result<TrainingExample, ExampleError> {
        let id = item.name().to_string();
        let bad = |message: String| ExampleError::BadRobotItem {
            id: id.clone(),
            message,
        };
        let instruction = item
            .language_instruction
            .as_deref()
            .ok_or_else(|| bad("`language_instruction` is missing".into()))?;
        let paths: Vec<&Path> = item
            .image
            .as_ref()
            .map(ImageField::paths)
            .unwrap_or_default();
        if paths.len() != 1 {
            return Err(ExampleError::ImageCountMismatch {
                id,
                placeholders: 1,
                images: paths.len(),
            });
        }
        let actions = match (&item.action_token_ids, &item.actions_normalized) {
            (Some(ids), normalized) => {
                if let Some(values) = normalized {
                    let from_values = self.action_token_ids(values).map_err(&bad)?;
                    if &from_values != ids {
                        return Err(bad(format!(
                            "`action_token_ids` {ids:?} disagree with `actions_normalized` (tokenised: {from_values:?})"
                        )));
                    }
                }
                ids.clone()
            }
            (None, Some(values)) => self.action_token_ids(values).map_err(&bad)?,
            (None, None) => {
                return Err(bad(
                    "needs `action_token_ids` or `actions_normalized`".into()
                ))
            }
        };
        if actions.is_empty() {
            return Err(bad("the action is empty".into()));
        }
        // Python's `str.lower()`, as the transform lower-cases the instruction.
        let user = format!(
            "{IMAGE_TOKEN}\nWhat action should the robot take to {}?",
            instruction.to_lowercase()
        );
        let render = |answer: &str| {
            self.processor.chat_template().render(
                &[
                    ChatMessage::system(DEFAULT_SYSTEM_PROMPT),
                    ChatMessage::user(&user),
                    ChatMessage::assistant(answer),
                ],
                false,
            )
        };
        // The reference renders one `<action>` token and replaces it by the ids; tokenising the
        // empty answer and inserting the ids before its closing `<|eot_id|>` gives the same ids
        // whether or not the tokenizer has an `<action>` token.
        let text = render("<action>")?;
        let mut input_ids = self.processor.encode(&render("")?)?;
        if input_ids.last() != Some(&self.eos) {
            return Err(bad(
                "the rendered prompt does not end with the EOS token".into()
            ));
        }
        let at = input_ids.len() - 1;
        input_ids.splice(at..at, actions.iter().copied());
        let mut labels: Vec<i64> = input_ids.iter().map(|&i| i64::from(i)).collect();
        let keep = actions.len() + 2;
        let cut = labels.len().saturating_sub(keep);
        labels[..cut].fill(IGNORE_INDEX);
        if !self.options.predict_stop_token {
            if let Some(last) = labels.last_mut() {
                *last = IGNORE_INDEX;
            }
        }
        let mut warnings = Vec::new();
        let max_length = self.options.max_length;
        if input_ids.len() > max_length {
            // The transform does not truncate; the collator cuts to `max_length`.
            warnings.push(ExampleWarning::Truncated {
                tokens: input_ids.len(),
                max_length,
            });
            input_ids.truncate(max_length);
            labels.truncate(max_length);
        }
        let image_positions = positions_of(&input_ids, self.processor.special_tokens().image);
        let mut images = vec![ExampleImage::RobotFrame {
            path: paths[0].to_path_buf(),
        }];
        if image_positions.is_empty() {
            warnings.push(ExampleWarning::ImagePlaceholderCut { images: 1, kept: 0 });
            images.clear();
        }
        Ok(TrainingExample {
            id: item.id.clone(),
            kind: ExampleKind::Rlds,
            text,
            input_ids,
            labels,
            images,
            image_positions,
            warnings,
        })
    }

    /// Magma's (OpenVLA's) action tokenizer: clip to [−1, 1], bin with `np.digitize` over 256
    /// evenly spaced edges from −1 to 1 (bins 1..=256), id = `tokenizer_vocab_size − bin`.
    ///
    /// Values are compared in float64 against float64 edges, like numpy with float32 actions.
    pub fn action_token_ids(&self, actions: &[f32]) -> Result<Vec<u32>, String> {
        let vocab = self.tokenizer_vocab_size.ok_or(
            "config.json has no `tokenizer_vocab_size`, needed to tokenise actions".to_string(),
        )?;
        if (vocab as usize) < ACTION_BINS {
            return Err(format!(
                "tokenizer_vocab_size {vocab} is smaller than {ACTION_BINS} action bins"
            ));
        }
        actions
            .iter()
            .map(|&a| {
                if a.is_nan() {
                    return Err("an action value is NaN".to_string());
                }
                Ok(vocab - digitize(f64::from(a.clamp(-1.0, 1.0))))
            })
            .collect()
    }

    /// Preprocesses the images of an example; file paths are resolved against `image_root`.
    pub fn pixels(
        &self,
        example: &TrainingExample,
        image_root: &Path,
    ) -> Result<ExamplePixels, ExampleError> {
        let loaded = example
            .images
            .iter()
            .map(|image| match image {
                ExampleImage::File { path } | ExampleImage::RobotFrame { path } => {
                    Ok(Some(self.processor.load_image(&image_root.join(path))?))
                }
                ExampleImage::Blank => Ok(None),
            })
            .collect::<Result<Vec<_>, ExampleError>>()?;
        self.pixels_from_images(example, &loaded)
    }

    /// Like [`Self::pixels`] with decoded images: one entry per [`TrainingExample::images`]
    /// entry (`None` for [`ExampleImage::Blank`], whose black picture is made here).
    pub fn pixels_from_images(
        &self,
        example: &TrainingExample,
        images: &[Option<RgbImage>],
    ) -> Result<ExamplePixels, ExampleError> {
        let id = example.id.clone().unwrap_or_else(|| "(no id)".into());
        if images.len() != example.images.len() {
            return Err(ExampleError::Pixels {
                id,
                message: format!(
                    "{} image(s) given for {} image slot(s)",
                    images.len(),
                    example.images.len()
                ),
            });
        }
        let image_processor = self.processor.image_processor();
        let base = image_processor.base_img_size();
        let mut data = Vec::new();
        let mut image_sizes = Vec::new();
        let mut image_tokens = Vec::new();
        for (slot, image) in example.images.iter().zip(images) {
            let pre = match (slot, image) {
                (ExampleImage::Blank, _) => {
                    let black = RgbImage::new(base as u32, base as u32);
                    self.blank_processor.preprocess(&black)?
                }
                (ExampleImage::RobotFrame { .. }, Some(frame)) => {
                    let square = if frame.dimensions() == (base as u32, base as u32) {
                        frame.clone()
                    } else {
                        // The RLDS loader resizes frames to `base` square (TensorFlow resize);
                        // Lanczos is a stand-in, exact only for frames already at that size.
                        image::imageops::resize(
                            frame,
                            base as u32,
                            base as u32,
                            image::imageops::FilterType::Lanczos3,
                        )
                    };
                    image_processor.preprocess(&square)?
                }
                (ExampleImage::File { .. }, Some(img)) => image_processor.preprocess(img)?,
                (_, None) => {
                    return Err(ExampleError::Pixels {
                        id,
                        message: "an image file slot was given no image".into(),
                    })
                }
            };
            let (rows, cols) = pre.grid();
            image_sizes.push((rows, cols));
            image_tokens.push(image_processor.num_image_tokens(rows, cols));
            data.extend_from_slice(pre.crops());
        }
        let n_crops = image_sizes.iter().map(|(r, c)| r * c).sum();
        Ok(ExamplePixels {
            pixel_values: PixelValues {
                data,
                shape: [n_crops, 3, base, base],
            },
            image_sizes,
            image_tokens,
        })
    }

    /// [`collate`] with this builder's pad id and `max_length`.
    pub fn collate(
        &self,
        examples: &[TrainingExample],
        pixels: Option<&[ExamplePixels]>,
    ) -> Result<TrainingBatch, ExampleError> {
        collate(examples, pixels, self.pad_id()?, self.options.max_length)
    }
}

/// `DataCollatorForSupervisedDataset`: right-pad ids with `pad_id` and labels with −100, cut
/// both to `max_length`, `attention_mask = ids != pad_id`; per sample the crops of all its
/// images concatenated and zero-padded to the batch's largest crop count; `image_sizes`
/// zero-padded to the largest image count.
pub fn collate(
    examples: &[TrainingExample],
    pixels: Option<&[ExamplePixels]>,
    pad_id: u32,
    max_length: usize,
) -> Result<TrainingBatch, ExampleError> {
    if examples.is_empty() {
        return Err(ExampleError::Setting(
            "cannot collate an empty batch".into(),
        ));
    }
    let batch_size = examples.len();
    let seq_len = examples
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .unwrap_or(0)
        .min(max_length);
    let mut input_ids = vec![pad_id; batch_size * seq_len];
    let mut labels = vec![IGNORE_INDEX; batch_size * seq_len];
    for (b, example) in examples.iter().enumerate() {
        let n = example.input_ids.len().min(seq_len);
        input_ids[b * seq_len..b * seq_len + n].copy_from_slice(&example.input_ids[..n]);
        labels[b * seq_len..b * seq_len + n].copy_from_slice(&example.labels[..n]);
    }
    let attention_mask = input_ids.iter().map(|&i| u8::from(i != pad_id)).collect();

    let (pixel_values, pixel_shape, image_sizes, max_images) = match pixels {
        None => (Vec::new(), [batch_size, 0, 3, 0, 0], Vec::new(), 0),
        Some(pixels) => {
            if pixels.len() != batch_size {
                return Err(ExampleError::Setting(format!(
                    "{} pixel sets for {batch_size} examples",
                    pixels.len()
                )));
            }
            for (example, p) in examples.iter().zip(pixels) {
                if p.image_sizes.len() != example.images.len() {
                    return Err(ExampleError::Pixels {
                        id: example.id.clone().unwrap_or_else(|| "(no id)".into()),
                        message: format!(
                            "{} preprocessed image(s) for {} image(s)",
                            p.image_sizes.len(),
                            example.images.len()
                        ),
                    });
                }
            }
            let base = pixels
                .iter()
                .find(|p| p.pixel_values.shape[0] > 0)
                .map_or(0, |p| p.pixel_values.shape[2]);
            if pixels
                .iter()
                .any(|p| p.pixel_values.shape[0] > 0 && p.pixel_values.shape[2] != base)
            {
                return Err(ExampleError::Setting(
                    "the examples' crops have different sizes".into(),
                ));
            }
            let max_crops = pixels
                .iter()
                .map(|p| p.pixel_values.shape[0])
                .max()
                .unwrap_or(0);
            let max_images = pixels
                .iter()
                .map(|p| p.image_sizes.len())
                .max()
                .unwrap_or(0);
            let crop = 3 * base * base;
            let mut values = vec![0f32; batch_size * max_crops * crop];
            let mut sizes = vec![[0usize; 2]; batch_size * max_images];
            for (b, p) in pixels.iter().enumerate() {
                let start = b * max_crops * crop;
                values[start..start + p.pixel_values.data.len()]
                    .copy_from_slice(&p.pixel_values.data);
                for (k, &(r, c)) in p.image_sizes.iter().enumerate() {
                    sizes[b * max_images + k] = [r, c];
                }
            }
            (
                values,
                [batch_size, max_crops, 3, base, base],
                sizes,
                max_images,
            )
        }
    };
    Ok(TrainingBatch {
        batch_size,
        seq_len,
        input_ids,
        labels,
        attention_mask,
        pixel_values,
        pixel_shape,
        image_sizes,
        max_images,
    })
}

/// Which end of the merged sequences holds the padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingSide {
    Left,
    Right,
}

/// The batch after the model's merge (rule 9 of the fixtures): labels, attention mask and
/// position ids per merged row, `[B, T]`, and where each sample's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedLayout {
    pub batch_size: usize,
    /// Merged length `T`.
    pub seq_len: usize,
    pub padding_side: PaddingSide,
    /// `[B, T]`: text labels travel with their tokens; image rows and padding −100.
    pub labels: Vec<i64>,
    /// `[B, T]`: 1 on every real row.
    pub attention_mask: Vec<u8>,
    /// `[B, T]`: running count of real rows minus one; 1 on padding.
    pub position_ids: Vec<i64>,
    /// `[B, T]`: what fills each row.
    pub rows: Vec<MergedRow>,
}

/// The content of one merged row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergedRow {
    /// The text token at this position of the collated `input_ids` row.
    Text(usize),
    /// Feature row `row` of image `image` (the sample's images in order).
    Image { image: usize, row: usize },
    /// Padding (zero embedding).
    Pad,
}

/// Lays out the merge of image features into a collated batch: each `<image>` id (in order)
/// is replaced by `feature_rows[b][k]` rows of image `k`; pad positions (attention mask 0) are
/// not copied. Padding goes left if some mask row starts with 0, right if some row ends with 0,
/// otherwise `default_side` (the model's `padding_side`, "left" in the reference, which
/// training never changes).
pub fn merged_layout(
    batch: &TrainingBatch,
    image_id: u32,
    feature_rows: &[Vec<usize>],
    default_side: PaddingSide,
) -> Result<MergedLayout, ExampleError> {
    let (bsz, len) = (batch.batch_size, batch.seq_len);
    if feature_rows.len() != bsz {
        return Err(ExampleError::Setting(format!(
            "feature row counts for {} samples, batch has {bsz}",
            feature_rows.len()
        )));
    }
    let mask_row = |b: usize| &batch.attention_mask[b * len..(b + 1) * len];
    let padding_side = if (0..bsz).any(|b| mask_row(b).first() == Some(&0)) {
        PaddingSide::Left
    } else if (0..bsz).any(|b| mask_row(b).last() == Some(&0)) {
        PaddingSide::Right
    } else {
        default_side
    };
    let mut per_sample: Vec<Vec<(MergedRow, i64)>> = Vec::with_capacity(bsz);
    for (b, rows_of_images) in feature_rows.iter().enumerate() {
        let mut rows = Vec::new();
        let mut next_image = 0;
        for t in 0..len {
            if mask_row(b)[t] == 0 {
                continue;
            }
            let id = batch.input_ids[b * len + t];
            if id == image_id {
                let n = *rows_of_images.get(next_image).ok_or_else(|| {
                    ExampleError::Setting(format!(
                        "sample {b} has more <image> ids than the {} feature counts given",
                        rows_of_images.len()
                    ))
                })?;
                rows.extend((0..n).map(|row| {
                    (
                        MergedRow::Image {
                            image: next_image,
                            row,
                        },
                        IGNORE_INDEX,
                    )
                }));
                next_image += 1;
            } else {
                rows.push((MergedRow::Text(t), batch.labels[b * len + t]));
            }
        }
        if next_image != rows_of_images.len() {
            return Err(ExampleError::Setting(format!(
                "sample {b} has {next_image} <image> ids but {} images",
                rows_of_images.len()
            )));
        }
        per_sample.push(rows);
    }
    let seq_len = per_sample.iter().map(Vec::len).max().unwrap_or(0);
    let mut layout = MergedLayout {
        batch_size: bsz,
        seq_len,
        padding_side,
        labels: vec![IGNORE_INDEX; bsz * seq_len],
        attention_mask: vec![0; bsz * seq_len],
        position_ids: vec![1; bsz * seq_len],
        rows: vec![MergedRow::Pad; bsz * seq_len],
    };
    for (b, rows) in per_sample.iter().enumerate() {
        let offset = match padding_side {
            PaddingSide::Left => seq_len - rows.len(),
            PaddingSide::Right => 0,
        };
        for (k, &(row, label)) in rows.iter().enumerate() {
            let at = b * seq_len + offset + k;
            layout.rows[at] = row;
            layout.labels[at] = label;
            layout.attention_mask[at] = 1;
            layout.position_ids[at] = k as i64;
        }
    }
    Ok(layout)
}

/// `<image_start><image><image_end>`.
fn wrapped_image() -> String {
    format!("{IMAGE_START_TOKEN}{IMAGE_TOKEN}{IMAGE_END_TOKEN}")
}

/// `preprocess_multimodal` for one turn: count the `<image>`s, delete them (each with one
/// newline after it; with the flag on and a wrapped form present, the wrapped forms instead),
/// put `<image>\n` once per count at the start, then wrap every `<image>` if the flag is on.
fn move_placeholders(value: &str, use_image_start_end: bool) -> String {
    let count = value.matches(IMAGE_TOKEN).count();
    if count == 0 {
        return value.to_string();
    }
    let wrapped = wrapped_image();
    let stripped = if use_image_start_end && value.contains(&wrapped) {
        value
            .replace(&format!("{wrapped}\n"), "")
            .replace(&wrapped, "")
    } else {
        value
            .replace(&format!("{IMAGE_TOKEN}\n"), "")
            .replace(IMAGE_TOKEN, "")
    };
    let moved = format!("{}{stripped}", format!("{IMAGE_TOKEN}\n").repeat(count));
    if use_image_start_end {
        moved.replace(IMAGE_TOKEN, &wrapped)
    } else {
        moved
    }
}

/// `np.digitize(x, np.linspace(-1, 1, 256))` for `x` in [−1, 1]: the number of edges ≤ `x`.
fn digitize(x: f64) -> u32 {
    // numpy's linspace: start + i * step, the last edge set to stop exactly.
    let step = 2.0 / (ACTION_BINS - 1) as f64;
    let edge = |i: usize| {
        if i == ACTION_BINS - 1 {
            1.0
        } else {
            i as f64 * step + -1.0
        }
    };
    (0..ACTION_BINS).filter(|&i| edge(i) <= x).count() as u32
}

fn positions_of(ids: &[u32], id: u32) -> Vec<usize> {
    ids.iter()
        .enumerate()
        .filter(|(_, &i)| i == id)
        .map(|(k, _)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_move_to_the_turn_start() {
        assert_eq!(
            move_placeholders("box? <image> Answer", false),
            "<image>\nbox?  Answer"
        );
        assert_eq!(
            move_placeholders("Q\n<image>\n<image>", true),
            "<image_start><image><image_end>\n<image_start><image><image_end>\nQ\n"
        );
        // A wrapped form with the flag off loses only its <image>.
        assert_eq!(
            move_placeholders("<image_start><image><image_end>\nWhat?", false),
            "<image>\n<image_start><image_end>\nWhat?"
        );
        assert_eq!(move_placeholders("no image", true), "no image");
    }

    #[test]
    fn digitize_matches_numpy_at_the_edges() {
        assert_eq!(digitize(-1.0), 1);
        assert_eq!(digitize(1.0), 256);
        assert_eq!(digitize(0.0), 128);
        assert_eq!(digitize(-0.25), 96);
        // just below and at an interior edge (-1 + 2/255)
        let e1 = 2.0 / 255.0 - 1.0;
        assert_eq!(digitize(e1), 2);
        assert_eq!(digitize(e1 - 1e-12), 1);
    }
}
