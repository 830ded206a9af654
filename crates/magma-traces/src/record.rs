//! Trace cleaning on the 256 grid and the ToM / SoM conversation record (spec §4.3, §6.3).
//!
//! The question and answer strings come from [`magma_actions`] (the crate that owns Magma's
//! textual interfaces); this module decides which marks and points go into them, as the
//! reference's `data/conversations.py` (videos) and `data/openx_magma/data_utils.py` (robots) do.

use magma_actions::marks::{som, tom, GridPoint, MarkPosition, MarkTrace};
use magma_actions::prompts::{som_locate_question, TomMarks, TomQuestion, TomSubject};
use serde::{Deserialize, Serialize};

use crate::select::DataKind;

/// Side of the quantisation grid (`spatial_quant_size`).
pub const GRID: f32 = magma_actions::marks::GRID_SIZE as f32;

/// Scales a pixel position to the 256 grid as floats: (256·x/W, 256·y/H).
pub fn to_grid(p: [f32; 2], width: u32, height: u32) -> [f32; 2] {
    [GRID * p[0] / width as f32, GRID * p[1] / height as f32]
}

/// Truncates a float grid position toward zero, as the reference's `.int()` does.
pub fn truncate(p: [f32; 2]) -> GridPoint {
    GridPoint::new(p[0] as i32, p[1] as i32)
}

/// Drops every point closer than `min_distance` to the last kept point (the first is kept).
///
/// ```
/// use magma_traces::record::remove_close_points;
/// let kept = remove_close_points(&[[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [2.5, 0.5], [4.0, 0.0]], 2.0);
/// assert_eq!(kept, vec![[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]);
/// ```
pub fn remove_close_points(trace: &[[f32; 2]], min_distance: f32) -> Vec<[f32; 2]> {
    let mut kept: Vec<[f32; 2]> = Vec::with_capacity(trace.len());
    for &p in trace {
        match kept.last() {
            Some(last) if (p[0] - last[0]).hypot(p[1] - last[1]) < min_distance => {}
            _ => kept.push(p),
        }
    }
    kept
}

/// How the record is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordOptions {
    /// Serialise the cleaned trace (static points removed) rather than the full quantised trace
    /// (`remove_static_trace_pts`).
    pub remove_static_points: bool,
    /// Ask for the marks' mean speed in the question (`mm_use_trace_speed`).
    pub trace_speed: bool,
    /// Wrap the traces in `<trace_start>…<trace_end>` (`mm_use_trace_start_end`).
    pub trace_start_end: bool,
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self {
            remove_static_points: true,
            trace_speed: false,
            trace_start_end: false,
        }
    }
}

/// A positive mark's trace prepared for the answer, with its speed.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanTrace {
    pub trace: MarkTrace,
    /// Mean step on the 256 grid of the cleaned trace.
    pub speed: f32,
}

/// Cleans a positive trace (pixels) for the answer, or `None` when the reference skips the mark:
/// quantise to the 256 grid (floats), drop points within 2 grid units of the last kept one, drop
/// points with a coordinate ≤ 0, skip if at most `num_frames / 4` points remain (videos only; the
/// robot code has this check commented out), compute the mean step ("speed"), skip if it is NaN
/// or below `speed_threshold`; the serialised trace is the cleaned one or, without
/// `remove_static_points`, the whole quantised trace.
pub fn clean_trace(
    id: u32,
    trace: &[[f32; 2]],
    size: (u32, u32),
    kind: DataKind,
    speed_threshold: f32,
    options: &RecordOptions,
) -> Option<CleanTrace> {
    let grid: Vec<[f32; 2]> = trace.iter().map(|&p| to_grid(p, size.0, size.1)).collect();
    let cleaned: Vec<[f32; 2]> = remove_close_points(&grid, 2.0)
        .into_iter()
        .filter(|p| p[0] > 0.0 && p[1] > 0.0)
        .collect();
    if kind == DataKind::Video && cleaned.len() <= trace.len() / 4 {
        return None;
    }
    let steps: Vec<f32> = cleaned
        .windows(2)
        .map(|w| (w[1][0] - w[0][0]).hypot(w[1][1] - w[0][1]))
        .collect();
    // torch's mean of an empty tensor is NaN, which the reference skips.
    if steps.is_empty() {
        return None;
    }
    let speed = steps.iter().sum::<f32>() / steps.len() as f32;
    if !speed.is_finite() || speed < speed_threshold {
        return None;
    }
    let serialised = if options.remove_static_points {
        &cleaned
    } else {
        &grid
    };
    let points: Vec<GridPoint> = serialised.iter().map(|&p| truncate(p)).collect();
    Some(CleanTrace {
        trace: MarkTrace::from_points(id, &points)?,
        speed,
    })
}

