//! The CubeCL kernels of `starling-shaders`, launched through burn's backend-extension mechanism
//! on any cubecl runtime (wgpu with WGSL, SPIR-V or MSL; CUDA), and their autodiff wiring: the
//! forward saves each query row's log-sum-exp; the backward recomputes the probabilities from it
//! (flash-attention style) — per-row statistics, dQ, dK/dV of the real keys, dK/dV of the
//! thought keys.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Cube, backend_extension};
use burn::tensor::{DType, Shape, Slice, Tensor};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::{BufferArg, CubeCount, CubeDim, CubeElement};
use cubecl::server::Handle;
use starling_shaders::{
    DimsLaunch, thought_attention_bwd_dkv_diag, thought_attention_bwd_dkv_real, thought_attention_bwd_dq,
    thought_attention_fwd, thought_attention_stats,
};

use crate::Visibility;

const WORKGROUP: u32 = 64;

/// The op as a backend extension: implemented by the cubecl backend (every runtime) and by autodiff over
/// it (custom backward).
#[backend_extension(Cube, Autodiff)]
pub trait ThoughtAttentionBackend: Backend {
    fn thought_attention(
        q: FloatTensor<Self>,
        k_real: FloatTensor<Self>,
        v_real: FloatTensor<Self>,
        k_diag: FloatTensor<Self>,
        v_diag: FloatTensor<Self>,
        layout: Vec<u32>,
    ) -> FloatTensor<Self>;
}

/// The raw kernels on a concrete backend: forward with log-sum-exp, and the backward.
pub trait ThoughtAttentionKernels: Backend {
    /// Output `[B,H,Sq,L,hd]` and log-sum-exp `[B,H,Sq,L]`.
    fn thought_attention_forward(inputs: &Inputs<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Gradients of q, k_real, v_real, k_diag, v_diag.
    fn thought_attention_backward(
        inputs: &Inputs<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 5];
}

/// Everything the kernels read.
#[derive(Debug, Clone)]
pub struct Inputs<B: Backend> {
    q: FloatTensor<B>,
    k_real: FloatTensor<B>,
    v_real: FloatTensor<B>,
    k_diag: FloatTensor<B>,
    v_diag: FloatTensor<B>,
    /// The [`Visibility`] as the kernels read it: first thinking position, window (0: none),
    /// then each row's padding.
    layout: Vec<u32>,
}

pub(crate) fn thought_attention_fused(
    q: Tensor<5>,
    k_real: Tensor<4>,
    v_real: Tensor<4>,
    k_diag: Tensor<5>,
    v_diag: Tensor<5>,
    vis: &Visibility,
) -> Tensor<5> {
    let hd = q.dims()[4];
    assert!(hd <= crate::MAX_FUSED_HEAD_DIM, "head dim {hd} is above the fused kernel's limit");
    let word = |x: usize| u32::try_from(x).expect("sizes fit the kernels' 32-bit indices");
    let mut layout = vec![word(vis.first), word(vis.window.unwrap_or(0))];
    layout.extend(vis.pad_left.iter().map(|&p| word(p)));
    Tensor::from_dispatch(<burn::backend::Dispatch as ThoughtAttentionBackend>::thought_attention(
        q.into_dispatch(),
        k_real.into_dispatch(),
        v_real.into_dispatch(),
        k_diag.into_dispatch(),
        v_diag.into_dispatch(),
        layout,
    ))
}

impl ThoughtAttentionBackend for Cube {
    fn thought_attention(
        q: FloatTensor<Self>,
        k_real: FloatTensor<Self>,
        v_real: FloatTensor<Self>,
        k_diag: FloatTensor<Self>,
        v_diag: FloatTensor<Self>,
        layout: Vec<u32>,
    ) -> FloatTensor<Self> {
        let inputs = Inputs { q, k_real, v_real, k_diag, v_diag, layout };
        Self::thought_attention_forward(&inputs).0
    }
}

/// Sizes of one call.
struct Sizes {
    b: usize,
    h: usize,
    kvh: usize,
    sq: usize,
    sk: usize,
    /// Thinking positions (queries and thought keys).
    lq: usize,
    /// Real positions (real keys).
    l: usize,
    hd: usize,
}

impl Sizes {
    fn of(inputs: &Inputs<Cube>) -> Self {
        let q = inputs.q.meta.shape();
        let kd = inputs.k_diag.meta.shape();
        let kr = inputs.k_real.meta.shape();
        Sizes { b: q[0], h: q[1], kvh: kd[1], sq: q[2], sk: kd[2], lq: q[3], l: kr[2], hd: q[4] }
    }

    fn query_rows(&self) -> usize {
        self.b * self.h * self.sq * self.lq
    }

