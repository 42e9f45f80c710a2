//! The shapes and repetitions of a calibration: the CPU's, the GPU's and the smoke test's.

/// Sizes of one calibration: shapes of the models the backend runs (flux2-tiny on the CPU,
/// klein-4B on a GPU), so the fitted efficiencies hold where `verify` uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSizes {
    /// `(m, n, k)` GEMM shapes.
    pub gemm: Vec<(usize, usize, usize)>,
    /// `(heads, seq, head_dim)` attention shapes.
    pub attention: Vec<(usize, usize, usize)>,
    /// `(heads, kv heads, tokens, head_dim)` causal grouped-query attention shapes.
    pub causal_attention: Vec<(usize, usize, usize, usize)>,
    /// `(cin, cout, h, w)` 3×3 convolutions.
    pub conv: Vec<(usize, usize, usize, usize)>,
    /// Elements of the elementwise and copy tests.
    pub elements: usize,
    /// Values per tensor of the per-kind elementwise benchmarks, smallest to largest
    /// (multiples of 512).
    pub kind_elements: Vec<usize>,
    /// Least measured repetitions of each benchmark (after a warm-up).
    pub reps: usize,
    /// Least measured time of each benchmark, milliseconds (repetitions are added until both
    /// `reps` and this are reached).
    pub min_ms: f64,
    /// Whether to include FP8 GEMMs.
    pub fp8: bool,
    /// Host bytes (f32) of distinct weight copies each GEMM shape cycles through (0: one).
    pub gemm_weight_rotation_bytes: usize,
    /// Repetitions of the first-call benchmark ([`ColdBench`]; 0: not run).
    pub cold_reps: usize,
    /// Rounds of the whole set of benchmarks, one after the other; each benchmark reports the
    /// round whose median time is the median of the rounds' (at least 1). A neighbour's burst
    /// of load on a shared host then moves one round of a benchmark, not its result.
    pub rounds: usize,
}

impl CalibrationSizes {
    /// flux2-tiny's shapes for the CPU backend: tokens from 32 (64² plus text) to 1040 (512²),
    /// the transformer's and text encoder's projections, its VAE's convolutions.
    pub fn cpu() -> CalibrationSizes {
        CalibrationSizes {
            gemm: vec![
                // Modulation projections (one row per image) and the 64² tokens.
                (1, 768, 128),
                (1, 256, 128),
                (1, 128, 256),
                (2, 768, 128),
                (16, 128, 128),
                (16, 768, 128),
                (16, 128, 384),
                (32, 128, 128),
                (32, 768, 128),
                // 128² (64 image tokens, 80 with the text) and a wider joint stream.
                (64, 768, 128),
                (80, 1152, 128),
                (80, 128, 512),
                (208, 128, 128),
                (272, 1152, 128),
                (272, 128, 512),
                (1040, 768, 128),
                (1040, 128, 384),
                (64, 256, 64),
            ],
            attention: vec![(2, 32, 64), (2, 272, 64), (2, 1040, 64), (4, 16, 16)],
            // The text encoder's: causal, two query heads per key/value head.
            causal_attention: vec![(4, 2, 24, 16), (4, 2, 48, 16), (8, 4, 32, 32)],
            conv: vec![
                (32, 32, 8, 8),
                (32, 32, 32, 32),
                (32, 32, 64, 64),
                (16, 16, 128, 128),
                (16, 3, 64, 64),
            ],
            elements: 1 << 13,
            // From the text encoder's 16-token states to the VAE's larger feature maps.
            kind_elements: vec![1 << 9, 1 << 11, 1 << 14, 1 << 18],
            reps: 5,
            min_ms: 30.0,
            fp8: false,
            // Beyond a core's L2 (2 MiB here): a model's weights come from further out.
            gemm_weight_rotation_bytes: 16 << 20,
            cold_reps: 9,
            // One round takes about 4.5 s; a burst long enough to spoil a benchmark's
            // repetitions (seen: the convolutions 30 % slow in one calibration of five) rarely
            // spans two rounds.
            rounds: 3,
        }
    }

    /// klein-4B's shapes for an H200-class GPU (1024² has 4096 image + 512 text tokens).
    pub fn gpu() -> CalibrationSizes {
        CalibrationSizes {
            gemm: vec![
                (4608, 3072, 3072),
                (4608, 18432, 3072),
                (4608, 3072, 9216),
                (4608, 27648, 3072),
                (18944, 3072, 3072),
                (512, 5120, 2560),
                (1, 18432, 3072),
            ],
            attention: vec![(24, 4608, 128), (24, 16896, 128), (32, 512, 128)],
            causal_attention: Vec::new(),
            conv: vec![
                (512, 512, 128, 128),
                (512, 512, 256, 256),
                (256, 256, 512, 512),
                (128, 128, 1024, 1024),
            ],
            elements: 1 << 28,
            // A GPU overlaps an op's memory and math (no `serial_ops`): `a + b` gives its bandwidth.
            kind_elements: Vec::new(),
            reps: 10,
            min_ms: 200.0,
            fp8: true,
            // klein-4B's weights (tens of MB each) are beyond the GPU's L2 already.
            gemm_weight_rotation_bytes: 0,
            cold_reps: 0,
            // A GPU's kernels are not timed against a neighbour's processes; one round.
            rounds: 1,
        }
    }

    /// The smallest set that exercises every benchmark once (one shape of each kind, one
    /// repetition, one round): a smoke test of the mechanics, not a measurement to fit on.
    pub fn smoke() -> CalibrationSizes {
        CalibrationSizes {
            gemm: vec![(1, 64, 32), (16, 64, 32), (32, 32, 64)],
            attention: vec![(2, 16, 16)],
            causal_attention: vec![(4, 2, 8, 16)],
            conv: vec![(8, 8, 8, 8)],
            elements: 1 << 10,
            kind_elements: vec![1 << 8, 1 << 10],
            reps: 1,
            min_ms: 0.0,
            fp8: false,
            gemm_weight_rotation_bytes: 0,
            cold_reps: 1,
            rounds: 1,
        }
    }

    /// The same sizes with at least `reps` repetitions per benchmark.
    pub fn with_reps(mut self, reps: usize) -> CalibrationSizes {
        self.reps = self.reps.max(reps);
        self
    }
}
