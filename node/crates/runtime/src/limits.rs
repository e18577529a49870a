//! Per-request limits: CPU time by epoch ticks, memory by a resource limiter.
//!
//! The engine's epoch advances every [`TICK`]. Guest code checks the epoch at function entries
//! and loop headers, so [`CpuBudget`] is charged one tick each time the guest is found running
//! past its deadline — time spent awaiting host I/O is not charged, which makes the budget
//! CPU time rather than wall time, as Cloudflare's CPU limit is.

use std::time::Duration;

/// How often the engine's epoch advances.
pub const TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Default)]
pub struct CpuBudget {
    /// Ticks this request may still be charged.
    pub limit_ticks: u64,
    pub used_ticks: u64,
    /// Set when the budget ran out, so the resulting trap is reported as a CPU-limit hit.
    pub exceeded: bool,
}

impl CpuBudget {
    pub fn reset(&mut self, cpu: Duration) {
        let ticks = cpu.as_micros().div_ceil(TICK.as_micros()).max(1);
        self.limit_ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        self.used_ticks = 0;
        self.exceeded = false;
    }

    /// Charges a tick; false once the budget is spent.
    pub fn charge(&mut self) -> bool {
        self.used_ticks += 1;
        if self.used_ticks > self.limit_ticks {
            self.exceeded = true;
        }
        !self.exceeded
    }
}

/// Bounds an instance's linear memories and tables, and remembers whether a bound was hit.
#[derive(Debug)]
pub struct MemoryGuard {
    limit: usize,
    /// Bytes of linear memory currently allocated to the instance.
    pub current: usize,
    /// Set when a growth was refused; the guest usually traps right after.
    pub hit: bool,
}

impl MemoryGuard {
    pub fn new(limit: usize) -> Self {
        MemoryGuard { limit, current: 0, hit: false }
    }
}

const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryGuard {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let after = self.current.saturating_sub(current).saturating_add(desired);
        if after > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.current = after;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn cpu_budget_runs_out_after_its_ticks() {
        let mut cpu = CpuBudget::default();
        cpu.reset(Duration::from_millis(3));
        assert!(cpu.charge() && cpu.charge() && cpu.charge());
        assert!(!cpu.charge());
        assert!(cpu.exceeded);
        cpu.reset(Duration::from_millis(3));
        assert!(!cpu.exceeded && cpu.charge());
    }

    #[test]
    fn memory_guard_refuses_growth_past_the_limit() {
        let mut guard = MemoryGuard::new(10 << 20);
        assert!(guard.memory_growing(0, 4 << 20, None).expect("grow"));
        assert!(guard.memory_growing(4 << 20, 8 << 20, None).expect("grow"));
        assert!(!guard.memory_growing(8 << 20, 12 << 20, None).expect("grow"));
        assert!(guard.hit);
        assert_eq!(guard.current, 8 << 20);
    }
}
