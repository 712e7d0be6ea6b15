//! How `ldl` reports a failure: a user's error with its causes, an internal one with its
//! backtrace.

/// Marks an error that is a bug in `ldl`, not a problem with the user's input: its report
/// keeps the backtrace ([`error_report`]). Attach it with `.context(Internal("..."))`.
#[derive(Debug, thiserror::Error)]
#[error("internal error (a bug in ldl): {0}")]
pub struct Internal(pub &'static str);

/// What `ldl` prints when a command fails: the error and its causes, as anyhow prints them,
/// without the backtrace anyhow captures when `RUST_BACKTRACE` is set: a wrong file or
/// argument is not a bug. An [`Internal`] error keeps it (and panics are unaffected).
pub fn error_report(e: &anyhow::Error) -> String {
    if e.downcast_ref::<Internal>().is_some() {
        return format!("Error: {e:?}");
    }
    let mut out = format!("Error: {e}");
    let causes: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        out.push_str("\n\nCaused by:");
        for (i, c) in causes.iter().enumerate() {
            if causes.len() == 1 {
                out.push_str(&format!("\n    {c}"));
            } else {
                out.push_str(&format!("\n    {i}: {c}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user's error prints with its causes, as anyhow's own report without a backtrace;
    /// an internal one is anyhow's whole report (with the backtrace when one was captured).
    #[test]
    fn error_reports() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("m.ldlm: cannot read the model file");
        assert_eq!(
            error_report(&e),
            "Error: m.ldlm: cannot read the model file\n\nCaused by:\n    no such file"
        );
        let e = e.context("predict");
        assert_eq!(
            error_report(&e),
            "Error: predict\n\nCaused by:\n    0: m.ldlm: cannot read the model file\n    1: no such file"
        );
        assert_eq!(error_report(&anyhow::anyhow!("bad --classes")), "Error: bad --classes");
        let bug = anyhow::anyhow!("label count 3, predictors 2")
            .context(Internal("the trained model is inconsistent"))
            .context("train");
        let r = error_report(&bug);
        assert_eq!(r, format!("Error: {bug:?}"));
        assert!(
            r.contains("internal error (a bug in ldl): the trained model is inconsistent"),
            "{r}"
        );
        assert!(r.contains("label count 3, predictors 2"), "{r}");
    }
}
