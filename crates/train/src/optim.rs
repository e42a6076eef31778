//! AdamW with PyTorch's semantics and global-norm gradient clipping.
//!
//! burn-optim has an AdamW, but its saved state is keyed by runtime parameter ids and reloaded
//! onto `Device::default()` (wgpu whenever it is compiled in, which fails on machines without an
//! adapter), and its clipping is per tensor. Starling needs clipping by the global norm (as
//! PyTorch's `clip_grad_norm_`) and optimizer state that resumes on the device the user picked,
//! so this is a small implementation of the same update rule. Moments are kept per parameter,
//! keyed by the deterministic parameter ids of `starling_model::model::param_id`.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use starling_model::checkpoint::HostTensor;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Decay 1-D parameters (norm gains, biases) too; off by default, as is common practice.
    pub decay_1d: bool,
}

impl Default for AdamWConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decay_1d: false }
    }
}

/// First and second moments of one parameter, flattened, on the parameter's device (no autodiff).
#[derive(Clone)]
struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

pub struct AdamW {
    pub config: AdamWConfig,
    /// Number of updates applied so far (for bias correction).
    pub steps: u64,
    moments: HashMap<ParamId, Moments>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        Self { config, steps: 0, moments: HashMap::new() }
    }

    /// Applies one update to every parameter of `module` that has a gradient in `grads`;
    /// gradients are multiplied by `grad_scale` first (global-norm clipping).
    pub fn step<M: Module>(&mut self, module: M, grads: &mut GradientsParams, lr: f64, grad_scale: f64) -> M {
        self.steps += 1;
        let mut mapper = UpdateMapper { opt: self, grads, lr, grad_scale };
        module.map(&mut mapper)
    }

    /// Moments as host tensors, named `{param_id:016x}.m` / `.v`, for checkpoints.
    pub fn state_tensors(&self) -> BTreeMap<String, HostTensor> {
        let mut out = BTreeMap::new();
        for (id, mo) in &self.moments {
            for (suffix, t) in [("m", &mo.m), ("v", &mo.v)] {
                let data: Vec<f32> = t.clone().into_data().try_into_vec_as::<f32>().expect("f32");
                out.insert(format!("{:016x}.{suffix}", id.val()), HostTensor::new(vec![data.len()], data));
            }
        }
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`] onto `device`.
    pub fn load_state(
        &mut self,
        steps: u64,
        tensors: &BTreeMap<String, HostTensor>,
        device: &Device,
    ) -> Result<(), String> {
        let inner = device.clone().without_autodiff();
        let mut moments = HashMap::new();
        for (name, m) in tensors {
            let Some(hex) = name.strip_suffix(".m") else { continue };
            let id = u64::from_str_radix(hex, 16).map_err(|_| format!("bad optimizer state key `{name}`"))?;
            let v = tensors.get(&format!("{hex}.v")).ok_or_else(|| format!("optimizer state lacks `{hex}.v`"))?;
            let up = |t: &HostTensor| Tensor::<1>::from_data(TensorData::new(t.data.clone(), [t.data.len()]), &inner);
            moments.insert(ParamId::from(id), Moments { m: up(m), v: up(v) });
        }
        self.moments = moments;
        self.steps = steps;
        Ok(())
    }
}

struct UpdateMapper<'a> {
    opt: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    lr: f64,
    grad_scale: f64,
}

impl ModuleMapper for UpdateMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let c = self.opt.config;
        let require_grad = tensor.is_require_grad();
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let p = tensor.inner().reshape([n]);
        let g = grad.reshape([n]).mul_scalar(self.grad_scale);
        let (m, v) = match self.opt.moments.remove(&id) {
            Some(mo) => (mo.m, mo.v),
            None => (g.zeros_like(), g.zeros_like()),
        };
        let m = m.mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1);
        let v = v.mul_scalar(c.beta2) + g.square().mul_scalar(1.0 - c.beta2);
        let t = self.opt.steps as i32;
        let m_hat = m.clone().div_scalar(1.0 - c.beta1.powi(t));
        let v_hat = v.clone().div_scalar(1.0 - c.beta2.powi(t));
        let update = m_hat / (v_hat.sqrt().add_scalar(c.eps));
        let decay = if D > 1 || c.decay_1d { self.lr * c.weight_decay } else { 0.0 };
        let p = if decay > 0.0 { p.mul_scalar(1.0 - decay) } else { p };
        let p = (p - update.mul_scalar(self.lr)).reshape(dims);
        self.opt.moments.insert(id, Moments { m, v });
        let mut p = Tensor::from_inner(p);
        if require_grad {
            p = p.require_grad();
        }
        Param::from_mapped_value(id, p, mapper)
    }
}

/// Sum of squares of all gradients of `module`'s parameters, as a device scalar.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// The squared global L2 norm of the gradients as a device scalar `[1]` (`None` without gradients).
pub fn grad_squared_norm<M: Module>(module: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut v = SquaredNorm { grads, total: None };
    module.visit(&mut v);
    v.total
}

/// The global L2 norm of the gradients (one read-back).
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    grad_squared_norm(module, grads).map_or(0.0, |t| t.into_scalar::<f64>().sqrt())
}

/// Where a non-finite gradient norm came from: the parameters (by their path in the module,
/// e.g. `layers.1.mlp.up_proj.weight`) whose gradients hold NaN or infinite values, with how
/// many; or, when every value is finite and only the sum of squares overflowed, the parameter
/// with the largest gradient value. Reads each gradient back: for the failure path only.
pub fn non_finite_gradients<M: Module>(module: &M, grads: &GradientsParams) -> GradientFault {
    let mut v = FaultFinder { grads, path: Vec::new(), non_finite: Vec::new(), largest: None };
    module.visit(&mut v);
    if v.non_finite.is_empty() {
        GradientFault::Overflow { largest: v.largest.map(|(name, value)| (name, value as f32)) }
    } else {
        GradientFault::NonFinite { tensors: v.non_finite }
    }
}

/// See [`non_finite_gradients`].
#[derive(Debug, Clone, PartialEq)]
pub enum GradientFault {
    /// Parameters whose gradients hold NaN or infinite values: (path, how many values).
    NonFinite { tensors: Vec<(String, usize)> },
    /// All values finite, their squares' sum not: the parameter holding the largest one.
    Overflow { largest: Option<(String, f32)> },
}

impl std::fmt::Display for GradientFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GradientFault::NonFinite { tensors } => {
                let shown: Vec<String> =
                    tensors.iter().take(3).map(|(name, n)| format!("{name} ({n} values)")).collect();
                write!(f, "NaN or infinite gradient in {}", shown.join(", "))?;
                if tensors.len() > 3 {
                    write!(f, " and {} more parameters", tensors.len() - 3)?;
                }
                Ok(())
            }
            GradientFault::Overflow { largest: Some((name, value)) } => {
                write!(f, "the gradient's squared norm overflowed; its largest value is {value:e}, in {name}")
            }
            GradientFault::Overflow { largest: None } => write!(f, "the gradient's squared norm overflowed"),
        }
    }
}

struct FaultFinder<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    non_finite: Vec<(String, usize)>,
    largest: Option<(String, f64)>,
}

impl ModuleVisitor for FaultFinder<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(g) = self.grads.get::<D>(param.id) else { return };
        let name = self.path.iter().filter(|p| !p.is_empty()).cloned().collect::<Vec<_>>().join(".");
        let bad =
            g.clone().is_nan().int().sum().into_scalar::<i64>() + g.clone().is_inf().int().sum().into_scalar::<i64>();
        if bad > 0 {
            self.non_finite.push((name, bad as usize));
            return;
        }
        let max = g.abs().max().into_scalar::<f64>();
        if self.largest.as_ref().is_none_or(|(_, m)| max > *m) {
            self.largest = Some((name, max));
        }
    }
}

/// The factor that brings a gradient of norm `norm` down to `max_norm` (1 when already within),
/// as PyTorch's `clip_grad_norm_`.
pub fn clip_scale(norm: f64, max_norm: Option<f64>) -> f64 {
    match max_norm {
        Some(max) if norm > max => max / (norm + 1e-6),
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Tiny {
        w: Param<Tensor<2>>,
        b: Param<Tensor<1>>,
    }

    fn tiny(device: &Device) -> Tiny {
        Tiny {
            w: Param::initialized(
                ParamId::from(1u64),
                Tensor::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5, 3.0], [2, 2]), device).require_grad(),
            ),
            b: Param::initialized(
                ParamId::from(2u64),
                Tensor::from_data(TensorData::new(vec![0.1f32, 0.2], [2]), device).require_grad(),
            ),
        }
    }

    fn loss(m: &Tiny, device: &Device) -> Tensor<1> {
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), device);
        (x.matmul(m.w.val()) + m.b.val().unsqueeze()).square().sum()
    }

    /// Reference values from PyTorch's AdamW update rule (decay p·(1 − lr·wd), then
    /// p − lr·m̂/(√v̂ + eps)), lr 0.1, weight decay 0.1 on every parameter, two steps, computed
    /// in float64 with numpy.
    #[test]
    fn matches_pytorch_adamw() {
        let device = Device::flex().autodiff();
        let mut m = tiny(&device);
        let cfg = AdamWConfig { weight_decay: 0.1, decay_1d: true, ..AdamWConfig::default() };
        let mut opt = AdamW::new(cfg);
        for _ in 0..2 {
            let grads = loss(&m, &device).backward();
            let mut gp = GradientsParams::from_grads(grads, &m);
            m = opt.step(m, &mut gp, 0.1, 1.0);
        }
        let w: Vec<f32> = m.w.val().into_data().try_into_vec_as().unwrap();
        let b: Vec<f32> = m.b.val().into_data().try_into_vec_as().unwrap();
        let expect_w = [0.782_292_1_f32, -2.158757, 0.29224214, 2.741743];
        let expect_b = [-0.09979786f32, -0.002537];
        for (g, e) in w.iter().zip(expect_w).chain(b.iter().zip(expect_b)) {
            assert!((g - e).abs() < 1e-5, "{w:?} {b:?}");
        }
    }

    #[test]
    fn global_norm_and_clip() {
        let device = Device::flex().autodiff();
        let m = tiny(&device);
        let grads = loss(&m, &device).backward();
        let gp = GradientsParams::from_grads(grads, &m);
        // y = [1·1 + 2·0.5 + 0.1, 1·(−2) + 2·3 + 0.2] = [2.1, 4.2]; dL/dy = 2y = [4.2, 8.4].
        // dW = x^T dL/dy, db = dL/dy → |g|² = (1+4)·(4.2² + 8.4²) + (4.2² + 8.4²).
        let expect = (6.0f64 * (4.2f64.powi(2) + 8.4f64.powi(2))).sqrt();
        let norm = global_grad_norm(&m, &gp);
        assert!((norm - expect).abs() < 1e-4, "{norm} vs {expect}");
        assert_eq!(clip_scale(0.5, Some(1.0)), 1.0);
        assert!((clip_scale(4.0, Some(1.0)) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn a_faulty_gradient_is_named() {
        let device = Device::flex();
        let m = tiny(&device.clone().autodiff());
        let grads = |w: [f32; 4], b: [f32; 2]| {
            let mut gp = GradientsParams::new();
            gp.register(m.w.id, Tensor::<2>::from_data(TensorData::new(w.to_vec(), [2, 2]), &device));
            gp.register(m.b.id, Tensor::<1>::from_data(TensorData::new(b.to_vec(), [2]), &device));
            gp
        };
        let nan = grads([1.0, 2.0, 3.0, 4.0], [f32::NAN, f32::INFINITY]);
        assert!(!global_grad_norm(&m, &nan).is_finite());
        let fault = non_finite_gradients(&m, &nan);
        assert_eq!(fault, GradientFault::NonFinite { tensors: vec![("b".into(), 2)] });
        assert_eq!(fault.to_string(), "NaN or infinite gradient in b (2 values)");
        // Finite values whose squares overflow f32: the largest is named instead.
        let huge = grads([1.0, 3e30, 3.0, 4.0], [2e30, 0.5]);
        assert!(!global_grad_norm(&m, &huge).is_finite());
        assert_eq!(non_finite_gradients(&m, &huge), GradientFault::Overflow { largest: Some(("w".into(), 3e30)) });
    }

    #[test]
    fn state_round_trips() {
        let device = Device::flex().autodiff();
        let mut m = tiny(&device);
        let mut opt = AdamW::new(AdamWConfig::default());
        let mut gp = GradientsParams::from_grads(loss(&m, &device).backward(), &m);
        m = opt.step(m, &mut gp, 0.01, 1.0);
        let saved = opt.state_tensors();
        assert_eq!(saved.len(), 4);
        let mut again = AdamW::new(AdamWConfig::default());
        again.load_state(opt.steps, &saved, &device).unwrap();
        // One more identical step from both must give identical weights.
        let mut g1 = GradientsParams::from_grads(loss(&m, &device).backward(), &m);
        let mut g2 = GradientsParams::from_grads(loss(&m, &device).backward(), &m);
        let a = opt.step(m.clone(), &mut g1, 0.01, 1.0);
        let b = again.step(m, &mut g2, 0.01, 1.0);
        let wa: Vec<f32> = a.w.val().into_data().try_into_vec_as().unwrap();
        let wb: Vec<f32> = b.w.val().into_data().try_into_vec_as().unwrap();
        assert_eq!(wa, wb);
    }
}
