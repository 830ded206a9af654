//! Synthetic stress cases through the whole pipeline: no boxes, one box, 300 overlapping boxes, boxes on
//! every border, a tiny 8×8 image and a huge 8000×600 one.

use magma_marks::image::{Rgb, RgbImage};
use magma_marks::{
    magma_mark_sizes, mark_screenshot, parse_boxes, BoxFormat, CandidateBox, MarkStyle, SomOptions,
    TextLayout, MARK_RED,
};

fn blank(w: u32, h: u32) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb([250, 250, 250]))
}

fn both_styles() -> [SomOptions; 2] {
    [
        SomOptions::default(),
        SomOptions {
            style: MarkStyle::OmniParser,
            ..SomOptions::default()
        },
    ]
}

#[test]
fn no_boxes_leave_the_image_untouched() {
    let img = blank(320, 200);
    for options in both_styles() {
        let som = mark_screenshot(&img, &[], &options).unwrap();
        assert!(som.marks.is_empty());
        assert_eq!(som.image, img);
        assert_eq!(som.prompt_list(), "");
    }
}

#[test]
fn one_box_gets_mark_zero_above_it() {
    let img = blank(640, 400);
    let boxes = parse_boxes(
        r#"[{"bbox": [100, 100, 300, 150], "type": "button", "content": "Sign in"}]"#,
        "b",
        BoxFormat::Pixels,
        640,
        400,
    )
    .unwrap();
    let som = mark_screenshot(&img, &boxes.boxes, &SomOptions::default()).unwrap();
    let m = &som.marks[0];
    // 0.04 · 400 = 16 < 20 px font minimum: "5" is 11×19 at 20 px; alone, the first candidate wins.
    assert_eq!((m.id, m.position, m.font_size), (0, "top-left", 20));
    assert_eq!(
        (m.label.x, m.label.y, m.label.width, m.label.height),
        (100.0, 81.0, 11.0, 19.0)
    );
    assert_eq!(som.prompt_list(), "Mark 0: button \"Sign in\"\n");
    // Outline: 2 px inward from the box edge, red; label filled red.
    assert_eq!(*som.image.get_pixel(100, 120), MARK_RED);
    assert_eq!(*som.image.get_pixel(101, 120), MARK_RED);
    assert_eq!(*som.image.get_pixel(102, 120), Rgb([250, 250, 250]));
    assert_eq!(*som.image.get_pixel(99, 120), Rgb([250, 250, 250]));
    assert_eq!(*som.image.get_pixel(100, 81), MARK_RED);
}

#[test]
fn three_hundred_overlapping_boxes() {
    let img = blank(1280, 800);
    let boxes: Vec<CandidateBox> = (0..300)
        .map(|i| {
            let (x, y) = (300.0 + (i % 20) as f64 * 7.0, 200.0 + (i / 20) as f64 * 9.0);
            CandidateBox::from_xyxy(x, y, x + 120.0, y + 60.0)
        })
        .collect();
    let sizes = magma_mark_sizes(800, 1280, TextLayout::Raqm).unwrap();
    for options in both_styles() {
        let som = mark_screenshot(&img, &boxes, &options).unwrap();
        assert_eq!(som.marks.len(), 300);
        assert!(som.marks.iter().enumerate().all(|(i, m)| m.id == i));
        if options.style == MarkStyle::Magma {
            // Label size by digit count: ids 0–9, 10–99, 100–299.
            for (id, digits) in [(7, 0), (42, 1), (299, 2)] {
                let want = sizes.by_digits[digits];
                let l = som.marks[id].label;
                assert_eq!(
                    (l.width, l.height),
                    (f64::from(want.width), f64::from(want.height))
                );
            }
            // There is room around the cluster, so no label needs the fallback.
            assert!(som.marks.iter().all(|m| !m.fallback));
        }
        assert!(som.marks.iter().all(|m| m.label.x >= 0.0
            && m.label.y >= 0.0
            && m.label.x + m.label.width <= 1280.0
            && m.label.y + m.label.height <= 800.0));
    }
}

