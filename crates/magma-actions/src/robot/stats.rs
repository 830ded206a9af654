//! Action normalisation statistics (OpenVLA `dataset_statistics.json` layout) and the
//! BOUNDS_Q99 normalisation / un-normalisation.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ActionError, Result};

/// Per-dimension statistics of one signal (`action` or `proprio`) of one dataset.
///
/// Only `q01` and `q99` are needed to un-normalise; `mask` defaults to all-true when absent
/// (as in OpenVLA); the moments are optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    /// 1st percentile per dimension (the lower bound of BOUNDS_Q99).
    pub q01: Vec<f64>,
    /// 99th percentile per dimension (the upper bound of BOUNDS_Q99).
    pub q99: Vec<f64>,
    /// Which dimensions are normalised; `false` (the gripper) passes through unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<Vec<bool>>,
    /// Mean per dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f64>>,
    /// Standard deviation per dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f64>>,
    /// Minimum per dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Vec<f64>>,
    /// Maximum per dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Vec<f64>>,
}

impl NormStats {
    /// Number of dimensions (the length of `q01`, as OpenVLA reads it).
    pub fn dim(&self) -> usize {
        self.q01.len()
    }

    /// Whether dimension `i` is normalised (mask absent ⇒ every dimension is).
    pub fn is_masked(&self, i: usize) -> bool {
        self.mask
            .as_ref()
            .and_then(|m| m.get(i).copied())
            .unwrap_or(true)
    }

