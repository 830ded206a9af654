//! Set-of-Mark / Trace-of-Mark answers on the 256 grid (spec §4.3).

use magma_actions::marks::{grid, som, tom, GridPoint, MarkPosition, MarkTrace};
use magma_actions::ActionError;
use proptest::prelude::*;

fn p(x: i32, y: i32) -> GridPoint {
    GridPoint::new(x, y)
}

#[test]
fn quantisation_truncates_in_f32() {
    assert_eq!(grid::quantize(0.0, 0.0, 640, 480), p(0, 0));
    assert_eq!(grid::quantize(639.9, 479.0, 640, 480), p(255, 255));
    // 256·x/W is not rounded: 2.49 → 2, 2.99 → 2
    assert_eq!(grid::quantize(6.375, 7.48, 655, 640), p(2, 2));
    // int() truncates toward zero: slightly negative coordinates become 0
    assert_eq!(grid::quantize(-0.5, -3.0, 256, 256), p(0, -3));
    // the exact f32 evaluation order: 256·x first, then ÷W
    let x = 511.0f32;
    assert_eq!(
        grid::quantize(x, 0.0, 512, 512).x,
        ((256.0f32 * x) / 512.0) as i32
    );
    assert_eq!(
        grid::quantize_with_grid(50.0, 50.0, 100, 100, 100),
        p(50, 50)
    );
}

#[test]
fn som_answer_formats_and_parses() {
    let marks = [
        MarkPosition {
            id: 7,
            at: p(90, 41),
        },
        MarkPosition {
            id: 3,
            at: p(12, 200),
        },
    ];
    let text = som::format_answer(&marks);
    assert_eq!(text, "Mark 3 at [12,200]. Mark 7 at [90,41]\n");
    let parsed = som::parse_answer(&text).unwrap();
    assert_eq!(parsed, [marks[1], marks[0]]);
    assert_eq!(som::format_answer(&parsed), text);
    // the spec's spelling with a final period
    assert_eq!(
        som::parse_answer("Mark 3 at [12,200]. Mark 7 at [90,41].").unwrap(),
        parsed
    );
    assert!(matches!(
        som::parse_answer("no marks"),
        Err(ActionError::NoActionFound { .. })
    ));
    assert!(matches!(
        som::parse_answer("Mark 3 at [12,"),
        Err(ActionError::Malformed { .. })
    ));
}

fn example_traces() -> Vec<MarkTrace> {
    vec![
        MarkTrace {
            id: 7,
            start: p(90, 41),
            future: vec![p(90, 45)],
        },
        MarkTrace {
            id: 3,
            start: p(12, 200),
            future: vec![p(14, 198), p(17, 195)],
        },
    ]
}

const TOM_EXAMPLE: &str = "Mark 3 at [12,200], Mark 7 at [90,41] should be moved, and their future positions are:\n\n\"Mark 3\": \"[[14,198],[17,195]]\"\n\n\"Mark 7\": \"[[90,45]]\"\n\n";

#[test]
fn tom_answer_has_the_reference_layout() {
    assert_eq!(tom::format_answer(&example_traces(), false), TOM_EXAMPLE);
    let wrapped = tom::format_answer(&example_traces(), true);
    assert_eq!(
        wrapped,
        "Mark 3 at [12,200], Mark 7 at [90,41] should be moved, and their future positions are:\n\n<trace_start>\"Mark 3\": \"[[14,198],[17,195]]\"\n\n\"Mark 7\": \"[[90,45]]\"\n\n<trace_end>"
    );
    let mut sorted = example_traces();
    sorted.sort_by_key(|t| t.id);
    assert_eq!(tom::parse_answer(TOM_EXAMPLE).unwrap(), sorted);
    assert_eq!(tom::parse_answer(&wrapped).unwrap(), sorted);
    assert_eq!(
        tom::format_answer(&tom::parse_answer(&wrapped).unwrap(), true),
        wrapped
    );
}

