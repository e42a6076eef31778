// Shared declarations of the thought-parallel attention kernels (prepended to each kernel).
//
// Layout (all contiguous f32, row-major):
//   q      [B, H,   Sq, L, HD]   queries: Sq thought steps for each of the L positions
//   k_real [B, KVH, L,  HD]      keys/values of the real tokens
//   k_diag [B, KVH, Sk, L, HD]   keys/values of the thought tokens, step-major
// Query (b, h, s, i) has absolute step a = Sk - Sq + s and sees the real keys j in [pad_b, i]
// and the thought keys (t, i) for t <= a: its own position's thought only.
//
// info words (u64 each, read as the low u32): B, H, KVH, Sq, Sk, L, bits(scale), pad_0..pad_{B-1}

const HD: u32 = {{head_dim}}u;
const WG: u32 = {{workgroup_size}}u;

fn word(k: u32) -> u32 {
    return info[2u * k];
}

struct Dims {
    batch: u32,
    heads: u32,
    kv_heads: u32,
    sq: u32,
    sk: u32,
    len: u32,
    scale: f32,
}

fn dims() -> Dims {
    return Dims(word(0u), word(1u), word(2u), word(3u), word(4u), word(5u), bitcast<f32>(word(6u)));
}

fn pad_of(b: u32) -> u32 {
    return word(7u + b);
}

// Flat invocation index over a 2-D dispatch (the x extent is capped at 65535 workgroups).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Offset of real key j of batch b, kv head g.
fn real_offset(d: Dims, b: u32, g: u32, j: u32) -> u32 {
    return ((b * d.kv_heads + g) * d.len + j) * HD;
}

// Offset of thought key (t, i) of batch b, kv head g.
fn diag_offset(d: Dims, b: u32, g: u32, t: u32, i: u32) -> u32 {
    return (((b * d.kv_heads + g) * d.sk + t) * d.len + i) * HD;
}

// Row index of query (b, h, s, i).
fn query_row(d: Dims, b: u32, h: u32, s: u32, i: u32) -> u32 {
    return ((b * d.heads + h) * d.sq + s) * d.len + i;
}
