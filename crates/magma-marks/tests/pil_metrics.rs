//! Text metrics against Pillow: `textbbox((0, 0), text)` right/bottom for Liberation Sans at 1..=120 px,
//! with both layout engines (`tests/data/pil_text_sizes.json`, made by `tests/data/gen/pil_text_sizes.py`).

use magma_marks::{MarkFont, TextLayout};
use serde_json::Value;

fn oracle() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/pil_text_sizes.json"
    );
    let text = std::fs::read_to_string(path).expect("oracle file is committed");
    serde_json::from_str(&text).expect("oracle is valid JSON")
}

#[test]
fn text_sizes_match_pillow_for_every_size_and_layout() {
    let oracle = oracle();
    let texts: Vec<&str> = oracle["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let font = MarkFont::bundled();
    let mut checked = 0;
    for (name, layout) in [("raqm", TextLayout::Raqm), ("basic", TextLayout::Basic)] {
        for (i, row) in oracle["sizes"][name].as_array().unwrap().iter().enumerate() {
            let size = i as u32 + 1;
            for (text, expected) in texts.iter().zip(row.as_array().unwrap()) {
                let got = font.text_size(text, size, layout).unwrap();
                let want = (
                    expected[0].as_u64().unwrap() as u32,
                    expected[1].as_u64().unwrap() as u32,
                );
                assert_eq!(
                    (got.width, got.height),
                    want,
                    "{name} layout, {size} px, {text:?}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 120 * texts.len());
}

#[test]
fn layouts_differ_only_in_width() {
    // 33 px: per-glyph advances are 18.35 px; raqm sums then rounds (55), basic rounds each (54).
    let font = MarkFont::bundled();
    let raqm = font.text_size("555", 33, TextLayout::Raqm).unwrap();
    let basic = font.text_size("555", 33, TextLayout::Basic).unwrap();
    assert_eq!((raqm.width, basic.width), (55, 54));
    assert_eq!(raqm.height, basic.height);
}
