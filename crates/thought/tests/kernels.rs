//! The three implementations of thought-parallel attention agree — values and the gradients of
//! all five inputs — and the fused kernels' gradients match finite differences. The fused
//! kernels run on the wgpu adapter (lavapipe in CI).

use burn::tensor::{Device, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use starling_thought::{Kernel, Visibility, thought_attention};

#[derive(Debug, Clone, Copy)]
struct Case {
    b: usize,
    h: usize,
    kvh: usize,
    sq: usize,
    sk: usize,
    l: usize,
    hd: usize,
    /// First thinking position (0: all L think).
    first: usize,
    /// Positions after the thinking ones.
    tail: usize,
    window: Option<usize>,
}

impl Case {
    /// Thinking positions.
    fn lq(&self) -> usize {
        self.l - self.first - self.tail
    }

    fn q_shape(&self) -> [usize; 5] {
        [self.b, self.h, self.sq, self.lq(), self.hd]
    }

    fn real_shape(&self) -> [usize; 4] {
        [self.b, self.kvh, self.l, self.hd]
    }

    fn diag_shape(&self) -> [usize; 5] {
        [self.b, self.kvh, self.sk, self.lq(), self.hd]
    }

    fn vis(&self, pad: &[usize]) -> Visibility {
        Visibility { pad_left: pad.to_vec(), first: self.first, window: self.window }
    }
}

const fn case(b: usize, h: usize, kvh: usize, sq: usize, sk: usize, l: usize, hd: usize) -> Case {
    Case { b, h, kvh, sq, sk, l, hd, first: 0, tail: 0, window: None }
}

const CASES: &[(Case, &[usize])] = &[
    // Training shape: every step queried at once, GQA 2:1, one padded row.
    (case(2, 4, 2, 3, 3, 7, 8), &[0, 2]),
    // Sampling shape: one new step over 5 cached ones; odd sizes, 3 query heads on 1 KV head.
    (case(1, 3, 1, 1, 5, 13, 5), &[0]),
    // Some steps queried, plain multi-head.
    (case(2, 2, 2, 4, 6, 5, 16), &[1, 0]),
    // SmolLM2's head size, a longer sequence, the whole row but one padded.
    (case(1, 3, 1, 2, 2, 33, 64), &[32]),
    // Evaluation shape: only the last 3 positions think; one row's padding reaches into them.
    (Case { first: 6, ..case(2, 4, 2, 5, 5, 9, 8) }, &[0, 7]),
    // A sliding window narrower than the sequence and the thought: it cuts real and thought keys.
    (Case { window: Some(4), ..case(2, 2, 1, 3, 5, 10, 8) }, &[0, 3]),
    // Both at once, and the last two positions do not think.
    (Case { first: 4, tail: 2, window: Some(5), ..case(1, 2, 2, 2, 4, 11, 16) }, &[1]),
];

struct Inputs {
    q: Vec<f32>,
    k_real: Vec<f32>,
    v_real: Vec<f32>,
    k_diag: Vec<f32>,
    v_diag: Vec<f32>,
    /// Weights of the scalar loss Σ out·w whose gradients are compared.
    w: Vec<f32>,
}

fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.5f32..1.5)).collect()
}

impl Inputs {
    fn new(c: Case, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Inputs {
            q: random(c.b * c.h * c.sq * c.lq() * c.hd, &mut rng),
            k_real: random(c.b * c.kvh * c.l * c.hd, &mut rng),
            v_real: random(c.b * c.kvh * c.l * c.hd, &mut rng),
            k_diag: random(c.b * c.kvh * c.sk * c.lq() * c.hd, &mut rng),
            v_diag: random(c.b * c.kvh * c.sk * c.lq() * c.hd, &mut rng),
            w: random(c.b * c.h * c.sq * c.lq() * c.hd, &mut rng),
        }
    }
}

fn t5(v: &[f32], s: [usize; 5], d: &Device) -> Tensor<5> {
    Tensor::from_data(TensorData::new(v.to_vec(), s), d)
}

