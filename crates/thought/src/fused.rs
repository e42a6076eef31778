//! The WGSL kernels, launched through burn's backend-extension mechanism, and their autodiff
//! wiring: the forward saves each query row's log-sum-exp; the backward recomputes the
//! probabilities from it (flash-attention style) in three kernels — dQ (+ delta), dK/dV of the
//! real keys, dK/dV of the thought keys.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous};
use burn::backend::{Autodiff, Backend, Cube, backend_extension};
use burn::tensor::{DType, Shape, Tensor};
use cubecl::prelude::{CubeCount, CubeDim, KernelId};
use cubecl::server::{KernelArguments, MetadataBindingInfo};

use crate::Visibility;

const WORKGROUP: u32 = 64;
const COMMON: &str = include_str!("../../../shaders/thought_attention_common.wgsl");

/// The op as a backend extension: implemented by the cubecl backend (WGSL) and by autodiff over
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

/// One of the four kernels: the WGSL file and the sizes baked into it.
struct ThoughtKernel {
    name: &'static str,
    source: &'static str,
    head_dim: usize,
}

impl KernelSource for ThoughtKernel {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(self.source.replace("{{common}}", COMMON))
            .register("head_dim", self.head_dim.to_string())
            .register("workgroup_size", WORKGROUP.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.name, self.head_dim))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

const FWD: &str = include_str!("../../../shaders/thought_attention_fwd.wgsl");
const BWD_DQ: &str = include_str!("../../../shaders/thought_attention_bwd_dq.wgsl");
const BWD_DKV_REAL: &str = include_str!("../../../shaders/thought_attention_bwd_dkv_real.wgsl");
const BWD_DKV_DIAG: &str = include_str!("../../../shaders/thought_attention_bwd_dkv_diag.wgsl");

/// Sizes of one call, and the info words every kernel reads.
struct Dims {
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

impl Dims {
    fn of(inputs: &Inputs<Cube>) -> Self {
        let q = inputs.q.meta.shape();
        let kd = inputs.k_diag.meta.shape();
        let kr = inputs.k_real.meta.shape();
        Dims { b: q[0], h: q[1], kvh: kd[1], sq: q[2], sk: kd[2], lq: q[3], l: kr[2], hd: q[4] }
    }

    /// Info words, in the order `thought_attention_common.wgsl` reads them.
    fn info(&self, layout: &[u32]) -> MetadataBindingInfo {
        let mut words = vec![
            self.b as u64,
            self.h as u64,
            self.kvh as u64,
            self.sq as u64,
            self.sk as u64,
            self.lq as u64,
            crate::scale(self.hd).to_bits() as u64,
            self.l as u64,
        ];
        words.extend(layout.iter().map(|&w| w as u64));
        MetadataBindingInfo::custom(words)
    }
}

fn empty(like: &CubeTensor, shape: Vec<usize>) -> CubeTensor {
    let bytes = shape.iter().product::<usize>() * core::mem::size_of::<f32>();
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::from(shape),
        like.client.empty(bytes.max(4)),
        DType::F32,
    )
}

/// Launches `kernel` over `invocations` threads (a 2-D grid when the count exceeds one axis).
fn launch(
    like: &CubeTensor,
    kernel: ThoughtKernel,
    invocations: usize,
    buffers: &[&CubeTensor],
    info: MetadataBindingInfo,
) {
    let groups = invocations.div_ceil(WORKGROUP as usize).max(1) as u32;
    let x = groups.min(65_535);
    let y = groups.div_ceil(x);
    let mut args = KernelArguments::new();
    for t in buffers {
        args = args.with_buffer(t.handle.clone().binding());
    }
    like.client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(WORKGROUP))),
        CubeCount::Static(x, y, 1),
        args.with_info(info),
    );
}

fn check_f32(t: &CubeTensor) {
    assert_eq!(t.dtype, DType::F32, "the fused thought-attention kernels take f32 tensors");
}

impl ThoughtAttentionKernels for Cube {
    fn thought_attention_forward(inputs: &Inputs<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let x = contiguous(inputs);
        let d = Dims::of(&x);
        let out = empty(&x.q, vec![d.b, d.h, d.sq, d.lq, d.hd]);
        let lse = empty(&x.q, vec![d.b, d.h, d.sq, d.lq]);
        let kernel = ThoughtKernel { name: "fwd", source: FWD, head_dim: d.hd };
        launch(
            &x.q,
            kernel,
            d.b * d.h * d.sq * d.lq,
            &[&x.q, &x.k_real, &x.v_real, &x.k_diag, &x.v_diag, &out, &lse],
            d.info(&x.layout),
        );
        (out, lse)
    }

    fn thought_attention_backward(
        inputs: &Inputs<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 5] {
        let x = contiguous(inputs);
        let d = Dims::of(&x);
        let (out, lse, dout) = (into_contiguous(out), into_contiguous(lse), into_contiguous(grad_out));
        let dq = empty(&x.q, vec![d.b, d.h, d.sq, d.lq, d.hd]);
        let delta = empty(&x.q, vec![d.b, d.h, d.sq, d.lq]);
        let dk_real = empty(&x.q, vec![d.b, d.kvh, d.l, d.hd]);
        let dv_real = empty(&x.q, vec![d.b, d.kvh, d.l, d.hd]);
        let dk_diag = empty(&x.q, vec![d.b, d.kvh, d.sk, d.lq, d.hd]);
        let dv_diag = empty(&x.q, vec![d.b, d.kvh, d.sk, d.lq, d.hd]);
        let kernel = |name, source| ThoughtKernel { name, source, head_dim: d.hd };
        launch(
            &x.q,
            kernel("bwd_dq", BWD_DQ),
            d.b * d.h * d.sq * d.lq,
            &[&x.q, &x.k_real, &x.v_real, &x.k_diag, &x.v_diag, &out, &lse, &dout, &dq, &delta],
            d.info(&x.layout),
        );
        launch(
            &x.q,
            kernel("bwd_dkv_real", BWD_DKV_REAL),
            d.b * d.kvh * d.l,
            &[&x.q, &x.k_real, &x.v_real, &lse, &dout, &delta, &dk_real, &dv_real],
            d.info(&x.layout),
        );
        launch(
            &x.q,
            kernel("bwd_dkv_diag", BWD_DKV_DIAG),
            d.b * d.kvh * d.sk * d.lq,
            &[&x.q, &x.k_diag, &x.v_diag, &lse, &dout, &delta, &dk_diag, &dv_diag],
            d.info(&x.layout),
        );
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
