// Forward: one invocation per query row, online softmax over the visible keys.
// Writes the output row and its log-sum-exp (kept for the backward pass).

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_real: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_real: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_diag: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_diag: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
@group(0) @binding(7) var<storage, read> info: array<u32>;

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
    var acc: array<f32, HD>;
    let qo = row * HD;
    for (var c = 0u; c < HD; c = c + 1u) {
        qv[c] = q[qo + c] * d.scale;
        acc[c] = 0.0;
    }
    var m = -3.0e38;
    var l = 0.0;

    for (var j = real_lo(d, b, pos, step); j <= pos; j = j + 1u) {
        let ko = real_offset(d, b, g, j);
        var sc = 0.0;
        for (var c = 0u; c < HD; c = c + 1u) {
            sc = sc + qv[c] * k_real[ko + c];
        }
        let m_new = max(m, sc);
        let corr = exp(m - m_new);
        let p = exp(sc - m_new);
        l = l * corr + p;
        for (var c = 0u; c < HD; c = c + 1u) {
            acc[c] = acc[c] * corr + p * v_real[ko + c];
        }
        m = m_new;
    }
    for (var t = thought_lo(d, step); t <= step; t = t + 1u) {
        let ko = diag_offset(d, b, g, t, i);
        var sc = 0.0;
        for (var c = 0u; c < HD; c = c + 1u) {
            sc = sc + qv[c] * k_diag[ko + c];
        }
        let m_new = max(m, sc);
        let corr = exp(m - m_new);
        let p = exp(sc - m_new);
        l = l * corr + p;
        for (var c = 0u; c < HD; c = c + 1u) {
            acc[c] = acc[c] * corr + p * v_diag[ko + c];
        }
        m = m_new;
    }
    let inv = 1.0 / l;
    for (var c = 0u; c < HD; c = c + 1u) {
        out[qo + c] = acc[c] * inv;
    }
    lse[row] = m + log(l);
}
