//! Picking the next token on the device: greedy, or temperature with optional top-k / top-p,
//! by the Gumbel-max trick (argmax of logits/T + Gumbel noise is a sample from softmax(logits/T)).
//! Only the chosen ids ever leave the device.

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

use crate::error::{ModelError, Result};
use crate::mask::MASKED;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches p (nucleus sampling).
    pub top_p: Option<f32>,
    /// Token ids that are never produced (e.g. Quiet-STaR's thought delimiters).
    pub suppress: Vec<u32>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingConfig {
    pub fn greedy() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: None, suppress: Vec::new() }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0) || !self.temperature.is_finite() {
            return Err(ModelError::Input(format!("temperature must be ≥ 0, got {}", self.temperature)));
        }
        if self.top_k == Some(0) {
            return Err(ModelError::Input("top-k must be at least 1".into()));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ModelError::Input(format!("top-p must be in (0, 1], got {p}")));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == Some(1)
    }
}

/// A sampling configuration bound to a vocabulary and device: the suppression bias is uploaded
/// once per generation, not once per step.
pub struct Sampler<'a> {
    cfg: &'a SamplingConfig,
    /// `[1, V]`: [`MASKED`] at suppressed ids, 0 elsewhere.
    suppress_bias: Option<Tensor<2>>,
}

impl<'a> Sampler<'a> {
    pub fn new(cfg: &'a SamplingConfig, vocab_size: usize, device: &Device) -> Self {
        let suppress_bias = (!cfg.suppress.is_empty()).then(|| {
            let mut bias = vec![0f32; vocab_size];
            for &id in &cfg.suppress {
                if (id as usize) < vocab_size {
                    bias[id as usize] = MASKED;
                }
            }
            Tensor::from_data(TensorData::new(bias, [1, vocab_size]), device)
        });
        Self { cfg, suppress_bias }
    }

    /// One token id per row of `logits` (`[B, V]`), as a device tensor `[B]`, drawing the
    /// noise from the device's RNG.
    pub fn sample(&self, logits: Tensor<2>) -> Tensor<1, Int> {
        self.sample_with(logits, None)
    }

    /// How many uniform draws per row [`Sampler::sample_with`] needs (0 when greedy): one per
    /// candidate token.
    pub fn draws_per_row(&self, vocab_size: usize) -> usize {
        match (self.cfg.is_greedy(), self.cfg.top_k) {
            (true, _) => 0,
            (false, Some(k)) if k < vocab_size => k,
            _ => vocab_size,
        }
    }

    /// [`Sampler::sample`] with the uniform draws (in (0, 1], `[B, draws_per_row]`) supplied by
    /// the caller — who can then draw them per row from a seed of the row's own, so a row's
    /// sample does not depend on which rows share its batch.
    pub fn sample_with(&self, logits: Tensor<2>, uniforms: Option<Tensor<2>>) -> Tensor<1, Int> {
        let cfg = self.cfg;
        let [b, v] = logits.dims();
        let logits = match &self.suppress_bias {
            Some(bias) => logits + bias.clone(),
            None => logits,
        };
        if cfg.is_greedy() {
            return logits.argmax(1).reshape([b]);
        }
        let scaled = logits.div_scalar(cfg.temperature as f64);
        // Candidates: the top-k, or the whole vocabulary sorted when top-p needs an order.
        let (values, indices) = match (cfg.top_k, cfg.top_p) {
            (Some(k), _) if k < v => {
                let (vals, idx) = scaled.topk_with_indices(k, 1);
                (vals, Some(idx))
            }
            (_, Some(p)) if p < 1.0 => {
                let (vals, idx) = scaled.sort_descending_with_indices(1);
                (vals, Some(idx))
            }
            _ => (scaled, None),
        };
        let values = match cfg.top_p {
            Some(p) if p < 1.0 => {
                // values are sorted descending here (topk output is sorted too). Drop a candidate
                // when the mass before it already reaches p; the first one always survives.
                let probs = burn::tensor::activation::softmax(values.clone(), 1);
                let before = probs.clone().cumsum(1) - probs;
                values.mask_fill(before.greater_equal_elem(p as f64), MASKED)
            }
            _ => values,
        };
        let [_, k] = values.dims();
        let u = uniforms.unwrap_or_else(|| Tensor::random([b, k], Distribution::Uniform(1e-10, 1.0), &values.device()));
        debug_assert_eq!(u.dims(), [b, k], "one uniform draw per candidate");
        let gumbel = u.log().neg().log().neg();
        let choice = (values + gumbel).argmax(1); // [B, 1]
        match indices {
            Some(idx) => idx.gather(1, choice).reshape([b]),
            None => choice.reshape([b]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(logits: Tensor<2>, cfg: &SamplingConfig) -> Tensor<1, Int> {
        let v = logits.dims()[1];
        Sampler::new(cfg, v, &logits.device()).sample(logits)
    }

    fn ids(t: Tensor<1, Int>) -> Vec<i64> {
        t.into_data().try_into_vec_as::<i64>().unwrap()
    }

    fn logits(rows: &[&[f32]]) -> Tensor<2> {
        let v = rows[0].len();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), v]), &Device::flex())
    }

    #[test]
    fn greedy_takes_argmax_and_respects_suppression() {
        let l = logits(&[&[0.1, 3.0, 0.2], &[5.0, 1.0, 0.0]]);
        assert_eq!(ids(sample(l.clone(), &SamplingConfig::greedy())), vec![1, 0]);
        let cfg = SamplingConfig { suppress: vec![1, 0], ..SamplingConfig::greedy() };
        assert_eq!(ids(sample(l, &cfg)), vec![2, 2]);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let device = Device::flex();
        device.seed(3);
        // Probabilities ≈ [0.64, 0.24, 0.09, 0.03] at T=1.
        let row: &[f32] = &[3.0, 2.0, 1.0, -0.1];
        let l = logits(&[row; 64]);
        let k2 = SamplingConfig { temperature: 1.0, top_k: Some(2), ..SamplingConfig::greedy() };
        let got = ids(sample(l.clone(), &k2));
        assert!(got.iter().all(|&i| i == 0 || i == 1), "{got:?}");
        assert!(got.contains(&1), "64 draws at p≈0.27 should include token 1: {got:?}");
        let p = SamplingConfig { temperature: 1.0, top_p: Some(0.5), ..SamplingConfig::greedy() };
        assert!(ids(sample(l.clone(), &p)).iter().all(|&i| i == 0));
        let p = SamplingConfig { temperature: 1.0, top_p: Some(0.8), ..SamplingConfig::greedy() };
        let got = ids(sample(l, &p));
        assert!(got.iter().all(|&i| i <= 1) && got.contains(&1), "{got:?}");
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let device = Device::flex();
        device.seed(11);
        let row: &[f32] = &[0.0, (3.0f32).ln()]; // p = [0.25, 0.75]
        let l = logits(&[row; 4000]);
        let cfg = SamplingConfig { temperature: 1.0, ..SamplingConfig::greedy() };
        let ones = ids(sample(l, &cfg)).iter().filter(|&&i| i == 1).count();
        let frac = ones as f64 / 4000.0;
        assert!((frac - 0.75).abs() < 0.03, "{frac}");
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(SamplingConfig { top_p: Some(1.5), ..SamplingConfig::greedy() }.validate().is_err());
        assert!(SamplingConfig { temperature: -1.0, ..SamplingConfig::greedy() }.validate().is_err());
        assert!(SamplingConfig { top_k: Some(0), ..SamplingConfig::greedy() }.validate().is_err());
    }
}
