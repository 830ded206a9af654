//! Pictures of a run: the marked first frame (trace-SoM marks), the traces over the first frame,
//! and an animated GIF of the tracked points.

use std::io::Cursor;

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, Frame, Rgb, RgbImage, Rgba, RgbaImage};
use imageproc::drawing::{draw_filled_circle_mut, draw_hollow_circle_mut, draw_line_segment_mut};

use crate::error::{Result, TracesError};
use crate::pipeline::TomResult;

/// The first frame with every mark drawn as Magma draws them (red disc, white 1-based number),
/// through `magma_marks::draw_trace_marks`.
pub fn marked_frame(first: &RgbImage, result: &TomResult) -> Result<RgbImage> {
    let mut image = first.clone();
    let points: Vec<(f32, f32)> = result.mark_pixels.iter().map(|p| (p[0], p[1])).collect();
    let ids: Vec<u32> = result.marks.iter().map(|m| m.id).collect();
    magma_marks::draw_trace_marks(&mut image, &points, &ids).map_err(|e| TracesError::Asset {
        name: "trace marks".into(),
        message: e.to_string(),
    })?;
    Ok(image)
}

/// A colour per trace: hue from the trace's start height (a rainbow top to bottom).
fn rainbow(y: f32, height: u32) -> Rgb<u8> {
    let h = (y / height.max(1) as f32).clamp(0.0, 1.0) * 300.0;
    let x = 1.0 - ((h / 60.0) % 2.0 - 1.0).abs();
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (1.0, x, 0.0),
        1 => (x, 1.0, 0.0),
        2 => (0.0, 1.0, x),
        3 => (0.0, x, 1.0),
        _ => (x, 0.0, 1.0),
    };
    Rgb([(r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8])
}

/// The traces over a dimmed first frame, in frame 0's coordinates (after camera-motion removal):
/// moving traces in rainbow colours, static ones thin and grey, dropped ones (visible in half the
/// frames or fewer) not drawn; the marks on top.
pub fn trace_picture(first: &RgbImage, result: &TomResult) -> Result<RgbImage> {
    let mut image = RgbImage::from_fn(first.width(), first.height(), |x, y| {
        Rgb(first.get_pixel(x, y).0.map(|c| (c as f32 * 0.55) as u8))
    });
    let sel = &result.selection;
    for (k, &moving) in sel.moving.iter().enumerate() {
        let trace = sel.stabilized.tracks.trace(k);
        let colour = if moving {
            rainbow(trace[0][1], first.height())
        } else {
            Rgb([170, 170, 170])
        };
        for w in trace.windows(2) {
            let (a, b) = ((w[0][0], w[0][1]), (w[1][0], w[1][1]));
            draw_line_segment_mut(&mut image, a, b, colour);
            if moving {
                // Thicker lines for moving traces.
                draw_line_segment_mut(&mut image, (a.0 + 1.0, a.1), (b.0 + 1.0, b.1), colour);
                draw_line_segment_mut(&mut image, (a.0, a.1 + 1.0), (b.0, b.1 + 1.0), colour);
            }
        }
        if let Some(end) = trace.last() {
            draw_filled_circle_mut(&mut image, (end[0] as i32, end[1] as i32), 2, colour);
        }
    }
    marked_frame(&image, result)
}

/// An animated GIF of the tracked points over the frames: green dots where a point is visible,
/// hollow red circles where it is lost; points the selection calls moving are orange.
pub fn tracks_gif(frames: &[RgbImage], result: &TomResult, delay_ms: u32) -> Result<Vec<u8>> {
    let moving: Vec<bool> = {
        let mut m = vec![false; result.tracks.num_points()];
        for (k, &v) in result.selection.valid.iter().enumerate() {
            m[v] = result.selection.moving[k];
        }
        m
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(Cursor::new(&mut bytes), 20);
        encoder.set_repeat(Repeat::Infinite).map_err(gif_error)?;
        for (t, frame) in frames.iter().enumerate() {
            let mut canvas: RgbaImage = image::DynamicImage::ImageRgb8(frame.clone()).to_rgba8();
            for (n, p) in result
                .tracks
                .points
                .get(t)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let centre = (p[0].round() as i32, p[1].round() as i32);
                let colour = if moving[n] {
                    Rgba([255, 150, 0, 255])
                } else {
                    Rgba([40, 220, 60, 255])
                };
                if result.tracks.visible[t][n] {
                    draw_filled_circle_mut(&mut canvas, centre, 3, colour);
                } else {
                    draw_hollow_circle_mut(&mut canvas, centre, 3, Rgba([230, 30, 30, 255]));
                }
            }
            let delay = Delay::from_numer_denom_ms(delay_ms, 1);
            encoder
                .encode_frame(Frame::from_parts(canvas, 0, 0, delay))
                .map_err(gif_error)?;
        }
    }
    Ok(bytes)
}

fn gif_error(e: image::ImageError) -> TracesError {
    TracesError::Image {
        path: "tracks.gif".into(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lk::LucasKanade;
    use crate::pipeline::{run, TomConfig};
    use crate::synthetic::{Scene, SceneKind};

    #[test]
    fn pictures_show_marks_and_the_gif_decodes() {
        let scene = Scene::generate(SceneKind::Objects, 160, 120, 5, 2);
        let config = TomConfig {
            grid_size: 8,
            ..Default::default()
        };
        let result = run(&scene.frames, &LucasKanade::default(), &config, &|_| {}).unwrap();
        let marked = marked_frame(&scene.frames[0], &result).unwrap();
        for p in &result.mark_pixels {
            let px = marked.get_pixel(p[0] as u32, p[1] as u32).0;
            // Red disc or (anti-aliased) white digit at every mark centre.
            let red = px[0] > 200 && px[1] < 60 && px[2] < 60;
            assert!(red || px[1] > 150, "{px:?}");
        }
        let picture = trace_picture(&scene.frames[0], &result).unwrap();
        assert_eq!(picture.dimensions(), (160, 120));
        let gif = tracks_gif(&scene.frames, &result, 100).unwrap();
        let decoder = image::codecs::gif::GifDecoder::new(Cursor::new(gif)).unwrap();
        use image::AnimationDecoder;
        assert_eq!(decoder.into_frames().count(), 5);
    }
}