#[test]
fn tom_lenient_reading_like_the_demo() {
    // header absent, commas instead of blank lines, spaces inside lists
    let text = "\"Mark 1\": \"[[1, 2], [3, 4]]\", \"Mark 2\": \"[[5,6]]\"";
    let traces = tom::parse_future_traces(text).unwrap();
    assert_eq!(
        traces,
        vec![(1, vec![p(1, 2), p(3, 4)]), (2, vec![p(5, 6)])]
    );
    // the strict reader needs the header
    assert!(matches!(
        tom::parse_answer(text),
        Err(ActionError::NoActionFound { .. })
    ));
    // an empty future list parses, but cannot be padded
    let empty = tom::parse_future_traces("\"Mark 4\": \"[]\"").unwrap();
    assert_eq!(empty, vec![(4, vec![])]);
    assert!(matches!(
        tom::pad_to_longest(&empty),
        Err(ActionError::EmptyTrace { mark: 4 })
    ));
}

#[test]
fn tom_back_to_pixels_with_padding() {
    let tracks = tom::to_pixel_tracks(TOM_EXAMPLE, 512, 256).unwrap();
    assert_eq!(tracks.len(), 2);
    assert_eq!(tracks[0].0, 3);
    assert_eq!(tracks[0].1, vec![[28.0, 198.0], [34.0, 195.0]]);
    // mark 7 has one point, repeated to the longest length
    assert_eq!(tracks[1].1, vec![[180.0, 45.0], [180.0, 45.0]]);
    assert!(matches!(
        tom::to_pixel_tracks(TOM_EXAMPLE, 0, 10),
        Err(ActionError::EmptyImage { .. })
    ));
}

#[test]
fn tom_malformed_answers_are_errors() {
    let header = "Mark 3 at [1,2] should be moved, and their future positions are:\n\n";
    for block in [
        "\"Mark 3\": \"[[1,2],[3]]\"",
        "\"Mark 3\": [[1,2]]",
        "Mark 3: \"[[1,2]]\"",
        "\"Mark 3\": \"[[1,2]]",
        "\"Mark 4\": \"[[1,2]]\"",
        "\"Mark 3\": \"[[1,2]]\"\n\n\"Mark 4\": \"[[1,2]]\"",
    ] {
        let text = format!("{header}{block}");
        assert!(
            matches!(tom::parse_answer(&text), Err(ActionError::Malformed { .. })),
            "{text:?}"
        );
    }
    assert!(matches!(
        tom::parse_answer(header),
        Err(ActionError::NoActionFound { .. })
    ));
}

proptest! {
    #[test]
    fn tom_round_trips(
        traces in prop::collection::btree_map(
            0u32..50,
            (0i32..256, 0i32..256, prop::collection::vec((0i32..256, 0i32..256), 0..6)),
            1..5,
        ),
        wrap in any::<bool>(),
    ) {
        let traces: Vec<MarkTrace> = traces
            .into_iter()
            .map(|(id, (x, y, fut))| MarkTrace {
                id,
                start: p(x, y),
                future: fut.into_iter().map(|(x, y)| p(x, y)).collect(),
            })
            .collect();
        let text = tom::format_answer(&traces, wrap);
        prop_assert_eq!(tom::parse_answer(&text).unwrap(), traces);
    }

    #[test]
    fn som_round_trips(marks in prop::collection::btree_map(0u32..100, (0i32..256, 0i32..256), 1..8)) {
        let marks: Vec<MarkPosition> =
            marks.into_iter().map(|(id, (x, y))| MarkPosition { id, at: p(x, y) }).collect();
        prop_assert_eq!(som::parse_answer(&som::format_answer(&marks)).unwrap(), marks);
    }

    #[test]
    fn quantise_then_to_pixels_stays_in_the_cell(x in 0.0f32..640.0, y in 0.0f32..480.0) {
        let q = grid::quantize(x, y, 640, 480);
        let [px, py] = grid::to_pixels(q, 640, 480).unwrap();
        prop_assert!(px <= x + 1e-3 && x - px < 640.0 / 256.0 + 1e-3);
        prop_assert!(py <= y + 1e-3 && y - py < 480.0 / 256.0 + 1e-3);
    }
}