#[test]
fn boxes_touching_every_border_keep_labels_inside() {
    let (w, h) = (640.0, 400.0);
    let boxes = vec![
        CandidateBox::from_xyxy(0.0, 150.0, 80.0, 200.0), // left border
        CandidateBox::from_xyxy(560.0, 150.0, w, 200.0),  // right border
        CandidateBox::from_xyxy(250.0, 0.0, 350.0, 40.0), // top border
        CandidateBox::from_xyxy(250.0, 360.0, 350.0, h),  // bottom border
        CandidateBox::from_xyxy(0.0, 0.0, 60.0, 30.0),    // top-left corner
        CandidateBox::from_xyxy(580.0, 370.0, w, h),      // bottom-right corner
        CandidateBox::from_xyxy(0.0, 0.0, w, h),          // the whole image
    ];
    let som = mark_screenshot(&blank(640, 400), &boxes, &SomOptions::default()).unwrap();
    let positions: Vec<&str> = som.marks.iter().map(|m| m.position).collect();
    // Every candidate of the whole-image box lies outside the image (labels sit outside their box), so it
    // takes the reference's fallback: top-left, above the image. All other labels stay inside.
    let fallbacks: Vec<bool> = som.marks.iter().map(|m| m.fallback).collect();
    assert_eq!(
        fallbacks,
        [false, false, false, false, false, false, true],
        "{positions:?}"
    );
    assert_eq!(
        (positions[6], som.marks[6].label.y),
        ("top-left", -f64::from(som.marks[6].label.height as u32))
    );
    for m in &som.marks[..6] {
        assert!(
            m.label.x >= 0.0
                && m.label.y >= 0.0
                && m.label.x + m.label.width <= w
                && m.label.y + m.label.height <= h
        );
    }
    // Candidates that would leave the image are never chosen.
    assert!(!positions[0].starts_with("left"), "{positions:?}");
    assert!(!positions[1].starts_with("right"), "{positions:?}");
    assert!(!positions[2].starts_with("top"), "{positions:?}");
    assert!(!positions[3].starts_with("bottom"), "{positions:?}");
    assert!(
        !positions[4].starts_with("top") && !positions[4].starts_with("left"),
        "{positions:?}"
    );
    assert!(
        !positions[5].starts_with("bottom") && !positions[5].starts_with("right"),
        "{positions:?}"
    );
}

#[test]
fn tiny_image_falls_back_to_top_left() {
    let img = blank(8, 8);
    let boxes = [CandidateBox::from_xyxy(1.0, 1.0, 6.0, 6.0)];
    let som = mark_screenshot(&img, &boxes, &SomOptions::default()).unwrap();
    let m = &som.marks[0];
    // A 20 px label (11×19) cannot fit anywhere in 8×8: the reference falls back to top-left, off-image.
    assert!(m.fallback);
    assert_eq!((m.position, m.label.x, m.label.y), ("top-left", 1.0, -18.0));
    let omni = mark_screenshot(
        &img,
        &boxes,
        &SomOptions {
            style: MarkStyle::OmniParser,
            ..SomOptions::default()
        },
    )
    .unwrap();
    assert!(omni.marks[0].fallback);
    assert_eq!(omni.marks[0].position, "top-right");
}

#[test]
fn huge_image() {
    let img = blank(8000, 600);
    let boxes: Vec<CandidateBox> = (0..50)
        .map(|i| CandidateBox::from_xyxy(i as f64 * 159.0, 250.0, i as f64 * 159.0 + 150.0, 290.0))
        .collect();
    let som = mark_screenshot(&img, &boxes, &SomOptions::default()).unwrap();
    // min(30, 0.04 · 600) = 24 → 26 px font.
    assert!(som.marks.iter().all(|m| m.font_size == 26 && !m.fallback));
    let omni = mark_screenshot(
        &img,
        &boxes,
        &SomOptions {
            style: MarkStyle::OmniParser,
            ..SomOptions::default()
        },
    )
    .unwrap();
    assert_eq!(omni.marks.len(), 50);
}
