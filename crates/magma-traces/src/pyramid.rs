//! Grey-level image pyramids, the data the Lucas–Kanade tracker reads.
//!
//! Every plane carries a replicated border of [`Plane::pad`] pixels so that a tracking window whose
//! centre is still inside the image can be sampled without bounds checks per pixel.

use image::RgbImage;

/// A single-channel f32 image with a replicated border.
#[derive(Debug, Clone)]
pub struct Plane {
    width: usize,
    height: usize,
    pad: usize,
    stride: usize,
    data: Vec<f32>,
}

impl Plane {
    /// Builds a padded plane from row-major pixels `values` of size `width`×`height`.
    fn from_pixels(values: &[f32], width: usize, height: usize, pad: usize) -> Self {
        let stride = width + 2 * pad;
        let rows = height + 2 * pad;
        let mut data = vec![0.0; stride * rows];
        for py in 0..rows {
            let sy = py.saturating_sub(pad).min(height - 1);
            let src = &values[sy * width..(sy + 1) * width];
            let dst = &mut data[py * stride..(py + 1) * stride];
            dst[..pad].fill(src[0]);
            dst[pad..pad + width].copy_from_slice(src);
            dst[pad + width..].fill(src[width - 1]);
        }
        Self {
            width,
            height,
            pad,
            stride,
            data,
        }
    }

    /// Width of the image without its border.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height of the image without its border.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Border width in pixels.
    pub fn pad(&self) -> usize {
        self.pad
    }

    /// Row length of the padded data.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The padded pixels, row-major, `stride` per row.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Pixel (x, y) of the image; coordinates may reach into the border (−pad ≤ x < width + pad).
    #[inline]
    pub fn at(&self, x: isize, y: isize) -> f32 {
        let px = (x + self.pad as isize) as usize;
        let py = (y + self.pad as isize) as usize;
        self.data[py * self.stride + px]
    }

    /// Places a window of `2·half+1` rows and `cols` columns (`cols` ≥ 2·half+1; extra columns
    /// extend it to the right) whose centre column/row is at (cx, cy), for bilinear sampling;
    /// `None` when the window would read outside the padded plane.
    #[inline(always)]
    pub fn locate(&self, cx: f32, cy: f32, half: usize, cols: usize) -> Option<WindowAt> {
        let x0 = cx - half as f32;
        let y0 = cy - half as f32;
        let (fx, fy) = (x0.floor(), y0.floor());
        let (px, py) = (fx + self.pad as f32, fy + self.pad as f32);
        let rows = (self.data.len() / self.stride) as f32;
        // Bilinear sampling reads one column and one row past the window.
        let fits = px >= 0.0
            && py >= 0.0
            && px + (cols + 1) as f32 <= self.stride as f32
            && py + (2 * half + 2) as f32 <= rows;
        if !fits {
            return None;
        }
        Some(WindowAt {
            offset: py as usize * self.stride + px as usize,
            fraction: [x0 - fx, y0 - fy],
        })
    }

    /// Bilinearly samples `rows` rows of `cols` pixels of the window `at` (from
    /// [`Plane::locate`] on a plane of the same geometry) into `out`, row-major.
    #[inline(always)]
    ///
    /// Separably: each source row is interpolated across once (into `out`), then each output
    /// row is blended with the next one down.
    pub fn sample(&self, at: WindowAt, rows: usize, cols: usize, out: &mut [f32]) {
        let [ax, ay] = at.fraction;
        let source_row = |r: usize| {
            let start = at.offset + r * self.stride;
            &self.data[start..start + cols + 1]
        };
        let out = &mut out[..rows * cols];
        for (r, out_row) in out.chunks_exact_mut(cols).enumerate() {
            let source = source_row(r);
            for ((o, &a), &b) in out_row.iter_mut().zip(source).zip(&source[1..]) {
                *o = a + ax * (b - a);
            }
        }
        for r in 0..rows {
            let (row, rest) = out[r * cols..].split_at_mut(cols);
            if r + 1 < rows {
                for (o, &b) in row.iter_mut().zip(&rest[..cols]) {
                    *o += ay * (b - *o);
                }
            } else {
                let source = source_row(rows);
                for ((o, &a), &b) in row.iter_mut().zip(source).zip(&source[1..]) {
                    *o += ay * (a + ax * (b - a) - *o);
                }
            }
        }
    }

    /// Whether a `(2·half+1)²` window centred at (cx, cy) can be sampled by
    /// [`Plane::sample_window`].
    pub fn window_fits(&self, cx: f32, cy: f32, half: usize) -> bool {
        self.locate(cx, cy, half, 2 * half + 1).is_some()
    }

    /// Bilinearly samples the `(2·half+1)²` window centred at (cx, cy) into `out` (row-major);
    /// leaves `out` untouched and returns false where the window does not fit.
    pub fn sample_window(&self, cx: f32, cy: f32, half: usize, out: &mut [f32]) -> bool {
        let side = 2 * half + 1;
        match self.locate(cx, cy, half, side) {
            Some(at) => {
                self.sample(at, side, side, out);
                true
            }
            None => false,
        }
    }
}

