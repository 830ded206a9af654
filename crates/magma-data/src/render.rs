//! A picture of one record: its first image with the Set-of-Mark boxes, the traces (lines from
//! each trace's start, with Magma's numbered trace marks) and the action's target point.

use std::path::Path;

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_cross_mut, draw_hollow_circle_mut, draw_line_segment_mut};

use crate::convert::{decode_image, draw_marks};
use crate::record::{Action, Media, Sample};
use crate::{DataError, Result};

const TRACE_YELLOW: Rgb<u8> = Rgb([255, 220, 0]);
const ACTION_BLUE: Rgb<u8> = Rgb([0, 90, 255]);

/// The record's first image (from its carried bytes, else under `image_root`).
pub fn first_image(sample: &Sample, image_root: &Path) -> Result<RgbImage> {
    let record = &sample.record;
    let media = record
        .media
        .first()
        .ok_or_else(|| DataError::invalid(&record.id, "the record has no media"))?;
    let Media::Image { path, .. } = media else {
        return Err(DataError::invalid(
            &record.id,
            "video frames are rendered by the curation tools (`magma tom`)",
        ));
    };
    match sample.assets.iter().find(|a| &a.name == path) {
        Some(asset) => decode_image(&asset.bytes, &asset.name),
        None => crate::convert::read_image(&image_root.join(path)).map(|(_, img)| img),
    }
}

/// Draws the record's marks, traces and action point on its first image. Marks already burned
/// into a stored screenshot are drawn again identically, so the picture does not change there.
pub fn render(sample: &Sample, image_root: &Path) -> Result<RgbImage> {
    let record = &sample.record;
    let mut image = first_image(sample, image_root)?;
    if !record.marks.is_empty() {
        let boxes: Vec<[f64; 4]> = record.marks.iter().map(|m| m.bbox).collect();
        image = draw_marks(&image, &boxes)?;
    }
    for trace in &record.traces {
        for pair in trace.points.windows(2) {
            draw_line_segment_mut(
                &mut image,
                (pair[0][0], pair[0][1]),
                (pair[1][0], pair[1][1]),
                TRACE_YELLOW,
            );
        }
    }
    let starts: Vec<(f32, f32)> = record
        .traces
        .iter()
        .filter_map(|t| t.points.first().map(|p| (p[0], p[1])))
        .collect();
    let ids: Vec<u32> = record
        .traces
        .iter()
        .filter(|t| !t.points.is_empty())
        .map(|t| t.mark)
        .collect();
    if !starts.is_empty() {
        magma_marks::draw_trace_marks(&mut image, &starts, &ids)
            .map_err(|e| DataError::invalid(&record.id, e.to_string()))?;
    }
    let (w, h) = image.dimensions();
    for action in &record.actions {
        if let Action::Ui {
            point: Some([x, y]),
            ..
        } = action
        {
            let (px, py) = ((x * w as f64) as i32, (y * h as f64) as i32);
            let radius = (w.min(h) / 40).max(3) as i32;
            draw_cross_mut(&mut image, ACTION_BLUE, px, py);
            draw_hollow_circle_mut(&mut image, (px, py), radius, ACTION_BLUE);
        }
    }
    Ok(image)
}
