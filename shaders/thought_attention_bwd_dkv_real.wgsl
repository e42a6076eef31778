// Backward, real keys/values: one invocation per (b, kv head, j) over the L real positions.
// Sums over the query heads of the group, every thought step, and the thinking positions that
// see key j (real position >= j, within the window).

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_real: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_real: array<f32>;
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
    if (idx >= d.batch * d.kv_heads * d.real_len) {
        return;
    }
    let j = idx % d.real_len;
    let g = (idx / d.real_len) % d.kv_heads;
    let b = idx / (d.real_len * d.kv_heads);
    let rep = d.heads / d.kv_heads;
    let ko = real_offset(d, b, g, j);

    var kv: array<f32, HD>;
    var vv: array<f32, HD>;
    var dkv: array<f32, HD>;
    var dvv: array<f32, HD>;
    for (var c = 0u; c < HD; c = c + 1u) {
        kv[c] = k_real[ko + c];
        vv[c] = v_real[ko + c];
        dkv[c] = 0.0;
        dvv[c] = 0.0;
    }
    if (j >= pad_of(b)) {
        for (var r = 0u; r < rep; r = r + 1u) {
            let h = g * rep + r;
            for (var s = 0u; s < d.sq; s = s + 1u) {
                let step = d.sk - d.sq + s;
                for (var i = select(0u, j - d.first, j > d.first); i < d.len; i = i + 1u) {
                    if (real_lo(d, b, d.first + i, step) > j) {
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
        }
    }
    for (var c = 0u; c < HD; c = c + 1u) {
        dk[ko + c] = dkv[c] * d.scale;
        dv[ko + c] = dvv[c];
    }
}
