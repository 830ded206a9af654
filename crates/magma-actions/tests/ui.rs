//! UI action codecs: every example of spec §4.1 parses and formats back identically.

use magma_actions::ui::aitw::{CoordinateKey, NavigateKey};
use magma_actions::ui::{
    mark_to_pixels, normalized_to_pixels, resolve_click, AitwAction, ClickSource, MarkBoxes,
    UiAnswer, UiElement, UiTarget,
};
use magma_actions::ActionError;

fn elements(answer: &UiAnswer) -> (&[UiElement], bool) {
    match answer {
        UiAnswer::Elements {
            elements,
            trailing_period,
        } => (elements, *trailing_period),
        UiAnswer::NoInputAreas => panic!("expected elements"),
    }
}

#[test]
fn paper_fig12_examples_round_trip() {
    let point = UiAnswer::parse("Coordinate: (0.04, 0.12). Mark: 12").unwrap();
    let (els, dot) = elements(&point);
    assert_eq!(
        els,
        [UiElement {
            target: UiTarget::Point { x: 0.04, y: 0.12 },
            mark: Some(12)
        }]
    );
    assert!(!dot);

    let boxed = UiAnswer::parse("Coordinate: (0.27, 0.29, 0.37, 0.30). Mark: 2.").unwrap();
    let (els, dot) = elements(&boxed);
    assert_eq!(
        els[0].target,
        UiTarget::Box {
            x1: 0.27,
            y1: 0.29,
            x2: 0.37,
            y2: 0.30
        }
    );
    assert_eq!((els[0].mark, dot), (Some(2), true));

    let text = UiAnswer::parse("Text: News. Mark: 1.").unwrap();
    let (els, dot) = elements(&text);
    assert_eq!(
        els[0].target,
        UiTarget::Text {
            text: "News".into()
        }
    );
    assert_eq!((els[0].mark, dot), (Some(1), true));

    let inputs =
        UiAnswer::parse("Coordinate: (0.17, 0.43). Mark: 3. Coordinate: (0.31, 0.43). Mark: 4.")
            .unwrap();
    let (els, dot) = elements(&inputs);
    assert_eq!(els.len(), 2);
    assert_eq!(
        els[1],
        UiElement {
            target: UiTarget::Point { x: 0.31, y: 0.43 },
            mark: Some(4)
        }
    );
    assert!(dot);

    assert_eq!(
        UiAnswer::parse("No input areas found.").unwrap(),
        UiAnswer::NoInputAreas
    );

    for example in [
        "Coordinate: (0.04, 0.12). Mark: 12",
        "Coordinate: (0.27, 0.29, 0.37, 0.30). Mark: 2.",
        "Text: News. Mark: 1.",
        "Coordinate: (0.17, 0.43). Mark: 3. Coordinate: (0.31, 0.43). Mark: 4.",
        "No input areas found.",
        "Coordinate: (0.04, 0.12).",
        "Coordinate: (0.04, 0.12)",
    ] {
        assert_eq!(UiAnswer::parse(example).unwrap().format(), example);
    }
}

#[test]
fn variants_are_accepted() {
    // missing mark, no space after commas, lower-case mark (SeeClick), surrounding whitespace
    let a = UiAnswer::parse(" Coordinate: (0.5,0.25). mark: 7\n").unwrap();
    let (els, _) = elements(&a);
    assert_eq!(
        els[0],
        UiElement {
            target: UiTarget::Point { x: 0.5, y: 0.25 },
            mark: Some(7)
        }
    );
    assert_eq!(a.format(), "Coordinate: (0.50, 0.25). Mark: 7");
    let b = UiAnswer::parse("Coordinate: (0.04, 0.12).").unwrap();
    assert_eq!(elements(&b).0[0].mark, None);
    assert_eq!(
        UiAnswer::parse("No input areas found").unwrap(),
        UiAnswer::NoInputAreas
    );
}

