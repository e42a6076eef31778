//! A small seeded mutator for the stable replay pass (`cargo test`): byte flips, interesting
//! values (sizes near the type limits, where overflows and huge allocations hide), insertions,
//! deletions and truncations. Not coverage-guided — that is cargo-fuzz's job — but bounded,
//! deterministic and enough to keep every target exercised beyond its seeds in CI.

/// xorshift64*: tiny, seeded, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values that break size arithmetic when read as lengths, counts, offsets or ids.
const INTERESTING: [u64; 10] =
    [0, 1, 0x7f, 0xff, 0x7fff_ffff, 0xffff_ffff, 1 << 32, 1 << 40, i64::MAX as u64, u64::MAX];

/// `input` changed by one to four mutations.
pub fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = [0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'9'][rng.below(7)];
            }
            2 if len >= 8 => {
                let i = rng.below(len - 7);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let width = [1usize, 2, 4, 8][rng.below(4)];
                out[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let fill: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(i..i, fill);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                out.drain(i..i + n);
            }
            _ => out.truncate(rng.below(len + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_seeded_and_change_the_input() {
        let seed = b"GGUF\x03\x00\x00\x00 some header bytes".to_vec();
        let a: Vec<Vec<u8>> = {
            let mut r = Rng::new(1);
            (0..50).map(|_| mutate(&seed, &mut r)).collect()
        };
        let b: Vec<Vec<u8>> = {
            let mut r = Rng::new(1);
            (0..50).map(|_| mutate(&seed, &mut r)).collect()
        };
        assert_eq!(a, b, "seeded");
        assert!(a.iter().filter(|m| **m != seed).count() > 40, "almost every mutation changes the input");
        assert!(a.iter().any(|m| m.len() < seed.len()) && a.iter().any(|m| m.len() > seed.len()));
    }
}
