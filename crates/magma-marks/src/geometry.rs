//! Boxes in the reference's `(y, x, h, w)` layout and the two measures its label search uses.

/// An axis-aligned box as the reference's UI SoM code keeps it: top, left, height, width, in pixels
/// (fractional values are allowed and kept, as the reference does for OmniParser boxes).
///
/// # Examples
///
/// ```
/// use magma_marks::Yxhw;
///
/// let a = Yxhw::new(0.0, 0.0, 10.0, 10.0);
/// let b = Yxhw::new(5.0, 5.0, 10.0, 10.0);
/// assert_eq!(a.intersection_area(&b), 25.0);
/// assert_eq!(a.nearest_corner_distance(&b), 50f64.sqrt());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Yxhw {
    /// Top edge.
    pub y: f64,
    /// Left edge.
    pub x: f64,
    /// Height.
    pub h: f64,
    /// Width.
    pub w: f64,
}

impl Yxhw {
    /// A box from its top, left, height and width.
    pub const fn new(y: f64, x: f64, h: f64, w: f64) -> Self {
        Self { y, x, h, w }
    }

    /// `[x1, y1, x2, y2]` corners.
    pub fn to_xyxy(&self) -> [f64; 4] {
        [self.x, self.y, self.x + self.w, self.y + self.h]
    }

    /// Overlap area, computed in the reference's order (`max(0, Δy) · max(0, Δx)`).
    pub fn intersection_area(&self, other: &Yxhw) -> f64 {
        let y_min = self.y.max(other.y);
        let x_min = self.x.max(other.x);
        let y_max = (self.y + self.h).min(other.y + other.h);
        let x_max = (self.x + self.w).min(other.x + other.w);
        (y_max - y_min).max(0.0) * (x_max - x_min).max(0.0)
    }

    fn corners(&self) -> [(f64, f64); 4] {
        let (bottom, right) = (self.y + self.h, self.x + self.w);
        [
            (self.y, self.x),
            (self.y, right),
            (bottom, self.x),
            (bottom, right),
        ]
    }

    /// The smallest Euclidean distance between any corner of `self` and any corner of `other`.
    pub fn nearest_corner_distance(&self, other: &Yxhw) -> f64 {
        let mut best = f64::INFINITY;
        for (ay, ax) in self.corners() {
            for (by, bx) in other.corners() {
                let (dy, dx) = (ay - by, ax - bx);
                best = best.min(dy * dy + dx * dx);
            }
        }
        // sqrt is correctly rounded and monotone, so sqrt(min) == min(sqrt) bit for bit.
        best.sqrt()
    }
}