#[test]
fn unparseable_text_is_a_typed_error() {
    for text in [
        "",
        "I cannot help with that.",
        "Sure! The button is on the left.",
    ] {
        assert!(
            matches!(
                UiAnswer::parse(text),
                Err(ActionError::NoActionFound { .. })
            ),
            "{text:?}"
        );
    }
    for text in [
        "Coordinate: (0.1, 0.2, 0.3)",
        "Coordinate: 0.1, 0.2",
        "Coordinate: (0.1, 0.2). Mark: x",
        "Coordinate: (0.1, 0.2) and more",
    ] {
        assert!(
            matches!(UiAnswer::parse(text), Err(ActionError::Malformed { .. })),
            "{text:?}"
        );
    }
}

fn boxes() -> MarkBoxes {
    MarkBoxes::from([(0, [0.0, 0.0, 0.2, 0.1]), (12, [0.5, 0.5, 0.7, 0.9])])
}

#[test]
fn ui_agent_prefers_the_mark_box() {
    let click = resolve_click("Coordinate: (0.04, 0.12). Mark: 12", &boxes(), 1000, 500).unwrap();
    assert_eq!(click.source, ClickSource::Mark);
    assert_eq!(
        (click.mark, click.mark_box),
        (Some(12), Some([0.5, 0.5, 0.7, 0.9]))
    );
    assert!((click.pixels[0] - 600.0).abs() < 1e-9 && (click.pixels[1] - 350.0).abs() < 1e-9);
}

#[test]
fn ui_agent_fallbacks() {
    // Qwen box on the 0–1000 scale → centre / 1000
    let c = resolve_click("<box>(100,200),(300,400)</box>", &boxes(), 800, 600).unwrap();
    assert_eq!(c.source, ClickSource::QwenBox);
    assert_eq!(c.normalized, [0.2, 0.3]);
    assert!((c.pixels[0] - 160.0).abs() < 1e-9 && (c.pixels[1] - 180.0).abs() < 1e-9);
    // 2 numbers → point
    let c = resolve_click("Coordinate: (0.25, 0.75)", &boxes(), 800, 600).unwrap();
    assert_eq!((c.source, c.pixels), (ClickSource::Point, [200.0, 450.0]));
    // 4 numbers → box centre
    let c = resolve_click("(0.1, 0.2, 0.3, 0.4)", &boxes(), 1000, 1000).unwrap();
    assert_eq!(c.source, ClickSource::BoxCenter);
    assert!((c.normalized[0] - 0.2).abs() < 1e-12 && (c.normalized[1] - 0.3).abs() < 1e-12);
}

#[test]
fn ui_agent_quirks_are_kept() {
    // unknown mark: the number rule then also counts the mark → 3 numbers → nothing
    let err = resolve_click("Coordinate: (0.04, 0.12). Mark: 99", &boxes(), 100, 100).unwrap_err();
    assert!(matches!(err, ActionError::NoActionFound { .. }), "{err}");
    // unknown mark without coordinates: the mark number alone is 1 number → nothing
    assert!(resolve_click("Mark: 99", &boxes(), 100, 100).is_err());
    // "box" in the text but no Qwen box → failure (the reference's IndexError)
    let err = resolve_click("the box at (0.1, 0.2)", &boxes(), 100, 100).unwrap_err();
    assert!(matches!(err, ActionError::Malformed { .. }), "{err}");
    // Qwen pattern allows no spaces
    assert!(resolve_click("<box>(1, 2),(3, 4)</box>", &boxes(), 100, 100).is_err());
    // `Mark:` is case-sensitive with exactly one space in the reference
    let c = resolve_click("mark: 12 at (0.3, 0.4)", &boxes(), 100, 100).unwrap_err();
    assert!(matches!(c, ActionError::NoActionFound { .. }));
}

#[test]
fn pixel_conversions() {
    assert_eq!(
        normalized_to_pixels([0.04, 0.12], 1000, 1000).unwrap(),
        [40.0, 120.0]
    );
    let err = mark_to_pixels(5, &boxes(), 100, 100).unwrap_err();
    assert!(matches!(
        err,
        ActionError::UnknownMark {
            mark: 5,
            available: 2
        }
    ));
    assert!(matches!(
        normalized_to_pixels([0.1, 0.1], 0, 10),
        Err(ActionError::EmptyImage { .. })
    ));
    assert!(normalized_to_pixels([f64::NAN, 0.1], 10, 10).is_err());
}

