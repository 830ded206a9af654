//! A small seeded generator whose whole state is one `u64`, so checkpoints can store it and a
//! resumed run draws exactly the numbers the uninterrupted run would have drawn.

use magma_model::autograd::RandomSource;

/// SplitMix64 (Steele, Lea, Flood 2014): fast, statistically sound for dropout masks and
/// shuffles, trivially serialisable.
///
/// ```
/// let mut a = magma_train::rng::TrainRng::new(7);
/// let mut b = magma_train::rng::TrainRng::from_state(a.state());
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainRng {
    state: u64,
}

impl TrainRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x5DEE_CE66_D1CE_4E5B,
        }
    }

    /// Restores a generator from [`TrainRng::state`].
    pub fn from_state(state: u64) -> Self {
        Self { state }
    }

    /// The full state (store it to resume).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform_f64();
        let u2 = self.uniform_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform index in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform_f64() * n as f64) as usize % n.max(1)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

impl RandomSource for TrainRng {
    fn uniform(&mut self) -> f32 {
        self.uniform_f64() as f32
    }
}
