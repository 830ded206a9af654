//! Gripper post-processing of each embodiment the reference evaluates on.

/// SimplerEnv WidowX (Bridge): `+1` (open) if the predicted open-ness exceeds 0.5, else `-1`.
///
/// ```
/// use magma_actions::robot::widowx_gripper;
/// assert_eq!(widowx_gripper(0.9961), 1.0);
/// assert_eq!(widowx_gripper(0.5), -1.0); // strictly greater than 0.5
/// ```
pub fn widowx_gripper(open: f64) -> f64 {
    if open > 0.5 {
        1.0
    } else {
        -1.0
    }
}

/// LIBERO: map `[0, 1]` to `[-1, 1]` (`2g - 1`), binarise with `np.sign`, then invert
/// (RLDS 0 = close / 1 = open → LIBERO −1 = open / +1 = close).
///
/// `np.sign(0) == 0`, so exactly `g = 0.5` gives `-0.0`, as in the reference.
///
/// ```
/// use magma_actions::robot::libero_gripper;
/// assert_eq!(libero_gripper(1.0), -1.0); // open
/// assert_eq!(libero_gripper(0.0), 1.0); // close
/// assert_eq!(libero_gripper(0.5), 0.0);
/// ```
pub fn libero_gripper(g: f64) -> f64 {
    -numpy_sign(2.0 * g - 1.0)
}

/// `np.sign`: −1, 0 or +1, NaN stays NaN.
fn numpy_sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        // 0.0 (either sign) → 0.0; NaN → NaN
        x * 0.0
    }
}

/// The Google-robot "sticky gripper" of Magma's SimplerEnv policy.
///
/// The command is the *relative* change `previous_open - current_open` (0 on the first step).
/// When its magnitude exceeds 0.5 and no sticky action is running, that value is latched and
/// emitted for `num_repeat` steps (the latching step included), whatever the model predicts;
/// then the latch is released.
///
/// ```
/// use magma_actions::robot::StickyGripper;
///
/// let mut g = StickyGripper::new(2);
/// assert_eq!(g.step(1.0), 0.0); // first step: no previous value
/// assert_eq!(g.step(0.0), 1.0); // closed: relative 1.0 is latched
/// assert_eq!(g.step(0.0), 1.0); // repeated, then released
/// assert_eq!(g.step(0.0), 0.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StickyGripper {
    num_repeat: u32,
    sticky_on: bool,
    repeat: u32,
    sticky_value: f64,
    previous: Option<f64>,
}

impl StickyGripper {
    /// Repeat count used by the reference (`sticky_gripper_num_repeat`).
    pub const REFERENCE_REPEAT: u32 = 10;

    /// A fresh state machine (as after `reset`).
    pub fn new(num_repeat: u32) -> Self {
        Self {
            num_repeat,
            sticky_on: false,
            repeat: 0,
            sticky_value: 0.0,
            previous: None,
        }
    }

    /// Feeds one predicted open-ness (the un-normalised gripper dimension, 1 = open) and returns
    /// the gripper command to send.
    pub fn step(&mut self, open: f64) -> f64 {
        let mut relative = match self.previous {
            None => 0.0,
            Some(previous) => previous - open,
        };
        self.previous = Some(open);
        if relative.abs() > 0.5 && !self.sticky_on {
            self.sticky_on = true;
            self.sticky_value = relative;
        }
        if self.sticky_on {
            self.repeat += 1;
            relative = self.sticky_value;
        }
        if self.repeat == self.num_repeat {
            self.sticky_on = false;
            self.repeat = 0;
            self.sticky_value = 0.0;
        }
        relative
    }

    /// The configured repeat count.
    pub fn num_repeat(&self) -> u32 {
        self.num_repeat
    }

    /// Whether a latched command is currently being repeated.
    pub fn is_sticky(&self) -> bool {
        self.sticky_on
    }
}

impl Default for StickyGripper {
    fn default() -> Self {
        Self::new(Self::REFERENCE_REPEAT)
    }
}
