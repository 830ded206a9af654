//! Any-resolution grid choice: which `rows x cols` canvas of `base`-pixel crops an image is stretched to.

/// A crop grid: `rows` crops down, `cols` crops across.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grid {
    pub rows: usize,
    pub cols: usize,
}

impl Grid {
    /// Number of crops, `rows * cols`.
    pub fn n_crops(&self) -> usize {
        self.rows * self.cols
    }
}

/// The candidate grids in the reference's order: `cols` = 1..=num_crops outer, `rows` =
/// 1..=num_crops/cols inner (canvas width `cols*base`, height `rows*base`).
///
/// ```
/// use magma_processor::grid::{candidate_grids, Grid};
/// let c = candidate_grids(4);
/// assert_eq!(c.len(), 8);
/// assert_eq!(c[1], Grid { rows: 2, cols: 1 });
/// assert_eq!(c[4], Grid { rows: 1, cols: 2 });
/// ```
pub fn candidate_grids(num_crops: usize) -> Vec<Grid> {
    (1..=num_crops)
        .flat_map(|cols| (1..=num_crops / cols).map(move |rows| Grid { rows, cols }))
        .collect()
}

/// Chooses the grid for an image of `width x height` pixels, exactly as the reference's
/// `select_best_resolution`.
///
/// For each candidate canvas `W x H`: `scale = min(W/w, H/h)` in float64, the scaled size is
/// truncated toward zero, `effective = min(scaled area, w*h)` (capped by the *original* area, unlike
/// candle/mistral.rs which cap by the candidate area) and `wasted = W*H - effective`. The first
/// candidate with a strictly larger effective area, or an equal one with strictly less waste, wins.
/// Images with a zero side (every effective area is 0) get the least wasteful, i.e. first, candidate.
///
/// ```
/// use magma_processor::grid::{best_grid, Grid};
/// // Magma-8B settings: small images always go to one crop, 640x480 is stretched to 1x2.
/// assert_eq!(best_grid(256, 256, 512, 4), Grid { rows: 1, cols: 1 });
/// assert_eq!(best_grid(640, 480, 512, 4), Grid { rows: 1, cols: 2 });
/// assert_eq!(best_grid(1280, 720, 512, 4), Grid { rows: 2, cols: 2 });
/// assert_eq!(best_grid(1080, 2400, 512, 4), Grid { rows: 3, cols: 1 });
/// ```
pub fn best_grid(width: u32, height: u32, base: usize, num_crops: usize) -> Grid {
    let (w, h) = (width as f64, height as f64);
    let original_area = width as u128 * height as u128;
    let mut best = Grid { rows: 1, cols: 1 };
    let mut best_effective: u128 = 0;
    let mut best_wasted = u128::MAX;
    for grid in candidate_grids(num_crops) {
        let canvas_w = (grid.cols * base) as f64;
        let canvas_h = (grid.rows * base) as f64;
        let scale = (canvas_w / w).min(canvas_h / h);
        // Python's int(): truncation toward zero of the float64 product; `as` saturates the
        // infinities and NaN a zero-sized side would produce instead of panicking.
        let scaled_w = (w * scale) as u128;
        let scaled_h = (h * scale) as u128;
        let effective = scaled_w.saturating_mul(scaled_h).min(original_area);
        let canvas_area = (grid.cols * base) as u128 * (grid.rows * base) as u128;
        let wasted = canvas_area.saturating_sub(effective);
        if effective > best_effective || (effective == best_effective && wasted < best_wasted) {
            best = grid;
            best_effective = effective;
            best_wasted = wasted;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn magma(w: u32, h: u32) -> (usize, usize) {
        let g = best_grid(w, h, 512, 4);
        (g.rows, g.cols)
    }

    #[test]
    fn worked_examples_of_the_spec() {
        assert_eq!(magma(256, 256), (1, 1));
        assert_eq!(magma(640, 480), (1, 2));
        for (w, h) in [
            (1920, 1080),
            (1280, 720),
            (1000, 1000),
            (800, 600),
            (3840, 2160),
        ] {
            assert_eq!(magma(w, h), (2, 2), "{w}x{h}");
        }
        assert_eq!(magma(1080, 2400), (3, 1));
        assert_eq!(magma(500, 1000), (2, 1));
    }

    #[test]
    fn effective_area_is_capped_by_the_original_area() {
        // Capping by the candidate area instead (candle / mistral.rs) picks 2x2 for these; the
        // reference caps by the image area, so every candidate ties and the least waste wins.
        assert_eq!(magma(256, 256), (1, 1));
        assert_eq!(magma(7, 5), (1, 1));
        // LLaVA-1.6 candidates are not i*base x j*base, but the rule's tie-break is the same:
        // a 336x336 image against 336-px crops with 2 crops picks the first minimal-waste one.
        assert_eq!(best_grid(336, 336, 336, 2), Grid { rows: 1, cols: 1 });
    }

    #[test]
    fn zero_sized_images_do_not_panic() {
        assert_eq!(best_grid(0, 100, 512, 4), Grid { rows: 1, cols: 1 });
        assert_eq!(best_grid(0, 0, 512, 4), Grid { rows: 1, cols: 1 });
    }
}
