// Backward, thought keys/values: one invocation per (b, kv head, t, i). Only position i's
// queries at steps >= t see thought key (t, i), so the sum is over rep heads × steps.

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_diag: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_diag: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> delta: array<f32>;
@group(0) @binding(6) var<storage, read_write> dk: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;
@group(0) @binding(8) var<storage, read> info: array<u32>;

{{common}}

@compute @workgroup_size({{workgroup_size}}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let d = dims();
    let idx = flat_index(gid, nwg);
    if (idx >= d.batch * d.kv_heads * d.sk * d.len) {
        return;
    }
    let i = idx % d.len;
    let t = (idx / d.len) % d.sk;
    let g = (idx / (d.len * d.sk)) % d.kv_heads;
    let b = idx / (d.len * d.sk * d.kv_heads);
    let rep = d.heads / d.kv_heads;
    let ko = diag_offset(d, b, g, t, i);
    let first_step = d.sk - d.sq;

    var kv: array<f32, HD>;
    var vv: array<f32, HD>;
    var dkv: array<f32, HD>;
    var dvv: array<f32, HD>;
    for (var c = 0u; c < HD; c = c + 1u) {
        kv[c] = k_diag[ko + c];
        vv[c] = v_diag[ko + c];
        dkv[c] = 0.0;
        dvv[c] = 0.0;
    }
    for (var r = 0u; r < rep; r = r + 1u) {
        let h = g * rep + r;
        for (var s = 0u; s < d.sq; s = s + 1u) {
            let step = first_step + s;
            if (step < t || thought_lo(d, step) > t) {
                continue;
            }
            let row = query_row(d, b, h, s, i);
            let qo = row * HD;
            var sc = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < HD; c = c + 1u) {
                sc = sc + q[qo + c] * kv[c];
                dp = dp + dout[qo + c] * vv[c];
            }
            let p = exp(sc * d.scale - lse[row]);
            let ds = p * (dp - delta[row]);
            for (var c = 0u; c < HD; c = c + 1u) {
                dkv[c] = dkv[c] + ds * q[qo + c];
                dvv[c] = dvv[c] + p * dout[qo + c];
            }
        }
    }
    for (var c = 0u; c < HD; c = c + 1u) {
        dk[ko + c] = dkv[c] * d.scale;
        dv[ko + c] = dvv[c];
    }
}
