//! The one seeded random generator of the project: crm-load's data and the tests' random
//! datasets and commands come from it, so the same seed gives the same data on every
//! machine (the README's demo output and every fixed-seed test rely on it).
//!
//! A thin wrapper around `rand_xoshiro`'s `SplitMix64`: the state starts at the seed, and
//! each draw is splitmix64's next 64-bit output.

use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

/// splitmix64, seeded with a `u64`.
#[derive(Debug, Clone)]
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::from_seed(seed.to_le_bytes()))
    }

    /// The next 64-bit output.
    #[allow(clippy::should_implement_trait)] // the name the callers use; not an iterator
    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (`0` when `n` is 0), by modulo.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// [`Rng::below`] for lengths and indexes.
    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// One of `items`.
    ///
    /// # Panics
    ///
    /// When `items` is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below_usize(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    /// The hand-written splitmix64 that crm-load and the tests' datasets used before.
    struct Before(u64);

    impl Before {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    /// Values the old code gave: five draws, then `below(7)`, `chance(30)` and
    /// `pick(&["a", "b", "c"])`.
    const RECORDED: [(u64, [u64; 5], u64, bool, &str); 4] = [
        (
            0,
            [
                16294208416658607535,
                7960286522194355700,
                487617019471545679,
                17909611376780542444,
                1961750202426094747,
            ],
            2,
            true,
            "c",
        ),
        (
            1,
            [
                10451216379200822465,
                13757245211066428519,
                17911839290282890590,
                8196980753821780235,
                8195237237126968761,
            ],
            2,
            false,
            "a",
        ),
        (
            42,
            [
                13679457532755275413,
                2949826092126892291,
                5139283748462763858,
                6349198060258255764,
                701532786141963250,
            ],
            4,
            true,
            "c",
        ),
        (
            u64::MAX,
            [
                16490336266968443936,
                16834447057089888969,
                4048727598324417001,
                7862637804313477842,
                13015481187462834606,
            ],
            5,
            false,
            "c",
        ),
    ];

    #[test]
    fn gives_the_recorded_values() {
        for (seed, draws, below, chance, pick) in RECORDED {
            let mut rng = Rng::new(seed);
            for draw in draws {
                assert_eq!(rng.next(), draw, "seed {seed}");
            }
            assert_eq!(rng.below(7), below, "seed {seed}");
            assert_eq!(rng.chance(30), chance, "seed {seed}");
            assert_eq!(*rng.pick(&["a", "b", "c"]), pick, "seed {seed}");
        }
    }

    #[test]
    fn follows_the_hand_written_generator() {
        for seed in [0, 1, 2, 7, 99, 2024, 2026, 1 << 63, u64::MAX] {
            let mut rng = Rng::new(seed);
            let mut before = Before(seed);
            for _ in 0..1000 {
                assert_eq!(rng.next(), before.next(), "seed {seed}");
            }
        }
    }

    #[test]
    fn below_chance_and_pick_are_the_modulo_forms() {
        let mut rng = Rng::new(5);
        let mut before = Before(5);
        for n in [0u64, 1, 2, 3, 7, 100, 1_000_003, u64::MAX] {
            assert_eq!(rng.below(n), before.next() % n.max(1));
            assert_eq!(rng.below_usize(n as usize) as u64, before.next() % n.max(1));
        }
        for percent in [0, 1, 30, 50, 99, 100] {
            assert_eq!(rng.chance(percent), before.next() % 100 < percent);
        }
        let items = [10, 20, 30, 40, 50];
        for _ in 0..20 {
            let index = (before.next() % items.len() as u64) as usize;
            assert_eq!(rng.pick(&items), &items[index]);
        }
    }
}