    /// The kernels' view of the sizes and the [`Visibility`] (`layout` = first, window, pads).
    fn launch_dims(&self, layout: &[u32]) -> DimsLaunch {
        DimsLaunch::new(
            self.b,
            self.h,
            self.kvh,
            self.sq,
            self.sk,
            self.lq,
            self.l,
            layout[0] as usize,
            layout[1] as usize,
        )
    }
}

fn empty(like: &CubeTensor, shape: Vec<usize>) -> CubeTensor {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), Shape::from(shape), DType::F32)
}

/// Keys and values in one buffer, `[2, ...]`: the kernels then bind one buffer for both.
fn pack(k: &CubeTensor, v: &CubeTensor) -> CubeTensor {
    let one = |t: &CubeTensor| {
        let mut dims = vec![1];
        dims.extend(t.meta.shape().iter().copied());
        Cube::float_reshape(t.clone(), Shape::from(dims))
    };
    into_contiguous(Cube::float_cat(vec![one(k), one(v)], 0))
}

/// The two halves of a packed `[2, ...]` tensor, each of shape `dims`.
fn unpack(kv: CubeTensor, dims: &[usize]) -> (CubeTensor, CubeTensor) {
    let half = |i: usize| {
        let mut ranges = vec![Slice::new(i as isize, Some(i as isize + 1), 1)];
        ranges.extend(dims.iter().map(|&n| Slice::new(0, Some(n as isize), 1)));
        Cube::float_reshape(Cube::float_slice(kv.clone(), &ranges), Shape::from(dims.to_vec()))
    };
    (half(0), half(1))
}

/// Each row's padding on the device, as the kernels read it (`layout` = first, window, pads).
struct Pads {
    handle: Handle,
    rows: usize,
}

impl Pads {
    fn upload(like: &CubeTensor, layout: &[u32]) -> Self {
        let pads = &layout[2..];
        Pads { handle: like.client.create_from_slice(u32::as_bytes(pads)), rows: pads.len() }
    }

    fn arg(&self) -> BufferArg {
        // SAFETY: the handle was created from `rows` u32 values.
        unsafe { BufferArg::from_raw_parts(self.handle.clone(), self.rows) }
    }
}

fn check_f32(t: &CubeTensor) {
    assert_eq!(t.dtype, DType::F32, "the fused thought-attention kernels take f32 tensors");
}

/// One unit per item, 64 to a cube.
fn grid(like: &CubeTensor, items: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new_1d(WORKGROUP);
    (calculate_cube_count_elemwise(&like.client, items, dim), dim)
}

impl ThoughtAttentionKernels for Cube {
    fn thought_attention_forward(inputs: &Inputs<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let x = contiguous(inputs);
        let d = Sizes::of(&x);
        let out = empty(&x.q, vec![d.b, d.h, d.sq, d.lq, d.hd]);
        let lse = empty(&x.q, vec![d.b, d.h, d.sq, d.lq]);
        if d.query_rows() == 0 {
            return (out, lse);
        }
        let (count, dim) = grid(&x.q, d.query_rows());
        // SAFETY: every buffer is contiguous with the shapes the kernel indexes by (`Sizes`),
        // and each unit returns before touching memory when its row is out of range.
        unsafe {
            thought_attention_fwd::launch_unchecked(
                &x.q.client,
                count,
                dim,
                x.q.clone().into_buffer_arg(),
                pack(&x.k_real, &x.v_real).into_buffer_arg(),
                pack(&x.k_diag, &x.v_diag).into_buffer_arg(),
                Pads::upload(&x.q, &x.layout).arg(),
                out.clone().into_buffer_arg(),
                lse.clone().into_buffer_arg(),
                d.launch_dims(&x.layout),
                crate::scale(d.hd),
                d.hd,
            );
        }
        (out, lse)
    }

