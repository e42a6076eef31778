//! Learning-rate schedules: linear warm-up, then constant or cosine decay.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    #[default]
    Cosine,
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(ScheduleKind::Constant),
            "cosine" => Ok(ScheduleKind::Cosine),
            other => Err(format!("unknown schedule `{other}` (expected constant or cosine)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// Cosine decays to `peak_lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
}

impl Schedule {
    /// Learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            ScheduleKind::Constant => self.peak_lr,
            ScheduleKind::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
                let min = self.peak_lr * self.min_lr_ratio;
                min + 0.5 * (self.peak_lr - min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s =
            Schedule { kind: ScheduleKind::Cosine, peak_lr: 1.0, warmup_steps: 4, total_steps: 104, min_lr_ratio: 0.1 };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert!((s.lr(4) - 1.0).abs() < 1e-12);
        assert!((s.lr(54) - 0.55).abs() < 1e-12);
        assert!((s.lr(104) - 0.1).abs() < 1e-12);
        assert!((s.lr(500) - 0.1).abs() < 1e-12);
        let c = Schedule { kind: ScheduleKind::Constant, ..s };
        assert_eq!(c.lr(1), 0.5);
        assert_eq!(c.lr(90), 1.0);
    }
}
