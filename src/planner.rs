//! The planner: a pure function from the history of steps to the next step or the
//! verdict. It never touches the network or the clock (DESIGN.md, "The planner").
//!
//! CONTRACT (filled in by the planner work; signatures are fixed, bodies are not).

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

/// The next step after `history` (empty at the start).
pub fn next(_config: &PlannerConfig, _history: &[StepOutcome]) -> Decision {
    unimplemented!("planner::next")
}

/// Prompts a step of `workers` sends: max(workers × prompts_per_worker, min_prompts).
pub fn prompts_for(config: &PlannerConfig, workers: u32) -> u32 {
    workers
        .saturating_mul(config.prompts_per_worker)
        .max(config.min_prompts)
}