    fn thought_attention_backward(
        inputs: &Inputs<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 5] {
        let x = contiguous(inputs);
        let d = Sizes::of(&x);
        let (out, lse, dout) = (into_contiguous(out), into_contiguous(lse), into_contiguous(grad_out));
        let real_dims = [d.b, d.kvh, d.l, d.hd];
        let diag_dims = [d.b, d.kvh, d.sk, d.lq, d.hd];
        let dq = empty(&x.q, vec![d.b, d.h, d.sq, d.lq, d.hd]);
        let dkv_real = empty(&x.q, [&[2][..], &real_dims].concat());
        let dkv_diag = empty(&x.q, [&[2][..], &diag_dims].concat());
        let stats = empty(&x.q, vec![d.query_rows(), 2]);
        let kv_real = pack(&x.k_real, &x.v_real);
        let kv_diag = pack(&x.k_diag, &x.v_diag);
        let client = &x.q.client;
        let pads = Pads::upload(&x.q, &x.layout);
        let scale = crate::scale(d.hd);
        let rows = d.query_rows();
        // SAFETY: as in the forward: contiguous buffers of the shapes `Sizes` describes, and
        // units out of range return first.
        unsafe {
            if rows > 0 {
                let (count, dim) = grid(&x.q, rows);
                thought_attention_stats::launch_unchecked(
                    client,
                    count,
                    dim,
                    out.into_buffer_arg(),
                    dout.clone().into_buffer_arg(),
                    lse.into_buffer_arg(),
                    stats.clone().into_buffer_arg(),
                    rows,
                    d.hd,
                );
                let (count, dim) = grid(&x.q, rows);
                thought_attention_bwd_dq::launch_unchecked(
                    client,
                    count,
                    dim,
                    x.q.clone().into_buffer_arg(),
                    kv_real.clone().into_buffer_arg(),
                    kv_diag.clone().into_buffer_arg(),
                    pads.arg(),
                    stats.clone().into_buffer_arg(),
                    dout.clone().into_buffer_arg(),
                    dq.clone().into_buffer_arg(),
                    d.launch_dims(&x.layout),
                    scale,
                    d.hd,
                );
            }
            let real_keys = d.b * d.kvh * d.l;
            if real_keys > 0 {
                let (count, dim) = grid(&x.q, real_keys);
                thought_attention_bwd_dkv_real::launch_unchecked(
                    client,
                    count,
                    dim,
                    x.q.clone().into_buffer_arg(),
                    kv_real.into_buffer_arg(),
                    pads.arg(),
                    stats.clone().into_buffer_arg(),
                    dout.clone().into_buffer_arg(),
                    dkv_real.clone().into_buffer_arg(),
                    d.launch_dims(&x.layout),
                    scale,
                    d.hd,
                );
            }
            let thought_keys = d.b * d.kvh * d.sk * d.lq;
            if thought_keys > 0 {
                let (count, dim) = grid(&x.q, thought_keys);
                thought_attention_bwd_dkv_diag::launch_unchecked(
                    client,
                    count,
                    dim,
                    x.q.clone().into_buffer_arg(),
                    kv_diag.into_buffer_arg(),
                    stats.into_buffer_arg(),
                    dout.into_buffer_arg(),
                    dkv_diag.clone().into_buffer_arg(),
                    d.launch_dims(&x.layout),
                    scale,
                    d.hd,
                );
            }
        }
        let (dk_real, dv_real) = unpack(dkv_real, &real_dims);
        let (dk_diag, dv_diag) = unpack(dkv_diag, &diag_dims);
        [dq, dk_real, dv_real, dk_diag, dv_diag]
    }
}

fn contiguous(x: &Inputs<Cube>) -> Inputs<Cube> {
    for t in [&x.q, &x.k_real, &x.v_real, &x.k_diag, &x.v_diag] {
        check_f32(t);
    }
    Inputs {
        q: into_contiguous(x.q.clone()),
        k_real: into_contiguous(x.k_real.clone()),
        v_real: into_contiguous(x.v_real.clone()),
        k_diag: into_contiguous(x.k_diag.clone()),
        v_diag: into_contiguous(x.v_diag.clone()),
        layout: x.layout.clone(),
    }
}

#[derive(Debug)]
struct ThoughtAttentionBackward;

impl<B: ThoughtAttentionKernels> Backward<B, 5> for ThoughtAttentionBackward {
    type State = (Inputs<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let (inputs, out, lse) = ops.state;
        let input_grads = B::thought_attention_backward(&inputs, out, lse, grad_out);
        for (parent, grad) in ops.parents.into_iter().zip(input_grads) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: ThoughtAttentionBackend + ThoughtAttentionKernels, C: CheckpointStrategy> ThoughtAttentionBackend
    for Autodiff<B, C>
{
    fn thought_attention(
        q: FloatTensor<Self>,
        k_real: FloatTensor<Self>,
        v_real: FloatTensor<Self>,
        k_diag: FloatTensor<Self>,
        v_diag: FloatTensor<Self>,
        layout: Vec<u32>,
    ) -> FloatTensor<Self> {
        let inputs = Inputs::<B> {
            q: q.primitive().clone(),
            k_real: k_real.primitive().clone(),
            v_real: v_real.primitive().clone(),
            k_diag: k_diag.primitive().clone(),
            v_diag: v_diag.primitive().clone(),
            layout,
        };
        let parents = [q.node(), k_real.node(), v_real.node(), k_diag.node(), v_diag.node()];
        match ThoughtAttentionBackward.prepare::<C>(parents).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, lse) = B::thought_attention_forward(&inputs);
                prep.finish((inputs, out.clone(), lse), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::thought_attention_forward(&inputs).0),
        }
    }
}
