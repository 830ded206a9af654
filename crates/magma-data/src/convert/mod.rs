//! Converters from public datasets' native on-disk formats to [`Record`](crate::record::Record)s.
//!
//! Each converter is a [`Stage`](crate::stage::Stage) over one input file:
//!
//! | source | input item | records |
//! |---|---|---|
//! | [`rlds`] | a TFDS/RLDS TFRecord shard (Open-X) | one per step: image, instruction, 7-DoF action + 256-bin tokens |
//! | [`aitw`] | an AITW GZIP TFRecord | one per step: marked screenshot, one-key JSON action |
//! | [`ui::Mind2Web`] | a Mind2Web task JSON + screenshots | one per action: marked screenshot, `{"ACTION", "MARK", "VALUE"}` |
//! | [`ui::SeeClick`] | a SeeClick web or mobile JSON + images | grounding turns `Coordinate: (x, y). Mark: k` |
//! | [`llava`] | a LLaVA instruction JSON + images | pass-through after image checks |
//!
//! Bad input never stops a converter: a step whose image does not decode, a box outside its image,
//! an unknown action type are reported to the sink ([`Sink::skip`](crate::stage::Sink::skip)) and
//! the converter goes on.

pub mod aitw;
pub mod llava;
pub mod rlds;
pub mod ui;

use std::path::Path;

use image::RgbImage;

use crate::{DataError, Result};

/// The converters `magma data convert --from` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Open-X-Embodiment / RLDS (TFDS folder).
    Rlds,
    /// Android in the Wild.
    Aitw,
    /// Mind2Web raw JSON + screenshots.
    Mind2web,
    /// SeeClick web/mobile grounding JSON.
    Seeclick,
    /// LLaVA-style instruction JSON.
    Llava,
}

/// Decodes an encoded image fully (so a corrupt body is caught, not only a bad header).
pub fn decode_image(bytes: &[u8], what: &str) -> Result<RgbImage> {
    image::load_from_memory(bytes)
        .map(|img| img.to_rgb8())
        .map_err(|e| DataError::invalid(what, format!("undecodable image: {e}")))
}

/// Encodes an RGB image as PNG.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| DataError::invalid("png encoder", e.to_string()))?;
    Ok(out.into_inner())
}

/// Reads and decodes an image file.
pub fn read_image(path: &Path) -> Result<(Vec<u8>, RgbImage)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let image = decode_image(&bytes, &path.display().to_string())?;
    Ok((bytes, image))
}

/// Whether `[x1, y1, x2, y2]` is a non-empty box inside a `width`×`height` image (half a pixel of
/// slack for rounding in the sources' own coordinates).
pub fn box_inside(bbox: [f64; 4], width: u32, height: u32) -> bool {
    let [x1, y1, x2, y2] = bbox;
    let slack = 0.5;
    bbox.iter().all(|v| v.is_finite())
        && x2 > x1
        && y2 > y1
        && x1 >= -slack
        && y1 >= -slack
        && x2 <= width as f64 + slack
        && y2 <= height as f64 + slack
}

/// Rounds to two decimals exactly as Python's `round(v, 2)` does: on the exact binary value, so
/// `0.825` (stored as 0.82499999…) gives 0.82, where `(v * 100).round() / 100` would give 0.83.
///
/// ```
/// assert_eq!(magma_data::convert::round2(0.825), 0.82);
/// assert_eq!(magma_data::convert::round2(0.375), 0.38); // exactly representable: half to even
/// ```
pub fn round2(v: f64) -> f64 {
    // Rust's `{:.2}` rounds the exact decimal expansion half-to-even, like CPython's dtoa.
    format!("{v:.2}").parse().unwrap_or(v)
}

/// The funnel reason of a TFRecord framing error.
pub(crate) fn frame_error_reason(error: &DataError) -> &'static str {
    if error.to_string().contains("CRC mismatch") {
        "crc_mismatch"
    } else {
        "truncated_record"
    }
}

/// Draws Magma's UI marks (0-based, red) for `boxes` on `image`.
pub fn draw_marks(image: &RgbImage, boxes: &[[f64; 4]]) -> Result<RgbImage> {
    let candidates: Vec<magma_marks::CandidateBox> = boxes
        .iter()
        .map(|b| magma_marks::CandidateBox::from_xyxy(b[0], b[1], b[2], b[3]))
        .collect();
    let som = magma_marks::mark_screenshot(image, &candidates, &magma_marks::SomOptions::default())
        .map_err(|e| DataError::invalid("set-of-mark", e.to_string()))?;
    Ok(som.image)
}
