//! Robot actions: 7-DoF end-effector deltas + gripper, written as 7 action tokens.
//!
//! Decoding pipeline (identical in the reference's LIBERO and SimplerEnv wrappers):
//! generated ids → [`extract_action_ids`] → [`ActionTokenizer::decode`] (bin centres in
//! `[-1, 1]`) → [`NormStats::unnormalize`] (q01/q99 of the `unnorm_key`) → the embodiment's
//! post-processing ([`Embodiment`]: gripper rule, Euler → axis-angle).

mod gripper;
mod rotation;
mod stats;
mod tokenizer;

use serde::Serialize;

pub use gripper::{libero_gripper, widowx_gripper, StickyGripper};
pub use rotation::{euler_to_axis_angle, euler_to_rotation_vector};
pub use stats::{DatasetStats, NormStats, StatisticsSet};
pub use tokenizer::{extract_action_ids, ActionTokenizer, ACTION_DIM, N_BINS};

use crate::{ActionError, Result};

/// The robots the reference evaluates on; each post-processes the raw action differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Embodiment {
    /// SimplerEnv WidowX / Bridge (`policy_setup = widowx_bridge`, stats `bridge_orig`).
    Widowx,
    /// SimplerEnv Google robot (`policy_setup = google_robot`, stats `google_robot`).
    Google,
    /// LIBERO (stats from the checkpoint's `dataset_statistics.json`, `{suite}_no_noops`).
    Libero,
}

impl Embodiment {
    /// The statistics key the reference uses by default for this embodiment (none for LIBERO,
    /// whose key depends on the task suite).
    pub fn default_unnorm_key(self) -> Option<&'static str> {
        match self {
            Self::Widowx => Some("bridge_orig"),
            Self::Google => Some("google_robot"),
            Self::Libero => None,
        }
    }
}

/// The command an environment receives after post-processing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "env", rename_all = "snake_case")]
pub enum EnvCommand {
    /// A SimplerEnv (ManiSkill2) action dict.
    SimplerEnv {
        /// `world_vector · action_scale`.
        world_vector: [f64; 3],
        /// Euler deltas → axis·angle, times `action_scale`.
        rot_axangle: [f64; 3],
        /// WidowX: ±1; Google robot: the sticky relative command.
        gripper: f64,
        /// Always 0 in the reference.
        terminate_episode: f64,
    },
    /// A LIBERO 7-vector: raw deltas with the binarised, inverted gripper.
    Libero {
        /// `[dx, dy, dz, droll, dpitch, dyaw, gripper]`.
        action: [f64; 7],
    },
}

/// One decoded step: every intermediate of the reference pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecodedAction {
    /// The 7 action token ids.
    pub ids: Vec<u32>,
    /// Bin centres in `[-1, 1]`.
    pub normalized: Vec<f64>,
    /// After un-normalisation with the dataset statistics.
    pub unnormalized: Vec<f64>,
    /// The environment command, when an embodiment was chosen.
    pub command: Option<EnvCommand>,
}

/// Stateful decoder of a robot episode (the Google robot's sticky gripper keeps state between
/// steps; call [`reset`](Self::reset) at the start of each episode).
///
/// ```
/// use magma_actions::robot::{ActionTokenizer, Embodiment, RobotActionDecoder, StatisticsSet};
///
/// let stats = StatisticsSet::builtin().get(Some("bridge_orig"))?.action.clone();
/// let mut dec = RobotActionDecoder::new(ActionTokenizer::new(128_000)?, stats, Some(Embodiment::Widowx));
/// let generated = [127857, 127873, 127868, 127904, 127861, 127874, 127744, 128009];
/// let step = dec.decode_generated(&generated)?;
/// assert!((step.normalized[6] - 0.996078).abs() < 1e-6);
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RobotActionDecoder {
    tokenizer: ActionTokenizer,
    stats: NormStats,
    embodiment: Option<Embodiment>,
    action_scale: f64,
    sticky: StickyGripper,
}

impl RobotActionDecoder {
    /// A decoder with the reference's `action_scale = 1.0` and sticky repeat 10.
    pub fn new(
        tokenizer: ActionTokenizer,
        stats: NormStats,
        embodiment: Option<Embodiment>,
    ) -> Self {
        Self {
            tokenizer,
            stats,
            embodiment,
            action_scale: 1.0,
            sticky: StickyGripper::default(),
        }
    }

    /// Scales translation and rotation of SimplerEnv commands (reference default 1.0).
    pub fn with_action_scale(mut self, action_scale: f64) -> Self {
        self.action_scale = action_scale;
        self
    }

    /// Changes the sticky-gripper repeat count (reference default 10).
    pub fn with_sticky_repeat(mut self, num_repeat: u32) -> Self {
        self.sticky = StickyGripper::new(num_repeat);
        self
    }

    /// Starts a new episode (clears the sticky-gripper state).
    pub fn reset(&mut self) {
        self.sticky = StickyGripper::new(self.sticky.num_repeat());
    }

    /// Decodes a whole generated sequence: takes the 7 ids before its final (stop) token.
    pub fn decode_generated(&mut self, generated: &[u32]) -> Result<DecodedAction> {
        let ids = extract_action_ids(generated, self.stats.dim())?;
        self.decode_ids(ids)
    }

    /// Decodes exactly the action ids of one step.
    pub fn decode_ids(&mut self, ids: &[u32]) -> Result<DecodedAction> {
        let normalized = self.tokenizer.decode(ids);
        let unnormalized = self.stats.unnormalize(&normalized)?;
        let command = match self.embodiment {
            None => None,
            Some(embodiment) => Some(self.post_process(embodiment, &unnormalized)?),
        };
        Ok(DecodedAction {
            ids: ids.to_vec(),
            normalized,
            unnormalized,
            command,
        })
    }

    fn post_process(&mut self, embodiment: Embodiment, raw: &[f64]) -> Result<EnvCommand> {
        let raw: [f64; 7] = raw.try_into().map_err(|_| ActionError::DimensionMismatch {
            what: format!("{embodiment:?} action"),
            expected: ACTION_DIM,
            got: raw.len(),
        })?;
        let scale = self.action_scale;
        let simpler = |gripper: f64| EnvCommand::SimplerEnv {
            world_vector: [raw[0] * scale, raw[1] * scale, raw[2] * scale],
            rot_axangle: euler_to_rotation_vector(raw[3], raw[4], raw[5]).map(|r| r * scale),
            gripper,
            terminate_episode: 0.0,
        };
        Ok(match embodiment {
            Embodiment::Widowx => simpler(widowx_gripper(raw[6])),
            Embodiment::Google => simpler(self.sticky.step(raw[6])),
            Embodiment::Libero => {
                let mut action = raw;
                action[6] = libero_gripper(raw[6]);
                EnvCommand::Libero { action }
            }
        })
    }
}
