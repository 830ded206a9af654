//! The OpenCV 8-bit image operations PySceneDetect's detectors run, reproduced bit for bit so
//! per-frame scores match its stats files: `cvtColor(BGR2HSV)`, `resize(INTER_LINEAR)`,
//! `Canny` (3×3 Sobel, L1 gradient) and `dilate` with a square kernel. Each function names the
//! OpenCV rule it follows; the unit tests and the shot fixtures check them against OpenCV.

use image::RgbImage;

/// One 8-bit channel plane, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Fixed-point bits of OpenCV's 8-bit RGB→HSV tables (`hsv_shift`).
const HSV_SHIFT: u32 = 12;

/// The division tables of OpenCV's `RGB2HSV_b`: `sdiv[v] = round(255·2¹²/v)`,
/// `hdiv[d] = round(180·2¹²/(6d))`, both 0 at index 0 (rounded half to even, as `cvRound`).
struct HsvTables {
    sdiv: [i32; 256],
    hdiv: [i32; 256],
}

fn hsv_tables() -> &'static HsvTables {
    static TABLES: std::sync::OnceLock<HsvTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut sdiv = [0; 256];
        let mut hdiv = [0; 256];
        for i in 1..256 {
            sdiv[i] = ((255 << HSV_SHIFT) as f64 / i as f64).round_ties_even() as i32;
            hdiv[i] = ((180 << HSV_SHIFT) as f64 / (6.0 * i as f64)).round_ties_even() as i32;
        }
        HsvTables { sdiv, hdiv }
    })
}

/// HSV planes of an RGB frame as OpenCV's `cvtColor(bgr, COLOR_BGR2HSV)` computes them for
/// 8-bit input: H in 0..180 (degrees / 2), S and V in 0..=255.
pub fn hsv_planes(frame: &RgbImage) -> [Plane; 3] {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let t = hsv_tables();
    let n = w * h;
    let (mut hue, mut sat, mut val) = (vec![0u8; n], vec![0u8; n], vec![0u8; n]);
    for (i, px) in frame.as_raw().chunks_exact(3).enumerate() {
        let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
        let v = r.max(g).max(b);
        let diff = v - r.min(g).min(b);
        let s = (diff * t.sdiv[v as usize] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
        // OpenCV tests `v == r` first, then `v == g`: ties go to red, then green.
        let raw = if v == r {
            g - b
        } else if v == g {
            b - r + 2 * diff
        } else {
            r - g + 4 * diff
        };
        let mut hh = (raw * t.hdiv[diff as usize] + (1 << (HSV_SHIFT - 1))) >> HSV_SHIFT;
        if hh < 0 {
            hh += 180;
        }
        hue[i] = hh as u8;
        sat[i] = s as u8;
        val[i] = v as u8;
    }
    let plane = |data| Plane {
        width: w,
        height: h,
        data,
    };
    [plane(hue), plane(sat), plane(val)]
}

/// Source index and 11-bit weights of one output coordinate of OpenCV's INTER_LINEAR
/// (`resizeGeneric_` setup: float coordinate, clamped at the borders,
/// weights `saturate_cast<short>((1−f)·2048)`, `saturate_cast<short>(f·2048)`).
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, usize, i32, i32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let fx = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut sx = fx.floor() as i64;
            let mut f = fx - sx as f32;
            if sx < 0 {
                (sx, f) = (0, 0.0);
            }
            if sx >= src as i64 - 1 {
                (sx, f) = (src as i64 - 1, 0.0);
            }
            let sx = sx as usize;
            let a0 = ((1.0f32 - f) * 2048.0).round_ties_even() as i32;
            let a1 = (f * 2048.0).round_ties_even() as i32;
            (sx, (sx + 1).min(src - 1), a0, a1)
        })
        .collect()
}

