//! The training record: one sample of Magma's pretraining mix (a UI screenshot with marks, a robot
//! step with action tokens, a video window with traces, or a plain LLaVA conversation).
//!
//! A [`Record`] is what every converter and curation stage produces and every writer stores. Its
//! media are *references* (file names inside the output shard or paths under an image root); the
//! bytes travel beside it in a [`Sample`] so that the JSON stays small.
//!
//! Ids are deterministic ([`record_id`]): the same source item always gets the same id, so a retried
//! job overwrites its earlier output instead of duplicating it.
//!
//! ```
//! use magma_data::record::{record_id, Record, Turn};
//!
//! let mut record = Record::new("llava", "llava_v1_5_mix665k.json#000000033471");
//! record.conversations = vec![
//!     Turn::human("<image>\nWhat are the colors of the bus?"),
//!     Turn::gpt("The bus is white and red."),
//! ];
//! assert_eq!(record.id, record_id("llava", "llava_v1_5_mix665k.json#000000033471"));
//! assert!(record.id.starts_with("llava-"));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One conversation turn as Magma's loader reads it (`{"from": "human"|"gpt", "value": …}`).
///
/// The reference treats `from` ∈ {`human`, `user`} as the user and anything else as the assistant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// `human` or `gpt` (other values are kept as given).
    pub from: String,
    /// The text, with `<image>` placeholders where images go.
    pub value: String,
}

impl Turn {
    /// A user turn.
    pub fn human(value: impl Into<String>) -> Self {
        Turn {
            from: "human".into(),
            value: value.into(),
        }
    }

    /// An assistant turn.
    pub fn gpt(value: impl Into<String>) -> Self {
        Turn {
            from: "gpt".into(),
            value: value.into(),
        }
    }

    /// Whether the reference loader treats this turn as the user's.
    pub fn is_user(&self) -> bool {
        matches!(self.from.as_str(), "human" | "user")
    }
}

/// An image or video input of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Media {
    /// A still image. `path` is relative to the record's shard (for bytes carried in a [`Sample`])
    /// or to the image root of the dataset (pass-through sources).
    Image {
        /// File name or relative path.
        path: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// Frames of a video, referenced by index (no re-encode).
    VideoFrames {
        /// Path of the video file.
        video: String,
        /// Frame indices at the video's own frame rate.
        frames: Vec<u64>,
        /// Frame rate numerator (rational, e.g. 30000).
        fps_num: u32,
        /// Frame rate denominator (e.g. 1001).
        fps_den: u32,
        /// Frame width in pixels.
        width: u32,
        /// Frame height in pixels.
        height: u32,
    },
}

impl Media {
    /// Width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Media::Image { width, height, .. } | Media::VideoFrames { width, height, .. } => {
                (*width, *height)
            }
        }
    }
}

/// A Set-of-Mark box on the record's first image, in pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkBox {
    /// The mark number shown in the image and used in the answer text (0-based for UI data).
    pub index: u32,
    /// `[x1, y1, x2, y2]` in pixels of the first image.
    pub bbox: [f64; 4],
    /// Element text (OCR text, a button label), when the source has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Element type (`TEXT`, `ICON_…`, `button`), when the source has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One point's trace over the frames of a record (Trace-of-Mark).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The mark this trace belongs to (1-based for trace marks, as Magma draws them).
    pub mark: u32,
    /// `[x, y]` in pixels per frame.
    pub points: Vec<[f32; 2]>,
    /// Visibility per frame (same length as `points`).
    pub visible: Vec<bool>,
}

/// A supervised action of the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// A robot end-effector action (Open-X).
    Robot {
        /// The action as stored in the dataset.
        raw: Vec<f64>,
        /// BOUNDS_Q99-normalised action in `[-1, 1]` (when statistics were given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalized: Option<Vec<f64>>,
        /// The 256-bin action token ids (when statistics were given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tokens: Option<Vec<u32>>,
    },
    /// A UI action (AITW, Mind2Web, SeeClick).
    Ui {
        /// Operation name (`CLICK`, `TYPE`, `SELECT`, `SCROLL_UP`, `PRESS_BACK`, …).
        op: String,
        /// Normalised `[x, y]` target point, when the action has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        point: Option<[f64; 2]>,
        /// Target mark index, when the target is a marked element.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mark: Option<u32>,
        /// Typed or selected text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
}

/// Where a record came from, so that any record can be traced back to its input bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Provenance {
    /// Which converter or stage made it (`rlds`, `aitw`, …) and the crate version.
    pub converter: String,
    /// The input file.
    pub input: String,
    /// Where inside the input (`record 3 step 5`, `task 2 action 1`, JSON index).
    pub locator: String,
}

