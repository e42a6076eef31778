//! How device results reach the host. The core's loops — generation, training, STaR — leave
//! their reads to a [`Host`]: natively a read completes at once ([`Blocking`], driven by
//! [`block_on`]); in the browser it must be awaited (a synchronous read cannot complete inside
//! the page's event loop), and the page gets a turn between reads. One loop serves both.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use burn::tensor::{Int, Tensor, TensorData, Transaction};

use crate::error::{ModelError, Result};

/// Reads device tensors back for the core's loops.
pub trait Host {
    /// The registered tensors' data, in registration order.
    fn read(&mut self, reads: Transaction) -> impl Future<Output = Result<Vec<TensorData>>>;
}

/// Reads synchronously: every read is complete when it returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Blocking;

impl Host for Blocking {
    async fn read(&mut self, reads: Transaction) -> Result<Vec<TensorData>> {
        Ok(reads.execute())
    }
}

/// Runs `future` to completion when it never waits — a core loop driven by [`Blocking`]: the
/// synchronous entry points (`generate_ids`, `train`, the CLI's STaR run) are this over the
/// async ones.
///
/// # Panics
/// When the future waits (a host that is not synchronous).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("block_on: the future waited; drive it with an async runtime instead"),
    }
}

/// The first value of each read tensor as `f64` (losses, norms, counts).
pub fn scalars(data: &[TensorData]) -> Result<Vec<f64>> {
    data.iter()
        .map(|d| d.iter::<f64>().next().ok_or_else(|| ModelError::Input("a device read returned no value".into())))
        .collect()
}

/// Integer ids read back from the device.
pub fn ids(data: TensorData) -> Result<Vec<i64>> {
    data.try_into_vec_as::<i64>().map_err(|e| ModelError::Input(format!("device ids: {e:?}")))
}

/// Reads one device tensor of ids through `host` (a decoder's sampled tokens, once per step).
pub async fn read_ids(host: &mut impl Host, next: Tensor<1, Int>) -> Result<Vec<i64>> {
    let read = host.read(Transaction::default().register(next)).await?;
    ids(read.into_iter().next().ok_or_else(|| ModelError::Input("no ids read".into()))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Int, Tensor};

    #[test]
    fn blocking_reads_complete_at_once() {
        let device = Device::flex();
        let t = Tensor::<1, Int>::from_data([3, 4], &device);
        let x = Tensor::<1>::from_data([2.5f32], &device);
        let read = block_on(Blocking.read(Transaction::default().register(t).register(x))).unwrap();
        assert_eq!(ids(read[0].clone()).unwrap(), vec![3, 4]);
        assert_eq!(scalars(&read[1..]).unwrap(), vec![2.5]);
    }
}