fn t4(v: &[f32], s: [usize; 4], d: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), s), d)
}

fn vec_of<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

/// Output and the gradients of Σ out·w with respect to (q, k_real, v_real, k_diag, v_diag).
fn run(c: Case, pad: &[usize], x: &Inputs, device: &Device, kernel: Kernel) -> (Vec<f32>, Vec<Vec<f32>>) {
    let ad = device.clone().autodiff();
    let q = t5(&x.q, c.q_shape(), &ad).require_grad();
    let kr = t4(&x.k_real, c.real_shape(), &ad).require_grad();
    let vr = t4(&x.v_real, c.real_shape(), &ad).require_grad();
    let kd = t5(&x.k_diag, c.diag_shape(), &ad).require_grad();
    let vd = t5(&x.v_diag, c.diag_shape(), &ad).require_grad();
    let w = t5(&x.w, c.q_shape(), &ad);
    let out = thought_attention(q.clone(), kr.clone(), vr.clone(), kd.clone(), vd.clone(), &c.vis(pad), kernel);
    let grads = (out.clone() * w).sum().backward();
    let g = vec![
        vec_of(q.grad(&grads).unwrap()),
        vec_of(kr.grad(&grads).unwrap()),
        vec_of(vr.grad(&grads).unwrap()),
        vec_of(kd.grad(&grads).unwrap()),
        vec_of(vd.grad(&grads).unwrap()),
    ];
    (vec_of(out), g)
}

fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: largest relative difference {worst} > {tol}");
}

const NAMES: [&str; 5] = ["dq", "dk_real", "dv_real", "dk_thought", "dv_thought"];

fn wgpu() -> Device {
    starling_model::device::init_wgpu()
        .expect("these tests need a wgpu adapter (on Debian: apt install mesa-vulkan-drivers)")
        .0
}

#[test]
fn split_equals_dense_on_cpu() {
    let device = Device::flex();
    for (i, &(c, pad)) in CASES.iter().enumerate() {
        let x = Inputs::new(c, 11 + i as u64);
        let (out_d, g_d) = run(c, pad, &x, &device, Kernel::Dense);
        let (out_s, g_s) = run(c, pad, &x, &device, Kernel::Split);
        assert_close(&format!("case {i} output"), &out_s, &out_d, 1e-5);
        for k in 0..5 {
            assert_close(&format!("case {i} {}", NAMES[k]), &g_s[k], &g_d[k], 1e-4);
        }
    }
}

#[test]
fn fused_equals_dense_reference() {
    let device = wgpu();
    for (i, &(c, pad)) in CASES.iter().enumerate() {
        let x = Inputs::new(c, 11 + i as u64);
        let (out_ref, g_ref) = run(c, pad, &x, &Device::flex(), Kernel::Dense);
        let (out_f, g_f) = run(c, pad, &x, &device, Kernel::Fused);
        assert_close(&format!("case {i} output"), &out_f, &out_ref, 1e-4);
        for k in 0..5 {
            assert_close(&format!("case {i} {}", NAMES[k]), &g_f[k], &g_ref[k], 1e-3);
        }
        // The fused result is the same on the wgpu device through the tensor-op path.
        let (out_w, _) = run(c, pad, &x, &device, Kernel::Dense);
        assert_close(&format!("case {i} wgpu dense"), &out_w, &out_ref, 1e-4);
    }
}

/// A wgpu device limited to WebGPU's default of 8 storage buffers per shader stage, as a browser
/// gives the page unless it asks for more.
fn wgpu_with_webgpu_buffer_limit() -> Device {
    use burn::tensor::wgpu::{WgpuSetup, wgpu};
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::VULKAN;
    let instance = wgpu::Instance::new(desc);
    let adapter = cubecl::future::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .expect("these tests need a Vulkan adapter (on Debian: apt install mesa-vulkan-drivers)");
    let mut limits = adapter.limits();
    limits.max_storage_buffers_per_shader_stage = 8;
    let (device, queue) = cubecl::future::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: adapter.features().difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
        required_limits: limits,
        ..Default::default()
    }))
    .expect("a device with WebGPU's storage-buffer limit");
    let backend = adapter.get_info().backend;
    let setup = WgpuSetup { instance, adapter, device, queue, backend };
    Device::wgpu_options().setup(setup).init().expect("registering the limited device")
}