/// One training sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Deterministic id ([`record_id`]); also the WebDataset key (no dots).
    pub id: String,
    /// Source dataset tag (`rlds:fractal20220817_data`, `aitw`, `mind2web`, `seeclick`, `llava`, …).
    pub source: String,
    /// Images or video frames, in `<image>` order.
    #[serde(default)]
    pub media: Vec<Media>,
    /// The conversation the trainer reads.
    #[serde(default)]
    pub conversations: Vec<Turn>,
    /// Set-of-Mark boxes on the first image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marks: Vec<MarkBox>,
    /// Trace-of-Mark traces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traces: Vec<Trace>,
    /// Supervised actions (one per step for single-step records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// Named scores computed by curation stages (`clip`), kept so thresholds can change later.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, f64>,
    /// Origin of the record.
    #[serde(default)]
    pub provenance: Provenance,
}

impl Record {
    /// An empty record of `source` whose id is derived from `item` (see [`record_id`]).
    pub fn new(source: &str, item: &str) -> Self {
        Record {
            id: record_id(source, item),
            source: source.to_string(),
            media: Vec::new(),
            conversations: Vec::new(),
            marks: Vec::new(),
            traces: Vec::new(),
            actions: Vec::new(),
            scores: BTreeMap::new(),
            provenance: Provenance::default(),
        }
    }

    /// Number of `<image>` placeholders in the conversation.
    pub fn image_placeholders(&self) -> usize {
        self.conversations
            .iter()
            .map(|t| t.value.matches("<image>").count())
            .sum()
    }
}

/// A file carried with a record (an image's encoded bytes), stored next to it in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// File name, as referenced by [`Media::Image::path`] (`<id>.0.jpg`).
    pub name: String,
    /// The encoded bytes.
    pub bytes: Vec<u8>,
}

/// A record and the files it references.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The record.
    pub record: Record,
    /// Encoded images the record's media point to (may be empty for pass-through sources).
    pub assets: Vec<Asset>,
}

impl Sample {
    /// A sample without carried files.
    pub fn new(record: Record) -> Self {
        Sample {
            record,
            assets: Vec::new(),
        }
    }

    /// Adds an encoded image as the next medium: its name is `<id>.<n>.<ext>`.
    pub fn push_image(&mut self, bytes: Vec<u8>, ext: &str, width: u32, height: u32) {
        let name = format!("{}.{}.{ext}", self.record.id, self.record.media.len());
        self.record.media.push(Media::Image {
            path: name.clone(),
            width,
            height,
        });
        self.assets.push(Asset { name, bytes });
    }
}

/// The deterministic id of the record made from `item` of `source`: the source tag (made safe for
/// file names) and 32 hex digits of SHA-256 over `source`, a NUL byte and `item`.
///
/// `item` must identify the input unit exactly (file + episode + step, video + window): the same
/// pair gives the same id on every run and machine, so reruns overwrite instead of duplicating.
///
/// ```
/// use magma_data::record::record_id;
/// let id = record_id("rlds:fractal", "shard-00000#episode 3#step 0");
/// assert_eq!(id, record_id("rlds:fractal", "shard-00000#episode 3#step 0"));
/// assert_ne!(id, record_id("rlds:fractal", "shard-00000#episode 3#step 1"));
/// assert!(id.starts_with("rlds_fractal-") && !id.contains('.'));
/// ```
pub fn record_id(source: &str, item: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_bytes());
    hasher.update([0u8]);
    hasher.update(item.as_bytes());
    let digest = hasher.finalize();
    let slug: String = source
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut id = slug;
    id.push('-');
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_round_trip_keeps_every_field() {
        let mut r = Record::new("aitw", "ep1#3");
        r.media.push(Media::Image {
            path: "a.0.jpg".into(),
            width: 1080,
            height: 2400,
        });
        r.conversations = vec![Turn::human("<image>\nhi"), Turn::gpt("ok")];
        r.marks.push(MarkBox {
            index: 0,
            bbox: [1.0, 2.0, 3.0, 4.0],
            text: Some("OK".into()),
            kind: None,
        });
        r.traces.push(Trace {
            mark: 1,
            points: vec![[1.5, 2.5], [3.0, 4.0]],
            visible: vec![true, false],
        });
        r.actions.push(Action::Ui {
            op: "CLICK".into(),
            point: Some([0.5, 0.25]),
            mark: None,
            value: None,
        });
        r.scores.insert("clip".into(), 0.31);
        let text = serde_json::to_string(&r).unwrap();
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.image_placeholders(), 1);
    }

    #[test]
    fn ids_depend_on_source_and_item_only() {
        // A NUL separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(record_id("ab", "c"), record_id("a", "bc"));
        assert_eq!(record_id("x", "y").len(), "x-".len() + 32);
    }
}
