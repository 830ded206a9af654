//! Property tests: grid choice against a plain re-statement of the rule, and the resize against a
//! direct per-pixel formula.

use magma_processor::grid::{best_grid, Grid};
use magma_processor::resize::resize_bilinear_chw;
use magma_processor::{ImageProcessor, ImageProcessorConfig};
use proptest::prelude::*;

/// The reference rule written out the long way: score every candidate, then take the best by
/// (largest effective area, smallest waste, earliest in the list).
fn grid_by_scoring(w: u32, h: u32, base: usize, num_crops: usize) -> Grid {
    let mut scored = Vec::new();
    let mut order = 0;
    for cols in 1..=num_crops {
        for rows in 1..=(num_crops / cols) {
            let (cw, ch) = ((cols * base) as f64, (rows * base) as f64);
            let scale = f64::min(cw / w as f64, ch / h as f64);
            let dw = (w as f64 * scale).floor() as u64;
            let dh = (h as f64 * scale).floor() as u64;
            let effective = std::cmp::min(dw * dh, w as u64 * h as u64);
            let wasted = (cols * base * rows * base) as u64 - effective;
            scored.push((
                effective,
                std::cmp::Reverse(wasted),
                std::cmp::Reverse(order),
                Grid { rows, cols },
            ));
            order += 1;
        }
    }
    scored
        .into_iter()
        .max_by_key(|s| (s.0, s.1, s.2))
        .unwrap()
        .3
}

/// One output pixel straight from PyTorch's formula, in float32.
fn torch_pixel(
    src: &[f32],
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    y: usize,
    x: usize,
) -> f32 {
    let taps = |dst: usize, n_in: usize, n_out: usize| -> (usize, usize, f32, f32) {
        if n_in == n_out {
            return (dst, dst, 1.0, 0.0);
        }
        let s = ((n_in as f32 / n_out as f32) * (dst as f32 + 0.5) - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n_in - 1);
        let l1 = (s - i0 as f32).clamp(0.0, 1.0);
        (i0, if i0 + 1 < n_in { i0 + 1 } else { i0 }, 1.0 - l1, l1)
    };
    let (y0, y1, wy0, wy1) = taps(y, in_h, out_h);
    let (x0, x1, wx0, wx1) = taps(x, in_w, out_w);
    let row = |yy: usize| src[yy * in_w + x0] * wx0 + src[yy * in_w + x1] * wx1;
    row(y0) * wy0 + row(y1) * wy1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn grid_matches_the_restated_rule(w in 1u32..5000, h in 1u32..5000, base in 1usize..1100, num_crops in 1usize..10) {
        prop_assert_eq!(best_grid(w, h, base, num_crops), grid_by_scoring(w, h, base, num_crops));
    }

    #[test]
    fn grid_matches_on_extreme_aspects(w in 1u32..100_000, h in 1u32..40, crops in 1usize..17, swap: bool) {
        let (w, h) = if swap { (h, w) } else { (w, h) };
        prop_assert_eq!(best_grid(w, h, 512, crops), grid_by_scoring(w, h, 512, crops));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn resize_equals_the_per_pixel_formula(
        in_h in 1usize..40, in_w in 1usize..40, out_h in 1usize..50, out_w in 1usize..50, seed in 0u32..1000,
    ) {
        let src: Vec<f32> = (0..in_h * in_w).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 37.0 - 13.0).collect();
        let ours = resize_bilinear_chw(&src, [1, in_h, in_w], (out_h, out_w)).unwrap();
        for y in 0..out_h {
            for x in 0..out_w {
                let expected = torch_pixel(&src, in_h, in_w, out_h, out_w, y, x);
                prop_assert_eq!(ours[y * out_w + x].to_bits(), expected.to_bits(), "pixel ({}, {})", y, x);
            }
        }
    }

    #[test]
    fn fused_preprocess_equals_normalise_then_resize(w in 1u32..80, h in 1u32..80, seed in 0u8..255) {
        let processor = ImageProcessor::new(ImageProcessorConfig { base_img_size: 16, num_crops: 6, ..ImageProcessorConfig::magma_8b() }).unwrap();
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 + y) as u8 ^ seed, (y * 13) as u8, seed.wrapping_add(x as u8)]));
        let out = processor.preprocess(&img).unwrap();
        let (rows, cols) = out.grid();
        let normalized = processor.normalize(&img);
        let resized = resize_bilinear_chw(&normalized, [3, h as usize, w as usize], (rows * 16, cols * 16)).unwrap();
        prop_assert_eq!(out.canvas(), resized);
        prop_assert_eq!(out.canvas_shape(), [3, rows * 16, cols * 16]);
    }
}