/// `cv2.resize(frame, (width, height), interpolation=INTER_LINEAR)` for 8-bit RGB.
///
/// Horizontal pass: `S[x]·a0 + S[x+1]·a1` in 32-bit. Vertical pass: OpenCV's vectorised
/// 8-bit kernel (`VResizeLinearVec_32s8u`), which OpenCV runs on every pixel of these rows:
/// `((r0>>4)·b0 >> 16) + ((r1>>4)·b1 >> 16) + 2) >> 2` — it differs from the exact rounding
/// by one grey level at some pixels, so it is reproduced rather than "fixed".
pub fn resize_linear(frame: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = (frame.width() as usize, frame.height() as usize);
    let (dw, dh) = (width as usize, height as usize);
    if (sw, sh) == (dw, dh) {
        return frame.clone();
    }
    let xs = linear_taps(sw, dw);
    let ys = linear_taps(sh, dh);
    let src = frame.as_raw();
    let row_len = dw * 3;
    // Horizontally resized source rows, computed once each (two per output row at most).
    let mut cache: Vec<Option<Vec<i32>>> = vec![None; sh];
    let hresize = |y: usize| -> Vec<i32> {
        let row = &src[y * sw * 3..(y + 1) * sw * 3];
        let mut out = Vec::with_capacity(row_len);
        for &(x0, x1, a0, a1) in &xs {
            for c in 0..3 {
                out.push(i32::from(row[x0 * 3 + c]) * a0 + i32::from(row[x1 * 3 + c]) * a1);
            }
        }
        out
    };
    let mut out = vec![0u8; dh * row_len];
    for (line, &(y0, y1, b0, b1)) in out.chunks_exact_mut(row_len).zip(&ys) {
        for y in [y0, y1] {
            if cache[y].is_none() {
                cache[y] = Some(hresize(y));
            }
        }
        let (r0, r1) = (cache[y0].as_ref().unwrap(), cache[y1].as_ref().unwrap());
        for ((o, &p0), &p1) in line.iter_mut().zip(r0).zip(r1) {
            let v = ((((p0 >> 4) * b0) >> 16) + (((p1 >> 4) * b1) >> 16) + 2) >> 2;
            *o = v.clamp(0, 255) as u8;
        }
        // Rows no later output row reads again.
        if y0 > 0 {
            cache[y0 - 1] = None;
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer sized width*height*3")
}

/// `numpy.median` of a plane: the mean of the two middle values for an even count.
pub fn median(plane: &Plane) -> f64 {
    let mut hist = [0usize; 256];
    for &v in &plane.data {
        hist[v as usize] += 1;
    }
    let n = plane.data.len();
    let nth = |k: usize| {
        let mut seen = 0;
        for (v, &c) in hist.iter().enumerate() {
            seen += c;
            if seen > k {
                return v as f64;
            }
        }
        255.0
    };
    if n % 2 == 1 {
        nth(n / 2)
    } else {
        (nth(n / 2 - 1) + nth(n / 2)) / 2.0
    }
}

/// `cv2.Canny(plane, low, high)` (aperture 3, L1 gradient): 3×3 Sobel with replicated
/// borders, `|dx|+|dy|`, OpenCV's non-maximum suppression (tan 22.5° in 15-bit fixed point,
/// its strict/non-strict neighbour comparisons), hysteresis over 8-neighbours. Edges are 255.
pub fn canny(plane: &Plane, low: i32, high: i32) -> Plane {
    let (w, h) = (plane.width, plane.height);
    let (low, high) = if low > high { (high, low) } else { (low, high) };
    let px = |x: isize, y: isize| -> i32 {
        let x = x.clamp(0, w as isize - 1) as usize;
        let y = y.clamp(0, h as isize - 1) as usize;
        i32::from(plane.data[y * w + x])
    };
    let mut dx = vec![0i32; w * h];
    let mut dy = vec![0i32; w * h];
    let mut mag = vec![0i32; (w + 2) * (h + 2)];
    let mw = w + 2;
    for y in 0..h {
        for x in 0..w {
            let (xi, yi) = (x as isize, y as isize);
            let gx = px(xi + 1, yi - 1) - px(xi - 1, yi - 1)
                + 2 * (px(xi + 1, yi) - px(xi - 1, yi))
                + px(xi + 1, yi + 1)
                - px(xi - 1, yi + 1);
            let gy = px(xi - 1, yi + 1) - px(xi - 1, yi - 1)
                + 2 * (px(xi, yi + 1) - px(xi, yi - 1))
                + px(xi + 1, yi + 1)
                - px(xi + 1, yi - 1);
            dx[y * w + x] = gx;
            dy[y * w + x] = gy;
            mag[(y + 1) * mw + x + 1] = gx.abs() + gy.abs();
        }
    }
    const SHIFT: i32 = 15;
    // (int)(tan(22.5°)·2¹⁵ + 0.5)
    const TG22: i32 = 13573;
    // 0: weak candidate, 1: not an edge, 2: edge.
    let mut map = vec![1u8; w * h];
    let mut stack = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let m = mag[(y + 1) * mw + x + 1];
            if m <= low {
                continue;
            }
            let at = |ox: isize, oy: isize| {
                mag[((y as isize + 1 + oy) as usize) * mw + (x as isize + 1 + ox) as usize]
            };
            let (xs, ys) = (dx[y * w + x], dy[y * w + x]);
            let ax = xs.abs();
            let ay = ys.abs() << SHIFT;
            let tg22x = ax * TG22;
            let is_max = if ay < tg22x {
                m > at(-1, 0) && m >= at(1, 0)
            } else {
                let tg67x = tg22x + (ax << (SHIFT + 1));
                if ay > tg67x {
                    m > at(0, -1) && m >= at(0, 1)
                } else {
                    let s: isize = if (xs ^ ys) < 0 { -1 } else { 1 };
                    m > at(-s, -1) && m > at(s, 1)
                }
            };
            if !is_max {
                continue;
            }
            if m > high {
                map[y * w + x] = 2;
                stack.push((x, y));
            } else {
                map[y * w + x] = 0;
            }
        }
    }
    while let Some((x, y)) = stack.pop() {
        for (ox, oy) in [
            (-1, -1),
            (0, -1),
            (1, -1),
            (-1, 0),
            (1, 0),
            (-1, 1),
            (0, 1),
            (1, 1),
        ] {
            let (nx, ny) = (x as isize + ox, y as isize + oy);
            if nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize {
                continue;
            }
            let i = ny as usize * w + nx as usize;
            if map[i] == 0 {
                map[i] = 2;
                stack.push((nx as usize, ny as usize));
            }
        }
    }
    Plane {
        width: w,
        height: h,
        data: map.iter().map(|&m| if m == 2 { 255 } else { 0 }).collect(),
    }
}

