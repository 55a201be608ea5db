//! What a plugin can observe besides its input: nothing that changes. The
//! WASI context of every call has clocks stopped at the Unix epoch and
//! randomness derived from a per-call seed (a hash of the input), so the
//! same batch gives byte-identical output however often and whenever it is
//! computed — the host relies on that to recompute a batch after a crash.

use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime_wasi::random::Deterministic;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

/// Bytes of randomness per generator per call; beyond this they repeat. A
/// plugin gets randomness only because language runtimes ask for it (hash
/// map keys); it must not rely on it for unique ids.
const RANDOM_BYTES: usize = 4096;

/// A per-call seed: SHA-256 of what the call reads.
pub(super) type Seed = [u8; 32];

pub(super) fn seed_of(bytes: &[u8]) -> Seed {
    Sha256::digest(bytes).into()
}

/// Both WASI clocks, stopped at the Unix epoch.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// `RANDOM_BYTES` of SHA-256 in counter mode over `seed` and `stream`.
fn random_bytes(seed: &Seed, stream: u8) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(RANDOM_BYTES);
    let mut counter: u64 = 0;
    while bytes.len() < RANDOM_BYTES {
        let block = Sha256::new()
            .chain_update(seed)
            .chain_update([stream])
            .chain_update(counter.to_le_bytes())
            .finalize();
        bytes.extend_from_slice(&block);
        counter += 1;
    }
    bytes
}

/// An empty WASI context (no files, network, environment or arguments) with
/// frozen clocks and randomness from `seed`.
pub(super) fn wasi_ctx(seed: &Seed) -> WasiCtx {
    let insecure_seed = u128::from_le_bytes(seed[..16].try_into().expect("16 of 32 bytes"));
    WasiCtx::builder()
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(Deterministic::new(random_bytes(seed, 0)))
        .insecure_random(Deterministic::new(random_bytes(seed, 1)))
        .insecure_random_seed(insecure_seed)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomness_is_a_function_of_the_seed() {
        let (a, b) = (seed_of(b"batch 1"), seed_of(b"batch 2"));
        assert_eq!(random_bytes(&a, 0), random_bytes(&a, 0));
        assert_ne!(random_bytes(&a, 0), random_bytes(&b, 0));
        assert_ne!(
            random_bytes(&a, 0),
            random_bytes(&a, 1),
            "secure and insecure differ"
        );
        assert_eq!(random_bytes(&a, 0).len(), RANDOM_BYTES);
    }
}
