// Shared declarations of the thought-parallel attention kernels (prepended to each kernel).
//
// Layout (all contiguous f32, row-major):
//   q      [B, H,   Sq, Lq, HD]  queries: Sq thought steps for each of the Lq thinking positions
//                                (real positions first..first+Lq, first + Lq <= L)
//   k_real [B, KVH, L,  HD]      keys/values of the real tokens
//   k_diag [B, KVH, Sk, Lq, HD]  keys/values of the thought tokens, step-major
// Thinking position i (0..Lq) is real position p = first + i. Query (b, h, s, i) has absolute
// step a = Sk - Sq + s and sees the real keys j in [pad_b, p] and the thought keys (t, i) for
// t <= a: its own position's thought only. With a sliding window W (0: none) the step-a token
// sits at slot p + a + 1 and sees nothing more than W - 1 slots back. These are the rules of
// `Visibility` in crates/thought/src/lib.rs, which the tests hold these kernels to.
//
// info words (u64 each, read as the low u32):
//   B, H, KVH, Sq, Sk, Lq, bits(scale), L, first, W, pad_0..pad_{B-1}

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
    len: u32,       // Lq: thinking positions
    scale: f32,
    real_len: u32,  // L: real positions
    first: u32,     // real position of thinking position 0
    window: u32,    // 0: no sliding window
}

fn dims() -> Dims {
    return Dims(word(0u), word(1u), word(2u), word(3u), word(4u), word(5u), bitcast<f32>(word(6u)),
                word(7u), word(8u), word(9u));
}

fn pad_of(b: u32) -> u32 {
    return word(10u + b);
}

// First real key seen by the step-`step` query of real position p in row b (it sees lo..=p).
fn real_lo(d: Dims, b: u32, p: u32, step: u32) -> u32 {
    let pad = pad_of(b);
    if (d.window == 0u || p + step + 2u <= d.window) {
        return pad;
    }
    return max(pad, p + step + 2u - d.window);
}

// First thought step whose key the step-`step` query sees (it sees lo..=step).
fn thought_lo(d: Dims, step: u32) -> u32 {
    if (d.window == 0u || step + 1u <= d.window) {
        return 0u;
    }
    return step + 1u - d.window;
}

// Flat invocation index over a 2-D dispatch (the x extent is capped at 65535 workgroups).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Offset of real key j of batch b, kv head g.
fn real_offset(d: Dims, b: u32, g: u32, j: u32) -> u32 {
    return ((b * d.kv_heads + g) * d.real_len + j) * HD;
}

// Offset of thought key (t, i) of batch b, kv head g.
fn diag_offset(d: Dims, b: u32, g: u32, t: u32, i: u32) -> u32 {
    return (((b * d.kv_heads + g) * d.sk + t) * d.len + i) * HD;
}

// Row index of query (b, h, s, i).
fn query_row(d: Dims, b: u32, h: u32, s: u32, i: u32) -> u32 {
    return ((b * d.heads + h) * d.sq + s) * d.len + i;
}