/// No kernel binds more than WebGPU's default of 8 storage buffers (cubecl's metadata buffer
/// included), so the browser can train with the fused kernels: forward and backward run on a
/// device with that limit (wgpu refuses a pipeline over it) and agree with the reference.
#[test]
fn fused_kernels_fit_webgpu_default_buffer_limit() {
    let device = wgpu_with_webgpu_buffer_limit();
    let (c, pad) = CASES[4];
    let x = Inputs::new(c, 5);
    let (out_ref, g_ref) = run(c, pad, &x, &Device::flex(), Kernel::Dense);
    let (out_f, g_f) = run(c, pad, &x, &device, Kernel::Fused);
    assert_close("output", &out_f, &out_ref, 1e-4);
    for k in 0..5 {
        assert_close(NAMES[k], &g_f[k], &g_ref[k], 1e-3);
    }
}

#[test]
fn thoughts_never_see_other_positions() {
    // Changing position 3's thought keys/values changes only position 3's outputs.
    let device = wgpu();
    let (c, pad) = CASES[0];
    let x = Inputs::new(c, 5);
    let mut y = Inputs::new(c, 5);
    for b in 0..c.b {
        for g in 0..c.kvh {
            for t in 0..c.sk {
                let o = (((b * c.kvh + g) * c.sk + t) * c.l + 3) * c.hd;
                for v in &mut y.v_diag[o..o + c.hd] {
                    *v += 1.0;
                }
            }
        }
    }
    let (a, _) = run(c, pad, &x, &device, Kernel::Fused);
    let (b, _) = run(c, pad, &y, &device, Kernel::Fused);
    for (row, (ra, rb)) in a.chunks(c.hd).zip(b.chunks(c.hd)).enumerate() {
        let i = row % c.l;
        let changed = ra.iter().zip(rb).any(|(p, q)| (p - q).abs() > 1e-6);
        assert_eq!(changed, i == 3, "row {row} (position {i})");
    }
}

#[test]
fn fused_gradients_match_finite_differences() {
    let (c, pad) = CASES[1];
    fd_check(c, pad, 23);
}

#[test]
fn fused_gradients_match_finite_differences_with_window_and_scored_positions() {
    let (c, pad) = CASES[6];
    fd_check(c, pad, 29);
}

/// The fused kernels' gradients of Σ out·w against central differences at six random
/// coordinates of each input (the inputs of `seed`).
fn fd_check(c: Case, pad: &[usize], seed: u64) {
    let device = wgpu();
    let (_, grads) = run(c, pad, &Inputs::new(c, seed), &device, Kernel::Fused);
    let loss = |x: &Inputs| -> f64 {
        let out = thought_attention(
            t5(&x.q, c.q_shape(), &device),
            t4(&x.k_real, c.real_shape(), &device),
            t4(&x.v_real, c.real_shape(), &device),
            t5(&x.k_diag, c.diag_shape(), &device),
            t5(&x.v_diag, c.diag_shape(), &device),
            &c.vis(pad),
            Kernel::Fused,
        );
        vec_of(out).iter().zip(&x.w).map(|(o, w)| (*o as f64) * (*w as f64)).sum()
    };
    let eps = 1e-2f32;
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let x = Inputs::new(c, seed);
    for (k, name) in NAMES.iter().enumerate() {
        for _ in 0..6 {
            let n = [&x.q, &x.k_real, &x.v_real, &x.k_diag, &x.v_diag][k].len();
            let idx = rng.random_range(0..n);
            let mut plus = Inputs::new(c, seed);
            let mut minus = Inputs::new(c, seed);
            field(&mut plus, k)[idx] += eps;
            field(&mut minus, k)[idx] -= eps;
            let fd = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
            let an = grads[k][idx] as f64;
            assert!((fd - an).abs() <= 2e-2 * (1.0 + an.abs()), "{name}[{idx}]: finite difference {fd}, kernel {an}");
        }
    }
}

