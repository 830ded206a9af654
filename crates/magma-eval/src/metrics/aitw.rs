//! Android in the Wild: action matching as `android_in_the_wild/action_matching.py`
//! (google-research) computes it, step accuracy per category as SeeClick's `aitw_test.py`
//! reports it, and the AITW paper's partial / complete episode match.
//!
//! The official matcher is JAX code running in float32: points, box edges and distances are
//! compared as f32 here too, so cases on a threshold fall the same way.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::jsonl::id_string;
use crate::scores::{mean, percent, Scores};

/// `ActionType` ids of the AITW data.
pub mod action_type {
    pub const TYPE: i64 = 3;
    pub const DUAL_POINT: i64 = 4;
    pub const PRESS_BACK: i64 = 5;
    pub const PRESS_HOME: i64 = 6;
    pub const PRESS_ENTER: i64 = 7;
    pub const STATUS_TASK_COMPLETE: i64 = 10;
    pub const STATUS_TASK_IMPOSSIBLE: i64 = 11;
}

/// Two taps match within this distance (fraction of the screen) when no grown box holds both.
pub const TAP_DISTANCE_THRESHOLD: f32 = 0.14;
/// Annotation boxes grow by this fraction of their size for tap matching ("1.4 == 240%").
pub const ANNOTATION_AUGMENT_FRACTION: f64 = 1.4;
/// A DUAL_POINT whose touch and lift are at most this far apart is a tap, else a swipe.
pub const SWIPE_DISTANCE_THRESHOLD: f32 = 0.04;

/// The AITW dataset categories in the order the AITW and Magma papers list them.
pub const CATEGORIES: [&str; 5] = [
    "general",
    "install",
    "google_apps",
    "single",
    "web_shopping",
];

/// One reference step (field names as in the AITW TFRecords).
#[derive(Debug, Clone, Deserialize)]
pub struct AitwReference {
    #[serde(deserialize_with = "id_string")]
    pub episode_id: String,
    pub step_id: u32,
    #[serde(default)]
    pub episode_length: Option<u32>,
    pub category: String,
    #[serde(default)]
    pub goal_info: String,
    #[serde(rename = "results/action_type")]
    pub action_type: i64,
    #[serde(rename = "results/yx_touch")]
    pub yx_touch: [f64; 2],
    #[serde(rename = "results/yx_lift")]
    pub yx_lift: [f64; 2],
    #[serde(rename = "results/type_action", default)]
    pub type_action: String,
    /// Flat `[y, x, h, w, …]` boxes, normalised.
    #[serde(rename = "image/ui_annotations_positions", default)]
    pub ui_annotations_positions: Vec<f64>,
}

/// One predicted step; all action fields `null` = unparsable output.
#[derive(Debug, Clone, Deserialize)]
pub struct AitwPrediction {
    #[serde(deserialize_with = "id_string")]
    pub episode_id: String,
    pub step_id: u32,
    #[serde(rename = "results/action_type", default)]
    pub action_type: Option<i64>,
    #[serde(rename = "results/yx_touch", default)]
    pub yx_touch: Option<[f64; 2]>,
    #[serde(rename = "results/yx_lift", default)]
    pub yx_lift: Option<[f64; 2]>,
    #[serde(rename = "results/type_action", default)]
    pub type_action: Option<String>,
}

/// An action as the matcher sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchAction {
    pub action_type: i64,
    /// (y, x), normalised.
    pub touch: [f64; 2],
    /// (y, x), normalised.
    pub lift: [f64; 2],
}

impl AitwReference {
    /// The key predictions are joined on: `episode_id/step_id`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.episode_id, self.step_id)
    }

    fn action(&self) -> MatchAction {
        MatchAction {
            action_type: self.action_type,
            touch: self.yx_touch,
            lift: self.yx_lift,
        }
    }

    /// The annotation boxes as `(y, x, h, w)` rows (a trailing partial row is ignored).
    pub fn boxes(&self) -> Vec<[f64; 4]> {
        self.ui_annotations_positions
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect()
    }
}

impl AitwPrediction {
    /// The key predictions are joined on: `episode_id/step_id`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.episode_id, self.step_id)
    }

    /// The action, or `None` when the output was unparsable (no type, or a DUAL_POINT without
    /// points). Non-DUAL_POINT actions need no points (`[-1, -1]` is assumed).
    pub fn action(&self) -> Option<MatchAction> {
        let action_type = self.action_type?;
        let none = [-1.0, -1.0];
        match (self.yx_touch, self.yx_lift) {
            (Some(touch), Some(lift)) => Some(MatchAction {
                action_type,
                touch,
                lift,
            }),
            _ if action_type != action_type::DUAL_POINT => Some(MatchAction {
                action_type,
                touch: none,
                lift: none,
            }),
            _ => None,
        }
    }
}

