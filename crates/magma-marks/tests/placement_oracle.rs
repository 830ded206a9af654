//! The label search checked against an independent re-statement of the reference rule on random layouts.
//!
//! The oracle below is written from the rule as stated in the spec (§5.2), not from the crate's code:
//! it lists all eight candidates with a table of multipliers, computes every distance of all 16 corner
//! pairs, collects every score before taking the maximum, and picks the winner by sorting.

use magma_marks::{place_magma_labels, LabelPosition, Yxhw};
use proptest::prelude::*;

/// `(a, b, c, d)`: corner = (y + a·h − b·h_t, x + c·w − d·w_t), in the reference's order.
const CANDIDATES: [(f64, f64, f64, f64); 8] = [
    (0.0, 1.0, 0.0, 0.0), // top-left
    (0.0, 1.0, 1.0, 1.0), // top-right
    (0.0, 0.0, 1.0, 0.0), // right-top
    (1.0, 1.0, 1.0, 0.0), // right-bottom
    (1.0, 0.0, 1.0, 1.0), // bottom-right
    (1.0, 0.0, 0.0, 0.0), // bottom-left
    (1.0, 1.0, 0.0, 1.0), // left-bottom
    (0.0, 0.0, 0.0, 1.0), // left-top
];

fn corner_of(k: usize, b: &Yxhw, h_t: f64, w_t: f64) -> (f64, f64) {
    let (a, bb, c, d) = CANDIDATES[k];
    let y = if a == 1.0 { b.y + b.h } else { b.y };
    let y = if bb == 1.0 { y - h_t } else { y };
    let x = if c == 1.0 { b.x + b.w } else { b.x };
    let x = if d == 1.0 { x - w_t } else { x };
    (y, x)
}

fn oracle(
    boxes: &[Yxhw],
    sizes: &[(f64, f64)],
    height: f64,
    width: f64,
) -> Vec<(usize, Yxhw, bool)> {
    let mut placed: Vec<Yxhw> = Vec::new();
    let mut out = Vec::new();
    for (i, b) in boxes.iter().enumerate() {
        let (h_t, w_t) = sizes[i];
        let mut scored: Vec<(f64, usize, Yxhw)> = Vec::new();
        for k in 0..8 {
            let (cy, cx) = corner_of(k, b, h_t, w_t);
            let inside = cy >= 0.0 && cx >= 0.0 && cy + h_t <= height && cx + w_t <= width;
            if !inside {
                continue;
            }
            let cand = Yxhw {
                y: cy,
                x: cx,
                h: h_t,
                w: w_t,
            };
            let mut values = vec![-(width + height)];
            for o in boxes.iter().chain(placed.iter()) {
                if (o.y, o.x, o.h, o.w) == (b.y, b.x, b.h, b.w) {
                    continue;
                }
                let dy = (cand.y + cand.h).min(o.y + o.h) - cand.y.max(o.y);
                let dx = (cand.x + cand.w).min(o.x + o.w) - cand.x.max(o.x);
                let area = if dy > 0.0 { dy } else { 0.0 } * if dx > 0.0 { dx } else { 0.0 };
                let cs = [
                    (cand.y, cand.x),
                    (cand.y, cand.x + cand.w),
                    (cand.y + cand.h, cand.x),
                    (cand.y + cand.h, cand.x + cand.w),
                ];
                let os = [
                    (o.y, o.x),
                    (o.y, o.x + o.w),
                    (o.y + o.h, o.x),
                    (o.y + o.h, o.x + o.w),
                ];
                let mut dists = Vec::new();
                for p in cs {
                    for q in os {
                        dists.push(((p.0 - q.0) * (p.0 - q.0) + (p.1 - q.1) * (p.1 - q.1)).sqrt());
                    }
                }
                let nearest = dists.iter().cloned().fold(f64::INFINITY, f64::min);
                values.push(area - 0.0001 * nearest);
            }
            let score = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            scored.push((score, k, cand));
        }
        // Lowest score, then earliest candidate.
        scored.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
        let (k, label, fallback) = match scored.first() {
            Some(&(_, k, cand)) => (k, cand, false),
            None => {
                let (cy, cx) = corner_of(0, b, h_t, w_t);
                (
                    0,
                    Yxhw {
                        y: cy,
                        x: cx,
                        h: h_t,
                        w: w_t,
                    },
                    true,
                )
            }
        };
        placed.push(label);
        out.push((k, label, fallback));
    }
    out
}

fn layout() -> impl Strategy<Value = (f64, f64, Vec<Yxhw>)> {
    (40u32..600, 40u32..600).prop_flat_map(|(w, h)| {
        let (wf, hf) = (f64::from(w), f64::from(h));
        // Half-pixel coordinates make exact score ties common; indices ≥ 1 may copy an earlier box.
        let one = (0u32..2 * w, 0u32..2 * h, 1u32..w, 1u32..h, 0usize..12);
        (Just(wf), Just(hf), prop::collection::vec(one, 0..40)).prop_map(|(wf, hf, raw)| {
            let mut boxes: Vec<Yxhw> = Vec::new();
            for (x2, y2, bw, bh, copy) in raw {
                if copy == 0 && !boxes.is_empty() {
                    let j = (x2 as usize) % boxes.len();
                    boxes.push(boxes[j]);
                    continue;
                }
                let x = (f64::from(x2) / 2.0).min(wf - 1.0);
                let y = (f64::from(y2) / 2.0).min(hf - 1.0);
                boxes.push(Yxhw::new(
                    y,
                    x,
                    f64::from(bh).min(hf - y),
                    f64::from(bw).min(wf - x),
                ));
            }
            (wf, hf, boxes)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn placement_matches_the_restated_rule((width, height, boxes) in layout(), h_t in 8.0f64..31.0, w_t in 6.0f64..20.0) {
        let h_t = h_t.round();
        let w_t = w_t.round();
        // Label width grows with the digit count, capped at three digits, as in the reference.
        let size = |i: usize| (h_t, w_t * i.to_string().len().min(3) as f64);
        let sizes: Vec<(f64, f64)> = (0..boxes.len()).map(size).collect();
        let got = place_magma_labels(&boxes, size, height, width);
        let want = oracle(&boxes, &sizes, height, width);
        prop_assert_eq!(got.len(), want.len());
        for (i, (g, (k, label, fallback))) in got.iter().zip(&want).enumerate() {
            prop_assert_eq!(g.position, LabelPosition::MAGMA_ORDER[*k], "box {}", i);
            prop_assert_eq!(g.label, *label, "box {}", i);
            prop_assert_eq!(g.fallback, *fallback, "box {}", i);
        }
    }
}
