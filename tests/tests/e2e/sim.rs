//! The deterministic simulation over many seeds.

use tests::sim::{Faults, run};

/// Seeds that once failed, kept so the bugs they found stay fixed.
const REGRESSIONS: &[u64] = &[50, 102, 118, 177, 191, 565, 876, 953, 1228];

fn seeds() -> impl Iterator<Item = u64> {
    // SIM_SEEDS widens the sweep locally (e.g. SIM_SEEDS=2000); CI runs the default.
    #[allow(clippy::disallowed_methods)] // test configuration, not library code
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64u64);
    // SIM_FROM resumes a local sweep past the seeds already seen to pass.
    #[allow(clippy::disallowed_methods)] // test configuration, not library code
    let from = std::env::var("SIM_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0u64);
    REGRESSIONS.iter().copied().chain(from..n)
}

#[test]
fn sim_invariants_hold_under_faults_restarts_a_second_instance_and_restores() {
    let mut totals = tests::sim::Outcome::default();
    for seed in seeds() {
        let o = run(seed, 250, Faults::default()).unwrap_or_else(|e| panic!("{e}"));
        totals.edits += o.edits;
        totals.exchanges += o.exchanges;
        totals.dropped += o.dropped;
        totals.duplicated += o.duplicated;
        totals.stale_ignored += o.stale_ignored;
        totals.compactions += o.compactions;
        totals.conflicts += o.conflicts;
        totals.denied_locally += o.denied_locally;
        totals.restarts += o.restarts;
        totals.second_instance += o.second_instance;
        totals.server_restores += o.server_restores;
        totals.device_restores += o.device_restores;
    }
    // The runs must have exercised what they claim to.
    assert!(totals.edits > 1000, "{totals:?}");
    assert!(
        totals.dropped > 100 && totals.duplicated > 50 && totals.stale_ignored > 10,
        "{totals:?}"
    );
    assert!(totals.compactions > 0, "no compaction happened: {totals:?}");
    assert!(totals.conflicts > 0, "no conflict was produced: {totals:?}");
    assert!(totals.denied_locally > 0, "{totals:?}");
    assert!(
        totals.restarts > 10 && totals.second_instance > 10,
        "restarts and a second instance were exercised: {totals:?}"
    );
    assert!(
        totals.server_restores > 5 && totals.device_restores > 5,
        "restores from backups were exercised: {totals:?}"
    );
}

#[test]
fn sim_without_faults_converges() {
    for seed in 0..16 {
        run(
            seed,
            200,
            Faults {
                drop: 0.0,
                duplicate: 0.0,
                late: 0.0,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
