//! The planner: a pure function from the history of steps to the next step or the
//! verdict. It never touches the network or the clock (DESIGN.md, "The planner").
//!
//! The probe loop calls [`next`] with every step run so far and either runs the step it
//! is told to or stops with the [`Verdict`]. Because the planner keeps no state of its
//! own, the history *is* the state: the same history always gives the same decision, and
//! the tests below script histories instead of mocking anything.
//!
//! The rules, in short (the design document is the authority):
//! - ramp: `start`, doubled `doubling_steps` times (3, 6, 12), then × `growth` rounded
//!   half to even (18, 27, 40, 60, 90), capped at `max_workers` (… 90, 100);
//! - a step passes when no prompt was rate limited; a passing step at the cap ends;
//! - scale back from a failing count F to floor(F × `backoff`), at least 1; if that is
//!   not above the highest count that passed, recommend that count without retesting it;
//! - a failure at 1 worker ends with [`Verdict::RateLimitedAtOne`].
//!
//! Beyond the spec, [`next_refined`] bisects between the recommendation and the lowest
//! failing count (`--refine`, issue 9) and [`SpendCap`] says whether a step fits the
//! user's budget. Both are pure as well.

use Decision::Done;

/// The ramp's settings, resolved (defaults applied).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannerConfig {
    pub start: u32,
    pub doubling_steps: u32,
    pub growth: f64,
    pub backoff: f64,
    pub max_workers: u32,
    pub prompts_per_worker: u32,
    pub min_prompts: u32,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            start: 3,
            doubling_steps: 2,
            growth: 1.5,
            backoff: 0.8,
            max_workers: 100,
            prompts_per_worker: 2,
            min_prompts: 6,
        }
    }
}

/// One finished step as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOutcome {
    pub workers: u32,
    /// No prompt was rate limited.
    pub passed: bool,
}

/// How the probe ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The highest count that passed with no failure at or below it.
    Recommend { workers: u32, cap_reached: bool },
    /// "Model rate limited even with 1 worker".
    RateLimitedAtOne,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Run { workers: u32, prompts: u32 },
    Done(Verdict),
}

/// The message of [`Verdict::RateLimitedAtOne`], worded as the seed spec words it.
pub const RATE_LIMITED_AT_ONE: &str = "Model rate limited even with 1 worker";

/// The next step after `history` (empty at the start).
///
/// `history` is expected to be what earlier calls asked for, in order. The decision is
/// derived from it afresh each time: while nothing has failed, the ramp continues above
/// the highest count that passed; after a failure, the last step decides (a pass ends
/// the probe, a failure scales back from it).
pub fn next(config: &PlannerConfig, history: &[StepOutcome]) -> Decision {
    let cap = cap(config);
    let Some(last) = history.last() else {
        return run(config, first_count(config));
    };

    if history.iter().all(|s| s.passed) {
        // Still ramping up. The ramp is strictly increasing, so "the first ramp count
        // above the highest pass" is the next one, whatever the history's length.
        let best = highest_passed(history, u32::MAX).unwrap_or(0);
        if best >= cap {
            return Done(Verdict::Recommend {
                workers: cap,
                cap_reached: true,
            });
        }
        return match ramp(config).into_iter().find(|&w| w > best) {
            Some(w) => run(config, w),
            // Unreachable for a ramp that ends at the cap; recommend what passed.
            None => Done(Verdict::Recommend {
                workers: best,
                cap_reached: best >= cap,
            }),
        };
    }

    if last.passed {
        // A scale-back target passed: it is the answer (it is above every earlier pass,
        // or it would not have been tested).
        return Done(Verdict::Recommend {
            workers: last.workers,
            cap_reached: false,
        });
    }

    // The last step failed at F: scale back from it.
    let failed = last.workers;
    if failed <= 1 {
        return Done(Verdict::RateLimitedAtOne);
    }
    let best = highest_passed(history, failed);
    // `min(failed - 1)`: a backoff of 1 or more (which config validation rejects) must
    // still move down, or the probe would retest the count that just failed.
    let target = scale_back(config.backoff, failed).min(failed - 1);
    match best {
        Some(best) if target <= best => Done(Verdict::Recommend {
            workers: best,
            cap_reached: false,
        }),
        _ => run(config, target),
    }
}

fn run(config: &PlannerConfig, workers: u32) -> Decision {
    Decision::Run {
        workers,
        prompts: prompts_for(config, workers),
    }
}