    /// Inverse BOUNDS_Q99: `0.5 (v + 1)(q99 - q01) + q01` on masked dimensions, `v` elsewhere.
    ///
    /// ```
    /// use magma_actions::robot::StatisticsSet;
    ///
    /// let stats = StatisticsSet::builtin();
    /// let bridge = &stats.get(Some("bridge_orig"))?.action;
    /// let raw = bridge.unnormalize(&[-1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.7])?;
    /// assert!((raw[0] - bridge.q01[0]).abs() < 1e-12);
    /// assert!((raw[1] - bridge.q99[1]).abs() < 1e-12);
    /// assert_eq!(raw[6], 0.7); // gripper is not masked
    /// # Ok::<(), magma_actions::ActionError>(())
    /// ```
    pub fn unnormalize(&self, normalized: &[f64]) -> Result<Vec<f64>> {
        self.check_dim("normalised action", normalized.len())?;
        Ok(normalized
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if self.is_masked(i) {
                    0.5 * (v + 1.0) * (self.q99[i] - self.q01[i]) + self.q01[i]
                } else {
                    v
                }
            })
            .collect())
    }

    /// BOUNDS_Q99 as the RLDS pipeline applies it at training time:
    /// `clip(2 (a - q01) / (q99 - q01 + 1e-8) - 1, -1, 1)` on masked dimensions, then every
    /// dimension whose `min == max` is forced to 0 (OpenVLA's rule for unused dimensions).
    /// The reference computes this in float32 (TensorFlow); this is the f64 version.
    pub fn normalize(&self, raw: &[f64]) -> Result<Vec<f64>> {
        self.check_dim("raw action", raw.len())?;
        Ok(raw
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let unused = match (&self.min, &self.max) {
                    (Some(min), Some(max)) => min.get(i) == max.get(i),
                    _ => false,
                };
                if unused {
                    0.0
                } else if self.is_masked(i) {
                    (2.0 * (a - self.q01[i]) / (self.q99[i] - self.q01[i] + 1e-8) - 1.0)
                        .clamp(-1.0, 1.0)
                } else {
                    a
                }
            })
            .collect())
    }

    fn check_dim(&self, what: &str, got: usize) -> Result<()> {
        if got == self.dim() {
            Ok(())
        } else {
            Err(ActionError::DimensionMismatch {
                what: what.into(),
                expected: self.dim(),
                got,
            })
        }
    }

    /// Every per-dimension list must have as many entries as `q01`.
    fn validate(&self, origin: &str) -> Result<()> {
        let lists: [(&str, Option<usize>); 7] = [
            ("q99", Some(self.q99.len())),
            ("mask", self.mask.as_ref().map(Vec::len)),
            ("mean", self.mean.as_ref().map(Vec::len)),
            ("std", self.std.as_ref().map(Vec::len)),
            ("min", self.min.as_ref().map(Vec::len)),
            ("max", self.max.as_ref().map(Vec::len)),
            ("q01", Some(self.q01.len())),
        ];
        for (name, len) in lists {
            if let Some(len) = len {
                if len != self.dim() {
                    return Err(ActionError::MalformedStatistics {
                        origin: origin.into(),
                        message: format!(
                            "field `{name}` has {len} entries but `q01` has {}",
                            self.dim()
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The statistics of one dataset (one `unnorm_key`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    /// Statistics of the 7-DoF action.
    pub action: NormStats,
    /// Statistics of the proprioceptive state, when the file has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proprio: Option<NormStats>,
    /// Number of transitions the statistics were computed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_transitions: Option<u64>,
    /// Number of trajectories the statistics were computed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_trajectories: Option<u64>,
}

/// A set of per-dataset statistics keyed by `unnorm_key`.
///
/// ```
/// use magma_actions::robot::StatisticsSet;
///
/// let json = r#"{"libero_goal_no_noops": {"action": {
///     "q01": [-1, -1, -1, -1, -1, -1, 0], "q99": [1, 1, 1, 1, 1, 1, 1],
///     "mask": [true, true, true, true, true, true, false]}}}"#;
/// let set = StatisticsSet::from_json_str(json, "dataset_statistics.json")?;
/// assert_eq!(set.keys().collect::<Vec<_>>(), ["libero_goal_no_noops"]);
/// // one dataset: the key may be omitted, as in OpenVLA
/// assert_eq!(set.get(None)?.action.dim(), 7);
/// # Ok::<(), magma_actions::ActionError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StatisticsSet {
    entries: BTreeMap<String, DatasetStats>,
}

impl StatisticsSet {
    /// Parses an OpenVLA-style `dataset_statistics.json`
    /// (`{key: {"action": {...}, "proprio": {...}, "num_transitions", "num_trajectories"}}`).
    /// `origin` names the source in error messages.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self> {
        let malformed = |message: String| ActionError::MalformedStatistics {
            origin: origin.into(),
            message,
        };
        let root: Value =
            serde_json::from_str(text).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
        let Value::Object(map) = root else {
            return Err(malformed(
                "expected a JSON object keyed by dataset name".into(),
            ));
        };
        let mut entries = BTreeMap::new();
        for (key, value) in map {
            if !value.is_object() {
                return Err(malformed(format!("entry `{key}` is not an object")));
            }
            if value.get("action").is_none() {
                return Err(malformed(format!("entry `{key}`: missing field `action`")));
            }
            let stats: DatasetStats = serde_json::from_value(value)
                .map_err(|e| malformed(format!("entry `{key}`: {e}")))?;
            stats
                .action
                .validate(&format!("{origin}: entry `{key}`.action"))?;
            if let Some(proprio) = &stats.proprio {
                proprio.validate(&format!("{origin}: entry `{key}`.proprio"))?;
            }
            entries.insert(key, stats);
        }
        Ok(Self { entries })
    }

    /// Reads a `dataset_statistics.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ActionError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// The statistics hard-coded in Magma's SimplerEnv policy: `bridge_orig` and `google_robot`,
    /// the latter also under OpenVLA's name for the same data, `fractal20220817_data`.
    pub fn builtin() -> Self {
        let google = builtin::google_robot();
        let entries = BTreeMap::from([
            ("bridge_orig".to_string(), builtin::bridge_orig()),
            ("fractal20220817_data".to_string(), google.clone()),
            ("google_robot".to_string(), google),
        ]);
        Self { entries }
    }

    /// The available `unnorm_key`s, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The statistics for `key`; `None` is allowed only when the set holds exactly one dataset.
    /// Errors list the available keys, as OpenVLA's `_check_unnorm_key` does.
    pub fn get(&self, key: Option<&str>) -> Result<&DatasetStats> {
        let available = || self.keys().map(str::to_string).collect::<Vec<_>>();
        match key {
            Some(key) => self
                .entries
                .get(key)
                .ok_or_else(|| ActionError::UnknownUnnormKey {
                    key: key.into(),
                    available: available(),
                }),
            None => match (self.entries.len(), self.entries.values().next()) {
                (1, Some(only)) => Ok(only),
                _ => Err(ActionError::AmbiguousUnnormKey {
                    available: available(),
                }),
            },
        }
    }
}

/// Full-precision values copied as facts from Magma's SimplerEnv policy
/// (`microsoft/Magma`, `tools/simplerenv-magma/simpler_env/policies/magma/magma_model.py`,
/// dict `action_norm_stats`, commit 0483f87); they are OpenVLA's statistics of the same datasets.
mod builtin {
    use super::{DatasetStats, NormStats};

    const MASK: [bool; 7] = [true, true, true, true, true, true, false];

    pub(super) fn bridge_orig() -> DatasetStats {
        DatasetStats {
            action: NormStats {
                q01: vec![
                    -0.02872725307941437,
                    -0.04170349963009357,
                    -0.026093858778476715,
                    -0.08092105075716972,
                    -0.09288699507713317,
                    -0.20718276381492615,
                    0.0,
                ],
                q99: vec![
                    0.028309678435325586,
                    0.040855254605412394,
                    0.040161586627364146,
                    0.08192047759890528,
                    0.07792850524187081,
                    0.20382574498653397,
                    1.0,
                ],
                mask: Some(MASK.to_vec()),
                mean: Some(vec![
                    0.0002334194869035855,
                    0.00013004911306779832,
                    -0.00012762474943883717,
                    -0.0001556558854645118,
                    -0.0004039328487124294,
                    0.00023557482927571982,
                    0.5764579176902771,
                ]),
                std: Some(vec![
                    0.009765930473804474,
                    0.013689135201275349,
                    0.012667362578213215,
                    0.028534092009067535,
                    0.030637972056865692,
                    0.07691419124603271,
                    0.4973701536655426,
                ]),
                min: Some(vec![
                    -0.4007510244846344,
                    -0.13874775171279907,
                    -0.22553899884223938,
                    -3.2010786533355713,
                    -1.8618112802505493,
                    -6.279075622558594,
                    0.0,
                ]),
                max: Some(vec![
                    0.41691166162490845,
                    0.25864794850349426,
                    0.21218234300613403,
                    3.122201919555664,
                    1.8618112802505493,
                    6.280478477478027,
                    1.0,
                ]),
            },
            proprio: None,
            num_transitions: None,
            num_trajectories: None,
        }
    }

    pub(super) fn google_robot() -> DatasetStats {
        DatasetStats {
            action: NormStats {
                q01: vec![
                    -0.22453527510166169,
                    -0.14820013284683228,
                    -0.231589707583189,
                    -0.3517994859814644,
                    -0.4193011274933815,
                    -0.43643461108207704,
                    0.0,
                ],
                q99: vec![
                    0.17824687153100965,
                    0.14938379630446405,
                    0.21842354819178575,
                    0.5892666035890578,
                    0.35272657424211445,
                    0.44796681255102094,
                    1.0,
                ],
                mask: Some(MASK.to_vec()),
                mean: Some(vec![
                    0.006987582892179489,
                    0.006265917327255011,
                    -0.01262515690177679,
                    0.04333311319351196,
                    -0.005756212864071131,
                    0.0009130256366916001,
                    0.5354204773902893,
                ]),
                std: Some(vec![
                    0.0692116990685463,
                    0.05970962345600128,
                    0.07353084534406662,
                    0.15610496699810028,
                    0.13164450228214264,
                    0.14593800902366638,
                    0.497110515832901,
                ]),
                min: Some(vec![
                    -2.0204520225524902,
                    -5.497899532318115,
                    -2.031663417816162,
                    -1.569917917251587,
                    -1.569892168045044,
                    -1.570419430732727,
                    0.0,
                ]),
                max: Some(vec![
                    2.9984593391418457,
                    22.09052848815918,
                    2.7507524490356445,
                    1.570636510848999,
                    1.5321086645126343,
                    1.5691522359848022,
                    1.0,
                ]),
            },
            proprio: None,
            num_transitions: None,
            num_trajectories: None,
        }
    }
}
