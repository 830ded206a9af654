//! AdamW (decoupled weight decay, as `torch.optim.AdamW`), learning-rate schedules as
//! transformers' `get_*_schedule_with_warmup`, and global-norm gradient clipping as
//! `torch.nn.utils.clip_grad_norm_`.

use crate::error::{Result, TrainError};
use candle_core::{Tensor, Var};

/// Learning-rate schedule after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

/// Learning rate at optimizer step `step` (0-based: the first update uses step 0), as
/// transformers' `LambdaLR` schedules: warm-up from 0 (so step 0 of a warm-up has lr 0), then
/// constant, linear to 0 at `total`, or half a cosine to 0 at `total`.
///
/// ```
/// use magma_train::optim::{learning_rate, Schedule};
/// assert_eq!(learning_rate(Schedule::Constant, 1e-3, 0, 2, 10), 0.0);
/// assert_eq!(learning_rate(Schedule::Constant, 1e-3, 1, 2, 10), 5e-4);
/// assert!((learning_rate(Schedule::Cosine, 1e-3, 6, 2, 10) - 5e-4).abs() < 1e-12);
/// assert_eq!(learning_rate(Schedule::Linear, 1e-3, 10, 2, 10), 0.0);
/// ```
pub fn learning_rate(
    schedule: Schedule,
    base: f64,
    step: usize,
    warmup: usize,
    total: usize,
) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1) as f64;
    let progress = (step - warmup) as f64 / decay_steps;
    match schedule {
        Schedule::Constant => base,
        Schedule::Linear => base * (1.0 - progress).max(0.0),
        Schedule::Cosine => base * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    }
}

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// Moments of one parameter.
#[derive(Debug, Clone)]
pub struct Moments {
    pub m: Tensor,
    pub v: Tensor,
    /// Number of updates this parameter received (PyTorch keeps the step per parameter).
    pub step: u64,
}

/// AdamW over named parameters; a parameter without gradient is skipped entirely (no state,
/// no decay), as PyTorch does for `grad is None`.
#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Per parameter (same order as the trainer's parameter list): moments once updated.
    pub state: Vec<Option<Moments>>,
}

impl AdamW {
    /// An optimizer for `n` parameters.
    pub fn new(config: AdamWConfig, n: usize) -> Self {
        Self {
            config,
            state: vec![None; n],
        }
    }

    /// One update with learning rate `lr`. `decay[i]` says whether parameter `i` gets weight
    /// decay. The arithmetic follows `torch.optim.adamw._single_tensor_adamw` step by step.
    pub fn step(
        &mut self,
        vars: &[&Var],
        grads: &[Option<Tensor>],
        decay: &[bool],
        lr: f64,
    ) -> Result<()> {
        if vars.len() != self.state.len() || grads.len() != vars.len() || decay.len() != vars.len()
        {
            return Err(TrainError::Config(
                "optimizer: parameter count changed".into(),
            ));
        }
        let c = self.config;
        for (i, var) in vars.iter().enumerate() {
            let Some(g) = &grads[i] else { continue };
            let moments = self.state[i].get_or_insert(Moments {
                m: g.zeros_like()?,
                v: g.zeros_like()?,
                step: 0,
            });
            moments.step += 1;
            let t = moments.step as i32;
            let mut p = var.as_tensor().detach();
            if decay[i] && c.weight_decay != 0.0 {
                p = p.affine(1.0 - lr * c.weight_decay, 0.0)?;
            }
            // m.lerp_(g, 1 - β1) = m + (1 - β1)(g - m)
            moments.m = (&moments.m + ((g - &moments.m)? * (1.0 - c.beta1))?)?;
            moments.v = ((&moments.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let bias_correction1 = 1.0 - c.beta1.powi(t);
            let bias_correction2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
            let step_size = lr / bias_correction1;
            let denom = ((moments.v.sqrt()? / bias_correction2_sqrt)? + c.eps)?;
            p = (p - ((&moments.m / denom)? * step_size)?)?;
            var.set(&p)?;
        }
        Ok(())
    }
}

/// Global L2 norm of all gradients (f64 sum of f32 squares).
pub fn global_norm(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.iter().flatten() {
        total += g
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(total.sqrt())
}

/// Scales gradients so their global norm is at most `max_norm` (PyTorch: factor
/// `max_norm / (norm + 1e-6)` clamped to 1). Returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if max_norm > 0.0 {
        let factor = (max_norm / (norm + 1e-6)).min(1.0);
        if factor < 1.0 {
            for g in grads.iter_mut().flatten() {
                *g = (&*g * factor)?;
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// One step by hand: with bias correction the first update is ≈ lr · sign(g).
    #[test]
    fn first_step_moves_by_lr_times_sign() -> Result<()> {
        let var = Var::from_vec(vec![1.0f32, -2.0], 2, &Device::Cpu)?;
        let g = Tensor::from_vec(vec![0.5f32, -3.0], 2, &Device::Cpu)?;
        let mut opt = AdamW::new(
            AdamWConfig {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            1,
        );
        opt.step(&[&var], &[Some(g)], &[true], 1e-3)?;
        let p = var.as_tensor().to_vec1::<f32>()?;
        assert!(
            (p[0] - 0.999).abs() < 1e-6 && (p[1] + 1.999).abs() < 1e-6,
            "{p:?}"
        );
        Ok(())
    }

    #[test]
    fn clipping_scales_to_the_limit() -> Result<()> {
        let mut grads = vec![
            Some(Tensor::from_vec(vec![3.0f32, 4.0], 2, &Device::Cpu)?),
            None,
        ];
        let norm = clip_global_norm(&mut grads, 1.0)?;
        assert!((norm - 5.0).abs() < 1e-9);
        assert!((global_norm(&grads)? - 1.0).abs() < 1e-5);
        Ok(())
    }
}