/// The largest count the probe may run (`max_workers`, at least 1).
fn cap(config: &PlannerConfig) -> u32 {
    config.max_workers.max(1)
}

/// The first count: `start`, but never above the cap and never 0.
fn first_count(config: &PlannerConfig) -> u32 {
    config.start.clamp(1, cap(config))
}

/// The highest count that passed strictly below `below`.
fn highest_passed(history: &[StepOutcome], below: u32) -> Option<u32> {
    history
        .iter()
        .filter(|s| s.passed && s.workers < below)
        .map(|s| s.workers)
        .max()
}

/// The highest count proven so far: the highest that passed below the lowest count that
/// failed (any that passed, when none failed). What a probe stopped early recommends.
pub fn proven(history: &[StepOutcome]) -> Option<u32> {
    let lowest_failed = history
        .iter()
        .filter(|s| !s.passed)
        .map(|s| s.workers)
        .min();
    highest_passed(history, lowest_failed.unwrap_or(u32::MAX))
}

/// Prompts a step of `workers` sends: max(workers × prompts_per_worker, min_prompts).
pub fn prompts_for(config: &PlannerConfig, workers: u32) -> u32 {
    workers
        .saturating_mul(config.prompts_per_worker)
        .max(config.min_prompts)
}

/// The full ramp: the counts the probe runs if every step passes, ending at the cap.
/// This is what `plan` shows as the step sequence.
///
/// Strictly increasing: a growth so small that rounding would repeat a count (1.1 × 3 =
/// 3.3 → 3) moves on by one instead, so no count is ever tested twice.
pub fn ramp(config: &PlannerConfig) -> Vec<u32> {
    let cap = cap(config);
    let mut counts = vec![first_count(config)];
    let mut current = counts[0];
    let mut doublings = 0;
    while current < cap {
        let grown = if doublings < config.doubling_steps {
            doublings += 1;
            current.saturating_mul(2)
        } else {
            grow(config.growth, current)
        };
        current = grown.max(current + 1).min(cap);
        counts.push(current);
    }
    counts
}

/// The longest step sequence the planner can produce under these settings, by prompts
/// sent (ties: by steps): the worst case `plan` shows against the spend caps.
///
/// Found by walking every branch of the planner's decision tree (each step either
/// passes or fails), which is exactly the set of histories any account can cause: the
/// planner only tests counts between the highest pass and the lowest failure, so every
/// branch is consistent with some true limit. The tree is small (tens of leaves for the
/// defaults).
pub fn worst_case_steps(config: &PlannerConfig) -> Vec<u32> {
    fn walk(config: &PlannerConfig, history: &mut Vec<StepOutcome>, worst: &mut (u64, Vec<u32>)) {
        match next(config, history) {
            Decision::Done(_) => {
                let counts: Vec<u32> = history.iter().map(|s| s.workers).collect();
                let prompts: u64 = counts
                    .iter()
                    .map(|&w| u64::from(prompts_for(config, w)))
                    .sum();
                if (prompts, counts.len()) > (worst.0, worst.1.len()) {
                    *worst = (prompts, counts);
                }
            }
            Decision::Run { workers, .. } => {
                for passed in [true, false] {
                    history.push(StepOutcome { workers, passed });
                    walk(config, history, worst);
                    history.pop();
                }
            }
        }
    }
    let mut worst = (0, Vec::new());
    walk(config, &mut Vec::new(), &mut worst);
    worst.1
}

/// Settings like 0.8 and 1.5 are decimals written by a person; f64 cannot hold them
/// exactly (0.8 is 0.8000000000000000444…, and 0.29 × 100 is 28.999999999999996, which
/// floors to 28). The planner therefore reads them as fixed-point numbers with six
/// decimals and does integer arithmetic, so floor and half-to-even are exact.
const SCALE: u128 = 1_000_000;

fn fixed_point(factor: f64) -> u128 {
    if factor.is_finite() && factor > 0.0 {
        (factor * SCALE as f64).round() as u128
    } else {
        0
    }
}

/// floor(count × backoff), at least 1.
pub fn scale_back(backoff: f64, count: u32) -> u32 {
    let exact = u128::from(count) * fixed_point(backoff) / SCALE;
    (exact.min(u128::from(u32::MAX)) as u32).max(1)
}

