//! Robot benchmarks from per-episode results: SimplerEnv (success per task, visual-matching and
//! variant-aggregation means, sim↔real Pearson r and MMRV as `simpler_env/utils/metrics.py`
//! computes them) and LIBERO (success per suite, `eval_magma_libero.py`'s Σ successes /
//! Σ episodes). Repeated runs (`seed`) give mean ± std (numpy's `np.std`, ddof 0).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::scores::{mean, Scores};

/// One SimplerEnv episode.
#[derive(Debug, Clone, Deserialize)]
pub struct SimplerEpisode {
    /// e.g. `google_robot_pick_coke_can`.
    pub task: String,
    /// `visual_matching` or `variant_aggregation`.
    pub protocol: String,
    /// The scene variant (URDF recolouring, background, lighting, distractor, …).
    #[serde(default)]
    pub variant: String,
    #[serde(default)]
    pub seed: i64,
    /// The policy (checkpoint) evaluated; several in one file give MMRV across them.
    #[serde(default)]
    pub policy: Option<String>,
    pub success: bool,
}

/// Real-robot success of one policy on one task (for Pearson r and MMRV).
#[derive(Debug, Clone, Deserialize)]
pub struct RealResult {
    #[serde(default)]
    pub policy: Option<String>,
    pub task: String,
    /// Success rate as a fraction in [0, 1].
    pub success: f64,
}

/// One LIBERO episode.
#[derive(Debug, Clone, Deserialize)]
pub struct LiberoEpisode {
    /// `libero_spatial`, `libero_object`, `libero_goal`, `libero_10`, …
    pub suite: String,
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub seed: i64,
    pub success: bool,
}

/// `pearson_correlation` of SimplerEnv (with its 1e-8 guard and the all-equal special case).
pub fn pearson(sim: &[f64], real: &[f64]) -> f64 {
    let (ms, mr) = (mean(sim), mean(real));
    let s: Vec<f64> = sim.iter().map(|v| v - ms).collect();
    let r: Vec<f64> = real.iter().map(|v| v - mr).collect();
    if s == r {
        return 1.0;
    }
    let num: f64 = s.iter().zip(&r).map(|(a, b)| a * b).sum();
    let den = (s.iter().map(|a| a * a).sum::<f64>() * r.iter().map(|b| b * b).sum::<f64>()).sqrt();
    num / (den + 1e-8)
}

/// `mean_maximum_rank_violation`: for each policy, the largest real-success gap to a policy
/// whose order differs between sim and real, averaged.
///
/// ```
/// use magma_eval::metrics::robot::mmrv;
/// assert!((mmrv(&[0.5, 0.4], &[0.3, 0.6]) - 0.3).abs() < 1e-12);
/// assert_eq!(mmrv(&[0.1, 0.2], &[0.3, 0.6]), 0.0);
/// ```
pub fn mmrv(sim: &[f64], real: &[f64]) -> f64 {
    let violations: Vec<f64> = (0..sim.len())
        .map(|i| {
            (0..sim.len())
                .filter(|&j| (sim[i] > sim[j]) != (real[i] > real[j]))
                .map(|j| (real[i] - real[j]).abs())
                .fold(0.0, f64::max)
        })
        .collect();
    mean(&violations)
}

/// Mean and population standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let m = mean(values);
    let var = mean(&values.iter().map(|v| (v - m).powi(2)).collect::<Vec<_>>());
    (m, var.sqrt())
}

fn rate(successes: &[bool]) -> f64 {
    successes.iter().filter(|&&s| s).count() as f64 / successes.len() as f64
}

/// Inserts `key` (mean over seeds, percent) and, with several seeds, `key_std`.
fn insert_over_seeds(s: &mut Scores, key: &str, per_seed: &[f64]) {
    let (m, sd) = mean_std(per_seed);
    s.insert(key, 100.0 * m);
    if per_seed.len() > 1 {
        s.insert(format!("{key}_std"), 100.0 * sd);
    }
}

/// Per-policy, per-seed, per-task aggregated success: task → (VM, VA, success).
/// (visual matching, variant aggregation, their mean) of one task.
type Rates = (Option<f64>, Option<f64>, f64);
type TaskRates = BTreeMap<String, Rates>;

fn simpler_rates(episodes: &[&SimplerEpisode]) -> TaskRates {
    // task → protocol → variant → outcomes
    let mut grouped: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, Vec<bool>>>> = BTreeMap::new();
    for e in episodes {
        grouped
            .entry(&e.task)
            .or_default()
            .entry(&e.protocol)
            .or_default()
            .entry(&e.variant)
            .or_default()
            .push(e.success);
    }
    grouped
        .into_iter()
        .map(|(task, protocols)| {
            let protocol_mean = |name: &str| {
                protocols
                    .get(name)
                    .map(|variants| mean(&variants.values().map(|v| rate(v)).collect::<Vec<_>>()))
            };
            let vm = protocol_mean("visual_matching");
            let va = protocol_mean("variant_aggregation");
            // Magma's Table 2 reports each task as the mean of VA and VM.
            let both: Vec<f64> = [vm, va].into_iter().flatten().collect();
            (task.to_string(), (vm, va, mean(&both)))
        })
        .collect()
}