/// The ToM question and answer for the surviving marks. `all_marks` lists every mark on the
/// image with its truncated grid start (ids for the drawn variant, positions for the robots'
/// textual variant).
pub fn tom_text(
    all_marks: &[MarkPosition],
    traces: &[CleanTrace],
    task: &str,
    kind: DataKind,
    options: &RecordOptions,
) -> (String, String) {
    let mut sorted_marks = all_marks.to_vec();
    sorted_marks.sort_by_key(|m| m.id);
    let marks = match kind {
        DataKind::Video => TomMarks::Drawn(sorted_marks.iter().map(|m| m.id).collect()),
        // Magma-OXE-ToM lists mark positions in the question ("textual SoM", spec §6.3).
        DataKind::Robot => TomMarks::Textual(sorted_marks),
    };
    let steps = traces
        .iter()
        .map(|t| t.trace.future.len())
        .max()
        .unwrap_or(0);
    // int(sum(speeds) / len(speeds)): truncated mean speed of the surviving marks.
    let speed = (options.trace_speed && !traces.is_empty())
        .then(|| (traces.iter().map(|t| t.speed).sum::<f32>() / traces.len() as f32) as u32);
    let question = TomQuestion {
        subject: match kind {
            DataKind::Video => TomSubject::PersonDoing,
            DataKind::Robot => TomSubject::RobotDoing,
        },
        task,
        marks,
        steps,
        speed,
    }
    .render();
    let answer_traces: Vec<MarkTrace> = traces.iter().map(|t| t.trace.clone()).collect();
    (
        question,
        tom::format_answer(&answer_traces, options.trace_start_end),
    )
}

/// The SoM-only question and answer (every mark's truncated grid start, sorted by id).
pub fn som_text(marks: &[MarkPosition]) -> (String, String) {
    (som_locate_question(), som::format_answer(marks))
}

/// One turn of a LLaVA-style conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub from: String,
    pub value: String,
}

/// A training record in Magma's conversation format (spec §8.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    pub id: String,
    pub image: Vec<String>,
    pub conversations: Vec<Turn>,
}