/// `cv2.dilate(plane, ones((k, k)))`: the maximum over a k×k window centred on each pixel;
/// pixels outside the image do not count (OpenCV's default dilate border).
pub fn dilate(plane: &Plane, k: usize) -> Plane {
    let (w, h) = (plane.width, plane.height);
    let r = k / 2;
    let mut rows = vec![0u8; w * h];
    for y in 0..h {
        let line = &plane.data[y * w..(y + 1) * w];
        for x in 0..w {
            let (a, b) = (x.saturating_sub(r), (x + r).min(w - 1));
            rows[y * w + x] = line[a..=b].iter().copied().max().unwrap_or(0);
        }
    }
    let mut data = vec![0u8; w * h];
    for y in 0..h {
        let (a, b) = (y.saturating_sub(r), (y + r).min(h - 1));
        for x in 0..w {
            data[y * w + x] = (a..=b).map(|yy| rows[yy * w + x]).max().unwrap_or(0);
        }
    }
    Plane {
        width: w,
        height: h,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_matches_opencv_on_known_colours() {
        // Values from cv2.cvtColor(..., COLOR_BGR2HSV) on OpenCV 5.1.
        let frame = RgbImage::from_raw(
            5,
            1,
            vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 120, 7, 7, 7],
        )
        .unwrap();
        let [h, s, v] = hsv_planes(&frame);
        assert_eq!(h.data, [0, 60, 120, 77, 0]);
        assert_eq!(s.data, [255, 255, 255, 242, 0]);
        assert_eq!(v.data, [255, 255, 255, 200, 7]);
    }

    #[test]
    fn linear_resize_keeps_flat_images_and_copies_same_size() {
        let flat = RgbImage::from_pixel(320, 180, image::Rgb([37, 200, 3]));
        let small = resize_linear(&flat, 256, 144);
        assert!(small.pixels().all(|p| p.0 == [37, 200, 3]));
        assert_eq!(resize_linear(&flat, 320, 180), flat);
    }

    #[test]
    fn median_averages_the_middle_pair() {
        let p = Plane {
            width: 4,
            height: 1,
            data: vec![1, 9, 4, 5],
        };
        assert_eq!(median(&p), 4.5);
    }

    #[test]
    fn canny_finds_a_step_edge_and_dilate_grows_it() {
        let mut data = vec![0u8; 16 * 8];
        for y in 0..8 {
            for x in 8..16 {
                data[y * 16 + x] = 200;
            }
        }
        let plane = Plane {
            width: 16,
            height: 8,
            data,
        };
        let edges = canny(&plane, 50, 100);
        let cols: Vec<usize> = (0..16).filter(|&x| edges.data[3 * 16 + x] == 255).collect();
        assert!(
            !cols.is_empty() && cols.iter().all(|&x| x == 7 || x == 8),
            "{cols:?}"
        );
        let grown = dilate(&edges, 3);
        let count = |p: &Plane| p.data.iter().filter(|&&v| v == 255).count();
        assert!(count(&grown) > count(&edges));
    }
}