#[test]
fn aitw_actions_round_trip() {
    let cases: [(&str, AitwAction); 10] = [
        (r#"{"TAP": {"MARK": 3}}"#, AitwAction::TapMark { mark: 3 }),
        (
            r#"{"TAP": {"NORMALIZED_COORDINATE": [0.54, 0.88]}}"#,
            AitwAction::TapPoint {
                x: 0.88,
                y: 0.54,
                key: CoordinateKey::NormalizedCoordinate,
            },
        ),
        (
            r#"{"TAP": {"Coordinate": [0.54, 0.88]}}"#,
            AitwAction::TapPoint {
                x: 0.88,
                y: 0.54,
                key: CoordinateKey::Coordinate,
            },
        ),
        (
            r#"{"SWIPE": "UP"}"#,
            AitwAction::Swipe {
                direction: "UP".into(),
            },
        ),
        (
            r#"{"SWIPE": "LEFT"}"#,
            AitwAction::Swipe {
                direction: "LEFT".into(),
            },
        ),
        (
            r#"{"NAVIGATE": "BACK"}"#,
            AitwAction::Navigate {
                button: "BACK".into(),
                key: NavigateKey::Navigate,
            },
        ),
        (
            r#"{"PRESS": "HOME"}"#,
            AitwAction::Navigate {
                button: "HOME".into(),
                key: NavigateKey::Press,
            },
        ),
        (
            r#"{"TYPE": "2 bedroom \"Chicago\""}"#,
            AitwAction::Type {
                text: "2 bedroom \"Chicago\"".into(),
            },
        ),
        (
            r#"{"SET_TASK_STATUS": "COMPLETE"}"#,
            AitwAction::SetTaskStatus {
                status: "COMPLETE".into(),
            },
        ),
        (
            r#"{"SET_TASK_STATUS": "IMPOSSIBLE"}"#,
            AitwAction::SetTaskStatus {
                status: "IMPOSSIBLE".into(),
            },
        ),
    ];
    for (text, want) in cases {
        let got = AitwAction::parse(text).unwrap();
        assert_eq!(got, want, "{text}");
        assert_eq!(got.format(), text);
    }
    // integral coordinates are written as Python floats
    let a = AitwAction::TapPoint {
        x: 0.5,
        y: 1.0,
        key: CoordinateKey::NormalizedCoordinate,
    };
    assert_eq!(
        a.format(),
        r#"{"TAP": {"NORMALIZED_COORDINATE": [1.0, 0.5]}}"#
    );
}

#[test]
fn aitw_answers_inside_text_and_errors() {
    let fenced = "```json\n{\"TAP\": {\"MARK\": 0}}\n```";
    assert_eq!(
        AitwAction::parse(fenced).unwrap(),
        AitwAction::TapMark { mark: 0 }
    );
    assert!(matches!(
        AitwAction::parse("tap the icon"),
        Err(ActionError::NoActionFound { .. })
    ));
    for bad in [
        r#"{"TAP": {"MARK": -1}}"#,
        r#"{"TAP": {"NORMALIZED_COORDINATE": [0.5]}}"#,
        r#"{"SWIPE": "UP", "TYPE": "x"}"#,
        r#"{"JUMP": "UP"}"#,
        r#"{"TYPE": 3}"#,
        r#"{"TAP": }"#,
    ] {
        assert!(
            matches!(AitwAction::parse(bad), Err(ActionError::Malformed { .. })),
            "{bad}"
        );
    }
}

#[test]
fn mark_annotations_are_stripped_like_the_reference() {
    use magma_actions::ui::answer::strip_mark_annotations;
    assert_eq!(
        strip_mark_annotations("Coordinate: (0.04, 0.12). Mark: 12"),
        "Coordinate: (0.04, 0.12)."
    );
    assert_eq!(
        strip_mark_annotations("Text: News. Mark: 1."),
        "Text: News.."
    );
    // only ` Mark: ` followed by digits is removed
    assert_eq!(
        strip_mark_annotations("Mark: 3 and Mark: x"),
        "Mark: 3 and Mark: x"
    );
    assert_eq!(
        strip_mark_annotations("click the Book Mark: 7"),
        "click the Book"
    );
}