/// SimplerEnv scores. Per task: `visual_matching`, `variant_aggregation`, `success_rate`
/// (their mean); top level: the means over tasks; each with `_std` over seeds when runs repeat.
/// With real-robot results and several policies: per task `pearson` and `mmrv` across policies.
pub fn score_simpler(episodes: &[SimplerEpisode], real: &[RealResult]) -> Result<Scores, String> {
    for e in episodes {
        if !matches!(
            e.protocol.as_str(),
            "visual_matching" | "variant_aggregation"
        ) {
            return Err(format!(
                "task {}: unknown protocol `{}` (visual_matching, variant_aggregation)",
                e.task, e.protocol
            ));
        }
    }
    let policy_of = |p: &Option<String>| p.clone().unwrap_or_else(|| "model".into());
    let policies: Vec<String> = {
        let mut v: Vec<String> = episodes.iter().map(|e| policy_of(&e.policy)).collect();
        v.sort();
        v.dedup();
        v
    };
    let mut scores = Scores::new();
    // policy → task → success (mean over seeds), for MMRV
    let mut sim_by_policy: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for policy in &policies {
        let mut seeds: BTreeMap<i64, Vec<&SimplerEpisode>> = BTreeMap::new();
        for e in episodes.iter().filter(|e| policy_of(&e.policy) == *policy) {
            seeds.entry(e.seed).or_default().push(e);
        }
        let per_seed: Vec<TaskRates> = seeds.values().map(|eps| simpler_rates(eps)).collect();
        let tasks: Vec<String> = per_seed[0].keys().cloned().collect();
        let mut s = Scores::new();
        let (mut all_vm, mut all_va, mut all_sr) = (
            vec![Vec::new(); per_seed.len()],
            vec![Vec::new(); per_seed.len()],
            vec![Vec::new(); per_seed.len()],
        );
        for task in &tasks {
            let mut t = Scores::new();
            let col = |f: fn(&Rates) -> Option<f64>| -> Vec<f64> {
                per_seed
                    .iter()
                    .filter_map(|r| r.get(task).and_then(f))
                    .collect()
            };
            let vm = col(|r| r.0);
            let va = col(|r| r.1);
            let sr = col(|r| Some(r.2));
            if !vm.is_empty() {
                insert_over_seeds(&mut t, "visual_matching", &vm);
            }
            if !va.is_empty() {
                insert_over_seeds(&mut t, "variant_aggregation", &va);
            }
            insert_over_seeds(&mut t, "success_rate", &sr);
            for (k, r) in per_seed.iter().enumerate() {
                if let Some(r) = r.get(task) {
                    all_vm[k].extend(r.0);
                    all_va[k].extend(r.1);
                    all_sr[k].push(r.2);
                }
            }
            sim_by_policy
                .entry(policy.clone())
                .or_default()
                .insert(task.clone(), mean(&sr));
            s.insert_group(task.as_str(), t);
        }
        let over_tasks = |v: &[Vec<f64>]| {
            v.iter()
                .filter(|x| !x.is_empty())
                .map(|x| mean(x))
                .collect::<Vec<_>>()
        };
        for (key, values) in [
            ("visual_matching", &all_vm),
            ("variant_aggregation", &all_va),
            ("success_rate", &all_sr),
        ] {
            let v = over_tasks(values);
            if !v.is_empty() {
                insert_over_seeds(&mut s, key, &v);
            }
        }
        s.insert("seeds", per_seed.len() as f64);
        if policies.len() == 1 {
            scores = s;
        } else {
            scores.insert_group(policy.as_str(), s);
        }
    }
    if policies.len() > 1 && !real.is_empty() {
        let mut tasks: Vec<&str> = real.iter().map(|r| r.task.as_str()).collect();
        tasks.sort();
        tasks.dedup();
        let mut corr = Scores::new();
        for task in tasks {
            let (mut sim, mut re) = (Vec::new(), Vec::new());
            for r in real.iter().filter(|r| r.task == task) {
                if let Some(s) = sim_by_policy
                    .get(&policy_of(&r.policy))
                    .and_then(|m| m.get(task))
                {
                    sim.push(*s);
                    re.push(r.success);
                }
            }
            if sim.len() >= 2 {
                let mut t = Scores::new();
                t.insert("pearson", pearson(&sim, &re));
                t.insert("mmrv", mmrv(&sim, &re));
                t.insert("policies", sim.len() as f64);
                corr.insert_group(task, t);
            }
        }
        if !corr.is_empty() {
            scores.insert_group("sim_real", corr);
        }
    }
    Ok(scores)
}

