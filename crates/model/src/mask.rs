//! Attention masks as additive biases, and RoPE positions, for batches of left-padded rows.
//!
//! Rows are laid out in "slots": slot `t` holds the t-th token of every row, and row `b`'s real
//! tokens start at slot `pad_left[b]`. A token's RoPE position is its slot minus the row's
//! padding, so a padded prompt is rotated exactly like the same prompt alone.

use burn::tensor::{Device, Tensor, TensorData};

/// Added to the scores of keys a query must not see. Finite so that a row with nothing visible
/// (never produced here, but cheap insurance) gives a uniform softmax instead of NaN.
pub const MASKED: f32 = -1.0e30;

/// Additive attention bias `[B, L_query, T_keys]`: 0 where visible, [`MASKED`] elsewhere.
/// Rows that continue a shared prefix (see [`crate::prefix::SharedPrefix`]) have a second bias
/// `[B, L_query, P]` over the prefix's keys — only where a sliding window hides some of them;
/// without one every prefix key is visible and no bias is stored.
#[derive(Debug, Clone)]
pub struct AttentionBias(Tensor<3>, Option<Tensor<3>>);

impl AttentionBias {
    pub fn new(t: Tensor<3>) -> Self {
        Self(t, None)
    }

    /// The bias over the rows' own keys.
    pub fn tensor(&self) -> &Tensor<3> {
        &self.0
    }

    /// The bias over a shared prefix's keys (`None`: all visible).
    pub fn prefix(&self) -> Option<&Tensor<3>> {
        self.1.as_ref()
    }

    /// Causal mask for `new` queries in slots `past..past+new` over keys in slots
    /// `0..past+new`, hiding each row's left padding and, with `window`, keys more than
    /// `window − 1` slots back (Mistral's sliding window).
    pub fn causal(pad_left: &[usize], past: usize, new: usize, window: Option<usize>, device: &Device) -> Self {
        let b = pad_left.len();
        let t = past + new;
        let mut data = vec![MASKED; b * new * t];
        for (row, &pad) in pad_left.iter().enumerate() {
            for qi in 0..new {
                let i = past + qi;
                let base = (row * new + qi) * t;
                if i < pad {
                    // A padding query: let it see itself so its (ignored) output stays finite.
                    data[base + i] = 0.0;
                    continue;
                }
                let lo = window.map_or(pad, |w| pad.max((i + 1).saturating_sub(w)));
                for j in lo..=i {
                    data[base + j] = 0.0;
                }
            }
        }
        Self(Tensor::from_data(TensorData::new(data, [b, new, t]), device), None)
    }

    /// [`AttentionBias::causal`] for rows that continue a shared prefix of `prefix_len` tokens
    /// (before slot 0 of every row): the own part is the same; the prefix's keys are visible
    /// unless the sliding window has moved past them.
    pub fn causal_after_prefix(
        pad_left: &[usize],
        past: usize,
        new: usize,
        window: Option<usize>,
        prefix_len: usize,
        device: &Device,
    ) -> Self {
        let own = Self::causal(pad_left, past, new, window, device);
        let Some(w) = window else { return own };
        // A query at position `pos` sees positions ≥ pos + 1 − w; prefix key k sits at position k.
        let lowest = |pad: usize, qi: usize| (prefix_len + (past + qi).saturating_sub(pad) + 1).saturating_sub(w);
        let hidden = pad_left.iter().any(|&pad| (0..new).any(|qi| lowest(pad, qi) > 0));
        if prefix_len == 0 || !hidden {
            return own;
        }
        let mut data = vec![0.0f32; pad_left.len() * new * prefix_len];
        for (row, &pad) in pad_left.iter().enumerate() {
            for qi in 0..new {
                let base = (row * new + qi) * prefix_len;
                data[base..base + lowest(pad, qi).min(prefix_len)].fill(MASKED);
            }
        }
        let prefix = Tensor::from_data(TensorData::new(data, [pad_left.len(), new, prefix_len]), device);
        Self(own.0, Some(prefix))
    }
}

/// RoPE positions `[B, new]` of the tokens in slots `past..past+new`.
pub fn positions(pad_left: &[usize], past: usize, new: usize, device: &Device) -> Tensor<2> {
    let data: Vec<f32> =
        pad_left.iter().flat_map(|&pad| (past..past + new).map(move |slot| slot.saturating_sub(pad) as f32)).collect();
    Tensor::from_data(TensorData::new(data, [pad_left.len(), new]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(bias: &AttentionBias) -> Vec<Vec<Vec<u8>>> {
        let [b, l, t] = bias.0.dims();
        let v: Vec<f32> = bias.0.clone().into_data().try_into_vec_as().unwrap();
        (0..b)
            .map(|r| (0..l).map(|q| (0..t).map(|k| (v[(r * l + q) * t + k] == 0.0) as u8).collect()).collect())
            .collect()
    }

    #[test]
    fn causal_mask_hides_padding_and_future() {
        let device = Device::flex();
        let m = visible(&AttentionBias::causal(&[0, 2], 0, 3, None, &device));
        assert_eq!(m[0], vec![vec![1, 0, 0], vec![1, 1, 0], vec![1, 1, 1]]);
        // Row 1: slots 0 and 1 are padding; the padding queries see only themselves.
        assert_eq!(m[1], vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 0, 1]]);
        // One decode step after 3 cached slots.
        let m = visible(&AttentionBias::causal(&[0, 2], 3, 1, None, &device));
        assert_eq!(m[1], vec![vec![0, 0, 1, 1]]);
    }

    #[test]
    fn sliding_window_limits_lookback() {
        let m = visible(&AttentionBias::causal(&[0], 0, 4, Some(2), &Device::flex()));
        assert_eq!(m[0][3], vec![0, 0, 1, 1]);
    }

    #[test]
    fn a_window_hides_the_start_of_a_shared_prefix() {
        let device = Device::flex();
        // No window: the prefix needs no bias.
        assert!(AttentionBias::causal_after_prefix(&[0], 0, 2, None, 4, &device).prefix().is_none());
        // Window 3, prefix of 4: own slot 0 is position 4 and sees positions 2..=4.
        let b = AttentionBias::causal_after_prefix(&[0, 1], 0, 2, Some(3), 4, &device);
        let p: Vec<f32> = b.prefix().unwrap().clone().into_data().try_into_vec_as().unwrap();
        let seen: Vec<u8> = p.iter().map(|&x| (x == 0.0) as u8).collect();
        // Row 0: positions 4, 5; row 1 (one padding slot): a padding query, then position 4.
        assert_eq!(seen, vec![0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1]);
    }

    #[test]
    fn positions_skip_padding() {
        let p: Vec<f32> = positions(&[0, 2], 1, 3, &Device::flex()).into_data().try_into_vec_as().unwrap();
        assert_eq!(p, vec![1., 2., 3., 0., 0., 1.]);
    }
}