fn f32_point(p: [f64; 2]) -> [f32; 2] {
    [p[0] as f32, p[1] as f32]
}

fn distance(a: [f32; 2], b: [f32; 2]) -> f32 {
    let (dy, dx) = (a[0] - b[0], a[1] - b[1]);
    (dy * dy + dx * dx).sqrt()
}

/// Whether a touch→lift gesture is a tap (‖touch − lift‖ ≤ 0.04).
pub fn is_tap(touch: [f64; 2], lift: [f64; 2]) -> bool {
    distance(f32_point(touch), f32_point(lift)) <= SWIPE_DISTANCE_THRESHOLD
}

/// Grows `(y, x, h, w)` boxes as the official code does: by 1.4 × the size, centred, the
/// top-left clamped at 0 and the *size* capped at 1 (so the bottom/right edge is not clamped,
/// and near the top a box can grow to 2.4 × its height). The growth is computed in float64
/// (numpy) and then stored as float32 (JAX), as there.
pub fn grow_boxes(boxes: &[[f64; 4]]) -> Vec<[f32; 4]> {
    boxes
        .iter()
        .map(|&[y, x, h, w]| {
            let (dh, dw) = (
                ANNOTATION_AUGMENT_FRACTION * h,
                ANNOTATION_AUGMENT_FRACTION * w,
            );
            [
                (y - dh / 2.0).max(0.0) as f32,
                (x - dw / 2.0).max(0.0) as f32,
                (h + dh).min(1.0) as f32,
                (w + dw).min(1.0) as f32,
            ]
        })
        .collect()
}

fn in_box(p: [f32; 2], b: &[f32; 4]) -> bool {
    let (bottom, right) = (b[0] + b[2], b[1] + b[3]);
    p[0] >= b[0] && p[0] <= bottom && p[1] >= b[1] && p[1] <= right
}

/// `check_actions_match` of the official code. `boxes` are the screen's `(y, x, h, w)`
/// annotation boxes. The function is symmetric in the two actions.
///
/// * either action not DUAL_POINT → match iff the types are equal (typed text is not compared);
/// * tap vs swipe → no match;
/// * two taps → both *touch* points in one grown box, or within 0.14 of each other;
/// * two swipes → the same main axis (argmax |Δ|, ties → y): the direction's sign is ignored.
///
/// ```
/// use magma_eval::metrics::aitw::{check_actions_match, MatchAction};
///
/// let tap = |y, x| MatchAction { action_type: 4, touch: [y, x], lift: [y, x] };
/// // 0.20 apart, but one grown box (0.38, 0.48, 0.24, 0.24) holds both
/// assert!(check_actions_match(&tap(0.5, 0.5), &tap(0.5, 0.7), &[[0.45, 0.55, 0.10, 0.10]]));
/// assert!(!check_actions_match(&tap(0.5, 0.5), &tap(0.5, 0.7), &[]));
/// ```
pub fn check_actions_match(a: &MatchAction, b: &MatchAction, boxes: &[[f64; 4]]) -> bool {
    use action_type::DUAL_POINT;
    if a.action_type != DUAL_POINT || b.action_type != DUAL_POINT {
        return a.action_type == b.action_type;
    }
    let (a_tap, b_tap) = (is_tap(a.touch, a.lift), is_tap(b.touch, b.lift));
    if a_tap != b_tap {
        return false;
    }
    if a_tap {
        let (ta, tb) = (f32_point(a.touch), f32_point(b.touch));
        // `jnp.max` over the boxes; the official code fails on a screen without boxes, which
        // here simply means no box holds both.
        let both_in_box = grow_boxes(boxes)
            .iter()
            .any(|g| in_box(ta, g) && in_box(tb, g));
        return both_in_box || distance(ta, tb) <= TAP_DISTANCE_THRESHOLD;
    }
    main_axis(a) == main_axis(b)
}

/// 0 = y, 1 = x; `np.argmax` picks the first on a tie.
fn main_axis(a: &MatchAction) -> usize {
    let (t, l) = (f32_point(a.touch), f32_point(a.lift));
    let (dy, dx) = ((l[0] - t[0]).abs(), (l[1] - t[1]).abs());
    usize::from(dx > dy)
}

/// Outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOutcome {
    /// The action matched.
    pub matched: bool,
    /// The prediction could be parsed at all.
    pub parsed: bool,
    /// Action types equal (SeeClick's "type accuracy").
    pub type_matched: bool,
    /// For a reference TYPE step: the typed texts are equal or one contains the other
    /// (SeeClick's "text accuracy"; a prediction that typed nothing contains "" and counts).
    pub text_matched: Option<bool>,
}

