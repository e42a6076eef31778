//! Which kernels a wgpu device runs, each in its own child process so a driver crash is one
//! result rather than the end: element-wise, shared (workgroup) memory with a barrier, a plane
//! (subgroup) sum, burn's full `sum()` and a 64×64 matmul. Built with `--features vulkan` on
//! Mesa's lavapipe this localises the crash of burn's SPIR-V path (docs/cubecl-port-notes.md).
//!
//!   cargo run --release --features starling-cli/vulkan --example spirv_probe

use burn::tensor::{Device, Distribution, Tensor};
use cubecl::prelude::*;

#[cube(launch)]
fn add_one(x: &mut [f32]) {
    let i = ABSOLUTE_POS;
    if i < x.len() {
        x[i] += 1.0;
    }
}

#[cube(launch)]
fn shared_reverse(x: &mut [f32], #[comptime] n: usize) {
    let mut s = Shared::<[f32]>::new_slice(n);
    let i = UNIT_POS as usize;
    s[i] = x[i];
    sync_cube();
    x[i] = s[n - 1 - i];
}

#[cube(launch)]
fn plane_total(x: &mut [f32]) {
    let i = UNIT_POS as usize;
    x[i] = plane_sum(x[i]);
}

fn device() -> Device {
    starling_model::device::init_wgpu().expect("a wgpu adapter").0
}

fn client(d: &Device) -> Client {
    match d.as_dispatch() {
        burn::backend::DispatchDevice::Cube(c) => c.client(),
        _ => panic!("not a cubecl device"),
    }
}

fn run_raw(case: &str) -> Vec<f32> {
    let d = device();
    let c = client(&d);
    let n = 8usize;
    let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let h = c.create_from_slice(f32::as_bytes(&data));
    let arg = || unsafe { BufferArg::from_raw_parts(h.clone(), n) };
    let (count, dim) = (CubeCount::Static(1, 1, 1), CubeDim::new_1d(n as u32));
    match case {
        "elementwise" => add_one::launch(&c, count, dim, arg()),
        "shared-memory" => shared_reverse::launch(&c, count, dim, arg(), n),
        "plane-sum" => plane_total::launch(&c, count, dim, arg()),
        _ => unreachable!(),
    }
    f32::from_bytes(&c.read_one_unchecked(h)).to_vec()
}

fn run_case(case: &str) -> String {
    let d = device();
    match case {
        "elementwise" | "shared-memory" | "plane-sum" => format!("{:?}", run_raw(case)),
        "burn-sum" => {
            let t = Tensor::<1>::ones([1000], &d);
            format!("{}", t.sum().into_scalar::<f32>())
        }
        "burn-matmul" => {
            let a = Tensor::<2>::random([64, 64], Distribution::Default, &d);
            let b = Tensor::<2>::random([64, 64], Distribution::Default, &d);
            format!("{}", a.matmul(b).sum_dim(0).sum_dim(1).into_scalar::<f32>())
        }
        other => panic!("unknown case {other}"),
    }
}

fn main() {
    if let Some(case) = std::env::args().nth(1) {
        println!("{}", run_case(&case));
        return;
    }
    let d = device();
    println!("{}", starling_model::device::describe_compiler(&d));
    for case in ["elementwise", "shared-memory", "plane-sum", "burn-sum", "burn-matmul"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap()).arg(case).output().unwrap();
        let result = match out.status.code() {
            Some(0) => format!("ok: {}", String::from_utf8_lossy(&out.stdout).trim()),
            Some(code) => format!("exit {code}: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")),
            None => format!("killed by a signal ({:?})", std::os::unix::process::ExitStatusExt::signal(&out.status)),
        };
        println!("{case:>14}: {result}");
    }
}
