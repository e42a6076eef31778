//! Data parallelism on one host: copies of the model on further devices each take a slice of
//! every micro-batch ([`crate::trainer::Trainer::backward_with`]). Their gradients are moved to
//! the model's own device and summed there — a host all-reduce, since burn moves a tensor between
//! devices through host memory — the model alone takes the optimizer step (one optimizer state,
//! as a checkpoint holds it), and fresh copies of the updated weights serve the next step. Each
//! slice's loss is divided by the whole step's target count, so the summed gradient is the
//! gradient of the whole batch: a step on D devices equals a step on one device with the same
//! (D times larger) batch, up to the order of floating-point sums.
//!
//! The slices' passes are issued one after another from one thread: on GPUs their kernels queue
//! asynchronously and overlap as far as the gradient read-backs allow; on the CPU backend they
//! take turns. burn's NCCL all-reduce exists for its CUDA backend only, which cannot be built on
//! the machines this project is developed on, and burn has no collective across hosts at all:
//! training on several machines is not supported.

use burn::module::Module;
use burn::tensor::Device;

use starling_model::Transformer;

/// Copies of `model` (on an autodiff device) on each of `devices` (autodiff devices), tracked
/// apart from it by autodiff.
pub fn copies(model: &Transformer, devices: &[Device]) -> Vec<Transformer> {
    devices.iter().map(|device| model.clone().fork(device)).collect()
}

/// `items` cut into `parts` contiguous slices whose lengths differ by at most one (the first
/// ones longer); a slice is empty where there are fewer items than parts.
pub fn split_evenly<T: Clone>(items: &[T], parts: usize) -> Vec<Vec<T>> {
    let parts = parts.max(1);
    let (base, extra) = (items.len() / parts, items.len() % parts);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let len = base + usize::from(p < extra);
        out.push(items[start..start + len].to_vec());
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_batch_in_order() {
        let items: Vec<usize> = (0..7).collect();
        assert_eq!(split_evenly(&items, 3), vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
        assert_eq!(split_evenly(&items, 1), vec![items.clone()]);
        assert_eq!(split_evenly(&items[..1], 2), vec![vec![0], vec![]]);
    }
}