/// Positions `first..first + lq` of `[.., L, hd]` data laid out as `outer` blocks of `l·hd`.
fn window_of(v: &[f32], outer: usize, l: usize, first: usize, lq: usize, hd: usize) -> Vec<f32> {
    (0..outer).flat_map(|o| v[(o * l + first) * hd..(o * l + first + lq) * hd].to_vec()).collect()
}

/// Thoughts only at the scored positions (`first` > 0) give exactly what the full op gives at
/// those positions — values and all five gradients — on the CPU (split) and on wgpu (fused).
#[test]
fn scored_positions_equal_the_full_op_there() {
    let full = Case { window: Some(6), ..case(2, 4, 2, 3, 4, 10, 8) };
    let part = Case { first: 6, tail: 1, ..full };
    let pad: &[usize] = &[0, 2];
    let mut x = Inputs::new(full, 41);
    // The loss weighs only the scored positions, so the gradients must agree everywhere.
    let (lq, l, hd, first) = (part.lq(), full.l, full.hd, part.first);
    for chunk in x.w.chunks_mut(l * hd) {
        for (i, v) in chunk.iter_mut().enumerate() {
            if !(first..first + lq).contains(&(i / hd)) {
                *v = 0.0;
            }
        }
    }
    let part_of = |v: &[f32], outer: usize, l: usize, lq: usize, hd: usize| window_of(v, outer, l, first, lq, hd);
    let y = Inputs {
        q: part_of(&x.q, full.b * full.h * full.sq, l, lq, hd),
        k_real: x.k_real.clone(),
        v_real: x.v_real.clone(),
        k_diag: part_of(&x.k_diag, full.b * full.kvh * full.sk, l, lq, hd),
        v_diag: part_of(&x.v_diag, full.b * full.kvh * full.sk, l, lq, hd),
        w: part_of(&x.w, full.b * full.h * full.sq, l, lq, hd),
    };
    for (device, kernel) in [(Device::flex(), Kernel::Split), (wgpu(), Kernel::Fused)] {
        let (out_full, g_full) = run(full, pad, &x, &device, kernel);
        let (out_part, g_part) = run(part, pad, &y, &device, kernel);
        assert_close(
            &format!("{kernel:?} output"),
            &out_part,
            &part_of(&out_full, full.b * full.h * full.sq, l, lq, hd),
            1e-5,
        );
        assert_close(
            &format!("{kernel:?} dq"),
            &g_part[0],
            &part_of(&g_full[0], full.b * full.h * full.sq, l, lq, hd),
            1e-4,
        );
        assert_close(&format!("{kernel:?} dk_real"), &g_part[1], &g_full[1], 1e-4);
        assert_close(&format!("{kernel:?} dv_real"), &g_part[2], &g_full[2], 1e-4);
        for k in 3..5 {
            let want = part_of(&g_full[k], full.b * full.kvh * full.sk, l, lq, hd);
            assert_close(&format!("{kernel:?} {}", NAMES[k]), &g_part[k], &want, 1e-4);
        }
        // The real keys' gradients are not all zero: the check compares something.
        assert!(g_part[1].iter().any(|v| v.abs() > 1e-3), "{kernel:?}: real-key gradients vanished");
    }
}

fn field(x: &mut Inputs, k: usize) -> &mut Vec<f32> {
    match k {
        0 => &mut x.q,
        1 => &mut x.k_real,
        2 => &mut x.v_real,
        3 => &mut x.k_diag,
        _ => &mut x.v_diag,
    }
}
