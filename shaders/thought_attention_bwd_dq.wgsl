// Backward, query side: one invocation per query row. Recomputes the probabilities from the
// saved log-sum-exp, writes dQ and delta = <dO, O> (used by the key/value kernels).

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_real: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_real: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_diag: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_diag: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
@group(0) @binding(7) var<storage, read_write> dout: array<f32>;
@group(0) @binding(8) var<storage, read_write> dq: array<f32>;
@group(0) @binding(9) var<storage, read_write> delta: array<f32>;
@group(0) @binding(10) var<storage, read> info: array<u32>;

{{common}}

@compute @workgroup_size({{workgroup_size}}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let d = dims();
    let row = flat_index(gid, nwg);
    if (row >= d.batch * d.heads * d.sq * d.len) {
        return;
    }
    let i = row % d.len;
    let s = (row / d.len) % d.sq;
    let h = (row / (d.len * d.sq)) % d.heads;
    let b = row / (d.len * d.sq * d.heads);
    let g = h / (d.heads / d.kv_heads);
    let step = d.sk - d.sq + s;
    let pos = d.first + i;

    var qv: array<f32, HD>;
    var dov: array<f32, HD>;
    var acc: array<f32, HD>;
    let qo = row * HD;
    var dl = 0.0;
    for (var c = 0u; c < HD; c = c + 1u) {
        qv[c] = q[qo + c] * d.scale;
        dov[c] = dout[qo + c];
        dl = dl + dov[c] * out[qo + c];
        acc[c] = 0.0;
    }
    let row_lse = lse[row];

    for (var j = real_lo(d, b, pos, step); j <= pos; j = j + 1u) {
        let ko = real_offset(d, b, g, j);
        var sc = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < HD; c = c + 1u) {
            sc = sc + qv[c] * k_real[ko + c];
            dp = dp + dov[c] * v_real[ko + c];
        }
        let ds = exp(sc - row_lse) * (dp - dl);
        for (var c = 0u; c < HD; c = c + 1u) {
            acc[c] = acc[c] + ds * k_real[ko + c];
        }
    }
    for (var t = thought_lo(d, step); t <= step; t = t + 1u) {
        let ko = diag_offset(d, b, g, t, i);
        var sc = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < HD; c = c + 1u) {
            sc = sc + qv[c] * k_diag[ko + c];
            dp = dp + dov[c] * v_diag[ko + c];
        }
        let ds = exp(sc - row_lse) * (dp - dl);
        for (var c = 0u; c < HD; c = c + 1u) {
            acc[c] = acc[c] + ds * k_diag[ko + c];
        }
    }
    for (var c = 0u; c < HD; c = c + 1u) {
        dq[qo + c] = acc[c] * d.scale;
    }
    delta[row] = dl;
}