/// count × growth, rounded half to even (27 × 1.5 = 40.5 → 40, as the spec's sequence
/// 12, 18, 27, 40, 60, 90 shows).
pub fn grow(growth: f64, count: u32) -> u32 {
    let product = u128::from(count) * fixed_point(growth);
    let (quotient, remainder) = (product / SCALE, product % SCALE);
    let rounded = match (2 * remainder).cmp(&SCALE) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient + 1,
        std::cmp::Ordering::Equal => quotient + (quotient % 2),
    };
    rounded.min(u128::from(u32::MAX)) as u32
}

/// The next step of `--refine` (issue 9), after the spec's ramp ended with
/// `spec_verdict`.
///
/// `history` holds every step run so far: the ramp's and then the refinement's. The
/// refinement bisects between the highest count that passed below the lowest failing
/// count and that failing count. It never retests a count that failed and never tests a
/// count at or above one that failed; each refinement step either raises the proven
/// count or lowers the failing one, so it ends in about log2(F − R) steps.
///
/// When the spec's verdict leaves nothing to refine (the cap was reached, or 1 worker
/// was already rate limited) it is returned unchanged.
pub fn next_refined(
    config: &PlannerConfig,
    history: &[StepOutcome],
    spec_verdict: Verdict,
) -> Decision {
    let Verdict::Recommend {
        workers: spec_workers,
        cap_reached: false,
    } = spec_verdict
    else {
        return Done(spec_verdict);
    };
    let Some(lowest_failed) = history
        .iter()
        .filter(|s| !s.passed)
        .map(|s| s.workers)
        .min()
    else {
        return Done(spec_verdict);
    };
    // The spec's recommendation passed, so something passed below the lowest failure.
    let Some(proven) = highest_passed(history, lowest_failed) else {
        return Done(spec_verdict);
    };
    debug_assert!(proven >= spec_workers);
    if lowest_failed - proven <= 1 {
        return Done(Verdict::Recommend {
            workers: proven,
            cap_reached: false,
        });
    }
    run(config, proven + (lowest_failed - proven) / 2)
}

/// Limits on what a probe may spend (`--max-prompts`, `--max-output-tokens`,
/// `--max-cost`). A cap left `None` does not apply.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpendCap {
    pub max_prompts: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub max_cost_usd: Option<f64>,
}

/// An amount spent, or the most a step could spend.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub prompts: u64,
    pub output_tokens: u64,
    /// `None` when the provider has no pricing: a cost cap then cannot be checked.
    pub cost_usd: Option<f64>,
}

impl Spend {
    /// The most a step of `prompts` prompts can spend, each prompt being `input_tokens`
    /// long and answered with up to `max_tokens` output tokens; `prices` are US dollars
    /// per million input and output tokens.
    pub fn worst_case(
        prompts: u32,
        input_tokens: u64,
        max_tokens: u32,
        prices: Option<(f64, f64)>,
    ) -> Spend {
        let prompts = u64::from(prompts);
        let output_tokens = prompts * u64::from(max_tokens);
        Spend {
            prompts,
            output_tokens,
            cost_usd: prices.map(|(input, output)| {
                (prompts * input_tokens) as f64 * input / 1e6 + output_tokens as f64 * output / 1e6
            }),
        }
    }

    /// `self + other`; the cost stays known only if both are known.
    pub fn plus(self, other: Spend) -> Spend {
        Spend {
            prompts: self.prompts + other.prompts,
            output_tokens: self.output_tokens + other.output_tokens,
            cost_usd: self.cost_usd.zip(other.cost_usd).map(|(a, b)| a + b),
        }
    }
}

