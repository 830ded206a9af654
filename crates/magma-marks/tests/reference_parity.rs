//! Parity with the reference `plot_boxes_with_marks` (microsoft/Magma `agents/ui_agent/util/som.py`),
//! run with Pillow on the committed screenshots and on 40 random layouts
//! (`tests/data/gen/magma_reference.py`; see `tests/data/README.md`).

use image::RgbImage;
use magma_marks::{
    magma_mark_sizes, mark_screenshot, parse_boxes, place_magma_labels, BoxFormat, SomOptions,
    TextLayout, Yxhw,
};
use serde_json::Value;

const PAGES: [&str; 3] = ["login", "search", "settings"];

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

fn screenshot(page: &str) -> RgbImage {
    image::open(data(&format!("{page}.png"))).unwrap().to_rgb8()
}

fn label_of(placement: &Value) -> [f64; 4] {
    let l = placement["label"].as_array().unwrap();
    [0, 1, 2, 3].map(|i| l[i].as_f64().unwrap())
}

#[test]
fn screenshots_match_reference_labels_for_both_layouts() {
    for page in PAGES {
        let img = screenshot(page);
        let text = std::fs::read_to_string(data(&format!("{page}.boxes.json"))).unwrap();
        let boxes = parse_boxes(
            &text,
            page,
            BoxFormat::OmniParser,
            img.width(),
            img.height(),
        )
        .unwrap();
        assert!(boxes.warnings.is_empty(), "{:?}", boxes.warnings);
        let reference = json(&format!("{page}.reference.json"));
        for (name, layout) in [("raqm", TextLayout::Raqm), ("basic", TextLayout::Basic)] {
            let expected = &reference[name];
            let som = mark_screenshot(
                &img,
                &boxes.boxes,
                &SomOptions {
                    layout,
                    ..Default::default()
                },
            )
            .unwrap();
            let placements = expected["placements"].as_array().unwrap();
            assert_eq!(som.marks.len(), placements.len());
            for (mark, want) in som.marks.iter().zip(placements) {
                assert_eq!(
                    mark.font_size as u64,
                    expected["font_size"].as_u64().unwrap()
                );
                assert_eq!(
                    mark.position,
                    want["position"].as_str().unwrap(),
                    "{page} {name} mark {}",
                    mark.id
                );
                let [y, x, h, w] = label_of(want);
                assert_eq!(
                    (
                        mark.label.y,
                        mark.label.x,
                        mark.label.height,
                        mark.label.width
                    ),
                    (y, x, h, w),
                    "{page} {name} mark {}",
                    mark.id
                );
            }
        }
    }
}

/// Ink of the white digit inside a red label: total green-channel mass and its centroid.
fn digit_ink(img: &RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> (f64, f64, f64) {
    let (mut mass, mut mx, mut my) = (0.0, 0.0, 0.0);
    for y in y0..=y1.min(img.height() - 1) {
        for x in x0..=x1.min(img.width() - 1) {
            let g = f64::from(img.get_pixel(x, y).0[1]);
            mass += g;
            mx += g * f64::from(x);
            my += g * f64::from(y);
        }
    }
    (mass, mx / mass, my / mass)
}

#[test]
fn marked_pixels_match_the_reference_and_digits_sit_where_pil_puts_them() {
    for page in PAGES {
        let img = screenshot(page);
        let text = std::fs::read_to_string(data(&format!("{page}.boxes.json"))).unwrap();
        let boxes = parse_boxes(
            &text,
            page,
            BoxFormat::OmniParser,
            img.width(),
            img.height(),
        )
        .unwrap();
        let som = mark_screenshot(&img, &boxes.boxes, &SomOptions::default()).unwrap();
        let reference = image::open(data(&format!("{page}.reference.png")))
            .unwrap()
            .to_rgb8();
        // Inclusive pixel rectangles of the labels, as PIL fills them.
        let rects: Vec<[u32; 4]> = som
            .marks
            .iter()
            .map(|m| {
                let l = m.label;
                [l.x, l.y, l.x + l.width, l.y + l.height].map(|v| v.trunc() as u32)
            })
            .collect();
        for (x, y, want) in reference.enumerate_pixels() {
            // Anti-aliased digit edges may touch the pixel just outside a label.
            let near_label = rects.iter().any(|r| {
                (r[0].saturating_sub(1)..=r[2] + 1).contains(&x)
                    && (r[1].saturating_sub(1)..=r[3] + 1).contains(&y)
            });
            if !near_label {
                assert_eq!(
                    som.image.get_pixel(x, y),
                    want,
                    "{page}: pixel ({x}, {y}) outside every label"
                );
            }
        }
        // Inside labels the digits' anti-aliased pixels differ (FreeType hinting vs ab_glyph's unhinted
        // outlines), so compare where the digit ink is and how much of it there is. Only the last label
        // drawn over a spot is fully visible, so check labels no later label overlaps.
        for (i, r) in rects.iter().enumerate() {
            let covered_later = rects[i + 1..]
                .iter()
                .any(|o| o[0] <= r[2] && r[0] <= o[2] && o[1] <= r[3] && r[1] <= o[3]);
            if covered_later {
                continue;
            }
            let (ours, theirs) = (
                digit_ink(&som.image, r[0], r[1], r[2], r[3]),
                digit_ink(&reference, r[0], r[1], r[2], r[3]),
            );
            let ratio = ours.0 / theirs.0;
            assert!(
                (0.85..1.15).contains(&ratio),
                "{page} mark {i}: ink ratio {ratio:.3}"
            );
            let shift = ((ours.1 - theirs.1).powi(2) + (ours.2 - theirs.2).powi(2)).sqrt();
            assert!(
                shift < 0.5,
                "{page} mark {i}: digit centroid moved {shift:.2} px"
            );
        }
    }
}

#[test]
fn random_layouts_match_reference_placements() {
    let cases = json("reference_random.json");
    let mut labels = 0;
    for (case_index, case) in cases.as_array().unwrap().iter().enumerate() {
        let (w, h) = (
            case["width"].as_u64().unwrap() as u32,
            case["height"].as_u64().unwrap() as u32,
        );
        let boxes: Vec<Yxhw> = case["boxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let v: Vec<f64> = b
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_f64().unwrap())
                    .collect();
                Yxhw::new(v[0], v[1], v[2], v[3])
            })
            .collect();
        let sizes = magma_mark_sizes(h, w, TextLayout::Raqm).unwrap();
        assert_eq!(
            u64::from(sizes.font_size),
            case["font_size"].as_u64().unwrap(),
            "case {case_index}"
        );
        let placed = place_magma_labels(
            &boxes,
            |i| {
                let s = sizes.for_label(&i.to_string());
                (f64::from(s.height), f64::from(s.width))
            },
            f64::from(h),
            f64::from(w),
        );
        for (i, (got, want)) in placed
            .iter()
            .zip(case["placements"].as_array().unwrap())
            .enumerate()
        {
            let name = want["position"].as_str().unwrap();
            // The oracle marks the all-out-of-bounds fallback with a trailing '*'.
            assert_eq!(
                got.fallback,
                name.ends_with('*'),
                "case {case_index} box {i}"
            );
            assert_eq!(
                got.position.name(),
                name.trim_end_matches('*'),
                "case {case_index} box {i}"
            );
            let [y, x, lh, lw] = label_of(want);
            assert_eq!(
                (got.label.y, got.label.x, got.label.h, got.label.w),
                (y, x, lh, lw)
            );
            labels += 1;
        }
    }
    assert!(labels > 500, "{labels} labels compared");
}