/// A window placed on a [`Plane`]: where its top-left source pixel is in the padded data and the
/// sub-pixel fraction (x, y) of its bilinear interpolation, shared by every pixel of the window
/// and by every plane of the same geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowAt {
    pub offset: usize,
    pub fraction: [f32; 2],
}

/// An image pyramid: level 0 is the full-resolution grey image, each next level half the size.
#[derive(Debug, Clone)]
pub struct Pyramid {
    levels: Vec<Plane>,
}

impl Pyramid {
    /// Builds `max_level + 1` levels from an RGB frame (grey = 0.299 R + 0.587 G + 0.114 B, 0..255),
    /// with borders of `pad` pixels. Levels stop early when the image gets smaller than 8 pixels.
    ///
    /// ```
    /// use magma_traces::pyramid::Pyramid;
    /// let frame = image::RgbImage::from_pixel(64, 64, image::Rgb([10, 20, 30]));
    /// let pyramid = Pyramid::new(&frame, 3, 12);
    /// assert_eq!(pyramid.levels().len(), 4);
    /// assert_eq!(pyramid.levels()[3].width(), 8);
    /// ```
    pub fn new(frame: &RgbImage, max_level: usize, pad: usize) -> Self {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let grey: Vec<f32> = frame
            .pixels()
            .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
            .collect();
        Self::from_grey(grey, w, h, max_level, pad)
    }

    /// Builds the pyramid from row-major grey values.
    pub fn from_grey(grey: Vec<f32>, w: usize, h: usize, max_level: usize, pad: usize) -> Self {
        let mut levels = Vec::with_capacity(max_level + 1);
        let mut current = grey;
        let (mut cw, mut ch) = (w.max(1), h.max(1));
        for level in 0..=max_level {
            levels.push(Plane::from_pixels(&current, cw, ch, pad));
            let (nw, nh) = (cw.div_ceil(2), ch.div_ceil(2));
            if level == max_level || nw < 8 || nh < 8 {
                break;
            }
            current = downsample(&current, cw, ch);
            cw = nw;
            ch = nh;
        }
        Self { levels }
    }

    /// The levels, finest first.
    pub fn levels(&self) -> &[Plane] {
        &self.levels
    }
}

/// Gaussian (1 4 6 4 1)/16 blur and 2× decimation, replicated borders; output is ⌈w/2⌉×⌈h/2⌉.
fn downsample(src: &[f32], w: usize, h: usize) -> Vec<f32> {
    const K: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];
    let (nw, nh) = (w.div_ceil(2), h.div_ceil(2));
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    // Vertical pass into a row with two replicated pixels each side, then the horizontal pass
    // at even columns.
    let mut column_sums = vec![0.0f32; w + 4];
    let mut out = vec![0.0; nw * nh];
    for (ny, out_row) in out.chunks_exact_mut(nw).enumerate() {
        let cy = (2 * ny) as isize;
        let inner = &mut column_sums[2..w + 2];
        inner.fill(0.0);
        for (k, weight) in K.iter().enumerate() {
            let row = &src[clamp(cy + k as isize - 2, h) * w..][..w];
            for (o, v) in inner.iter_mut().zip(row) {
                *o += weight * v;
            }
        }
        let (first, last) = (column_sums[2], column_sums[w + 1]);
        column_sums[..2].fill(first);
        column_sums[w + 2..].fill(last);
        for (nx, o) in out_row.iter_mut().enumerate() {
            let taps = &column_sums[2 * nx..2 * nx + 5];
            *o = K[0] * taps[0] + K[1] * taps[1] + K[2] * taps[2] + K[3] * taps[3] + K[4] * taps[4];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_window_is_identity_at_pixel_centres() {
        let values: Vec<f32> = (0..20 * 10).map(|i| (i * 7 % 31) as f32).collect();
        let plane = Plane::from_pixels(&values, 20, 10, 4);
        let mut out = vec![0.0; 9];
        assert!(plane.sample_window(5.0, 4.0, 1, &mut out));
        for r in 0..3 {
            for c in 0..3 {
                assert_eq!(out[r * 3 + c], values[(3 + r) * 20 + 4 + c]);
            }
        }
    }

    #[test]
    fn bilinear_window_interpolates_a_linear_ramp_exactly() {
        let values: Vec<f32> = (0..16 * 16)
            .map(|i| 2.0 * (i % 16) as f32 + 3.0 * (i / 16) as f32)
            .collect();
        let plane = Plane::from_pixels(&values, 16, 16, 4);
        let mut out = vec![0.0; 1];
        assert!(plane.sample_window(6.25, 7.5, 0, &mut out));
        // A window reaching past the border does not fit.
        assert!(!plane.sample_window(-4.5, 7.5, 0, &mut out));
        assert!((out[0] - (2.0 * 6.25 + 3.0 * 7.5)).abs() < 1e-4);
    }

    #[test]
    fn downsample_halves_size_and_keeps_constants() {
        let out = downsample(&[5.0; 7 * 5], 7, 5);
        assert_eq!(out.len(), 4 * 3);
        assert!(out.iter().all(|v| (v - 5.0).abs() < 1e-5));
    }
}
