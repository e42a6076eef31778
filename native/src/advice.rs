//! What to type next: the core's errors carry data (the limit, the value, the file) and say what
//! is wrong; this turns the ones a flag can fix into a hint naming that flag.

use std::error::Error;

use starling_model::ModelError;
use starling_quiet::QuietError;
use starling_star::StarError;
use starling_tasks::TaskError;
use starling_thought::KernelError;
use starling_train::TrainError;

/// The hint for the first error in `e`'s chain that has one.
pub fn for_error(e: &anyhow::Error) -> Option<&'static str> {
    if e.chain().any(is_disk_full) {
        return Some(DISK_FULL);
    }
    e.chain().find_map(hint)
}

const DISK_FULL: &str = "the disk is full: free some space, or copy the run folder to a disk with room and point \
     --out at it; then run the same command again (with --resume where it has one). Everything written before \
     this failure is intact: files are replaced only once their new copy is complete";

/// A write refused because the disk (or the user's quota) is full; the core keeps the
/// `io::Error` of every failed write.
fn is_disk_full(e: &(dyn Error + 'static)) -> bool {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    e.downcast_ref::<std::io::Error>().is_some_and(|io| matches!(io.kind(), StorageFull | QuotaExceeded))
}

fn hint(e: &(dyn Error + 'static)) -> Option<&'static str> {
    if let Some(e) = e.downcast_ref::<ModelError>() {
        return model(e);
    }
    if let Some(e) = e.downcast_ref::<TrainError>() {
        return train(e);
    }
    if let Some(e) = e.downcast_ref::<TaskError>() {
        return matches!(e, TaskError::BadLine { .. }).then_some(SKIP_BAD_LINES);
    }
    if let Some(e) = e.downcast_ref::<KernelError>() {
        return Some(kernel(e));
    }
    if let Some(e) = e.downcast_ref::<QuietError>() {
        return match e {
            QuietError::Model(m) => model(m),
            QuietError::Train(t) => train(t),
            QuietError::Kernel(k) => Some(kernel(k)),
            QuietError::OtherRun { .. } => Some("resume with the same options, or use --fresh or another --out"),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<StarError>() {
        return match e {
            StarError::Model(m) => model(m),
            StarError::Train(t) => train(t),
            StarError::RunExists { .. } => {
                Some("pass --resume to continue it, --fresh to start over, or choose another --out")
            }
            StarError::OtherSettings { .. } | StarError::OtherBase { .. } | StarError::OtherData => {
                Some("resume with the run's own settings, or start a new run with --fresh or another --out")
            }
            StarError::NothingKept { .. } => {
                Some("use a stronger base model (-m), more few-shot exemplars (--shots), or easier questions")
            }
            StarError::NotStarted { .. } => Some(
                "start the sharded run first with `starling star --merge` and the same settings and --out; \
                 its shards run after it",
            ),
            StarError::MissingShards { .. } => Some(
                "run the missing shards (`starling star --shard K/N` with the run's settings; a shard that died \
                 continues where it stopped), or delete the shards folder to generate the iteration in one process",
            ),
            StarError::ShardInUse { .. } => Some(
                "let it finish: its file appears in the shards folder when it is done (this process changed nothing)",
            ),
            StarError::ForeignShard { .. } => {
                Some("delete that file and rerun its shard with the run's settings (`starling star --shard K/N`)")
            }
            StarError::GateFailed(_) => Some(
                "pretrain the built-in base longer (--base-steps, --base-dir elsewhere) or with more hinted \
                 documents (--base-hint-share), pick digits it can start from (--digits), or skip the check with --no-gate",
            ),
            _ => None,
        };
    }
    None
}

const SKIP_BAD_LINES: &str = "pass --skip-bad-lines to skip malformed lines (they are counted)";

fn model(e: &ModelError) -> Option<&'static str> {
    match e {
        ModelError::TooLong { .. } => Some("shorten the prompt or lower --max-new-tokens"),
        ModelError::MissingTokenizer { .. } => Some("or pass a tokenizer.json with --tokenizer"),
        ModelError::UnsupportedTokenizer { .. } => Some("pass a tokenizer.json with --tokenizer"),
        ModelError::NoGpu(_) => Some("or run on the CPU with --device cpu"),
        ModelError::NoCuda(_) => Some("or use --device gpu (wgpu: Vulkan/Metal) or --device cpu"),
        _ => None,
    }
}

fn train(e: &TrainError) -> Option<&'static str> {
    match e {
        TrainError::BadLine { .. } => Some(SKIP_BAD_LINES),
        TrainError::NonFinite { .. } => Some("lower --lr, or clip gradients with --grad-clip"),
        TrainError::NonFiniteGradient { .. } => Some("lower --lr"),
        TrainError::Model(m) => model(m),
        _ => None,
    }
}

fn kernel(e: &KernelError) -> &'static str {
    match e {
        KernelError::FusedNeedsWgpu => "run on a GPU with --device gpu, or pick --kernel auto or split",
        KernelError::HeadDimTooLarge { .. } => "pick --kernel split",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_reach_through_wrapping_errors() {
        let too_long = ModelError::TooLong { prompt_tokens: 9, new_tokens: 4, context: 8 };
        let e = anyhow::Error::new(StarError::Model(too_long));
        assert_eq!(for_error(&e), Some("shorten the prompt or lower --max-new-tokens"));
        let e = anyhow::Error::new(StarError::RunExists { path: "runs/x".into() }).context("starting");
        assert!(for_error(&e).is_some_and(|h| h.contains("--resume")));
        let e = anyhow::Error::new(TaskError::BadLine { origin: "d.jsonl".into(), line: 2, message: "bad".into() });
        assert_eq!(for_error(&e), Some(SKIP_BAD_LINES));
        assert_eq!(for_error(&anyhow::anyhow!("plain")), None);
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let e = anyhow::Error::new(StarError::Train(TrainError::Model(ModelError::write("run/x", full))));
        assert_eq!(for_error(&e), Some(DISK_FULL));
        let e = anyhow::Error::new(ModelError::io("run/x", std::io::Error::from(std::io::ErrorKind::NotFound)));
        assert_eq!(for_error(&e), None);
    }
}