/// Scores one step.
pub fn score_step(reference: &AitwReference, prediction: Option<&AitwPrediction>) -> StepOutcome {
    let Some((pred, action)) = prediction.and_then(|p| p.action().map(|a| (p, a))) else {
        return StepOutcome {
            matched: false,
            parsed: false,
            type_matched: false,
            text_matched: None,
        };
    };
    let gt = reference.action();
    let text_matched = (gt.action_type == action_type::TYPE).then(|| {
        let p = pred.type_action.as_deref().unwrap_or("");
        let r = reference.type_action.as_str();
        p == r || r.contains(p) || p.contains(r)
    });
    StepOutcome {
        matched: check_actions_match(&action, &gt, &reference.boxes()),
        parsed: true,
        type_matched: action.action_type == gt.action_type,
        text_matched,
    }
}

/// Scores joined steps: per category `accuracy` (matched / steps, unparsable = wrong),
/// `partial_match` (mean over episodes of matched / steps), `complete_match` (share of episodes
/// with every step matched), `type_accuracy`, `text_accuracy`, `steps`, `episodes`; and at the
/// top level the unweighted mean over the categories present (Magma's Table 5 "Overall").
pub fn score(pairs: &[(AitwReference, Option<AitwPrediction>)]) -> Scores {
    #[derive(Default)]
    struct Tally {
        steps: usize,
        matched: usize,
        parsed: usize,
        type_matched: usize,
        text_total: usize,
        text_matched: usize,
        episodes: BTreeMap<String, (usize, usize)>,
    }
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for (r, p) in pairs {
        let o = score_step(r, p.as_ref());
        let t = tallies.entry(r.category.as_str()).or_default();
        t.steps += 1;
        t.matched += usize::from(o.matched);
        t.parsed += usize::from(o.parsed);
        t.type_matched += usize::from(o.type_matched);
        if let Some(m) = o.text_matched {
            t.text_total += 1;
            t.text_matched += usize::from(m);
        }
        let e = t.episodes.entry(r.episode_id.clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(o.matched);
    }
    let mut scores = Scores::new();
    let ordered = CATEGORIES
        .iter()
        .copied()
        .filter(|c| tallies.contains_key(c))
        .chain(
            tallies
                .keys()
                .copied()
                .filter(|c| !CATEGORIES.contains(c))
                .collect::<Vec<_>>(),
        )
        .collect::<Vec<_>>();
    let (mut acc, mut partial, mut complete) = (Vec::new(), Vec::new(), Vec::new());
    for category in ordered {
        let t = &tallies[category];
        let episode_partial: Vec<f64> = t
            .episodes
            .values()
            .map(|&(n, m)| m as f64 / n as f64)
            .collect();
        let complete_n = t.episodes.values().filter(|&&(n, m)| n == m).count();
        let mut s = Scores::new();
        let a = percent(t.matched as f64, t.steps as f64);
        let pm = 100.0 * mean(&episode_partial);
        let cm = percent(complete_n as f64, t.episodes.len() as f64);
        s.insert("accuracy", a);
        s.insert("partial_match", pm);
        s.insert("complete_match", cm);
        // SeeClick divides type accuracy by every step, text accuracy by the parsed TYPE steps.
        s.insert(
            "type_accuracy",
            percent(t.type_matched as f64, t.steps as f64),
        );
        s.insert(
            "text_accuracy",
            percent(t.text_matched as f64, t.text_total as f64),
        );
        s.insert("steps", t.steps as f64);
        s.insert("unparsed", (t.steps - t.parsed) as f64);
        s.insert("episodes", t.episodes.len() as f64);
        acc.push(a);
        partial.push(pm);
        complete.push(cm);
        scores.insert_group(category, s);
    }
    scores.insert("accuracy", mean(&acc));
    scores.insert("partial_match", mean(&partial));
    scores.insert("complete_match", mean(&complete));
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(y: f64, x: f64) -> MatchAction {
        MatchAction {
            action_type: action_type::DUAL_POINT,
            touch: [y, x],
            lift: [y, x],
        }
    }

    fn swipe(from: [f64; 2], to: [f64; 2]) -> MatchAction {
        MatchAction {
            action_type: action_type::DUAL_POINT,
            touch: from,
            lift: to,
        }
    }

    fn global(t: i64) -> MatchAction {
        MatchAction {
            action_type: t,
            touch: [-1.0, -1.0],
            lift: [-1.0, -1.0],
        }
    }

    #[test]
    fn taps_within_the_distance_threshold_match() {
        // d = sqrt(0.05² + 0.08²) = 0.094 ≤ 0.14
        assert!(check_actions_match(&tap(0.50, 0.50), &tap(0.55, 0.58), &[]));
        // d = 0.15 > 0.14
        assert!(!check_actions_match(
            &tap(0.50, 0.50),
            &tap(0.50, 0.65),
            &[]
        ));
        // d = 0.14 exactly on paper: inclusive, and in float32 too (official code agrees)
        assert!(check_actions_match(&tap(0.50, 0.50), &tap(0.50, 0.64), &[]));
    }

    #[test]
    fn grown_box_is_centred_and_capped_in_size_not_position() {
        let grown = grow_boxes(&[[0.45, 0.55, 0.10, 0.10], [0.0, 0.1, 0.5, 0.2]]);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        // 0.45 - 0.07 = 0.38, 0.10 + 0.14 = 0.24
        assert!(close(grown[0][0], 0.38) && close(grown[0][1], 0.48));
        assert!(close(grown[0][2], 0.24) && close(grown[0][3], 0.24));
        // top clamped to 0, but the height is 0.5 + 0.7 = 1.2 capped to 1.0 (not to 1 - top)
        assert_eq!(grown[1][0], 0.0);
        assert!(close(grown[1][2], 1.0) && close(grown[1][3], 0.48));
        // near the top edge the box reaches 2.4× its height: (0, ., 0.1, .) grows to 0.24 tall
        let top = grow_boxes(&[[0.0, 0.5, 0.1, 0.1]]);
        assert!(close(top[0][2], 0.24));
        assert!(check_actions_match(
            &tap(0.0, 0.5),
            &tap(0.235, 0.5),
            &[[0.0, 0.5, 0.1, 0.1]]
        ));
    }

    #[test]
    fn box_edges_are_inclusive_in_float32() {
        // grown (0, 0, 0.24, 0.24): (0, 0) is on its edge, 0.28 away from (0.2, 0.2)
        let b = [[0.0, 0.0, 0.10, 0.10]];
        assert!(check_actions_match(&tap(0.0, 0.0), &tap(0.2, 0.2), &b));
        // grown (0.38, 0.48, 0.24, 0.24): on paper (0.62, 0.72) is its bottom-right corner,
        // but 0.38f32 + 0.24f32 < 0.62f32, so the official code says no (checked by running it)
        let b = [[0.45, 0.55, 0.10, 0.10]];
        assert!(!check_actions_match(&tap(0.38, 0.48), &tap(0.62, 0.72), &b));
    }

    #[test]
    fn swipes_match_on_the_main_axis_ignoring_the_sign() {
        let up = swipe([0.8, 0.5], [0.2, 0.5]);
        let down = swipe([0.2, 0.5], [0.8, 0.5]);
        let left = swipe([0.5, 0.8], [0.5, 0.2]);
        assert!(check_actions_match(&up, &down, &[]));
        assert!(!check_actions_match(&up, &left, &[]));
        // an exact diagonal has its main axis on y
        let diagonal = swipe([0.2, 0.2], [0.5, 0.5]);
        assert!(check_actions_match(&diagonal, &up, &[]));
        assert!(!check_actions_match(&diagonal, &left, &[]));
    }

    #[test]
    fn tap_versus_swipe_and_non_dual_point_types() {
        assert!(!check_actions_match(
            &tap(0.5, 0.5),
            &swipe([0.5, 0.5], [0.5, 0.6]),
            &[]
        ));
        assert!(!check_actions_match(
            &global(action_type::PRESS_BACK),
            &global(action_type::PRESS_HOME),
            &[]
        ));
        assert!(!check_actions_match(
            &tap(0.5, 0.5),
            &global(action_type::TYPE),
            &[]
        ));
        // a tap is ≤ 0.04 long, in float32: 0.54f32 - 0.5f32 > 0.04f32 (official code agrees)
        assert!(is_tap([0.5, 0.5], [0.5, 0.53]));
        assert!(!is_tap([0.5, 0.5], [0.5, 0.54]));
    }

    #[test]
    fn typed_text_is_not_compared_but_text_accuracy_is_reported() {
        let reference: AitwReference = serde_json::from_value(serde_json::json!({
            "episode_id": "1", "step_id": 0, "category": "general",
            "results/action_type": 3, "results/yx_touch": [-1.0, -1.0],
            "results/yx_lift": [-1.0, -1.0], "results/type_action": "hello",
        }))
        .unwrap();
        let pred = |text: &str| AitwPrediction {
            episode_id: "1".into(),
            step_id: 0,
            action_type: Some(3),
            yx_touch: None,
            yx_lift: None,
            type_action: Some(text.into()),
        };
        let bye = score_step(&reference, Some(&pred("bye")));
        assert!(bye.matched && bye.text_matched == Some(false));
        assert_eq!(
            score_step(&reference, Some(&pred("hello world"))).text_matched,
            Some(true)
        );
        let missing = score_step(&reference, None);
        assert!(!missing.matched && !missing.parsed);
    }
}
