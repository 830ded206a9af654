//! The 256×256 grid that Set-of-Mark and Trace-of-Mark answers are written on.

use serde::{Deserialize, Serialize};

use crate::{ActionError, Result};

/// Grid resolution of Magma's mark/trace coordinates (`spatial_quant_size` in `config.json`).
pub const GRID_SIZE: u32 = 256;

/// A point on the quantisation grid (`[x, y]`, top-left origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GridPoint {
    /// Column, normally `0..grid`.
    pub x: i32,
    /// Row, normally `0..grid`.
    pub y: i32,
}

impl GridPoint {
    /// A grid point.
    pub const fn new(x: i32, y: i32) -> Self {
        Self { x, y }
    }
}

/// Quantises a pixel position of a `width × height` frame onto the 256 grid:
/// `int(256 · x / W)`, `int(256 · y / H)`.
///
/// The reference evaluates this on float32 tensors and truncates toward zero (`.int()` /
/// `int()`), so it is computed here in f32 too; a point slightly left of the frame gives 0,
/// not −1.
///
/// ```
/// use magma_actions::marks::{grid, GridPoint};
///
/// assert_eq!(grid::quantize(100.0, 50.0, 640, 480), GridPoint::new(40, 26));
/// assert_eq!(grid::quantize(-0.5, 479.9, 640, 480), GridPoint::new(0, 255));
/// ```
pub fn quantize(x: f32, y: f32, width: u32, height: u32) -> GridPoint {
    quantize_with_grid(x, y, width, height, GRID_SIZE)
}

/// [`quantize`] for another grid resolution.
pub fn quantize_with_grid(x: f32, y: f32, width: u32, height: u32, grid: u32) -> GridPoint {
    let q = |v: f32, size: u32| (grid as f32 * v / size as f32) as i32;
    GridPoint::new(q(x, width), q(y, height))
}

/// Back to pixels of a `width × height` image, as the reference's trajectory demo does:
/// `p / 256 · size` in float32 (no half-cell offset).
///
/// ```
/// use magma_actions::marks::{grid, GridPoint};
///
/// assert_eq!(grid::to_pixels(GridPoint::new(128, 64), 640, 480)?, [320.0, 120.0]);
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
pub fn to_pixels(p: GridPoint, width: u32, height: u32) -> Result<[f32; 2]> {
    to_pixels_with_grid(p, width, height, GRID_SIZE)
}

/// [`to_pixels`] for another grid resolution.
pub fn to_pixels_with_grid(p: GridPoint, width: u32, height: u32, grid: u32) -> Result<[f32; 2]> {
    if width == 0 || height == 0 {
        return Err(ActionError::EmptyImage { width, height });
    }
    let g = grid as f32;
    Ok([
        p.x as f32 / g * width as f32,
        p.y as f32 / g * height as f32,
    ])
}