impl SpendCap {
    /// Whether a step that could spend `step` fits after `spent`. `Err` says which cap it
    /// would break, in words for the user: the probe does not start such a step and
    /// recommends what was proven so far.
    pub fn check(&self, spent: Spend, step: Spend) -> Result<(), String> {
        let total = spent.plus(step);
        if let Some(max) = self.max_prompts {
            if total.prompts > max {
                return Err(format!(
                    "the next step could bring the prompts sent to {}, above --max-prompts {max}",
                    total.prompts
                ));
            }
        }
        if let Some(max) = self.max_output_tokens {
            if total.output_tokens > max {
                return Err(format!(
                    "the next step could bring the output tokens to {}, above --max-output-tokens {max}",
                    total.output_tokens
                ));
            }
        }
        if let Some(max) = self.max_cost_usd {
            // Without pricing the cost is unknown; the CLI refuses --max-cost then, so an
            // unknown cost here is not treated as over the cap.
            if let Some(cost) = spent.cost_usd.zip(step.cost_usd).map(|(a, b)| a + b) {
                if cost > max {
                    return Err(format!(
                        "the next step could bring the cost to ${cost:.4}, above --max-cost ${max}"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn with_max(max_workers: u32) -> PlannerConfig {
        PlannerConfig {
            max_workers,
            ..PlannerConfig::default()
        }
    }

    /// Runs the planner against an account whose steps pass exactly when
    /// `passes(workers)`; returns the counts tested and the verdict.
    fn drive(config: &PlannerConfig, passes: impl Fn(u32) -> bool) -> (Vec<u32>, Verdict) {
        let mut history = Vec::new();
        loop {
            match next(config, &history) {
                Decision::Run { workers, prompts } => {
                    assert_eq!(prompts, prompts_for(config, workers));
                    history.push(StepOutcome {
                        workers,
                        passed: passes(workers),
                    });
                    assert!(history.len() < 200, "runaway planner: {history:?}");
                }
                Decision::Done(verdict) => {
                    return (history.iter().map(|s| s.workers).collect(), verdict)
                }
            }
        }
    }

    fn recommend(workers: u32) -> Verdict {
        Verdict::Recommend {
            workers,
            cap_reached: false,
        }
    }

    #[test]
    fn starts_at_three_with_six_prompts() {
        assert_eq!(
            next(&PlannerConfig::default(), &[]),
            Decision::Run {
                workers: 3,
                prompts: 6
            }
        );
    }

    #[test]
    fn a_cap_of_24_concurrent_gives_the_spec_sequence_and_21() {
        let (steps, verdict) = drive(&PlannerConfig::default(), |w| w <= 24);
        assert_eq!(steps, [3, 6, 12, 18, 27, 21]);
        assert_eq!(verdict, recommend(21));
        assert_eq!(steps.iter().max(), Some(&27), "max tested");
    }

    #[test]
    fn failing_at_three_scales_back_to_two() {
        let (steps, verdict) = drive(&PlannerConfig::default(), |w| w <= 2);
        assert_eq!(steps, [3, 2]);
        assert_eq!(verdict, recommend(2));
    }

    #[test]
    fn failing_at_one_is_rate_limited_at_one() {
        let (steps, verdict) = drive(&PlannerConfig::default(), |_| false);
        assert_eq!(steps, [3, 2, 1]);
        assert_eq!(verdict, Verdict::RateLimitedAtOne);

        let start_at_one = PlannerConfig {
            start: 1,
            ..PlannerConfig::default()
        };
        let (steps, verdict) = drive(&start_at_one, |_| false);
        assert_eq!(steps, [1]);
        assert_eq!(verdict, Verdict::RateLimitedAtOne);
    }

    #[test]
    fn a_limit_above_max_workers_ends_at_the_cap() {
        let (steps, verdict) = drive(&PlannerConfig::default(), |_| true);
        assert_eq!(steps, [3, 6, 12, 18, 27, 40, 60, 90, 100]);
        assert_eq!(
            verdict,
            Verdict::Recommend {
                workers: 100,
                cap_reached: true
            }
        );
    }

    #[test]
    fn a_limit_of_ten_gives_nine() {
        let (steps, verdict) = drive(&PlannerConfig::default(), |w| w <= 10);
        assert_eq!(steps, [3, 6, 12, 9]);
        assert_eq!(verdict, recommend(9));
    }

    #[test]
    fn a_failure_at_12_after_6_passed_tests_9() {
        let history = [
            StepOutcome {
                workers: 3,
                passed: true,
            },
            StepOutcome {
                workers: 6,
                passed: true,
            },
            StepOutcome {
                workers: 12,
                passed: false,
            },
        ];
        assert_eq!(
            next(&PlannerConfig::default(), &history),
            Decision::Run {
                workers: 9,
                prompts: 18
            }
        );
    }

    #[test]
    fn a_target_at_or_below_the_best_pass_is_not_retested() {
        // Limit 45: 60 fails, floor(48) > 40 → 48 fails, floor(38.4) = 38 ≤ 40 → 40.
        let (steps, verdict) = drive(&PlannerConfig::default(), |w| w <= 45);
        assert_eq!(steps, [3, 6, 12, 18, 27, 40, 60, 48]);
        assert_eq!(verdict, recommend(40));
    }

    #[test]
    fn a_scale_back_that_passes_is_recommended() {
        let history = [
            StepOutcome {
                workers: 3,
                passed: true,
            },
            StepOutcome {
                workers: 6,
                passed: true,
            },
            StepOutcome {
                workers: 12,
                passed: true,
            },
            StepOutcome {
                workers: 18,
                passed: true,
            },
            StepOutcome {
                workers: 27,
                passed: false,
            },
            StepOutcome {
                workers: 21,
                passed: true,
            },
        ];
        assert_eq!(
            next(&PlannerConfig::default(), &history),
            Decision::Done(recommend(21))
        );
    }

    #[test]
    fn the_ramp_follows_the_spec_and_the_cap() {
        assert_eq!(
            ramp(&PlannerConfig::default()),
            [3, 6, 12, 18, 27, 40, 60, 90, 100]
        );
        assert_eq!(ramp(&with_max(95)), [3, 6, 12, 18, 27, 40, 60, 90, 95]);
        assert_eq!(ramp(&with_max(90)), [3, 6, 12, 18, 27, 40, 60, 90]);
        assert_eq!(ramp(&with_max(10)), [3, 6, 10]);
        assert_eq!(
            ramp(&with_max(2)),
            [2],
            "start above max_workers starts at max_workers"
        );
        assert_eq!(ramp(&with_max(0)), [1]);
        let slow = PlannerConfig {
            growth: 1.1,
            doubling_steps: 0,
            ..PlannerConfig::default()
        };
        assert_eq!(
            ramp(&slow)[..6],
            [3, 4, 5, 6, 7, 8],
            "never repeats a count"
        );
    }

    #[test]
    fn max_95_ends_at_95() {
        let (steps, verdict) = drive(&with_max(95), |_| true);
        assert_eq!(steps, [3, 6, 12, 18, 27, 40, 60, 90, 95]);
        assert_eq!(
            verdict,
            Verdict::Recommend {
                workers: 95,
                cap_reached: true
            }
        );
    }

    #[test]
    fn start_above_max_workers_starts_at_max_workers() {
        let config = PlannerConfig {
            start: 3,
            ..with_max(2)
        };
        assert_eq!(
            next(&config, &[]),
            Decision::Run {
                workers: 2,
                prompts: 6
            }
        );
        let (steps, verdict) = drive(&config, |_| true);
        assert_eq!(steps, [2]);
        assert_eq!(
            verdict,
            Verdict::Recommend {
                workers: 2,
                cap_reached: true
            }
        );
    }

    #[test]
    fn growth_rounds_half_to_even() {
        let cases = [
            (12, 18),
            (18, 27),
            (27, 40),
            (40, 60),
            (60, 90),
            (90, 135),
            (5, 8),
            (7, 10),
            (9, 14),
            (11, 16),
        ];
        for (count, grown) in cases {
            assert_eq!(grow(1.5, count), grown, "{count} × 1.5");
        }
        assert_eq!(grow(1.25, 10), 12, "12.5 → 12");
        assert_eq!(grow(1.25, 14), 18, "17.5 → 18");
    }

    #[test]
    fn scale_back_floors_exactly() {
        let cases = [
            (10, 8),
            (5, 4),
            (25, 20),
            (15, 12),
            (3, 2),
            (2, 1),
            (1, 1),
            (27, 21),
            (48, 38),
            (60, 48),
            (100, 80),
            (12, 9),
        ];
        for (count, target) in cases {
            assert_eq!(scale_back(0.8, count), target, "floor({count} × 0.8)");
        }
        // Plain f64 gets these wrong: 100.0 × 0.29 = 28.999999999999996 and
        // 100.0 × 0.57 = 56.99999999999999, which floor to 28 and 56.
        assert_eq!(scale_back(0.29, 100), 29);
        assert_eq!(scale_back(0.57, 100), 57);
    }

    #[test]
    fn prompts_per_step_are_twice_the_workers_but_at_least_six() {
        let config = PlannerConfig::default();
        assert_eq!(
            [1, 2, 3, 4, 21, 100].map(|w| prompts_for(&config, w)),
            [6, 6, 6, 8, 42, 200]
        );
    }

    /// Every true limit from 0 to 500, several caps and odd settings: the recommendation
    /// never exceeds the limit, was tested and passed, and no count is tested twice.
    #[test]
    fn never_recommends_a_count_that_was_rate_limited() {
        let configs = [
            PlannerConfig::default(),
            with_max(1),
            with_max(2),
            with_max(7),
            with_max(95),
            with_max(250),
            with_max(1000),
            PlannerConfig {
                start: 1,
                ..with_max(64)
            },
            PlannerConfig {
                start: 50,
                ..with_max(40)
            },
            PlannerConfig {
                growth: 1.1,
                backoff: 0.95,
                doubling_steps: 0,
                ..with_max(300)
            },
            PlannerConfig {
                growth: 3.0,
                backoff: 0.1,
                ..with_max(500)
            },
            PlannerConfig {
                growth: 1.5,
                backoff: 0.5,
                doubling_steps: 5,
                ..with_max(400)
            },
            PlannerConfig {
                backoff: 1.0,
                ..with_max(120)
            },
            PlannerConfig {
                start: 0,
                ..with_max(30)
            },
        ];
        for config in configs {
            for limit in 0..=500 {
                let (steps, verdict) = drive(&config, |w| w <= limit);
                let unique: HashSet<u32> = steps.iter().copied().collect();
                assert_eq!(
                    unique.len(),
                    steps.len(),
                    "{config:?} limit {limit}: retested in {steps:?}"
                );
                assert!(
                    steps
                        .iter()
                        .all(|&w| (1..=config.max_workers.max(1)).contains(&w)),
                    "{config:?}: {steps:?}"
                );
                match verdict {
                    Verdict::Recommend {
                        workers,
                        cap_reached,
                    } => {
                        assert!(
                            workers <= limit,
                            "{config:?} limit {limit}: recommended {workers} ({steps:?})"
                        );
                        assert!(
                            steps.contains(&workers),
                            "{config:?} limit {limit}: {workers} was never tested"
                        );
                        assert_eq!(cap_reached, workers == config.max_workers.max(1));
                        if cap_reached {
                            assert!(limit >= workers);
                        }
                    }
                    Verdict::RateLimitedAtOne => {
                        assert_eq!(
                            limit, 0,
                            "{config:?}: rate limited at one with limit {limit} ({steps:?})"
                        );
                        assert!(steps.contains(&1));
                    }
                }
            }
        }
    }

    #[test]
    fn worst_case_is_the_full_ramp_for_the_defaults() {
        assert_eq!(
            worst_case_steps(&PlannerConfig::default()),
            [3, 6, 12, 18, 27, 40, 60, 90, 100]
        );
    }

    #[test]
    fn worst_case_covers_every_history() {
        for config in [
            with_max(30),
            PlannerConfig {
                growth: 1.1,
                backoff: 0.95,
                doubling_steps: 0,
                ..with_max(40)
            },
            PlannerConfig {
                start: 1,
                backoff: 0.9,
                ..with_max(64)
            },
        ] {
            let worst = worst_case_steps(&config);
            let cost = |steps: &[u32]| {
                steps
                    .iter()
                    .map(|&w| u64::from(prompts_for(&config, w)))
                    .sum::<u64>()
            };
            for limit in 0..=config.max_workers + 1 {
                let (steps, _) = drive(&config, |w| w <= limit);
                assert!(
                    cost(&steps) <= cost(&worst),
                    "{config:?} limit {limit}: {steps:?} costs more than {worst:?}"
                );
            }
        }
        // Where backoff is gentle, a failure at the top costs more than passing it.
        let gentle = PlannerConfig {
            backoff: 0.95,
            ..with_max(30)
        };
        assert_eq!(ramp(&gentle), [3, 6, 12, 18, 27, 30]);
        // 27 failing walks down 25, 23, 21, 19 before 18 stops it: 154 workers' worth of
        // prompts against 124 for failing at 30.
        assert_eq!(
            worst_case_steps(&gentle),
            [3, 6, 12, 18, 27, 25, 23, 21, 19]
        );
    }

    fn drive_refined(config: &PlannerConfig, limit: u32) -> (Vec<u32>, Verdict, Vec<u32>, Verdict) {
        let (spec_steps, spec_verdict) = drive(config, |w| w <= limit);
        let mut history: Vec<StepOutcome> = spec_steps
            .iter()
            .map(|&workers| StepOutcome {
                workers,
                passed: workers <= limit,
            })
            .collect();
        let mut refined_steps = Vec::new();
        loop {
            match next_refined(config, &history, spec_verdict) {
                Decision::Run { workers, .. } => {
                    refined_steps.push(workers);
                    history.push(StepOutcome {
                        workers,
                        passed: workers <= limit,
                    });
                }
                Decision::Done(verdict) => {
                    return (spec_steps, spec_verdict, refined_steps, verdict)
                }
            }
        }
    }

    #[test]
    fn refine_on_a_cap_of_45_finds_45() {
        let (spec_steps, spec_verdict, refined_steps, refined) =
            drive_refined(&PlannerConfig::default(), 45);
        assert_eq!(spec_steps, [3, 6, 12, 18, 27, 40, 60, 48]);
        assert_eq!(spec_verdict, recommend(40));
        assert_eq!(refined_steps, [44, 46, 45]);
        assert_eq!(refined, recommend(45));
    }

    #[test]
    fn refine_leaves_nothing_to_do_when_the_gap_is_one_or_the_cap_was_reached() {
        // Limit 2: 3 fails, 2 passes, nothing between.
        let (_, _, refined_steps, refined) = drive_refined(&PlannerConfig::default(), 2);
        assert_eq!((refined_steps, refined), (vec![], recommend(2)));
        let (_, _, refined_steps, refined) = drive_refined(&PlannerConfig::default(), 500);
        assert_eq!(
            (refined_steps, refined),
            (
                vec![],
                Verdict::Recommend {
                    workers: 100,
                    cap_reached: true
                }
            )
        );
        let (_, _, refined_steps, refined) = drive_refined(&PlannerConfig::default(), 0);
        assert_eq!(
            (refined_steps, refined),
            (vec![], Verdict::RateLimitedAtOne)
        );
    }

    /// Refinement finds the exact limit below the cap, never retests a count, and never
    /// tests at or above a count that failed.
    #[test]
    fn refine_finds_the_exact_limit() {
        for config in [
            PlannerConfig::default(),
            with_max(250),
            PlannerConfig {
                backoff: 0.5,
                ..with_max(300)
            },
        ] {
            for limit in 1..config.max_workers {
                let (spec_steps, _, refined_steps, refined) = drive_refined(&config, limit);
                assert_eq!(refined, recommend(limit), "{config:?} limit {limit}");
                let mut seen: HashSet<u32> = spec_steps.iter().copied().collect();
                let mut lowest_failed = spec_steps
                    .iter()
                    .copied()
                    .filter(|&w| w > limit)
                    .min()
                    .unwrap();
                for w in refined_steps {
                    assert!(seen.insert(w), "limit {limit}: {w} retested");
                    assert!(
                        w < lowest_failed,
                        "limit {limit}: {w} tested above failed {lowest_failed}"
                    );
                    if w > limit {
                        lowest_failed = w;
                    }
                }
            }
        }
    }

    #[test]
    fn spend_cap_names_the_cap_a_step_would_break() {
        let step = Spend::worst_case(36, 20, 600, Some((2.5, 10.0)));
        assert_eq!(step.prompts, 36);
        assert_eq!(step.output_tokens, 21_600);
        assert!((step.cost_usd.unwrap() - (720.0 * 2.5 + 21_600.0 * 10.0) / 1e6).abs() < 1e-12);

        let spent = Spend {
            prompts: 60,
            output_tokens: 30_000,
            cost_usd: Some(0.3),
        };
        assert_eq!(SpendCap::default().check(spent, step), Ok(()));
        assert_eq!(
            SpendCap {
                max_prompts: Some(96),
                ..SpendCap::default()
            }
            .check(spent, step),
            Ok(())
        );
        assert_eq!(
            SpendCap {
                max_prompts: Some(95),
                ..SpendCap::default()
            }
            .check(spent, step),
            Err("the next step could bring the prompts sent to 96, above --max-prompts 95".into())
        );
        assert_eq!(
            SpendCap { max_output_tokens: Some(50_000), ..SpendCap::default() }.check(spent, step),
            Err("the next step could bring the output tokens to 51600, above --max-output-tokens 50000".into())
        );
        assert_eq!(
            SpendCap {
                max_cost_usd: Some(0.5),
                ..SpendCap::default()
            }
            .check(spent, step),
            Err("the next step could bring the cost to $0.5178, above --max-cost $0.5".into())
        );
        let unpriced = Spend {
            cost_usd: None,
            ..step
        };
        assert_eq!(
            SpendCap {
                max_cost_usd: Some(0.5),
                ..SpendCap::default()
            }
            .check(spent, unpriced),
            Ok(())
        );
    }
}