/// LIBERO scores: per suite `success_rate` (Σ successes / Σ episodes), `episodes`, `tasks`;
/// top level `success_rate` = the mean over suites; `_std` over seeds when runs repeat.
pub fn score_libero(episodes: &[LiberoEpisode]) -> Scores {
    let mut seeds: BTreeMap<i64, BTreeMap<&str, Vec<bool>>> = BTreeMap::new();
    let mut tasks: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in episodes {
        seeds
            .entry(e.seed)
            .or_default()
            .entry(&e.suite)
            .or_default()
            .push(e.success);
        tasks.entry(&e.suite).or_default().insert(&e.task);
        *counts.entry(&e.suite).or_default() += 1;
    }
    let order = [
        "libero_spatial",
        "libero_object",
        "libero_goal",
        "libero_10",
        "libero_90",
    ];
    let mut suites: Vec<&str> = order
        .iter()
        .copied()
        .filter(|s| tasks.contains_key(s))
        .collect();
    suites.extend(tasks.keys().copied().filter(|s| !order.contains(s)));
    let mut scores = Scores::new();
    let mut per_seed_mean: Vec<Vec<f64>> = vec![Vec::new(); seeds.len()];
    for suite in &suites {
        let rates: Vec<f64> = seeds
            .values()
            .filter_map(|m| m.get(suite).map(|v| rate(v)))
            .collect();
        for (k, m) in seeds.values().enumerate() {
            if let Some(v) = m.get(suite) {
                per_seed_mean[k].push(rate(v));
            }
        }
        let mut s = Scores::new();
        insert_over_seeds(&mut s, "success_rate", &rates);
        s.insert("episodes", counts[suite] as f64);
        s.insert("tasks", tasks[suite].len() as f64);
        scores.insert_group(*suite, s);
    }
    let means: Vec<f64> = per_seed_mean.iter().map(|v| mean(v)).collect();
    insert_over_seeds(&mut scores, "success_rate", &means);
    scores.insert("seeds", seeds.len() as f64);
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(task: &str, protocol: &str, variant: &str, seed: i64, success: bool) -> SimplerEpisode {
        SimplerEpisode {
            task: task.into(),
            protocol: protocol.into(),
            variant: variant.into(),
            seed,
            policy: None,
            success,
        }
    }

    #[test]
    fn variants_are_averaged_then_protocols_then_tasks() {
        let eps = vec![
            // VM: variant a 1/2, variant b 1/1 → 0.75; VA: 0/1 → 0 → task 0.375
            ep("coke", "visual_matching", "a", 0, true),
            ep("coke", "visual_matching", "a", 0, false),
            ep("coke", "visual_matching", "b", 0, true),
            ep("coke", "variant_aggregation", "bg", 0, false),
            // drawer only VM: 1.0
            ep("drawer", "visual_matching", "a", 0, true),
        ];
        let s = score_simpler(&eps, &[]).unwrap();
        assert_eq!(s.get("coke.visual_matching"), Some(75.0));
        assert_eq!(s.get("coke.success_rate"), Some(37.5));
        assert_eq!(s.get("success_rate"), Some(68.75));
    }

    #[test]
    fn seeds_give_mean_and_population_std() {
        let eps = vec![
            ep("coke", "visual_matching", "a", 0, true),
            ep("coke", "visual_matching", "a", 1, false),
        ];
        let s = score_simpler(&eps, &[]).unwrap();
        assert_eq!(s.get("success_rate"), Some(50.0));
        assert_eq!(s.get("success_rate_std"), Some(50.0));
        assert_eq!(s.get("seeds"), Some(2.0));
    }

    #[test]
    fn pearson_special_cases() {
        assert_eq!(pearson(&[0.1, 0.2], &[0.1, 0.2]), 1.0);
        assert!((pearson(&[0.0, 1.0], &[1.0, 0.0]) + 1.0).abs() < 1e-7);
    }

    #[test]
    fn libero_suite_success_pools_episodes() {
        let e = |suite: &str, task: &str, success| LiberoEpisode {
            suite: suite.into(),
            task: task.into(),
            seed: 0,
            success,
        };
        let s = score_libero(&[
            e("libero_goal", "t1", true),
            e("libero_goal", "t1", true),
            e("libero_goal", "t2", false),
            e("libero_spatial", "t1", false),
        ]);
        assert!((s.get("libero_goal.success_rate").unwrap() - 200.0 / 3.0).abs() < 1e-9);
        assert!((s.get("success_rate").unwrap() - 100.0 / 3.0).abs() < 1e-9);
    }
}