impl ConversationRecord {
    /// A one-question record: a human turn and a gpt turn about `image`.
    pub fn new(id: &str, image: &str, question: String, answer: String) -> Self {
        Self {
            id: id.into(),
            image: vec![image.into()],
            conversations: vec![
                Turn {
                    from: "human".into(),
                    value: question,
                },
                Turn {
                    from: "gpt".into(),
                    value: answer,
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(trace: &CleanTrace) -> Vec<[i32; 2]> {
        std::iter::once(trace.trace.start)
            .chain(trace.trace.future.iter().copied())
            .map(|p| [p.x, p.y])
            .collect()
    }

    #[test]
    fn clean_trace_follows_the_reference_steps() {
        // 512×512 frame: grid = pixel / 2. Steps of 6 px = 3 grid units, with a static stretch.
        let trace: Vec<[f32; 2]> = [0.0, 6.0, 12.0, 13.0, 14.0, 20.0, 26.0, 32.0]
            .iter()
            .map(|&d| [100.0 + d, 50.5])
            .collect();
        let opts = RecordOptions::default();
        let m = clean_trace(4, &trace, (512, 512), DataKind::Video, 2.0, &opts).unwrap();
        // Grid x: 50, 53, 56, 56.5 (dropped), 57 (dropped: 1 from 56), 60, 63, 66.
        assert_eq!(
            points(&m),
            vec![[50, 25], [53, 25], [56, 25], [60, 25], [63, 25], [66, 25]]
        );
        assert!((m.speed - 16.0 / 5.0).abs() < 1e-5);
        let full = RecordOptions {
            remove_static_points: false,
            ..Default::default()
        };
        let m = clean_trace(4, &trace, (512, 512), DataKind::Video, 2.0, &full).unwrap();
        assert_eq!(points(&m).len(), 8);
        assert_eq!(points(&m)[4], [57, 25]);
    }

    #[test]
    fn slow_short_or_offscreen_traces_are_skipped() {
        let opts = RecordOptions::default();
        let slow: Vec<[f32; 2]> = (0..8).map(|t| [100.0 + 4.5 * t as f32, 50.0]).collect();
        // 2.25 grid units per step passes 2 but not 3.
        assert!(clean_trace(1, &slow, (512, 512), DataKind::Video, 2.0, &opts).is_some());
        assert!(clean_trace(1, &slow, (512, 512), DataKind::Video, 3.0, &opts).is_none());
        // Points left of the image (x ≤ 0) are dropped; two of 8 remain: ≤ 8/4 for videos.
        let offscreen: Vec<[f32; 2]> = (0..8).map(|t| [20.0 - 10.0 * t as f32, 50.0]).collect();
        assert!(clean_trace(1, &offscreen, (512, 512), DataKind::Video, 1.0, &opts).is_none());
        // The robot code has no length check.
        let robot = clean_trace(1, &offscreen, (512, 512), DataKind::Robot, 1.0, &opts).unwrap();
        assert_eq!(points(&robot), vec![[10, 25], [5, 25]]);
        // A single surviving point has no speed (NaN in the reference): skipped.
        let still = vec![[100.0, 100.0]; 8];
        assert!(clean_trace(1, &still, (512, 512), DataKind::Robot, 0.0, &opts).is_none());
    }

    #[test]
    fn tom_text_lists_all_marks_and_the_longest_future() {
        let all = [
            MarkPosition {
                id: 5,
                at: GridPoint::new(1, 2),
            },
            MarkPosition {
                id: 2,
                at: GridPoint::new(10, 10),
            },
            MarkPosition {
                id: 1,
                at: GridPoint::new(30, 7),
            },
        ];
        let trace = |id, n: i32| CleanTrace {
            trace: MarkTrace::from_points(
                id,
                &(0..n)
                    .map(|i| GridPoint::new(10 + 3 * i, 10))
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
            speed: 3.0 + id as f32,
        };
        let traces = [trace(2, 4), trace(5, 3)];
        let opts = RecordOptions {
            trace_speed: true,
            ..Default::default()
        };
        let (q, a) = tom_text(&all, &traces, "open the drawer", DataKind::Video, &opts);
        assert_eq!(
            q,
            "<image>\n\nThe image is split into 256x256 grids, and labeled with numeric marks [1, 2, 5].\n\
             The person is doing: open the drawer. To finish the task, how to move the numerical marks in the image with speed 6 for the next 3 steps?\n"
        );
        assert!(a.starts_with("Mark 2 at [10,10], Mark 5 at [10,10] should be moved"));
        assert!(a.ends_with(
            "\"Mark 2\": \"[[13,10],[16,10],[19,10]]\"\n\n\"Mark 5\": \"[[13,10],[16,10]]\"\n\n"
        ));
        let (q, _) = tom_text(
            &all,
            &traces,
            "pick",
            DataKind::Robot,
            &RecordOptions::default(),
        );
        assert!(q.contains("labeled with numeric marks: Mark 1 at [30, 7], Mark 2 at [10, 10], Mark 5 at [1, 2].\nThe robot is doing: pick."));
    }
}
