//! The page's words for what to change: the core's errors carry data and say what is wrong; for
//! the ones a control of the page can fix, this names the control.

use std::any::Any;

use starling_model::ModelError;
use starling_quiet::QuietError;
use starling_star::StarError;

/// The hint for `e`, when it is a core error a control can fix.
pub fn for_error(e: &dyn Any) -> Option<&'static str> {
    if let Some(e) = e.downcast_ref::<ModelError>() {
        return model(e);
    }
    if let Some(QuietError::Model(e)) = e.downcast_ref::<QuietError>() {
        return model(e);
    }
    match e.downcast_ref::<StarError>()? {
        StarError::Model(m) => model(m),
        StarError::NothingKept { .. } => {
            Some("STaR needs a model above chance: use the built-in model, or fewer digits ('digits up to')")
        }
        _ => None,
    }
}

fn model(e: &ModelError) -> Option<&'static str> {
    match e {
        ModelError::TooLong { .. } => Some("shorten the prompt, or lower the number of tokens"),
        _ => None,
    }
}
